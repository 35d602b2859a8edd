// Per-volume QoS and per-reactor fairness, libnestor against a real
// nestord (mem backends, --poll-mode adaptive, nothing pinned: the machine
// has 2 CPUs, shared with other work).
//
// (a) Static limits: volumes limited to 2000 write IOPS, 2000 read IOPS and
//     8 MB/s of reads (4 KiB requests: 1953/s) deliver that rate within 5 %
//     to QD8 clients, measured by the clients over 2 s after a warm-up
//     (never above; below only by the share of time nestord's reactor
//     provably waited for a CPU). Reads of a write-limited volume are not
//     limited. Stopping a queue with throttled requests is bounded and
//     gives them back to the frontend (they never reach the volume).
// (b) Fairness: with --reactors 1 and two volumes, a polled QD1 client's
//     latency next to a saturating polled QD32 client (its own thread) on
//     the other volume stays within 2x of its latency alone, measured in
//     alternating rounds in the same test. Three busy threads on two CPUs
//     means the OS scheduler preempts one of them every few milliseconds;
//     a QD1 request caught by that waits for milliseconds whatever the
//     reactor does. So the assertion uses the mean of the samples below
//     25 us (the reactor's share) and the median, and bounds the share of
//     slower samples (starvation would show there); the plain mean is
//     printed.
//
// Every wait is bounded; numbers are printed. Environment knob (for
// experiments): QOS_TEST_SECONDS (measurement window, default 2).
#include <dirent.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "nestor/client.hpp"
#include "nestord_process.h"

