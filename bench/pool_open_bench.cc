// pool_open_bench: how long Pool::Open takes on a pool holding N extents,
// and what an extent costs on disk and in memory. Not a test (no timed
// assertions); `make bench-volume` runs it and docs/benchmarks.md ("Thin
// volumes") records its output.
//
// For each N (--extents, default 1M,10M) it builds a sparse pool file on a
// real file system (--dir, default /var/tmp) with 4 KiB clusters and room
// for 2N clusters, formats it with Pool::Format, then writes a crafted
// checkpoint straight into slot 1 with the format.h encoders: one
// VolumeCreate and N Map records that cannot merge (vcluster 2i ->
// pcluster i), seq 1 (above the formatted slot 0's seq 0), log_head 0, and
// a zeroed first log block, so Open loads exactly that state (pool_load.cc).
// The file's pages are dropped (fsync + POSIX_FADV_DONTNEED; the pool's
// metadata reads use O_DIRECT anyway) and then it measures:
//
//   open        wall and CPU seconds of OpenFilePoolDevice + Pool::Open,
//               the median of --repeat K opens (default 3), pages dropped
//               before each
//   rss/extent  VmRSS after the first Open (malloc_trim'ed) minus before, / N
//   peak/extent VmHWM during Open (reset via /proc/self/clear_refs) minus
//               the RSS before, / N: the transient cost of loading
//   disk/extent checkpoint payload bytes / N (25 by the format)
//   commit      a Commit that writes a full checkpoint of that state: the
//               pool is reopened with crafted log entries filling half its
//               log ring (VolumeResize records that change nothing), which
//               makes the next Commit a checkpoint (pool_commit.cc)
//   reopen      Open of the checkpoint that Commit wrote (cross-checks the
//               crafted one: same payload size, same extent count)
//
// Helper mode for bench/volume_bench.py when the `nestor` admin tool is not
// built: --make-pool PATH --pool-size S [--cluster-size C]
// [--make-volume NAME:SIZE]... formats a pool file and creates volumes.
//
// usage: pool_open_bench [--extents 1M,10M] [--dir DIR] [--repeat K] [--no-commit]
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/crc32c.h"
#include "base/log.h"
#include "base/size.h"
#include "volume/aligned_buffer.h"
#include "volume/format.h"
#include "volume/pool.h"
#include "bench_util.h"

