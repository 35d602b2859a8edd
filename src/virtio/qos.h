// Per-volume QoS: IOPS and bandwidth limits, for reads and writes, enforced
// by the reactors serving the volume's queues (docs/rpc.md, `qos_set`).
//
// Each limit is a GCRA token bucket (one atomic "theoretical arrival time"
// per limit, shared by the volume's queues whichever reactor runs them),
// with a burst tolerance of kBurstNs so that traffic is smoothed below a
// millisecond. A request that does not fit waits in its queue (in order;
// the queue takes no new requests meanwhile) and is retried when the
// reactor polls again.
//
// Costs: an op costs 1e9/iops ns, a request of b bytes b*1e9/bps ns (32.32
// fixed point, rounded to the nanosecond per request). A limit's request
// conforms when its bucket's TAT <= now + kBurstNs (so a request larger than
// the burst still passes when the bucket is empty, and pays for it after).
// Reads count as read ops and read bytes; writes as write ops and bytes;
// discard and write-zeroes as write ops of 0 bytes; flush and get-id are not
// limited. Set resets the TAT of every limit whose rate changed (a lowered
// limit applies from the next request, a raised one at once), leaving the
// others untouched.
//
// Thread: Set/Get from any thread (control); TryAdmit from reactors.
// Errors: none (0 means unlimited).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "base/mutex.h"

namespace nestor::virtio {

struct QosLimits {
  uint64_t read_iops = 0;  // 0: unlimited
  uint64_t write_iops = 0;
  uint64_t read_bps = 0;  // bytes per second
  uint64_t write_bps = 0;
  bool unlimited() const { return !read_iops && !write_iops && !read_bps && !write_bps; }
  bool operator==(const QosLimits&) const = default;
};

class VolumeQos {
 public:
  static constexpr uint64_t kBurstNs = 500'000;  // sub-millisecond smoothing

  void Set(const QosLimits& l);
  QosLimits Get() const;
  // Reactor: admits a request of `bytes` now_ns (charging its buckets), or
  // returns false (nothing charged) when it must wait.
  bool TryAdmit(bool write, uint64_t bytes, uint64_t now_ns);
  bool active() const { return active_.load(std::memory_order_relaxed); }

 private:
  // One GCRA bucket. cost_fp: nanoseconds per unit (op or byte) in 32.32
  // fixed point, 0 = unlimited. tat: theoretical arrival time (ns, the
  // caller's clock); anything <= now means an empty bucket.
  struct alignas(64) Limit {
    std::atomic<uint64_t> cost_fp{0};
    std::atomic<uint64_t> tat{0};
  };
  enum { kReadIops, kWriteIops, kReadBps, kWriteBps, kLimits };

  static uint64_t CostFp(uint64_t per_second);
  static uint64_t CostNs(uint64_t cost_fp, uint64_t units);
  // Charges `cost` ns to l if it conforms at now_ns; false (nothing charged)
  // otherwise.
  static bool Charge(Limit& l, uint64_t cost, uint64_t now_ns);

  alignas(64) std::atomic<bool> active_{false};
  Limit limits_[kLimits];
  mutable Mutex mu_;  // Set/Get (control path only)
  QosLimits current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nestor::virtio
