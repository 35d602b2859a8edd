// nestor-io: a verifying workload over libnestor. Every queue writes a
// pattern over its own slice of [offset, offset + bytes) at queue depth
// --qd, reads it back and verifies it; repeats for --seconds. Prints bytes,
// IOPS, per-I/O latency percentiles and errors; exits non-zero on any I/O
// error or mismatch. With --seed the pattern is the same for every queue
// and pass, so --verify-only --seed can check later (after a restart, a
// crash, a snapshot) that the data is still there, without writing.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "nestor/client.hpp"
#include "base/size.h"
#include "base/version.h"
#include "volume/format.h"

namespace {

using nestor::NowNs;
using namespace nestor::client;

struct Stats {
  uint64_t bytes_written = 0, bytes_verified = 0, writes = 0, reads = 0;
  uint64_t errors = 0, mismatches = 0;
  uint64_t write_ns = 0, read_ns = 0;  // wall time of the phases
  std::vector<uint32_t> write_lat, read_lat;
  std::string first_error;
};

struct Config {
  uint64_t offset = 0, bytes = 0, block = 4096;
  uint32_t qd = 16;
  double seconds = 0;
  bool verify = true;
  bool verify_only = false;  // no write phase: check what a run with this seed left
  bool fixed_seed = false;   // every queue and pass uses `seed`
  uint64_t seed = 0;
};

inline uint64_t Pattern(uint64_t byte_off, uint64_t seed) {
  uint64_t x = byte_off * 0x9e3779b97f4a7c15ull ^ seed;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 29);
}

void Fill(uint8_t* buf, uint64_t off, uint64_t len, uint64_t seed) {
  for (uint64_t i = 0; i < len; i += 8) {
    uint64_t v = Pattern(off + i, seed);
    std::memcpy(buf + i, &v, 8);
  }
}

bool Check(const uint8_t* buf, uint64_t off, uint64_t len, uint64_t seed) {
  for (uint64_t i = 0; i < len; i += 8) {
    uint64_t v;
    std::memcpy(&v, buf + i, 8);
    if (v != Pattern(off + i, seed)) return false;
  }
  return true;
}

// One phase (write or read+verify) over [start, end) on one queue.
void RunPhase(Device& dev, Queue& q, const Config& cfg, uint64_t start, uint64_t end, bool write, uint64_t seed,
              std::vector<uint8_t*>& bufs, Stats& st) {
  struct InFlight {
    uint64_t off = 0, len = 0, t0 = 0;
  };
  std::vector<InFlight> slots(cfg.qd);
  std::vector<uint32_t> free_slots;
  for (uint32_t i = 0; i < cfg.qd; ++i) free_slots.push_back(cfg.qd - 1 - i);
  std::vector<Completion> done(cfg.qd);
  uint64_t next = start;
  const uint64_t t_start = NowNs();
  auto& lat = write ? st.write_lat : st.read_lat;
  while (next < end || free_slots.size() < cfg.qd) {
    while (next < end && !free_slots.empty()) {
      uint32_t s = free_slots.back();
      uint64_t len = std::min(cfg.block, end - next);
      if (write) Fill(bufs[s], next, len, seed);
      Request r;
      r.op = write ? Op::kWrite : Op::kRead;
      r.offset = next;
      r.len = len;
      r.buf = bufs[s];
      r.user_data = reinterpret_cast<void*>(uintptr_t(s));
      slots[s] = {next, len, NowNs()};
      int rc = q.Submit(r);
      if (rc == -EAGAIN) break;
      if (rc < 0) {
        if (st.first_error.empty()) st.first_error = "submit: " + ResultName(rc);
        ++st.errors;
        return;
      }
      free_slots.pop_back();
      next += len;
    }
    int n = q.Wait(done.data(), 1, static_cast<int>(cfg.qd), 30000);
    if (n < 0) {
      if (st.first_error.empty()) st.first_error = "wait: " + ResultName(n);
      ++st.errors;
      return;
    }
    const uint64_t now = NowNs();
    for (int i = 0; i < n; ++i) {
      auto s = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(done[i].user_data));
      InFlight& f = slots[s];
      lat.push_back(static_cast<uint32_t>(std::min<uint64_t>(now - f.t0, UINT32_MAX)));
      if (done[i].result != 0) {
        if (st.first_error.empty())
          st.first_error = fmt::format("{} at {}: {}", write ? "write" : "read", f.off, ResultName(done[i].result));
        ++st.errors;
      } else if (write) {
        st.bytes_written += f.len;
        ++st.writes;
      } else {
        ++st.reads;
        if (!cfg.verify || Check(bufs[s], f.off, f.len, seed)) {
          st.bytes_verified += f.len;
        } else {
          if (st.first_error.empty()) st.first_error = fmt::format("mismatch in block at {}", f.off);
          ++st.mismatches;
        }
      }
      free_slots.push_back(s);
    }
  }
  (write ? st.write_ns : st.read_ns) += NowNs() - t_start;
  (void)dev;
}