namespace nestor::volume {
namespace {

constexpr uint32_t kCluster = 4096;
using bench::Check;
using bench::CpuSeconds;
using bench::Die;
using bench::Median;
using bench::Now;
using bench::ProcStatusBytes;
using bench::ReadSuperblock;
using bench::ResetPeakRss;
using bench::WriteAll;

// fsync, then drop the file's pages so the next read comes from the disk.
void DropCache(int fd, const std::string& path) {
  if (fsync(fd) != 0) Die("fsync " + path, Status::FromErrno("fsync"));
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

struct Measured {
  uint64_t extents = 0;
  uint64_t device_bytes = 0;
  uint64_t payload_bytes = 0;
  double open_s = 0, open_cpu_s = 0;  // medians
  std::vector<double> open_runs, open_cpu_runs;
  int64_t rss_delta = 0, peak_delta = 0;
  double replay_open_s = -1;  // open with half a log ring to replay
  uint64_t replay_log_bytes = 0;
  double commit_s = -1;  // Commit writing a full checkpoint
  uint64_t commit_payload = 0;
  double reopen_s = -1;  // open of the checkpoint that Commit wrote
};

// Opens the pool at `path` and checks it holds the state we wrote.
std::unique_ptr<Pool> OpenPool(const std::string& path, uint64_t want_extents) {
  auto dev = OpenFilePoolDevice(path, false, 0);
  if (!dev.ok()) Die("open device " + path, dev.status());
  auto pool = Pool::Open(std::move(dev.value()));
  if (!pool.ok()) Die("Pool::Open " + path, pool.status());
  PoolInfo info = (*pool)->Info();
  if (info.extents != want_extents || info.volumes != 1 || info.used_clusters != want_extents) {
    std::fprintf(stderr,
                 "pool_open_bench: loaded %" PRIu64 " extents, %" PRIu64 " volumes, %" PRIu64
                 " used clusters; expected %" PRIu64 ", 1, %" PRIu64 "\n",
                 info.extents, info.volumes, info.used_clusters, want_extents, want_extents);
    Die("unexpected pool state", Status::Invalid("mismatch"));
  }
  return std::move(pool.value());
}

std::string JsonList(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char b[32];
    std::snprintf(b, sizeof(b), "%s%.3f", i ? ", " : "", v[i]);
    s += b;
  }
  return s + "]";
}

Measured RunOne(const std::string& dir, uint64_t n, bool do_commit, int repeat) {
  Measured m;
  m.extents = n;
  std::string path = dir + "/nestor-pool-open-bench." + std::to_string(getpid()) + "." + std::to_string(n) + ".pool";
  bench::AddCleanup(path);
  unlink(path.c_str());

  // A device whose data area holds 2N clusters (the layout's metadata
  // grows with the device, so iterate).
  uint64_t want = 2 * n;
  uint64_t dev_bytes = want * kCluster;
  for (;;) {
    auto plan = PlanLayout(dev_bytes, kCluster);
    if (plan.ok() && plan->data_clusters >= want) break;
    uint64_t have = plan.ok() ? plan->data_clusters : 0;
    dev_bytes += (want - have) * kCluster + (1u << 20);
  }
  m.device_bytes = dev_bytes;
  {
    auto dev = OpenFilePoolDevice(path, true, dev_bytes);
    if (!dev.ok()) Die("create " + path, dev.status());
    Check("Pool::Format", Pool::Format(dev->get(), kCluster, false));
  }

  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) Die("open " + path, Status::FromErrno("open"));
  Superblock sb = ReadSuperblock(fd, path);
  uint64_t vol_size = 2 * n * uint64_t{kCluster};
  {
    std::string payload;
    payload.reserve(64 + n * kMapRecordBytes);
    AppendRecord(Record{RecordType::kVolumeCreate, 1, vol_size, 0, 0, "bench"}, &payload);
    for (uint64_t i = 0; i < n; ++i) AppendRecord(Record{RecordType::kMap, 1, 2 * i, i, 1, {}}, &payload);
    m.payload_bytes = payload.size();
    if (payload.size() > sb.ckpt_bytes - kBlock) Die("checkpoint", Status::Invalid("does not fit its slot"));
    CheckpointHeader h;
    h.seq = 1;  // the formatted slot 0 holds seq 0
    h.log_head = 0;
    h.payload_bytes = payload.size();
    h.payload_crc = Crc32c(payload.data(), payload.size());
    h.pool_id = PoolId(sb);
    AlignedBuffer hdr(kBlock);
    EncodeCheckpointHeader(h, hdr.data());
    WriteAll(fd, sb.ckpt_offset[1], hdr.data(), kBlock, path);
    WriteAll(fd, sb.ckpt_offset[1] + kBlock, payload.data(), payload.size(), path);
    AlignedBuffer zero(kBlock);
    WriteAll(fd, sb.log_offset, zero.data(), kBlock, path);  // nothing to replay
  }
  DropCache(fd, path);
  malloc_trim(0);

  // ---- the measured open (repeated; the first one also gives the memory) ----
  for (int r = 0; r < repeat; ++r) {
    if (r > 0) DropCache(fd, path);
    malloc_trim(0);
    uint64_t rss0 = ProcStatusBytes("VmRSS");
    ResetPeakRss();
    double c0 = CpuSeconds(), t0 = Now();
    std::unique_ptr<Pool> pool = OpenPool(path, n);
    double t1 = Now(), c1 = CpuSeconds();
    uint64_t peak = ProcStatusBytes("VmHWM");
    malloc_trim(0);
    uint64_t rss1 = ProcStatusBytes("VmRSS");
    m.open_runs.push_back(t1 - t0);
    m.open_cpu_runs.push_back(c1 - c0);
    if (r == 0) {
      m.rss_delta = static_cast<int64_t>(rss1) - static_cast<int64_t>(rss0);
      m.peak_delta = static_cast<int64_t>(peak) - static_cast<int64_t>(rss0);
    }
    pool.reset();  // nothing pending: the closing commit writes no metadata
  }
  m.open_s = Median(m.open_runs);
  m.open_cpu_s = Median(m.open_cpu_runs);
  std::unique_ptr<Pool> pool;
  double t0 = 0;