namespace nestor::testing {
namespace {

using client::Completion;
using client::Device;
using client::Op;
using client::Options;
using client::Request;

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kSec = 1'000'000'000;

double Seconds() {
  const char* s = std::getenv("QOS_TEST_SECONDS");
  return s ? std::atof(s) : 2.0;
}

std::unique_ptr<Device> Connect(const std::string& socket, bool polled) {
  Options o;
  o.socket_path = socket;
  o.num_queues = 1;
  o.polled = polled;
  o.buffer_bytes = 4ull << 20;
  o.timeout_ms = 5000;
  auto dev = Device::Connect(o);
  EXPECT_TRUE(dev.ok()) << dev.status().message();
  return dev.ok() ? std::move(dev.value()) : nullptr;
}

struct RunResult {
  uint64_t ops = 0;  // completed inside the measurement window
  uint64_t errors = 0;
  double seconds = 0;            // window length
  std::vector<uint64_t> lat_ns;  // per request (when asked)
  bool ok = true;                // no stall, no protocol error
  double iops() const { return seconds > 0 ? ops / seconds : 0; }
  double mean_us() const {
    return lat_ns.empty() ? 0 : std::accumulate(lat_ns.begin(), lat_ns.end(), 0.0) / lat_ns.size() / 1e3;
  }
  double pct_us(double q) const {
    if (lat_ns.empty()) return 0;
    std::vector<uint64_t> v = lat_ns;
    size_t k = std::min(v.size() - 1, static_cast<size_t>(q * v.size()));
    std::nth_element(v.begin(), v.begin() + k, v.end());
    return v[k] / 1e3;
  }
};

// Keeps qd requests of `op` in flight on dev's queue 0 for warmup + window
// seconds (or until *stop), counting completions inside the window.
// Polled queues busy-poll; blocking ones sleep in Wait. Bounded: a request
// that does not complete within 5 s fails the run.
RunResult Drive(Device* dev, Op op, uint32_t qd, double warmup_s, double window_s, bool record_lat,
                const std::atomic<bool>* stop = nullptr, std::atomic<bool>* measuring = nullptr) {
  RunResult res;
  auto& q = dev->queue(0);
  std::vector<void*> bufs(qd);
  for (auto& b : bufs) b = dev->AllocBuffer(kBlock, 4096);
  if (std::any_of(bufs.begin(), bufs.end(), [](void* b) { return b == nullptr; })) {
    res.ok = false;
    return res;
  }
  std::vector<uint64_t> sent(qd);
  const uint64_t span = dev->info().capacity_bytes / kBlock;
  uint64_t next_block = 0;
  auto submit = [&](uint32_t slot) {
    Request r;
    r.op = op;
    r.offset = (next_block++ * 7919 % span) * kBlock;
    r.len = kBlock;
    r.buf = bufs[slot];
    r.user_data = reinterpret_cast<void*>(static_cast<uintptr_t>(slot));
    sent[slot] = NowNs();
    return q.Submit(r) == 1;
  };
  for (uint32_t i = 0; i < qd; ++i) {
    if (!submit(i)) {
      res.ok = false;
      return res;
    }
  }
  const uint64_t t0 = NowNs();
  const uint64_t w0 = t0 + static_cast<uint64_t>(warmup_s * kSec);
  const uint64_t w1 = w0 + static_cast<uint64_t>(window_s * kSec);
  if (record_lat) res.lat_ns.reserve(1 << 20);
  uint64_t last_progress = t0;
  std::vector<Completion> done(qd);
  bool in_window_flag = false;
  for (;;) {
    uint64_t now = NowNs();
    if (now >= w1 || (stop != nullptr && stop->load(std::memory_order_relaxed))) break;
    if (!in_window_flag && now >= w0) {
      in_window_flag = true;
      if (measuring) measuring->store(true);
    }
    int n = q.Poll(done.data(), qd);
    if (n == 0) n = q.Wait(done.data(), 1, qd, 10);  // blocking queues sleep here, polled ones spin
    if (n < 0 && n != -ETIMEDOUT) {
      res.ok = false;
      break;
    }
    if (n <= 0) {
      if (now - last_progress > 5 * kSec) {
        res.ok = false;
        break;
      }
      continue;
    }
    now = NowNs();
    last_progress = now;
    for (int i = 0; i < n; ++i) {
      uint32_t slot = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(done[i].user_data));
      if (now >= w0 && now < w1) {
        ++res.ops;
        if (record_lat) res.lat_ns.push_back(now - sent[slot]);
      }
      if (done[i].result != 0) ++res.errors;
      if (!submit(slot)) res.ok = false;
    }
    if (!res.ok) break;
  }
  uint64_t end = std::min(NowNs(), w1);
  res.seconds = end > w0 ? (end - w0) / 1e9 : 0;
  // Drain what is still in flight (bounded).
  uint64_t drain_until = NowNs() + 10 * kSec;
  while (q.inflight() > 0 && NowNs() < drain_until) {
    int n = q.Wait(done.data(), 1, qd, 100);
    if (n < 0 && n != -ETIMEDOUT) break;
  }
  if (q.inflight() > 0) res.ok = false;
  for (void* b : bufs) dev->FreeBuffer(b);
  return res;
}

// Time nestord's reactor threads spent runnable but not running (waiting
// for a CPU), from /proc/<pid>/task/<tid>/schedstat; the nestord process is
// the one whose command line holds our private socket directory.
uint64_t ReactorRunqueueWaitNs(const std::string& socket_dir) {
  uint64_t total = 0;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return 0;
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string base = std::string("/proc/") + e->d_name;
    std::ifstream cmd(base + "/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    if (cmdline.find("nestord") == std::string::npos || cmdline.find(socket_dir) == std::string::npos) continue;
    DIR* tasks = opendir((base + "/task").c_str());
    if (tasks == nullptr) continue;
    while (dirent* t = readdir(tasks)) {
      if (t->d_name[0] == '.') continue;
      std::string tb = base + "/task/" + t->d_name;
      std::string comm;
      std::ifstream(tb + "/comm") >> comm;
      if (comm.rfind("reactor", 0) != 0) continue;
      uint64_t run = 0, wait = 0;
      std::ifstream(tb + "/schedstat") >> run >> wait;
      total += wait;
    }
    closedir(tasks);
  }
  closedir(proc);
  return total;
}

class QosFairness : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!::testing::Test::HasFailure()) {
      EXPECT_TRUE(d_.Stop()) << "nestord did not exit cleanly on SIGTERM:\n" << d_.Log();
    } else {
      std::cerr << "---- nestord log ----\n" << d_.Log();
    }
  }
  NestordProcess d_;
};

