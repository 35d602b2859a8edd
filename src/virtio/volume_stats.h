// VolumeStats: a volume's statistics across all its queues and sessions:
// operations, bytes and errors by kind, and a latency histogram (p50, p99,
// p99.9). Queues keep their own single-writer counters (QueueStats); the
// volume sums its live queues and what its stopped queues left behind.
//
// Thread: AddQueue/RemoveQueue from reactors or sessions at queue start and
// stop (mutex, never per I/O); Snapshot from any thread. RemoveQueue must be
// called once the queue's reactor no longer writes its counters (BlkQueue
// does it when its stop finishes, on its reactor).
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/histogram.h"
#include "base/mutex.h"

namespace nestor::virtio {

struct QueueStats;

struct StatsSnapshot {
  uint64_t read_ops = 0, write_ops = 0, flush_ops = 0, discard_ops = 0, write_zeroes_ops = 0;
  uint64_t read_bytes = 0, write_bytes = 0;
  uint64_t errors = 0;
  uint64_t throttled = 0;                                     // times a request waited for QoS
  uint64_t p50_ns = 0, p99_ns = 0, p999_ns = 0, mean_ns = 0;  // completed requests' latency
  uint64_t requests = 0;                                      // completed requests of every kind
  uint64_t in_flight = 0;                                     // live queues' requests popped, not completed
  uint64_t queues = 0;                                        // live queues
  uint64_t latency_samples = 0;                               // requests the latency figures are from
  uint64_t max_ns = 0;
  HistogramData latency;  // merged latency histogram (ns)
};

class VolumeStats {
 public:
  void AddQueue(const QueueStats* q);
  void RemoveQueue(const QueueStats* q);  // folds q's counters into the totals
  StatsSnapshot Snapshot() const;

 private:
  static void Add(const QueueStats& q, StatsSnapshot* s);
  mutable Mutex mu_;
  std::set<const QueueStats*> live_ ABSL_GUARDED_BY(mu_);
  StatsSnapshot retired_ ABSL_GUARDED_BY(mu_);  // counters of removed queues (percentiles unused)
};

// One line for logs: "ops r/w/f/d/z ... p50 ... p99 ...".
std::string StatsSnapshotString(const StatsSnapshot& s);

}  // namespace nestor::virtio