  if (do_commit) {
    // Half the log ring in valid entries (seq 2, 3, ...) of VolumeResize
    // records that keep the size: the next Commit must checkpoint.
    std::string rec;
    AppendRecord(Record{RecordType::kVolumeResize, 1, vol_size, 0, 0, {}}, &rec);
    uint32_t per_entry = static_cast<uint32_t>((kMaxLogEntryBytes - kLogHeaderBytes) / rec.size());
    std::string payload;
    payload.reserve(per_entry * rec.size());
    for (uint32_t i = 0; i < per_entry; ++i) payload += rec;
    uint64_t pos = 0, seq = 2;
    while (pos < sb.log_bytes / 2) {
      std::string e = EncodeLogEntry(seq++, per_entry, payload, PoolId(sb));
      if (pos + e.size() > sb.log_bytes) break;
      WriteAll(fd, sb.log_offset + pos, e.data(), e.size(), path);
      pos += e.size();
    }
    if (pos + kBlock <= sb.log_bytes) {
      AlignedBuffer zero(kBlock);
      WriteAll(fd, sb.log_offset + pos, zero.data(), kBlock, path);
    }
    m.replay_log_bytes = pos;
    DropCache(fd, path);
    t0 = Now();
    pool = OpenPool(path, n);
    m.replay_open_s = Now() - t0;
    uint64_t ckpts = pool->Info().checkpoints;
    t0 = Now();
    Check("Commit", pool->Commit());
    m.commit_s = Now() - t0;
    if (pool->Info().checkpoints != ckpts + 1) {
      std::fprintf(stderr, "pool_open_bench: the commit did not write a checkpoint\n");
      m.commit_s = -1;
    }
    pool.reset();
    // The checkpoint Commit wrote is in slot 0 (slot 1 was active).
    AlignedBuffer hdr(kBlock);
    if (pread(fd, hdr.data(), kBlock, static_cast<off_t>(sb.ckpt_offset[0])) == static_cast<ssize_t>(kBlock)) {
      auto h = DecodeCheckpointHeader(hdr.data());
      if (h.ok()) m.commit_payload = h->payload_bytes;
    }
    DropCache(fd, path);
    t0 = Now();
    pool = OpenPool(path, n);
    m.reopen_s = Now() - t0;
    pool.reset();
  }
  close(fd);
  return m;
}

int MakePool(const std::string& path, uint64_t size, uint32_t cluster, const std::vector<std::string>& vols) {
  auto dev = OpenFilePoolDevice(path, true, size);
  if (!dev.ok()) Die("create " + path, dev.status());
  Check("Pool::Format", Pool::Format(dev->get(), cluster, true));
  auto pool = Pool::Open(std::move(dev.value()));
  if (!pool.ok()) Die("Pool::Open", pool.status());
  for (const std::string& v : vols) {
    size_t colon = v.find(':');
    if (colon == std::string::npos) Die("--make-volume " + v, Status::Invalid("want NAME:SIZE"));
    auto vs = ParseSize(v.substr(colon + 1));
    if (!vs.ok()) Die("--make-volume " + v, vs.status());
    auto info = (*pool)->CreateVolume(v.substr(0, colon), *vs, false);
    if (!info.ok()) Die("CreateVolume " + v, info.status());
  }
  return 0;
}

std::string Human(double bytes) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char b[32];
  std::snprintf(b, sizeof(b), "%.1f %s", bytes, unit[u]);
  return b;
}

