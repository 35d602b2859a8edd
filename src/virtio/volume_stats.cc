#include "virtio/volume_stats.h"

#include <fmt/format.h>

#include "virtio/queue_stats.h"

namespace nestor::virtio {

void VolumeStats::Add(const QueueStats& q, StatsSnapshot* s) {
  auto g = [](const auto& a) { return static_cast<uint64_t>(a.load(std::memory_order_relaxed)); };
  s->read_ops += g(q.read_ops);
  s->write_ops += g(q.write_ops);
  s->flush_ops += g(q.flush_ops);
  s->discard_ops += g(q.discard_ops);
  s->write_zeroes_ops += g(q.write_zeroes_ops);
  s->read_bytes += g(q.read_bytes);
  s->write_bytes += g(q.write_bytes);
  s->errors += g(q.errors);
  s->throttled += g(q.throttled);
  s->requests += g(q.requests);
  q.latency.Collect(&s->latency);
}

void VolumeStats::AddQueue(const QueueStats* q) {
  MutexLock lock(&mu_);
  live_.insert(q);
}

void VolumeStats::RemoveQueue(const QueueStats* q) {
  MutexLock lock(&mu_);
  if (live_.erase(q)) Add(*q, &retired_);
}

StatsSnapshot VolumeStats::Snapshot() const {
  MutexLock lock(&mu_);
  StatsSnapshot s = retired_;
  for (const QueueStats* q : live_) {
    Add(*q, &s);
    s.in_flight += q->in_flight.load(std::memory_order_relaxed);
  }
  s.queues = live_.size();
  s.latency_samples = s.latency.count();
  s.max_ns = s.latency.max();
  s.mean_ns = s.latency.mean();
  s.p50_ns = s.latency.Percentile(0.5);
  s.p99_ns = s.latency.Percentile(0.99);
  s.p999_ns = s.latency.Percentile(0.999);
  return s;
}

std::string StatsSnapshotString(const StatsSnapshot& s) {
  return fmt::format(
      "requests {} reads {} writes {} flushes {} discards {} write_zeroes {} read_bytes {} "
      "write_bytes {} errors {} throttled {} in_flight {} queues {} lat_samples {} lat_mean_ns {} "
      "lat_p50_ns {} lat_p99_ns {} lat_p999_ns {} lat_max_ns {}",
      s.requests, s.read_ops, s.write_ops, s.flush_ops, s.discard_ops, s.write_zeroes_ops, s.read_bytes, s.write_bytes,
      s.errors, s.throttled, s.in_flight, s.queues, s.latency_samples, s.mean_ns, s.p50_ns, s.p99_ns, s.p999_ns,
      s.max_ns);
}

}  // namespace nestor::virtio
