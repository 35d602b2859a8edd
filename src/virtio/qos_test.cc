#include "virtio/qos.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/sanitizers.h"
#include "virtio/queue_stats.h"
#include "virtio/volume_stats.h"

namespace nestor::virtio {
namespace {

constexpr uint64_t kSec = 1'000'000'000;

// A greedy client: at every simulated tick it asks for as many requests as
// the buckets admit. Returns how many were admitted in [0, duration).
uint64_t Greedy(VolumeQos* q, bool write, uint64_t bytes, uint64_t start, uint64_t duration, uint64_t tick) {
  uint64_t n = 0;
  for (uint64_t t = start; t < start + duration; t += tick) {
    while (q->TryAdmit(write, bytes, t)) ++n;
  }
  return n;
}

TEST(VolumeQos, DefaultIsUnlimited) {
  VolumeQos q;
  EXPECT_FALSE(q.active());
  EXPECT_TRUE(q.Get().unlimited());
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(q.TryAdmit(i & 1, 1 << 20, 0));
}

struct RateCase {
  QosLimits limits;
  bool write;
  uint64_t bytes;
  double expected_per_s;  // requests per second
};

TEST(VolumeQos, AdmittedRateConvergesToTheLimit) {
  const RateCase cases[] = {
      {{.write_iops = 2000}, true, 4096, 2000},
      {{.read_iops = 2000}, false, 4096, 2000},
      {{.read_iops = 3'000'000}, false, 4096, 3'000'000},  // 333.3 ns: fractional cost
      {{.read_iops = 7}, false, 4096, 7},
      {{.write_bps = 100'000'000}, true, 4096, 100e6 / 4096},
      {{.read_bps = 3'000'000'000}, false, 4096, 3e9 / 4096},  // 1365.3 ns per request
      {{.read_bps = 1'000'000}, false, 512, 1e6 / 512},
      // Both: the tighter one wins.
      {{.write_iops = 1000, .write_bps = 1'000'000'000}, true, 4096, 1000},
      {{.write_iops = 1'000'000, .write_bps = 40'960'000}, true, 4096, 10000},
  };
  for (const RateCase& c : cases) {
    VolumeQos q;
    q.Set(c.limits);
    ASSERT_TRUE(q.active());
    double seconds = c.expected_per_s < 100 ? 100 : c.expected_per_s > 1e6 ? 0.2 : 2;
    uint64_t dur = static_cast<uint64_t>(seconds * kSec);
    uint64_t tick = c.expected_per_s > 1e5 ? 100 : 10'000;
    uint64_t start = 12345 * kSec;  // an arbitrary monotonic clock value
    uint64_t n = Greedy(&q, c.write, c.bytes, start, dur, tick);
    double expected = c.expected_per_s * seconds;
    EXPECT_NEAR(static_cast<double>(n), expected, expected * 0.01)
        << "iops r/w " << c.limits.read_iops << "/" << c.limits.write_iops << " bps r/w " << c.limits.read_bps << "/"
        << c.limits.write_bps;
    // The other direction is not limited by these.
    if (c.write ? !c.limits.read_iops && !c.limits.read_bps : !c.limits.write_iops && !c.limits.write_bps) {
      for (int i = 0; i < 1000; ++i) ASSERT_TRUE(q.TryAdmit(!c.write, c.bytes, start + dur));
    }
  }
}

TEST(VolumeQos, BurstIsBounded) {
  VolumeQos q;
  q.Set({.write_iops = 100'000});  // 10 us per op
  uint64_t now = 50 * kSec;
  // Empty bucket after a long idle: at one instant at most kBurstNs/T + 1.
  uint64_t n = 0;
  while (q.TryAdmit(true, 4096, now)) ++n;
  EXPECT_EQ(n, VolumeQos::kBurstNs / 10'000 + 1);
  // Idle again for 1 s: no more than the same burst (credit does not pile up).
  n = 0;
  while (q.TryAdmit(true, 4096, now + kSec)) ++n;
  EXPECT_EQ(n, VolumeQos::kBurstNs / 10'000 + 1);
  // Over any window W, at most W/T + burst.
  uint64_t t0 = now + 2 * kSec;
  uint64_t in_window = Greedy(&q, true, 4096, t0, kSec / 100, 1000);  // 10 ms
  EXPECT_LE(in_window, 10'000'000 / 10'000 + VolumeQos::kBurstNs / 10'000 + 1);
}

TEST(VolumeQos, RefusalChargesNothing) {
  VolumeQos q;
  q.Set({.read_iops = 1000, .read_bps = 4096 * 100});  // bps is tighter: 100 x 4 KiB per s
  uint64_t now = kSec;
  uint64_t n = 0;
  // Exhaust the bandwidth bucket with 4 KiB reads.
  while (q.TryAdmit(false, 4096, now)) ++n;
  EXPECT_GE(n, 1u);
  EXPECT_EQ(n, 1u);  // both buckets allow one request at an instant
  // Refused again and again: neither bucket may be charged by refusals.
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(q.TryAdmit(false, 4096, now + 1'000'000));
  // 2 ms later the IOPS bucket has room (1 ms per op) although the
  // bandwidth bucket has none: a 0-byte request (IOPS only) passes.
  EXPECT_TRUE(q.TryAdmit(false, 0, now + 2'000'000));
  // The bandwidth bucket owes exactly one 4 KiB request (10 ms) minus the burst.
  uint64_t ready = now + 10'000'000 - VolumeQos::kBurstNs;
  EXPECT_FALSE(q.TryAdmit(false, 4096, ready - 1));
  EXPECT_TRUE(q.TryAdmit(false, 4096, ready));
}

TEST(VolumeQos, LargeRequestPassesAnEmptyBucketThenPays) {
  VolumeQos q;
  q.Set({.write_bps = 1'000'000});  // 1 MB/s
  uint64_t now = kSec;
  EXPECT_TRUE(q.TryAdmit(true, 1'000'000, now));  // costs 1 s, burst is 0.5 ms
  EXPECT_FALSE(q.TryAdmit(true, 512, now + kSec / 2));
  EXPECT_TRUE(q.TryAdmit(true, 512, now + kSec - VolumeQos::kBurstNs));
}

TEST(VolumeQos, RuntimeSetChangesTheRate) {
  VolumeQos q;
  q.Set({.write_iops = 1000});
  uint64_t t = 100 * kSec;
  uint64_t n1 = Greedy(&q, true, 4096, t, kSec, 10'000);
  EXPECT_NEAR(n1, 1000, 10);
  t += kSec;
  // Raised: applies at once (no debt from the old rate).
  q.Set({.write_iops = 5000});
  EXPECT_EQ(q.Get().write_iops, 5000u);
  uint64_t n2 = Greedy(&q, true, 4096, t, kSec, 10'000);
  EXPECT_NEAR(n2, 5000, 50);
  t += kSec;
  // Lowered.
  q.Set({.write_iops = 200});
  uint64_t n3 = Greedy(&q, true, 4096, t, kSec, 10'000);
  EXPECT_NEAR(n3, 200, 2);
  t += kSec;
  // Setting another limit leaves this one's state alone.
  q.Set({.read_iops = 10, .write_iops = 200});
  uint64_t n4 = Greedy(&q, true, 4096, t, kSec, 10'000);
  EXPECT_NEAR(n4, 200, 2);
  t += kSec;
  // Removed: unlimited again.
  q.Set({});
  EXPECT_FALSE(q.active());
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(q.TryAdmit(true, 4096, t));
}

TEST(VolumeQos, RaisingAfterAHugeDebtTakesEffectAtOnce) {
  VolumeQos q;
  q.Set({.write_bps = 1000});  // 1 KB/s
  uint64_t t = kSec;
  EXPECT_TRUE(q.TryAdmit(true, 1 << 20, t));  // ~17 minutes of debt
  EXPECT_FALSE(q.TryAdmit(true, 4096, t + kSec));
  q.Set({.write_bps = 1'000'000'000});
  EXPECT_TRUE(q.TryAdmit(true, 4096, t + kSec));
}

// Several threads (reactors) share one volume's buckets: the admitted total
// never exceeds rate x time + burst (+ one op per racing thread), and the
// rate is reached.
TEST(VolumeQos, ConcurrentAdmissionsRespectTheLimit) {
  VolumeQos q;
  constexpr uint64_t kIops = 50'000;
  q.Set({.read_iops = kIops, .read_bps = 400'000'000});  // bps: 8 KB requests -> 48.8K/s
  std::atomic<uint64_t> admitted{0};
  std::atomic<bool> go{false};
  uint64_t start = NowNs();
  uint64_t end = start + kSec / 2;
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&] {
      while (!go.load()) {
      }
      uint64_t n = 0;
      for (uint64_t now = NowNs(); now < end; now = NowNs()) n += q.TryAdmit(false, 8192, now);
      admitted += n;
    });
  }
  go = true;
  for (auto& t : ts) t.join();
  double seconds = (end - start) / 1e9;
  double limit = 400e6 / 8192 * seconds;  // the tighter limit
  EXPECT_LE(admitted.load(), limit + VolumeQos::kBurstNs / (1e9 * 8192 / 400e6) + 1 + 3);
  // On a loaded 2-CPU machine threads may be descheduled: the lower bound is
  // loose. Under TSan (several times slower) the rate is not reached: skip it.
  if (!kThreadSanitizer) {
    EXPECT_GE(admitted.load(), limit * 0.5);
  }
}

TEST(VolumeQos, SetWhileAdmittingIsSafe) {
  VolumeQos q;
  std::atomic<bool> stop{false};
  std::thread admitter([&] {
    uint64_t t = kSec;
    while (!stop.load()) {
      t += 1000;
      (void)q.TryAdmit(t & 1, 4096, t);
    }
  });
  for (int i = 0; i < 2000; ++i) {
    q.Set({.read_iops = static_cast<uint64_t>(i % 7) * 1000,
           .write_iops = static_cast<uint64_t>(i % 5) * 1000,
           .write_bps = static_cast<uint64_t>(i % 3) * 1'000'000});
  }
  q.Set({.write_iops = 1000});
  stop = true;
  admitter.join();
  EXPECT_EQ(q.Get(), (QosLimits{.write_iops = 1000}));
  // Still sane afterwards: ~1000/s.
  EXPECT_NEAR(Greedy(&q, true, 4096, 1000 * kSec, kSec, 10'000), 1000, 10);
}

TEST(VolumeStats, SumsLiveAndRetiredQueues) {
  VolumeStats vs;
  auto a = std::make_unique<QueueStats>();
  auto b = std::make_unique<QueueStats>();
  vs.AddQueue(a.get());
  vs.AddQueue(b.get());
  QueueStats::Inc(a->read_ops, uint64_t{10});
  QueueStats::Inc(a->read_bytes, uint64_t{40960});
  QueueStats::Inc(b->write_ops, uint64_t{5});
  QueueStats::Inc(b->write_bytes, uint64_t{20480});
  QueueStats::Inc(b->flush_ops);
  QueueStats::Inc(b->errors);
  QueueStats::Inc(a->throttled, uint64_t{3});
  QueueStats::Inc(a->requests, uint64_t{10});
  QueueStats::Inc(b->requests, uint64_t{6});
  for (int i = 0; i < 99; ++i) a->latency.Record(10'000);
  b->latency.Record(1'000'000);
  StatsSnapshot s = vs.Snapshot();
  EXPECT_EQ(s.queues, 2u);
  EXPECT_EQ(s.read_ops, 10u);
  EXPECT_EQ(s.write_ops, 5u);
  EXPECT_EQ(s.flush_ops, 1u);
  EXPECT_EQ(s.read_bytes, 40960u);
  EXPECT_EQ(s.write_bytes, 20480u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.throttled, 3u);
  EXPECT_EQ(s.requests, 16u);
  EXPECT_EQ(s.latency_samples, 100u);
  EXPECT_NEAR(s.p50_ns, 10'000, 10'000 / 32);
  EXPECT_NEAR(s.p999_ns, 1'000'000, 1'000'000 / 32);
  EXPECT_EQ(s.mean_ns, (99 * 10'000 + 1'000'000) / 100);
  // b stops: its counters stay in the totals.
  vs.RemoveQueue(b.get());
  b.reset();
  QueueStats::Inc(a->write_ops, uint64_t{2});
  s = vs.Snapshot();
  EXPECT_EQ(s.queues, 1u);
  EXPECT_EQ(s.write_ops, 7u);
  EXPECT_EQ(s.flush_ops, 1u);
  EXPECT_EQ(s.latency_samples, 100u);
  EXPECT_NEAR(s.p999_ns, 1'000'000, 1'000'000 / 32);
  vs.RemoveQueue(a.get());
  vs.RemoveQueue(a.get());  // idempotent
  s = vs.Snapshot();
  EXPECT_EQ(s.queues, 0u);
  EXPECT_EQ(s.read_ops, 10u);
  EXPECT_EQ(s.write_ops, 7u);
  EXPECT_FALSE(StatsSnapshotString(s).empty());
}

TEST(QueueStats, StringHasTheNewCounters) {
  QueueStats q;
  q.device = "v#1";
  QueueStats::Inc(q.read_ops, uint64_t{4});
  QueueStats::Inc(q.throttled, uint64_t{2});
  q.latency.Record(5000);
  std::string s = QueueStatsString(q);
  EXPECT_NE(s.find("queue v#1 0 reactor 0: requests 0 errors 0"), std::string::npos) << s;
  EXPECT_NE(s.find("reads 4"), std::string::npos) << s;
  EXPECT_NE(s.find("throttled 2"), std::string::npos) << s;
  EXPECT_NE(s.find("lat_samples 1"), std::string::npos) << s;
}

}  // namespace
}  // namespace nestor::virtio
