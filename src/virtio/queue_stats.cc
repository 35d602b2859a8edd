#include "virtio/queue_stats.h"

#include <fmt/format.h>

#include <mutex>
#include <set>

namespace nestor::virtio {
namespace {

std::mutex& Mu() {
  static std::mutex mu;
  return mu;
}
std::set<const QueueStats*>& Registry() {
  static std::set<const QueueStats*> reg;
  return reg;
}

}  // namespace

void RegisterQueueStats(const QueueStats* s) {
  std::lock_guard<std::mutex> lock(Mu());
  Registry().insert(s);
}

void UnregisterQueueStats(const QueueStats* s) {
  std::lock_guard<std::mutex> lock(Mu());
  Registry().erase(s);
}

void ForEachQueueStats(const std::function<void(const QueueStats&)>& fn) {
  std::lock_guard<std::mutex> lock(Mu());
  for (const QueueStats* s : Registry()) fn(*s);
}

std::string QueueStatsString(const QueueStats& s) {
  auto g = [](const auto& a) { return a.load(std::memory_order_relaxed); };
  return fmt::format("queue {} {} reactor {}: requests {} errors {} calls {} calls_suppressed {} kicks {} in_flight {}",
                     s.device, s.index, s.reactor, g(s.requests), g(s.errors), g(s.calls),
                     g(s.calls_suppressed), g(s.kicks), g(s.in_flight));
}

}  // namespace nestor::virtio