int Main(int argc, char** argv) {
  std::vector<uint64_t> counts = {1000000, 10000000};
  std::string dir = "/var/tmp";
  bool do_commit = true;
  int repeat = 3;
  std::string make_pool;
  uint64_t pool_size = 0;
  uint32_t cluster = 64 * 1024;
  std::vector<std::string> make_vols;
  auto need = [&](int& i, const char* flag) -> std::string {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "pool_open_bench: %s needs a value\n", flag);
      std::exit(2);
    }
    return argv[++i];
  };
  auto count = [](const std::string& t) -> uint64_t {
    // "10M" here means 10 million extents, not 10 MiB.
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    double mul = 1;
    if (end && (*end == 'M' || *end == 'm')) mul = 1e6;
    if (end && (*end == 'K' || *end == 'k')) mul = 1e3;
    return static_cast<uint64_t>(v * mul);
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--extents") {
      counts.clear();
      std::string list = need(i, "--extents");
      for (size_t p = 0; p <= list.size();) {
        size_t q = list.find(',', p);
        if (q == std::string::npos) q = list.size();
        counts.push_back(count(list.substr(p, q - p)));
        p = q + 1;
      }
    } else if (a == "--dir") {
      dir = need(i, "--dir");
    } else if (a == "--repeat") {
      repeat = std::max(1, std::atoi(need(i, "--repeat").c_str()));
    } else if (a == "--no-commit") {
      do_commit = false;
    } else if (a == "--make-pool") {
      make_pool = need(i, "--make-pool");
    } else if (a == "--pool-size") {
      auto s = ParseSize(need(i, "--pool-size"));
      if (!s.ok()) Die("--pool-size", s.status());
      pool_size = *s;
    } else if (a == "--cluster-size") {
      auto s = ParseSize(need(i, "--cluster-size"));
      if (!s.ok()) Die("--cluster-size", s.status());
      cluster = static_cast<uint32_t>(*s);
    } else if (a == "--make-volume") {
      make_vols.push_back(need(i, "--make-volume"));
    } else {
      std::fprintf(stderr,
                   "usage: pool_open_bench [--extents 1M,10M] [--dir DIR] [--repeat K] [--no-commit]\n"
                   "       pool_open_bench --make-pool PATH --pool-size S [--cluster-size C] "
                   "[--make-volume NAME:SIZE]...\n");
      return 2;
    }
  }
  SetLogLevel(LogLevel::kWarn);
  bench::SetProgram("pool_open_bench");
  if (!make_pool.empty()) return MakePool(make_pool, pool_size, cluster, make_vols);

  bench::RemoveCleanupsOnStopSignals();
  std::vector<Measured> all;
  for (uint64_t n : counts) {
    std::fprintf(stderr, "pool_open_bench: %" PRIu64 " extents in %s ...\n", n, dir.c_str());
    Measured m = RunOne(dir, n, do_commit, repeat);
    bench::RemoveCleanups();
    all.push_back(m);
    std::printf("{\"extents\": %" PRIu64 ", \"cluster_size\": %u, \"device_bytes\": %" PRIu64
                ", \"checkpoint_payload_bytes\": %" PRIu64
                ", \"disk_bytes_per_extent\": %.2f, \"open_s\": %.3f"
                ", \"open_cpu_s\": %.3f, \"open_runs_s\": %s, \"rss_delta_bytes\": %" PRId64
                ", \"rss_bytes_per_extent\": %.1f"
                ", \"peak_delta_bytes\": %" PRId64 ", \"peak_bytes_per_extent\": %.1f, \"replay_log_bytes\": %" PRIu64
                ", \"open_with_log_s\": %.3f, \"commit_checkpoint_s\": %.3f, \"commit_payload_bytes\": %" PRIu64
                ", \"reopen_s\": %.3f}\n",
                m.extents, kCluster, m.device_bytes, m.payload_bytes, double(m.payload_bytes) / double(m.extents),
                m.open_s, m.open_cpu_s, JsonList(m.open_runs).c_str(), m.rss_delta,
                double(m.rss_delta) / double(m.extents), m.peak_delta, double(m.peak_delta) / double(m.extents),
                m.replay_log_bytes, m.replay_open_s, m.commit_s, m.commit_payload, m.reopen_s);
    std::fflush(stdout);
  }
  std::printf(
      "\n| extents | checkpoint | disk B/extent | open s (cpu s) | RSS B/extent | peak B/extent "
      "| log replayed | open + log replay s | commit (checkpoint) s | reopen s |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Measured& m : all) {
    std::printf("| %" PRIu64 " | %s | %.1f | %.2f (%.2f) | %.1f | %.1f | %s | %.2f | %.2f | %.2f |\n", m.extents,
                Human(double(m.payload_bytes)).c_str(), double(m.payload_bytes) / double(m.extents), m.open_s,
                m.open_cpu_s, double(m.rss_delta) / double(m.extents), double(m.peak_delta) / double(m.extents),
                Human(double(m.replay_log_bytes)).c_str(), m.replay_open_s, m.commit_s, m.reopen_s);
  }
  return 0;
}

}  // namespace
}  // namespace nestor::volume

int main(int argc, char** argv) { return nestor::volume::Main(argc, argv); }
