// IoUring: one io_uring per reactor, with batched submission and a reap
// loop that dispatches completions to IoRequest callbacks.
//
// Thread: created on and used only by its reactor thread (SINGLE_ISSUER).
// Errors: Create returns a Status; submission errors surface as -errno
// completions of the affected requests.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include "base/fd.h"
#include "base/status.h"
#include "io/backend.h"

namespace nestor::io {

// The request whose completion callback is running on this thread (for
// fault attribution, reactor/guest_fault.h), or nullptr.
extern thread_local IoRequest* tls_completing;

class IoUring {
 public:
  // reactor_cpu >= 0: keep io_uring's worker threads (punted requests) off
  // that CPU, where a busy-polling reactor would make them wait.
  static Result<std::unique_ptr<IoUring>> Create(unsigned entries, int reactor_cpu = -1);
  ~IoUring();
  IoUring(const IoUring&) = delete;
  IoUring& operator=(const IoUring&) = delete;

  // An SQE whose user_data will be req; submits the batch first when the
  // queue is full. Never returns null.
  io_uring_sqe* GetSqe(IoRequest* req);
  // An SQE whose completion is ignored (e.g. a timeout linked before a
  // request to delay it). Not counted as in flight.
  io_uring_sqe* GetAuxSqe();
  // Submits everything prepared since the last call (one syscall, or none).
  void Submit();
  // Dispatches every available completion; returns how many.
  int Reap();
  uint32_t in_flight() const { return in_flight_; }
  // Cross-thread completions (IORING_OP_MSG_RING). The owner of `target`
  // calls ExpectPosted() for each completion another thread will post to
  // it; the poster (on its own ring's thread) calls PostTo, after which
  // target's Reap runs req's hook (or done) with `res`, on target's thread.
  void ExpectPosted() { ++in_flight_; }
  void PostTo(IoUring* target, IoRequest* req, int res);
  // Signalled when completions are posted: for sleeping reactors.
  int event_fd() const { return event_fd_.get(); }

 private:
  IoUring() = default;
  io_uring ring_{};
  io_uring_sqe* NextSqe();

  bool inited_ = false;
  uint32_t in_flight_ = 0;
  UniqueFd event_fd_;
};

}  // namespace nestor::io