void Worker(Device& dev, uint32_t qi, const Config& cfg, uint64_t start, uint64_t end, Stats& st) {
  Queue& q = dev.queue(qi);
  std::vector<uint8_t*> bufs(cfg.qd);
  for (auto& b : bufs) {
    b = static_cast<uint8_t*>(dev.AllocBuffer(cfg.block, 4096));
    if (!b) {
      st.first_error = "out of shared buffer memory";
      ++st.errors;
      return;
    }
  }
  const uint64_t deadline = NowNs() + static_cast<uint64_t>(cfg.seconds * 1e9);
  uint64_t pass = 0;
  do {
    // The pattern depends on the byte's offset and the seed only, so a
    // fixed seed can be verified later with any number of queues.
    uint64_t seed = cfg.fixed_seed ? cfg.seed : (NowNs() << 8) ^ (uint64_t(qi) << 48) ^ ++pass;
    if (!cfg.verify_only) RunPhase(dev, q, cfg, start, end, true, seed, bufs, st);
    if (st.errors) break;
    RunPhase(dev, q, cfg, start, end, false, seed, bufs, st);
    if (st.errors || st.mismatches) break;
  } while (NowNs() < deadline);
  for (auto* b : bufs) dev.FreeBuffer(b);
}

std::string Percentiles(std::vector<uint32_t>& v) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  auto at = [&](double p) { return v[std::min<size_t>(v.size() - 1, static_cast<size_t>(p * v.size()))] / 1000.0; };
  return fmt::format("p50 {:.1f} us, p99 {:.1f} us, p99.9 {:.1f} us", at(0.50), at(0.99), at(0.999));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nestor-io: write, read back and verify a pattern through libnestor"};
  app.set_version_flag("--version", nestor::VersionLine("nestor-io", nestor::volume::kFormatVersion),
                       "print the version and exit");
  Options opts;
  Config cfg;
  std::string bytes_s, seed_s;
  bool poll = false, blocking = false, no_event_idx = false, no_call_fd = false;
  app.add_option("--socket", opts.socket_path, "vhost-user-blk socket")->required();
  app.add_option("--queues", opts.num_queues, "queues to drive at once")->check(CLI::Range(1, 256));
  app.add_option("--queue-size", opts.queue_size, "ring entries per queue");
  app.add_option("--bytes", bytes_s,
                 "bytes to cover (K/M/G/T suffixes; default 64M, or up to the end of a smaller volume)");
  std::string offset_s;
  app.add_option("--offset", offset_s, "first byte (multiple of 512; K/M/G/T suffixes)");
  app.add_option("--block-size", cfg.block, "bytes per I/O")->check(CLI::Range(512, 1 << 22));
  app.add_option("--qd", cfg.qd, "I/Os in flight per queue")->check(CLI::Range(1, 4096));
  app.add_option("--seconds", cfg.seconds, "repeat passes for this long (0: one pass)");
  app.add_flag("--poll", poll, "busy-poll completions (default)");
  app.add_flag("--blocking", blocking, "sleep on the call eventfd");
  app.add_flag("--no-event-idx", no_event_idx, "do not negotiate EVENT_IDX");
  app.add_flag("--no-call-fd", no_call_fd, "polled queues get no call eventfd");
  bool no_verify = false;
  app.add_flag("--no-verify", no_verify, "read back without checking (null devices)");
  app.add_option("--seed", seed_s,
                 "pattern seed (decimal or 0x hex) for every queue and pass; default: a new one per queue and pass");
  app.add_flag("--verify-only", cfg.verify_only,
               "write nothing: read the range and check it holds the pattern of --seed (e.g. after a restart)");
  CLI11_PARSE(app, argc, argv);
  if (poll && blocking) {
    fmt::print(stderr, "nestor-io: --poll and --blocking are exclusive\n");
    return 2;
  }
  // A size option, if given; false (after saying why) if it is malformed.
  auto size_arg = [](const char* flag, const std::string& text, uint64_t* out) {
    if (text.empty()) return true;
    auto v = nestor::ParseSize(text);
    if (!v.ok()) fmt::print(stderr, "nestor-io: {}: {}\n", flag, v.status().message());
    if (v.ok()) *out = *v;
    return v.ok();
  };
  if (!size_arg("--bytes", bytes_s, &cfg.bytes) || !size_arg("--offset", offset_s, &cfg.offset)) return 2;
  if (!seed_s.empty()) {
    char* end = nullptr;
    errno = 0;
    cfg.seed = std::strtoull(seed_s.c_str(), &end, 0);
    if (errno != 0 || end == seed_s.c_str() || *end != 0 || seed_s[0] == '-') {
      fmt::print(stderr, "nestor-io: bad --seed {}\n", seed_s);
      return 2;
    }
    cfg.fixed_seed = true;
  }
  if (cfg.verify_only && (!cfg.fixed_seed || no_verify)) {
    fmt::print(stderr, "nestor-io: --verify-only needs the --seed the data was written with (and not --no-verify)\n");
    return 2;
  }
  if (cfg.block % 512 || cfg.offset % 512 || (!bytes_s.empty() && (cfg.bytes % 512 || cfg.bytes == 0))) {
    fmt::print(stderr, "nestor-io: offset, bytes and block size must be multiples of 512\n");
    return 2;
  }
  cfg.verify = !no_verify;
  opts.polled = !blocking;
  opts.event_idx = !no_event_idx;
  opts.call_fd_when_polled = !no_call_fd;
  opts.buffer_bytes = std::max<size_t>(16ull << 20, size_t(opts.num_queues) * cfg.qd * cfg.block * 2);
  auto dev = Device::Connect(opts);
  if (!dev.ok()) {
    fmt::print(stderr, "nestor-io: connect {}: {}\n", opts.socket_path, dev.status().ToString());
    return 1;
  }
  const DeviceInfo& info = (*dev)->info();
  if (bytes_s.empty()) {  // the default: 64 MiB, or to the end of a smaller volume
    cfg.bytes =
        info.capacity_bytes > cfg.offset ? std::min<uint64_t>(64ull << 20, info.capacity_bytes - cfg.offset) : 0;
    cfg.bytes -= cfg.bytes % 512;
    if (cfg.bytes == 0) {
      fmt::print(stderr, "nestor-io: --offset {} is at or past the end of the volume ({} bytes)\n", cfg.offset,
                 info.capacity_bytes);
      return 2;
    }
  }
  if (cfg.offset + cfg.bytes > info.capacity_bytes) {
    fmt::print(stderr, "nestor-io: range {}+{} exceeds capacity {}\n", cfg.offset, cfg.bytes, info.capacity_bytes);
    return 2;
  }
  fmt::print(
      "nestor-io: {} capacity {} bytes, {} of {} queues x {} entries, {} completions, qd {}, block {}, range {}+{}{}\n",
      opts.socket_path, info.capacity_bytes, opts.num_queues, info.max_queues, opts.queue_size,
      opts.polled ? "polled" : "blocking", cfg.qd, cfg.block, cfg.offset, cfg.bytes,
      cfg.fixed_seed ? fmt::format(", seed {:#x}{}", cfg.seed, cfg.verify_only ? " (verify only)" : "") : "");

  std::vector<Stats> stats(opts.num_queues);
  std::vector<std::thread> threads;
  const uint64_t per_queue = (cfg.bytes / opts.num_queues + 511) / 512 * 512;
  const uint64_t t0 = NowNs();
  for (uint32_t i = 0; i < opts.num_queues; ++i) {
    uint64_t start = cfg.offset + std::min<uint64_t>(cfg.bytes, per_queue * i);
    uint64_t end = cfg.offset + std::min<uint64_t>(cfg.bytes, per_queue * (i + 1));
    threads.emplace_back(Worker, std::ref(**dev), i, std::cref(cfg), start, end, std::ref(stats[i]));
  }
  for (auto& t : threads) t.join();
  const double wall = (NowNs() - t0) / 1e9;

  Stats all;
  double write_s = 0, read_s = 0;
  for (auto& s : stats) {
    all.bytes_written += s.bytes_written;
    all.bytes_verified += s.bytes_verified;
    all.writes += s.writes;
    all.reads += s.reads;
    all.errors += s.errors;
    all.mismatches += s.mismatches;
    write_s = std::max(write_s, s.write_ns / 1e9);
    read_s = std::max(read_s, s.read_ns / 1e9);
    all.write_lat.insert(all.write_lat.end(), s.write_lat.begin(), s.write_lat.end());
    all.read_lat.insert(all.read_lat.end(), s.read_lat.begin(), s.read_lat.end());
    if (all.first_error.empty()) all.first_error = s.first_error;
  }
  fmt::print("written  {} bytes in {} I/Os, {:.0f} IOPS, {}\n", all.bytes_written, all.writes,
             write_s > 0 ? all.writes / write_s : 0.0, Percentiles(all.write_lat));
  fmt::print("{} {} bytes in {} I/Os, {:.0f} IOPS, {}\n", cfg.verify ? "verified" : "read    ", all.bytes_verified,
             all.reads, read_s > 0 ? all.reads / read_s : 0.0, Percentiles(all.read_lat));
  fmt::print("errors {}, mismatches {}, wall {:.2f} s{}{}\n", all.errors, all.mismatches, wall,
             all.first_error.empty() ? "" : ", first: ", all.first_error);
  (*dev)->Close();
  bool ok = all.errors == 0 && all.mismatches == 0 && all.bytes_verified >= cfg.bytes;
  fmt::print("{}\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
