// QueueStats: per-queue counters, written by the owning reactor (relaxed
// atomics, single writer: plain load+store, no read-modify-write) and listed
// by the control thread (e.g. on SIGUSR1) through a process-wide registry,
// and summed per volume by VolumeStats.
//
// Thread: counters any; Register/Unregister/ForEach take the registry
// mutex (control path only: queue start and stop, never per I/O).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "base/histogram.h"

namespace nestor::virtio {

struct QueueStats {
  std::string device;  // "<volume>#<session>"
  int index = 0;
  int reactor = 0;
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> calls{0};             // call eventfd writes
  std::atomic<uint64_t> calls_suppressed{0};  // publishes the driver asked not to hear about
  std::atomic<uint64_t> kicks{0};             // kick eventfd wake-ups
  std::atomic<uint64_t> errors{0};            // requests completed with IOERR/UNSUPP
  std::atomic<uint32_t> in_flight{0};
  // Completed requests by kind (status OK or not; errors counts failures).
  std::atomic<uint64_t> read_ops{0}, write_ops{0}, flush_ops{0}, discard_ops{0}, write_zeroes_ops{0};
  std::atomic<uint64_t> read_bytes{0}, write_bytes{0};  // of successful reads and writes
  std::atomic<uint64_t> throttled{0};                   // requests that waited for QoS
  // Latency of completed requests that reached the backend (ring pop to
  // used element published), ns; sampled 1 in kLatencySample.
  Histogram latency;

  // Single-writer increment (the owning reactor only).
  template <typename T>
  static void Inc(std::atomic<T>& a, T n = 1) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

void RegisterQueueStats(const QueueStats* s);
void UnregisterQueueStats(const QueueStats* s);
void ForEachQueueStats(const std::function<void(const QueueStats&)>& fn);
std::string QueueStatsString(const QueueStats& s);

}  // namespace nestor::virtio
