// QueueStats: per-queue counters, written by the owning reactor (relaxed
// atomics) and listed by the control thread (e.g. on SIGUSR1) through a
// process-wide registry.
//
// Thread: counters any; Register/Unregister/ForEach take the registry
// mutex (control path only: queue start and stop, never per I/O).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

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
};

void RegisterQueueStats(const QueueStats* s);
void UnregisterQueueStats(const QueueStats* s);
void ForEachQueueStats(const std::function<void(const QueueStats&)>& fn);
std::string QueueStatsString(const QueueStats& s);

}  // namespace nestor::virtio
