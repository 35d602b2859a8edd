#include "virtio/queue_stats.h"

#include <fmt/format.h>

#include <set>

#include "base/mutex.h"

namespace nestor::virtio {
namespace {

// Every live queue's counters (Prometheus, SIGUSR1).
struct Registry {
  Mutex mu;
  std::set<const QueueStats*> queues ABSL_GUARDED_BY(mu);
};
Registry& Reg() {
  static Registry reg;
  return reg;
}

}  // namespace

void RegisterQueueStats(const QueueStats* s) {
  Registry& r = Reg();
  MutexLock lock(&r.mu);
  r.queues.insert(s);
}

void UnregisterQueueStats(const QueueStats* s) {
  Registry& r = Reg();
  MutexLock lock(&r.mu);
  r.queues.erase(s);
}

void ForEachQueueStats(const std::function<void(const QueueStats&)>& fn) {
  Registry& r = Reg();
  MutexLock lock(&r.mu);
  for (const QueueStats* s : r.queues) fn(*s);
}

std::string QueueStatsString(const QueueStats& s) {
  auto g = [](const auto& a) { return a.load(std::memory_order_relaxed); };
  HistogramData lat;
  s.latency.Collect(&lat);
  return fmt::format(
      "queue {} {} reactor {}: requests {} errors {} calls {} calls_suppressed {} kicks {} in_flight {} "
      "reads {} writes {} flushes {} discards {} write_zeroes {} read_bytes {} write_bytes {} "
      "throttled {} lat_samples {} lat_mean_ns {} lat_p50_ns {} lat_p99_ns {} lat_p999_ns {}",
      s.device, s.index, s.reactor, g(s.requests), g(s.errors), g(s.calls), g(s.calls_suppressed), g(s.kicks),
      g(s.in_flight), g(s.read_ops), g(s.write_ops), g(s.flush_ops), g(s.discard_ops), g(s.write_zeroes_ops),
      g(s.read_bytes), g(s.write_bytes), g(s.throttled), lat.count(), lat.mean(), lat.Percentile(0.5),
      lat.Percentile(0.99), lat.Percentile(0.999));
}

}  // namespace nestor::virtio
