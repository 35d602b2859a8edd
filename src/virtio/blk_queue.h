// BlkQueue: one virtio-blk request queue served by one reactor. Pops
// requests from the split ring, decodes them, hands the data iovecs (guest
// memory, zero copy) to the volume's backend channel, and completes them
// into the used ring with at most one notification per reactor iteration.
//
// Thread: constructed by the control thread; every other method runs on the
// owning reactor (Start, RequestStop and SetCallFd are posted there as
// messages). No locks, no allocation per request: request state lives in a
// pool indexed by head descriptor id. Errors: a bad request fails with a
// virtio status; a broken ring (index jumps, bad or duplicate heads) stops
// the queue and reports through on_broken, never touching other queues.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/backend.h"
#include "reactor/poller.h"
#include "reactor/reactor.h"
#include "virtio/blk_request.h"
#include "virtio/inflight.h"
#include "virtio/queue_stats.h"
#include "virtio/virtqueue.h"

namespace nestor::virtio {

struct BlkQueueConfig {
  int index = 0;
  std::string device;  // for log messages
  VringSetup vring;
  const GuestMemoryMap* mem = nullptr;  // outlives the queue while started
  BlkLimits limits;
  io::BlockBackend* backend = nullptr;
  int kick_fd = -1;  // -1: no fd, the queue must be polled
  int call_fd = -1;  // -1: never signal (guest poll queue)
  char serial[kBlkIdBytes] = {};
  InflightQueue* inflight = nullptr;  // this queue's inflight region, if negotiated
  std::function<void(const std::string& why)> on_broken;  // runs on the reactor
};

class BlkQueue final : public reactor::Poller {
 public:
  static constexpr int kMaxIov = 160;  // seg_max (126) + header + status + splits
  static constexpr int kBatch = 64;    // heads taken per Poll

  explicit BlkQueue(BlkQueueConfig cfg);
  ~BlkQueue() override;

  // Reactor thread: opens the backend channel and joins the reactor.
  Status Start(reactor::Reactor* r);
  // Reactor thread: stop taking requests; once in-flight ones finished and
  // were published, leave the reactor and call done(next avail index).
  void RequestStop(std::function<void(uint16_t)> done);
  // Reactor thread: swap the call eventfd (-1: none). Not owned.
  void SetCallFd(int fd) { cfg_.call_fd = fd; }

  int Poll() override;
  void Flush() override;
  bool PrepareToSleep() override;
  void ResumePolling() override;
  int wake_fd() const override { return cfg_.kick_fd; }
  void OnGuestFault(io::IoRequest* completing) override;
  void OnWake() override { stats_.kicks.fetch_add(1, std::memory_order_relaxed); }

  uint32_t in_flight() const { return in_flight_; }

 private:
  struct Task : io::IoRequest {
    BlkQueue* queue = nullptr;
    uint16_t head = 0;
    bool busy = false;
    bool in_backend = false;  // submitted, its completion not yet received
    uint8_t* status = nullptr;
    uint32_t used_len = 0;
    iovec vecs[kMaxIov];  // the chain's iovecs; IoRequest::iov points into it
  };

  void Process(uint16_t head, bool resubmit = false);
  void RecoverInflight();
  void SignalCall();
  void TrackPop(uint16_t head);
  void TrackComplete(uint16_t head);
  void Execute(Task* t, const BlkRequest& req);
  void Complete(Task* t, uint8_t status);
  void Break(const std::string& why);
  void MaybeFinishStop();
  static void OnIoDone(io::IoRequest* req, int result);

  BlkQueueConfig cfg_;
  SplitQueue vq_;
  std::vector<Task> tasks_;
  reactor::Reactor* reactor_ = nullptr;
  reactor::Counters* counters_ = nullptr;
  std::unique_ptr<io::IoChannel> channel_;
  uint32_t in_flight_ = 0;          // popped, not yet completed
  uint32_t backend_in_flight_ = 0;  // of those, held by the backend
  bool broken_ = false;
  bool stopping_ = false;
  std::function<void(uint16_t)> stop_done_;
  uint32_t bad_requests_logged_ = 0;
  bool recovered_ = false;        // inflight recovery ran (or is not needed)
  uint64_t inflight_counter_ = 0;
  Task* submitting_ = nullptr;  // inside channel_->Submit (fault attribution)
  QueueStats stats_;
};

}  // namespace nestor::virtio