TEST_F(QosFairness, StaticLimitsAreDelivered) {
  std::string err;
  ASSERT_TRUE(d_.Start(
      {"--volume", "w,size=64M,backend=mem,write_iops=2000", "--volume", "r,size=64M,backend=mem,read_iops=2000",
       "--volume", "b,size=64M,backend=mem,read_bps=8000000", "--reactors", "1", "--poll-mode", "adaptive"},
      {"w", "r", "b"}, &err))
      << err;
  struct Case {
    const char* vol;
    Op op;
    double expected;
  } cases[] = {{"w", Op::kWrite, 2000}, {"r", Op::kRead, 2000}, {"b", Op::kRead, 8e6 / kBlock}};
  // One volume at a time, blocking clients: only the reactor spins (it
  // polls while a request is held), so this 2-CPU machine has a CPU left
  // for the client. CPU starvation (other load on the machine) can only
  // lower the delivered rate: budget the reactor could not use while it
  // waited for a CPU is lost beyond the 0.5 ms burst. So the lower bound
  // is relaxed by the share of time the reactor measurably waited
  // (schedstat); the upper bound never is.
  std::vector<std::unique_ptr<Device>> devs;
  for (const Case& c : cases) {
    devs.push_back(Connect(d_.Socket(c.vol), /*polled=*/false));
    ASSERT_TRUE(devs.back());
  }
  for (int i = 0; i < 3; ++i) {
    RunResult res;
    double starved = 0;
    {
      uint64_t wait0 = ReactorRunqueueWaitNs(d_.dir());
      res = Drive(devs[i].get(), cases[i].op, 8, 0.3, Seconds(), false);
      // Share of the run the reactor waited for a CPU (other load on this
      // machine): budget it could not use is lost beyond the 0.5 ms burst.
      starved = (ReactorRunqueueWaitNs(d_.dir()) - wait0) / ((Seconds() + 0.3) * 1e9);
      std::printf(
          "qos: volume %s %s limit %.0f/s: delivered %.1f IOPS over %.2f s (%+.2f %%), errors %lu, "
          "reactor waited for a CPU %.1f %% of the time\n",
          cases[i].vol, cases[i].op == Op::kWrite ? "write" : "read", cases[i].expected, res.iops(), res.seconds,
          100.0 * (res.iops() / cases[i].expected - 1), res.errors, 100 * starved);
    }
    EXPECT_TRUE(res.ok) << cases[i].vol;
    EXPECT_EQ(res.errors, 0u);
    // Never above the limit; below it only by what CPU starvation cost.
    EXPECT_LE(res.iops(), cases[i].expected * 1.05) << cases[i].vol;
    EXPECT_GE(res.iops(), cases[i].expected * (0.95 - std::min(starved, 0.9))) << cases[i].vol;
  }
  // The other direction of a limited volume is not limited: 2000 reads on
  // "w" take well under the 1 s 2000 IOPS would need.
  {
    auto& q = devs[0]->queue(0);
    std::vector<uint8_t> buf(kBlock);
    uint64_t t0 = NowNs();
    for (int i = 0; i < 2000; ++i) ASSERT_TRUE(q.Read(i * kBlock, buf.data(), kBlock).ok());
    double s = (NowNs() - t0) / 1e9;
    std::printf("qos: 2000 unlimited reads on the write-limited volume took %.3f s\n", s);
    EXPECT_LT(s, 0.5);
  }
  for (auto& d : devs) d->Close();
  devs.clear();
}

TEST_F(QosFairness, StopWithThrottledRequestsIsBoundedAndLosesNothing) {
  std::string err;
  ASSERT_TRUE(
      d_.Start({"--volume", "slow,size=16M,backend=mem,write_iops=10", "--reactors", "1", "--poll-mode", "adaptive"},
               {"slow"}, &err))
      << err;
  auto dev = Connect(d_.Socket("slow"), /*polled=*/true);
  ASSERT_TRUE(dev);
  auto& q = dev->queue(0);
  constexpr int kN = 16;
  std::vector<void*> bufs;
  for (int i = 0; i < kN; ++i) {
    bufs.push_back(dev->AllocBuffer(kBlock, 4096));
    std::memset(bufs.back(), 0xA0 + i, kBlock);
    Request r;
    r.op = Op::kWrite;
    r.offset = i * kBlock;
    r.len = kBlock;
    r.buf = bufs.back();
    ASSERT_EQ(q.Submit(r), 1);
  }
  // ~100 ms: the first request or two went through, the rest wait.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Completion c[kN];
  int got = q.Poll(c, kN);
  std::printf("qos: %d of %d writes completed at 10 IOPS after 100 ms\n", got, kN);
  EXPECT_LT(got, kN);
  // GET_VRING_BASE must not wait 1.5 s for the budget.
  uint64_t t0 = NowNs();
  dev->Close();
  double close_s = (NowNs() - t0) / 1e9;
  std::printf("qos: disconnect with %d throttled writes took %.3f s\n", kN - got, close_s);
  EXPECT_LT(close_s, 1.0);
  // The daemon still serves the volume (unlimited reads) and the throttled
  // writes never reached it (the frontend got them back, not completed).
  dev = Connect(d_.Socket("slow"), /*polled=*/true);
  ASSERT_TRUE(dev);
  std::vector<uint8_t> rd(kBlock);
  int landed = 0;
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(dev->queue(0).Read(i * kBlock, rd.data(), kBlock).ok());
    bool written = rd[0] == 0xA0 + i;
    EXPECT_TRUE(written || rd[0] == 0) << i;
    landed += written;
  }
  EXPECT_GE(landed, got);
  EXPECT_LT(landed, kN);
  dev->Close();
}

