// Block backends: the storage a volume is served from, behind one
// interface (io_uring on a file or block device, memory, null).
//
// Thread: a BlockBackend is created by the control thread and shared
// (immutable) by the reactors; each reactor opens its own IoChannel, which
// only that reactor uses (no locks on the data path). Errors: completions
// carry a result like a syscall: >= 0 success, -errno failure. Submit never
// blocks; mem and null channels complete inline (the callback runs before
// Submit returns), io_uring channels complete from IoUring::Reap.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace nestor::io {

class IoUring;

enum class IoOp : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };

// One backend operation. Callers embed it in their own request state and
// recover that state in `done` (no allocation per I/O).
struct IoRequest {
  IoOp op = IoOp::kRead;
  bool unmap = false;          // write-zeroes may deallocate
  uint64_t offset = 0;         // bytes
  uint64_t length = 0;         // bytes
  const iovec* iov = nullptr;  // read/write data, in client memory (zero copy)
  int iovcnt = 0;
  void (*done)(IoRequest* req, int result) = nullptr;
  // Backend scratch, not for callers: a backend that must see the raw
  // completion first (short transfers, bounce buffers, retries) sets hook.
  void (*hook)(IoRequest* req, int result) = nullptr;
  void* hook_ctx = nullptr;
  void* bounce = nullptr;
  int sub_op = 0;
  // The caller's context (e.g. its queue), for fault attribution.
  void* owner = nullptr;
  // Set by a backend that serves req through sub-requests of its own (thin
  // volumes): the request a sub-request belongs to. A fault in a
  // sub-request's completion is charged to the root of this chain.
  IoRequest* parent = nullptr;
};

struct IoStats {
  uint64_t bounced = 0;  // requests that needed an aligned bounce buffer
};

class IoChannel {
 public:
  virtual ~IoChannel() = default;
  // Starts req; req->done runs exactly once, on this reactor.
  virtual void Submit(IoRequest* req) = 0;
  virtual const IoStats& stats() const = 0;
  // req's submission or completion was cut short (a fault on its buffers
  // unwound the thread): release what the backend holds for it (bounce
  // buffer). req->done will not run. Must not touch req's data buffers.
  virtual void Abandon(IoRequest* req) {
    free(req->bounce);
    req->bounce = nullptr;
  }
  // Work the channel still holds, including for abandoned requests whose
  // sub-requests are still in flight: the owner must not destroy the
  // channel (or the memory its requests point into) before this is 0.
  virtual uint32_t pending() const { return 0; }
  // End of the owner's batch (a reactor iteration): complete what the
  // channel deferred to handle the whole batch at once (a thin volume
  // acknowledges writes once one journal write covered them all).
  virtual void EndOfBatch() {}
};

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;
  virtual uint64_t size_bytes() const = 0;
  virtual std::string Describe() const = 0;
  // Smallest I/O unit the backend handles without read-modify-write
  // (O_DIRECT alignment); advertised to the guest as its block size.
  virtual uint32_t block_size() const { return 512; }
  // Opens a channel for the calling reactor; ring is that reactor's ring.
  virtual Result<std::unique_ptr<IoChannel>> OpenChannel(IoUring* ring) = 0;
};

// Factories. `size` is the volume size in bytes.
Result<std::unique_ptr<BlockBackend>> OpenNullBackend(uint64_t size);
Result<std::unique_ptr<BlockBackend>> OpenMemBackend(uint64_t size);
// How OpenFileBackend opens and claims a file. Every opener of a backing
// file or pool takes the same advisory lock (base/file_lock.h): exclusive,
// shared when read-only, so nestord instances and the `nestor` tool
// exclude each other.
struct FileBackendOptions {
  enum class Lock {
    kTake,         // lock, or refuse a file another process holds (EBUSY)
    kForce,        // lock if free, else serve it unlocked all the same (logged)
    kCallerHolds,  // the caller holds the lock on its own descriptor (a pool)
  };
  bool read_only = false;
  Lock lock = Lock::kTake;
  // delay_us > 0 is fault injection for tests: every request is held that
  // long before it starts (io_uring path only).
  uint32_t delay_us = 0;
  // Runs on the opened, locked descriptor before the file is extended or
  // served; an error refuses the file (e.g. nestord's pool-signature check).
  std::function<Status(int fd)> check;
};

// Opens (creating or extending a regular file to `size` if needed) with
// O_DIRECT where the file system allows it. A block device must be at
// least `size` bytes. Errors name the path: EBUSY when another process
// holds the file's lock (and who, when known).
Result<std::unique_ptr<BlockBackend>> OpenFileBackend(const std::string& path, uint64_t size,
                                                      const FileBackendOptions& opts);

}  // namespace nestor::io