// Latency samples above this are the OS scheduler's, not the reactor's: with
// a mem backend and 4 KiB requests the reactor serves a QD1 request within
// a few microseconds even behind a full batch of its neighbour, unless the
// reactor or the client thread is off its CPU (3 busy threads, 2 CPUs).
constexpr uint64_t kSchedulerNs = 25'000;

struct LatSummary {
  double mean_us = 0, service_mean_us = 0, p50_us = 0, p99_us = 0, over_frac = 0;
  size_t n = 0;
};

LatSummary Summarize(const std::vector<uint64_t>& lat) {
  LatSummary s;
  s.n = lat.size();
  if (lat.empty()) return s;
  std::vector<uint64_t> v = lat;
  std::sort(v.begin(), v.end());
  double sum = 0, ssum = 0;
  size_t sn = 0;
  for (uint64_t x : v) {
    sum += x;
    if (x <= kSchedulerNs) {
      ssum += x;
      ++sn;
    }
  }
  s.mean_us = sum / v.size() / 1e3;
  s.service_mean_us = sn ? ssum / sn / 1e3 : 0;
  s.p50_us = v[v.size() / 2] / 1e3;
  s.p99_us = v[std::min(v.size() - 1, v.size() * 99 / 100)] / 1e3;
  s.over_frac = 1.0 - static_cast<double>(sn) / v.size();
  return s;
}

TEST_F(QosFairness, Qd1LatencyNextToQd32Neighbour) {
  std::string err;
  ASSERT_TRUE(d_.Start({"--volume", "small,size=64M,backend=mem", "--volume", "big,size=64M,backend=mem", "--reactors",
                        "1", "--poll-mode", "adaptive"},
                       {"small", "big"}, &err))
      << err;
  auto small = Connect(d_.Socket("small"), /*polled=*/true);
  auto big = Connect(d_.Socket("big"), /*polled=*/true);
  ASSERT_TRUE(small && big);
  // Alone and together alternate in short rounds, so that background load
  // on this shared machine hits both alike; 2 s of samples each in all.
  const double total = Seconds();
  constexpr int kRounds = 8;
  const double phase = total / kRounds;
  std::vector<uint64_t> alone_lat, together_lat;
  std::vector<double> service_ratio, p50_ratio, alone_over;  // per round
  uint64_t big_alone_ops = 0, big_together_ops = 0;
  double big_alone_s = 0, big_together_s = 0;
  for (int round = 0; round < kRounds; ++round) {
    RunResult a = Drive(small.get(), Op::kRead, 1, 0.02, phase, true);
    ASSERT_TRUE(a.ok);
    alone_lat.insert(alone_lat.end(), a.lat_ns.begin(), a.lat_ns.end());
    RunResult ba = Drive(big.get(), Op::kRead, 32, 0.02, phase / 4, false);
    ASSERT_TRUE(ba.ok);
    big_alone_ops += ba.ops;
    big_alone_s += ba.seconds;
    // Together: the QD32 client (its own thread, polled queue) runs from
    // before the QD1 window until after it.
    std::atomic<bool> stop{false}, big_measuring{false};
    RunResult bt;
    std::thread neighbour(
        [&] { bt = Drive(big.get(), Op::kRead, 32, 0.01, 10 * phase + 5, false, &stop, &big_measuring); });
    uint64_t wait_until = NowNs() + 5 * kSec;
    while (!big_measuring.load() && NowNs() < wait_until) std::this_thread::yield();
    RunResult t = Drive(small.get(), Op::kRead, 1, 0.02, phase, true);
    stop = true;
    neighbour.join();
    ASSERT_TRUE(t.ok);
    ASSERT_TRUE(bt.ok);
    together_lat.insert(together_lat.end(), t.lat_ns.begin(), t.lat_ns.end());
    big_together_ops += bt.ops;
    big_together_s += bt.seconds;
    LatSummary ra = Summarize(a.lat_ns), rt = Summarize(t.lat_ns);
    if (ra.service_mean_us > 0 && ra.p50_us > 0) {
      service_ratio.push_back(rt.service_mean_us / ra.service_mean_us);
      p50_ratio.push_back(rt.p50_us / ra.p50_us);
    }
    alone_over.push_back(ra.over_frac);
    std::printf("round %d: alone n %zu service %.2f p50 %.2f; together n %zu service %.2f p50 %.2f\n", round, ra.n,
                ra.service_mean_us, ra.p50_us, rt.n, rt.service_mean_us, rt.p50_us);
  }
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  LatSummary al = Summarize(alone_lat), to = Summarize(together_lat);
  double big_alone_iops = big_alone_ops / big_alone_s, big_together_iops = big_together_ops / big_together_s;
  std::printf(
      "fairness: QD1 alone:        mean %6.2f us, service mean %5.2f us, p50 %5.2f, p99 %6.2f, "
      "> %lu us: %.3f %% (%zu samples)\n",
      al.mean_us, al.service_mean_us, al.p50_us, al.p99_us, kSchedulerNs / 1000, 100 * al.over_frac, al.n);
  std::printf(
      "fairness: QD1 next to QD32: mean %6.2f us, service mean %5.2f us, p50 %5.2f, p99 %6.2f, "
      "> %lu us: %.3f %% (%zu samples)\n",
      to.mean_us, to.service_mean_us, to.p50_us, to.p99_us, kSchedulerNs / 1000, 100 * to.over_frac, to.n);
  std::printf("fairness: QD32 alone %.0f IOPS, next to QD1 %.0f IOPS\n", big_alone_iops, big_together_iops);
  std::printf(
      "fairness: together/alone: mean %.2fx, service mean %.2fx, p50 %.2fx; median of %zu rounds: "
      "service mean %.2fx, p50 %.2fx\n",
      to.mean_us / al.mean_us, to.service_mean_us / al.service_mean_us, to.p50_us / al.p50_us, service_ratio.size(),
      median(service_ratio), median(p50_ratio));
  // A machine so busy that even alone most requests wait for the scheduler
  // cannot measure the reactor's share (seen with other benchmarks running).
  if (median(alone_over) > 0.2) {
    GTEST_SKIP() << "machine too busy: " << 100 * median(alone_over)
                 << " % of QD1 requests took > 25 us even without the neighbour";
  }
  EXPECT_GT(al.n, 1000u);
  EXPECT_GT(to.n, 1000u);
  // The neighbour really competed.
  EXPECT_GT(big_together_iops, 10000);
#if defined(__SANITIZE_THREAD__)
#define NESTOR_FAIRNESS_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NESTOR_FAIRNESS_UNDER_TSAN 1
#endif
#endif
#ifdef NESTOR_FAIRNESS_UNDER_TSAN
  // Under TSan every memory access is instrumented: the run checks the
  // QoS and fairness paths for races, not their timing (it measured 5.15 %
  // slow samples against the 5 % bound once, 2026-12-07).
  GTEST_SKIP() << "timing bounds are not checked under ThreadSanitizer";
#endif
  // The reactor serves the QD1 queue within 2x as fast next to a saturating
  // neighbour: the mean of the samples the scheduler did not disturb, and
  // the median (per round, then the median round: a burst of other load
  // spoils one round, not the result). The plain mean is printed only: with
  // 3 busy threads on 2 CPUs it mostly measures the OS scheduler.
  EXPECT_LE(median(service_ratio), 2.0);
  EXPECT_LE(median(p50_ratio), 2.0);
  // Starvation would show as many slow samples.
  EXPECT_LE(to.over_frac, std::max(0.05, 3 * al.over_frac));
}

}  // namespace
}  // namespace nestor::testing
