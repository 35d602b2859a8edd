// snapshot_bench: snapshots and clones (issue #12), measured in-process
// through the Pool API. Not a test (no timed assertions); `make
// bench-snapshots` runs it and docs/benchmarks.md ("Snapshots and clones")
// records its output.
//
// snapshot_bench open [--extents 10M] [--clones 1000] [--golden-extents G]
//                     [--dir /var/tmp] [--repeat 5] [--drop-caches] [--no-baseline]
//                     [--no-parts] [--expect-max-s S]
//   Pool open time with N extents spread over K clones of one golden
//   snapshot. Builds the pool directly: a sparse file on --dir with 4 KiB
//   clusters and room for G + N data clusters, Pool::Format, then a crafted
//   checkpoint in slot 1 (seq 1, log_head 0, with the superblock copy; the
//   first log block zeroed), written with the format.h encoders in the
//   order SerializeState writes one (pool_commit.cc):
//     VolumeCreate golden (id 1) + G Map records (vcluster 2i -> pcluster i)
//     VolumeCreate clone k (id 2+k) + N/K Map records (vcluster 2i ->
//       pcluster G + k*N/K + i: never adjacent in both, so none merge)
//     ImageLink golden (parent 0, kImageSnapshot), then each clone's link
//       to it (parent 1, flags 0): parents before children (SerializeLinks)
//     NoteMark 0
//   The baseline, side by side in the same run: one plain volume holding the
//   same G + N extents (what pool_open_bench measures). Per repetition, in
//   alternating order of the two pools: a cold read-only Open (file pages
//   dropped; --drop-caches: also `echo 3 > /proc/sys/vm/drop_caches`), a
//   warm one, Pool::Check on it, a cold read-write Open. Then, for the
//   clones pool, the parts of an open timed one by one outside the pool
//   (the payload read with O_DIRECT, CRC-32C, record decoding, building the
//   extent maps and the free map): where the time goes. CI-sized:
//   `open --extents 1M --clones 100 --repeat 1 --no-baseline --expect-max-s S`
//   exits 3 if the open took longer than S (for a test that wants a bound).
//
// snapshot_bench ops [--dir /var/tmp] [--clones 1000] [--snapshots 9] [--qd 32]
//   Control operations, in-process, pools as files on --dir (64 KiB
//   clusters): CloneVolume of one snapshot K times next to CreateVolume of
//   a plain volume of the same size in a second pool (interleaved: clone,
//   create, clone, ...), then DeleteVolume of each (interleaved again);
//   CreateSnapshot of an idle volume and of a volume under random 4 KiB
//   writes at --qd (a writer thread with its own io_uring, like a reactor),
//   interleaved: latency of the call and the write pause (the longest gap
//   between write completions while the snapshot was taken).
//
// snapshot_bench admin --pool PATH [--format SIZE [--cluster-size C]] OP...
//   Offline set-up for bench/snapshot_bench.py while `nestor` has no
//   snapshot commands: OP is create:NAME:SIZE, snapshot:SOURCE:NAME,
//   clone:SNAPSHOT:NAME, delete:NAME, inflate:NAME, export-ro:NAME (stores a
//   read-only export: nestord --export-all refuses an unexported snapshot), list.
//
// Output: one JSON object per measurement on stdout (lines starting with
// '{'), then Markdown tables; progress on stderr.
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/crc32c.h"
#include "base/log.h"
#include "base/size.h"
#include "io/uring.h"
#include "volume/aligned_buffer.h"
#include "volume/allocator.h"
#include "volume/extent_map.h"
#include "volume/format.h"
#include "volume/pool.h"
#include "bench_util.h"

namespace nestor::volume {
namespace {

using bench::AddCleanup;
using bench::Check;
using bench::CpuSeconds;
using bench::Die;
using bench::Median;
using bench::Now;
using bench::ProcStatusBytes;
using bench::ReadSuperblock;
using bench::ResetPeakRss;
using bench::WriteAll;

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double pos = q * static_cast<double>(v.size() - 1);
  size_t i = static_cast<size_t>(pos);
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (v[i + 1] - v[i]) * (pos - static_cast<double>(i));
}

std::string JsonList(const std::vector<double>& v, const char* fmt = "%.4f") {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char b[48];
    if (i) s += ", ";
    std::snprintf(b, sizeof(b), fmt, v[i]);
    s += b;
  }
  return s + "]";
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

uint64_t CountArg(const std::string& t) {  // "10M" = 10 million, "1K" = 1000
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  double mul = 1;
  if (end && (*end == 'M' || *end == 'm')) mul = 1e6;
  if (end && (*end == 'K' || *end == 'k')) mul = 1e3;
  return static_cast<uint64_t>(v * mul);
}

bool g_drop_global = false;

// fsync and drop the file's pages; with --drop-caches every clean page of
// the machine (root only; the pool reads metadata with O_DIRECT anyway).
void DropCache(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
  if (g_drop_global) {
    sync();
    int d = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (d >= 0) {
      (void)!write(d, "3", 1);
      close(d);
    }
  }
}

// ======================================================================
// open
// ======================================================================

struct Layout {
  std::string name;  // "clones" or "single"
  uint64_t clones = 0, per_clone = 0, golden = 0;
  uint64_t extents() const { return golden + clones * per_clone; }
  uint64_t images() const { return name == "clones" ? clones + 1 : 1; }
};

struct BuiltPool {
  std::string path;
  uint64_t device_bytes = 0, payload_bytes = 0, data_clusters = 0;
  double build_s = 0;
};

// The checkpoint payload of `l` (see the header comment).
std::string Payload(const Layout& l) {
  std::string out;
  out.reserve(64 + l.extents() * kMapRecordBytes + l.images() * (kMaxCreateRecordBytes + kImageLinkBytes));
  if (l.name == "single") {
    uint64_t n = l.extents();
    AppendRecord(Record{RecordType::kVolumeCreate, 1, 2 * n * 4096, 0, 0, "single"}, &out);
    for (uint64_t i = 0; i < n; ++i) AppendRecord(Record{RecordType::kMap, 1, 2 * i, i, 1, {}}, &out);
  } else {
    uint64_t vclusters = 2 * std::max(l.golden, l.per_clone);
    uint64_t size = vclusters * 4096;
    AppendRecord(Record{RecordType::kVolumeCreate, 1, size, 0, 0, "golden"}, &out);
    for (uint64_t i = 0; i < l.golden; ++i) AppendRecord(Record{RecordType::kMap, 1, 2 * i, i, 1, {}}, &out);
    for (uint64_t k = 0; k < l.clones; ++k) {
      uint32_t id = static_cast<uint32_t>(2 + k);
      char name[32];
      std::snprintf(name, sizeof(name), "clone-%04" PRIu64, k);
      AppendRecord(Record{RecordType::kVolumeCreate, id, size, 0, 0, name}, &out);
      uint64_t base = l.golden + k * l.per_clone;
      for (uint64_t i = 0; i < l.per_clone; ++i) {
        AppendRecord(Record{RecordType::kMap, id, 2 * i, base + i, 1, {}}, &out);
      }
    }
    AppendRecord(Record{RecordType::kImageLink, 1, 0, kImageSnapshot, 0, {}}, &out);
    for (uint64_t k = 0; k < l.clones; ++k) {
      AppendRecord(Record{RecordType::kImageLink, static_cast<uint32_t>(2 + k), 1, 0, 0, {}}, &out);
    }
  }
  AppendRecord(Record{RecordType::kNoteMark, 0, 0, 0, 0, {}}, &out);
  return out;
}

BuiltPool Build(const std::string& dir, const Layout& l) {
  BuiltPool b;
  double t0 = Now();
  b.path = dir + "/nestor-snapshot-bench." + std::to_string(getpid()) + "." + l.name + ".pool";
  AddCleanup(b.path);
  unlink(b.path.c_str());
  constexpr uint32_t kCluster = 4096;
  uint64_t want = l.extents();
  uint64_t dev_bytes = want * kCluster + (64u << 20);
  for (;;) {
    auto plan = PlanLayout(dev_bytes, kCluster);
    if (plan.ok() && plan->data_clusters >= want && ImageCapacity(*plan) >= l.images()) break;
    uint64_t have = plan.ok() ? plan->data_clusters : 0;
    dev_bytes += (want > have ? want - have : 0) * kCluster + (1u << 20);
  }
  b.device_bytes = dev_bytes;
  {
    auto dev = OpenFilePoolDevice(b.path, true, dev_bytes);
    if (!dev.ok()) Die("create " + b.path, dev.status());
    Check("Pool::Format", Pool::Format(dev->get(), kCluster, false));
  }
  int fd = open(b.path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) Die("open " + b.path, Status::FromErrno("open"));
  Superblock sb = ReadSuperblock(fd, b.path);
  if (sb.version != kFormatVersion) Die("format", Status::Invalid("not a version 2 pool"));
  b.data_clusters = sb.data_clusters;
  std::string payload = Payload(l);
  b.payload_bytes = payload.size();
  if (payload.size() > sb.ckpt_bytes - kBlock) Die("checkpoint", Status::Invalid("does not fit its slot"));
  CheckpointHeader h;
  h.seq = 1;  // the formatted slot 0 holds seq 0
  h.log_head = 0;
  h.payload_bytes = payload.size();
  h.payload_crc = Crc32c(payload.data(), payload.size());
  h.pool_id = PoolId(sb);
  AlignedBuffer hdr(kBlock);
  EncodeCheckpointHeader(h, hdr.data(), &sb);
  WriteAll(fd, sb.ckpt_offset[1], hdr.data(), kBlock, b.path);
  WriteAll(fd, sb.ckpt_offset[1] + kBlock, payload.data(), payload.size(), b.path);
  AlignedBuffer zero(kBlock);
  WriteAll(fd, sb.log_offset, zero.data(), kBlock, b.path);  // nothing to replay
  if (fsync(fd) != 0) Die("fsync " + b.path, Status::FromErrno("fsync"));
  close(fd);
  b.build_s = Now() - t0;
  return b;
}

struct OpenRun {
  double wall = 0, cpu = 0;
  int64_t rss_delta = 0, peak_delta = 0;
};

void Verify(Pool* pool, const Layout& l) {
  PoolInfo info = pool->Info();
  if (info.extents != l.extents() || info.volumes != l.images() || info.used_clusters != l.extents()) {
    std::fprintf(stderr,
                 "snapshot_bench: %s: loaded %" PRIu64 " extents, %" PRIu64 " images, %" PRIu64
                 " used clusters; expected %" PRIu64 ", %" PRIu64 ", %" PRIu64 "\n",
                 l.name.c_str(), info.extents, info.volumes, info.used_clusters, l.extents(), l.images(), l.extents());
    Die("unexpected pool state", Status::Invalid("mismatch"));
  }
}

std::unique_ptr<Pool> TimedOpen(const BuiltPool& b, const Layout& l, bool read_only, OpenRun* out) {
  malloc_trim(0);
  uint64_t rss0 = ProcStatusBytes("VmRSS");
  ResetPeakRss();
  double c0 = CpuSeconds(), t0 = Now();
  auto dev = OpenFilePoolDevice(b.path, false, 0, read_only);
  if (!dev.ok()) Die("open device " + b.path, dev.status());
  PoolOptions opts;
  opts.read_only = read_only;
  auto pool = Pool::Open(std::move(dev.value()), opts);
  if (!pool.ok()) Die("Pool::Open " + b.path, pool.status());
  out->wall = Now() - t0;
  out->cpu = CpuSeconds() - c0;
  uint64_t peak = ProcStatusBytes("VmHWM");
  malloc_trim(0);
  out->rss_delta = static_cast<int64_t>(ProcStatusBytes("VmRSS")) - static_cast<int64_t>(rss0);
  out->peak_delta = static_cast<int64_t>(peak) - static_cast<int64_t>(rss0);
  Verify(pool->get(), l);
  return std::move(pool.value());
}

struct LayoutResult {
  std::vector<double> cold_ro, warm_ro, cold_rw, check, cold_ro_cpu;
  int64_t rss_delta = 0, peak_delta = 0;
  BuiltPool built;
};

// The parts of an open, timed one by one outside the pool: read, CRC,
// decode, maps, free map (the same work Load and Apply do, pool_load.cc).
struct Parts {
  double read = 0, crc = 0, decode = 0, maps = 0;
};

Parts TimeParts(const BuiltPool& b) {
  Parts parts;
  int fd = open(b.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) Die("open " + b.path, Status::FromErrno("open"));
  AlignedBuffer hb(kBlock);
  Superblock sb = ReadSuperblock(fd, b.path);
  if (pread(fd, hb.data(), kBlock, static_cast<off_t>(sb.ckpt_offset[1])) != static_cast<ssize_t>(kBlock)) {
    Die("read header", Status::FromErrno("pread"));
  }
  auto h = DecodeCheckpointHeader(hb.data());
  if (!h.ok()) Die("decode header", h.status());
  DropCache(b.path);
  uint64_t bytes = (h->payload_bytes + kBlock - 1) / kBlock * kBlock;
  double t0 = Now();
  AlignedBuffer payload(bytes);
  for (uint64_t done = 0; done < bytes;) {
    size_t n = std::min<uint64_t>(bytes - done, 64u << 20);
    ssize_t r = pread(fd, payload.data() + done, n, static_cast<off_t>(sb.ckpt_offset[1] + kBlock + done));
    if (r <= 0) Die("read payload", Status::FromErrno("pread"));
    done += static_cast<uint64_t>(r);
  }
  close(fd);
  parts.read = Now() - t0;
  t0 = Now();
  uint32_t crc = Crc32c(payload.data(), h->payload_bytes);
  parts.crc = Now() - t0;
  if (crc != h->payload_crc) Die("payload", Status::Invalid("CRC mismatch"));
  uint64_t records = 0;
  t0 = Now();
  Check("decode", ForEachRecord(payload.data(), h->payload_bytes, [&](const Record& r) {
          records += r.type == RecordType::kMap;
          return Status::Ok();
        }));
  parts.decode = Now() - t0;
  // Decode again and build what Apply builds: one ExtentMap per image
  // (with Apply's overlap lookup) and the free-cluster bitmap.
  t0 = Now();
  {
    std::vector<std::unique_ptr<ExtentMap>> maps;
    Allocator alloc(sb.data_clusters);
    Check("decode", ForEachRecord(payload.data(), h->payload_bytes, [&](const Record& r) {
            if (r.type == RecordType::kVolumeCreate) {
              if (maps.size() <= r.volume) maps.resize(r.volume + 1);
              maps[r.volume] = std::make_unique<ExtentMap>();
            } else if (r.type == RecordType::kMap) {
              ExtentMap& m = *maps[r.volume];
              uint64_t p, run;
              if (m.Lookup(r.a, &p, &run) || run < r.count) return Status::Invalid("mapped twice");
              if (!alloc.MarkUsed(r.b, r.count)) return Status::Invalid("owned twice");
              m.Map(r.a, r.b, r.count);
            }
            return Status::Ok();
          }));
    parts.maps = Now() - t0;  // (freeing the maps is not counted)
  }
  (void)records;
  return parts;
}

int RunOpen(int argc, char** argv) {
  uint64_t extents = 10000000, clones = 1000, golden = UINT64_MAX;
  std::string dir = "/var/tmp";
  int repeat = 5;
  bool baseline = true;
  bool parts_wanted = true;  // --no-parts: only Pool calls (for a profile of Open)
  double expect_max_s = 0;   // > 0: exit 3 if the median cold read-only open of the clones pool took longer
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a, Status::Invalid("needs a value"));
      return argv[++i];
    };
    if (a == "--extents") {
      extents = CountArg(next());
    } else if (a == "--clones") {
      clones = CountArg(next());
    } else if (a == "--golden-extents") {
      golden = CountArg(next());
    } else if (a == "--dir") {
      dir = next();
    } else if (a == "--repeat") {
      repeat = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--drop-caches") {
      g_drop_global = true;
    } else if (a == "--no-baseline") {
      baseline = false;
    } else if (a == "--no-parts") {
      parts_wanted = false;
    } else if (a == "--expect-max-s") {
      expect_max_s = std::atof(next().c_str());
    } else {
      std::fprintf(stderr,
                   "usage: snapshot_bench open [--extents 10M] [--clones 1000] [--golden-extents G] [--dir D] "
                   "[--repeat 5] [--drop-caches] [--no-baseline] [--no-parts] [--expect-max-s S]\n");
      return 2;
    }
  }
  if (clones == 0 || clones + 1 > kMaxVolumes) Die("--clones", Status::Invalid("1..1023"));
  Layout cl{"clones", clones, extents / clones, 0};
  cl.golden = golden == UINT64_MAX ? cl.per_clone : golden;
  Layout single{"single", 0, 0, cl.extents()};
  std::vector<Layout> layouts = {cl};
  if (baseline) layouts.push_back(single);
  std::vector<LayoutResult> res(layouts.size());
  for (size_t i = 0; i < layouts.size(); ++i) {
    std::fprintf(stderr, "snapshot_bench open: building %s pool (%" PRIu64 " extents, %" PRIu64 " images) in %s\n",
                 layouts[i].name.c_str(), layouts[i].extents(), layouts[i].images(), dir.c_str());
    res[i].built = Build(dir, layouts[i]);
    std::fprintf(stderr, "  %s, payload %s, built in %.1f s\n", res[i].built.path.c_str(),
                 Human(double(res[i].built.payload_bytes)).c_str(), res[i].built.build_s);
  }
  for (int r = 0; r < repeat; ++r) {
    for (size_t j = 0; j < layouts.size(); ++j) {
      size_t i = (j + static_cast<size_t>(r)) % layouts.size();  // alternate who goes first
      const Layout& l = layouts[i];
      LayoutResult& out = res[i];
      OpenRun run;
      DropCache(out.built.path);
      {
        auto pool = TimedOpen(out.built, l, true, &run);
        out.cold_ro.push_back(run.wall);
        out.cold_ro_cpu.push_back(run.cpu);
        if (r == 0) {
          out.rss_delta = run.rss_delta;
          out.peak_delta = run.peak_delta;
        }
      }
      OpenRun warm;
      {
        auto pool = TimedOpen(out.built, l, true, &warm);
        out.warm_ro.push_back(warm.wall);
        double t0 = Now();
        CheckReport rep = pool->Check();
        out.check.push_back(Now() - t0);
        if (!rep.clean() || rep.extents != l.extents() || rep.volumes != l.images()) {
          for (const auto& p : rep.problems) std::fprintf(stderr, "  check: %s\n", p.c_str());
          Die("Pool::Check", Status::Invalid("not clean"));
        }
      }
      DropCache(out.built.path);
      OpenRun rw;
      {
        auto pool = TimedOpen(out.built, l, false, &rw);
        out.cold_rw.push_back(rw.wall);
      }  // a clean close: commits nothing new, writes the seal
      std::fprintf(stderr, "  rep %d %-6s: open ro cold %.3f s (cpu %.3f), warm %.3f s, check %.3f s, rw cold %.3f s\n",
                   r, l.name.c_str(), run.wall, run.cpu, warm.wall, out.check.back(), rw.wall);
    }
  }
  Parts parts;
  if (parts_wanted) parts = TimeParts(res[0].built);
  std::fprintf(stderr, "  parts of an open of the clones pool: read %.3f s, crc %.3f s, decode %.3f s, maps %.3f s\n",
               parts.read, parts.crc, parts.decode, parts.maps);
  for (size_t i = 0; i < layouts.size(); ++i) {
    const Layout& l = layouts[i];
    const LayoutResult& o = res[i];
    std::printf("{\"bench\": \"pool-open\", \"layout\": \"%s\", \"extents\": %" PRIu64 ", \"images\": %" PRIu64
                ", \"clones\": %" PRIu64 ", \"extents_per_clone\": %" PRIu64 ", \"golden_extents\": %" PRIu64
                ", \"cluster_size\": 4096, \"device_bytes\": %" PRIu64 ", \"checkpoint_payload_bytes\": %" PRIu64
                ", \"open_ro_cold_s\": %s, \"open_ro_cold_cpu_s\": %s, \"open_ro_warm_s\": %s, \"check_s\": %s"
                ", \"open_rw_cold_s\": %s, \"rss_delta_bytes\": %" PRId64 ", \"peak_delta_bytes\": %" PRId64 "}\n",
                l.name.c_str(), l.extents(), l.images(), l.clones, l.per_clone, l.name == "clones" ? l.golden : 0,
                o.built.device_bytes, o.built.payload_bytes, JsonList(o.cold_ro).c_str(),
                JsonList(o.cold_ro_cpu).c_str(), JsonList(o.warm_ro).c_str(), JsonList(o.check).c_str(),
                JsonList(o.cold_rw).c_str(), o.rss_delta, o.peak_delta);
  }
  std::printf(
      "{\"bench\": \"pool-open-parts\", \"layout\": \"clones\", \"read_s\": %.4f, \"crc_s\": %.4f, "
      "\"decode_s\": %.4f, \"decode_and_maps_s\": %.4f}\n",
      parts.read, parts.crc, parts.decode, parts.maps);
  auto cell = [](const std::vector<double>& v) {
    char b[96];
    std::snprintf(b, sizeof(b), "%.3f (%.3f-%.3f)", Median(v), *std::min_element(v.begin(), v.end()),
                  *std::max_element(v.begin(), v.end()));
    return std::string(b);
  };
  std::printf("\n%d repetition(s); seconds, median (min-max)\n\n", repeat);
  std::printf(
      "| pool | extents | images | checkpoint | open read-only, cold | CPU | open read-only, warm | "
      "Pool::Check | open read-write, cold | RSS B/extent | peak B/extent |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < layouts.size(); ++i) {
    const Layout& l = layouts[i];
    const LayoutResult& o = res[i];
    std::string desc = l.name == "clones" ? std::to_string(l.clones) + " clones x " + std::to_string(l.per_clone) +
                                                " + golden " + std::to_string(l.golden)
                                          : "1 volume";
    std::printf("| %s | %" PRIu64 " | %" PRIu64 " | %s | %s | %s | %s | %s | %s | %.1f | %.1f |\n", desc.c_str(),
                l.extents(), l.images(), Human(double(o.built.payload_bytes)).c_str(), cell(o.cold_ro).c_str(),
                cell(o.cold_ro_cpu).c_str(), cell(o.warm_ro).c_str(), cell(o.check).c_str(), cell(o.cold_rw).c_str(),
                double(o.rss_delta) / double(l.extents()), double(o.peak_delta) / double(l.extents()));
  }
  if (layouts.size() == 2) {
    std::vector<double> ratio;
    for (int r = 0; r < repeat; ++r) ratio.push_back(res[0].cold_ro[r] / res[1].cold_ro[r]);
    std::printf("\nclones / single volume, cold read-only open: %.2f (%.2f-%.2f, per-repetition ratios)\n",
                Median(ratio), *std::min_element(ratio.begin(), ratio.end()),
                *std::max_element(ratio.begin(), ratio.end()));
  }
  std::printf(
      "\nparts of one open of the clones pool, timed outside the pool: payload read (O_DIRECT, cold) %.2f s, "
      "CRC-32C %.2f s, record decode %.2f s, decode + extent maps + free map %.2f s\n",
      parts.read, parts.crc, parts.decode, parts.maps);
  bench::RemoveCleanups();
  if (expect_max_s > 0 && Median(res[0].cold_ro) > expect_max_s) {
    std::fprintf(stderr, "snapshot_bench: open took %.3f s (median), more than --expect-max-s %.3f\n",
                 Median(res[0].cold_ro), expect_max_s);
    return 3;
  }
  return 0;
}

// ======================================================================
// ops
// ======================================================================

std::unique_ptr<Pool> MakePool(const std::string& path, uint64_t bytes, uint32_t cluster) {
  unlink(path.c_str());
  AddCleanup(path);
  auto dev = OpenFilePoolDevice(path, true, bytes);
  if (!dev.ok()) Die("create " + path, dev.status());
  Check("Pool::Format", Pool::Format(dev->get(), cluster, false));
  auto pool = Pool::Open(std::move(dev.value()));
  if (!pool.ok()) Die("Pool::Open " + path, pool.status());
  (*pool)->StartCommitter();
  return std::move(pool.value());
}

// Drives one volume like a reactor: its own io_uring and channel,
// `qd` requests in flight, completions reaped by polling.
class Driver {
 public:
  Driver(Pool* pool, const std::string& vol, unsigned qd) {
    auto ring = io::IoUring::Create(256);
    if (!ring.ok()) Die("io_uring", ring.status());
    ring_ = std::move(ring.value());
    auto b = pool->OpenVolume(vol);
    if (!b.ok()) Die("OpenVolume " + vol, b.status());
    backend_ = b.value();
    auto ch = backend_->OpenChannel(ring_.get());
    if (!ch.ok()) Die("OpenChannel " + vol, ch.status());
    ch_ = std::move(ch.value());
    reqs_.resize(qd);
    for (unsigned i = 0; i < qd; ++i) {
      reqs_[i].d = this;
      reqs_[i].buf = static_cast<uint8_t*>(aligned_alloc(4096, 1u << 20));
      std::memset(reqs_[i].buf, 0x5a + i, 1u << 20);
    }
  }
  ~Driver() {
    ch_.reset();
    for (auto& r : reqs_) free(r.buf);
  }

  // Sequential writes of `bs` over [0, bytes).
  void Fill(uint64_t bytes, uint64_t bs) {
    uint64_t next = 0;
    Run([&](io::IoRequest* r) {
      if (next >= bytes) return false;
      r->op = io::IoOp::kWrite;
      r->offset = next;
      r->length = std::min(bs, bytes - next);
      next += r->length;
      return true;
    });
  }

  // Random 4 KiB writes over [0, bytes) until *stop; completion times in times_.
  void RandomWrites(uint64_t bytes, const std::atomic<bool>* stop) {
    std::mt19937_64 rng(42);
    uint64_t blocks = bytes / 4096;
    times_.clear();
    times_.reserve(4u << 20);
    record_ = true;
    Run([&](io::IoRequest* r) {
      if (stop->load(std::memory_order_relaxed)) return false;
      r->op = io::IoOp::kWrite;
      r->offset = (rng() % blocks) * 4096;
      r->length = 4096;
      return true;
    });
    record_ = false;
  }
  const std::vector<double>& times() const { return times_; }
  uint64_t errors() const { return errors_; }

 private:
  struct Req : io::IoRequest {
    Driver* d = nullptr;
    uint8_t* buf = nullptr;
    iovec v{};
    bool busy = false;
  };
  static void Done(io::IoRequest* q, int res) {
    Req* r = static_cast<Req*>(q);
    Driver* d = r->d;
    if (res < 0 && d->errors_++ == 0) d->first_error_ = res;
    if (d->record_) d->times_.push_back(Now());
    r->busy = false;
    --d->inflight_;
  }
  template <typename F>
  void Run(F next) {
    bool more = true;
    for (;;) {
      if (more) {
        for (Req& r : reqs_) {
          if (r.busy) continue;
          if (!next(&r)) {
            more = false;
            break;
          }
          r.v = iovec{r.buf, r.length};
          r.iov = &r.v;
          r.iovcnt = 1;
          r.done = Done;
          r.busy = true;
          ++inflight_;
          ch_->Submit(&r);
        }
      }
      ring_->Submit();
      ring_->Reap();
      ch_->EndOfBatch();
      if (!more && inflight_ == 0) return;
    }
  }

  std::unique_ptr<io::IoUring> ring_;
  std::shared_ptr<io::BlockBackend> backend_;
  std::unique_ptr<io::IoChannel> ch_;
  std::vector<Req> reqs_;
  unsigned inflight_ = 0;
  bool record_ = false;
  std::vector<double> times_;
  uint64_t errors_ = 0;
  int first_error_ = 0;

 public:
  int first_error() const { return first_error_; }
};

struct Stats {
  double median = 0, p10 = 0, p90 = 0, min = 0, max = 0, total = 0;
};
Stats Summary(const std::vector<double>& v) {
  Stats s;
  if (v.empty()) return s;
  s.median = Median(v);
  s.p10 = Quantile(v, 0.1);
  s.p90 = Quantile(v, 0.9);
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.total += x;
  return s;
}

std::string StatsCell(const std::vector<double>& v, double scale, const char* fmt = "%.2f") {
  Stats s = Summary(v);
  char a[32], b[32], c[32], d[32];
  std::snprintf(a, sizeof(a), fmt, s.median * scale);
  std::snprintf(b, sizeof(b), fmt, s.p10 * scale);
  std::snprintf(c, sizeof(c), fmt, s.p90 * scale);
  std::snprintf(d, sizeof(d), fmt, s.max * scale);
  return std::string(a) + " [" + b + "-" + c + "] (max " + d + ")";
}

int RunOps(int argc, char** argv) {
  std::string dir = "/var/tmp";
  uint64_t clones = 1000;
  int snapshots = 9;
  unsigned qd = 32;
  uint64_t golden_bytes = 1ull << 30, busy_bytes = 128ull << 20;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a, Status::Invalid("needs a value"));
      return argv[++i];
    };
    if (a == "--dir") {
      dir = next();
    } else if (a == "--clones") {
      clones = CountArg(next());
    } else if (a == "--snapshots") {
      snapshots = std::max(1, std::atoi(next().c_str()));
    } else if (a == "--qd") {
      qd = static_cast<unsigned>(std::max(1, std::atoi(next().c_str())));
    } else {
      std::fprintf(stderr, "usage: snapshot_bench ops [--dir D] [--clones 1000] [--snapshots 9] [--qd 32]\n");
      return 2;
    }
  }
  // The clones are deleted before the snapshots are taken (the snapshots of
  // each volume stay until the end).
  if (std::max(clones + 1, 2 * static_cast<uint64_t>(snapshots) + 4) > kMaxVolumes) {
    Die("--clones/--snapshots", Status::Invalid("too many images for one pool"));
  }
  constexpr uint32_t kCluster = 64 * 1024;
  std::string base = dir + "/nestor-snapshot-bench." + std::to_string(getpid());
  // Every busy snapshot keeps what the volume held, and the writes after
  // it copy on write into new clusters: room for a full copy per snapshot.
  uint64_t pool_bytes = golden_bytes + busy_bytes * (2 * static_cast<uint64_t>(snapshots) + 4) + (512ull << 20);

  // ---- clone / create, delete ----
  std::fprintf(stderr, "snapshot_bench ops: pools in %s, 64 KiB clusters\n", dir.c_str());
  auto pa = MakePool(base + ".clones.pool", pool_bytes, kCluster);
  auto pb = MakePool(base + ".plain.pool", pool_bytes, kCluster);
  Check("create golden", pa->CreateVolume("golden", golden_bytes, false).status());
  {
    Driver d(pa.get(), "golden", 8);
    d.Fill(golden_bytes, 1u << 20);
    if (d.errors()) Die("fill golden", Status::IoError("write errors"));
  }
  Check("snapshot golden", pa->CreateSnapshot("golden", "golden-snap").status());
  std::vector<double> t_clone, t_create, t_del_clone, t_del_plain;
  uint64_t ck_a0 = pa->Info().checkpoints, ck_b0 = pb->Info().checkpoints;
  for (uint64_t i = 0; i < clones; ++i) {
    char n[32];
    std::snprintf(n, sizeof(n), "c%04" PRIu64, i);
    double t0 = Now();
    Check("clone", pa->CloneVolume("golden-snap", n).status());
    double t1 = Now();
    Check("create", pb->CreateVolume(n, golden_bytes, false).status());
    double t2 = Now();
    t_clone.push_back(t1 - t0);
    t_create.push_back(t2 - t1);
  }
  uint64_t ck_a1 = pa->Info().checkpoints, ck_b1 = pb->Info().checkpoints;
  std::fprintf(stderr, "  %" PRIu64 " clones: median %.3f ms; plain creates: median %.3f ms\n", clones,
               Median(t_clone) * 1e3, Median(t_create) * 1e3);
  // List with the space fields (walks every map): how long for K clones.
  double t0 = Now();
  auto listed = pa->ListVolumes(true);
  double t_list = Now() - t0;
  for (uint64_t i = 0; i < clones; ++i) {
    uint64_t k = clones - 1 - i;  // newest first
    char n[32];
    std::snprintf(n, sizeof(n), "c%04" PRIu64, k);
    double a0 = Now();
    Check("delete clone", pa->DeleteVolume(n));
    double a1 = Now();
    Check("delete volume", pb->DeleteVolume(n));
    double a2 = Now();
    t_del_clone.push_back(a1 - a0);
    t_del_plain.push_back(a2 - a1);
  }
  std::fprintf(stderr, "  deletes: clone median %.3f ms, plain median %.3f ms\n", Median(t_del_clone) * 1e3,
               Median(t_del_plain) * 1e3);
  pb.reset();

  // ---- snapshot of an idle volume and of a busy one ----
  Check("create idle", pa->CreateVolume("idle", busy_bytes, false).status());
  Check("create busy", pa->CreateVolume("busy", busy_bytes, false).status());
  for (const char* v : {"idle", "busy"}) {
    Driver d(pa.get(), v, 8);
    d.Fill(busy_bytes, 1u << 20);
    if (d.errors()) Die(std::string("fill ") + v, Status::IoError("write errors"));
  }
  std::vector<double> t_idle, t_busy, pause, gap_p99, iops_before, during;
  for (int s = 0; s < snapshots; ++s) {
    for (int j = 0; j < 2; ++j) {
      bool busy = ((s + j) % 2) == 1;  // alternate which goes first
      char n[32];
      std::snprintf(n, sizeof(n), "%s-s%02d", busy ? "busy" : "idle", s);
      if (!busy) {
        double a0 = Now();
        Check("snapshot idle", pa->CreateSnapshot("idle", n).status());
        t_idle.push_back(Now() - a0);
        continue;
      }
      std::atomic<bool> stop{false}, started{false};
      std::vector<double> ts;
      uint64_t errors = 0;
      // The writer's ring and channel belong to its thread, like a reactor's.
      std::thread writer([&] {
        Driver d(pa.get(), "busy", qd);
        started = true;
        d.RandomWrites(busy_bytes, &stop);
        ts = d.times();
        errors = d.errors();
        if (errors) std::fprintf(stderr, "  busy writes: %" PRIu64 " failed, first with %d\n", errors, d.first_error());
      });
      while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
      double a0 = Now();
      Check("snapshot busy", pa->CreateSnapshot("busy", n).status());
      double a1 = Now();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      stop = true;
      writer.join();
      if (errors) Die("busy writes", Status::IoError("write errors"));
      // The longest gap between completions that overlaps the call, and the
      // usual gaps in the 300 ms before it.
      double longest = 0;
      std::vector<double> gaps_before;
      uint64_t before = 0;
      for (size_t k = 1; k < ts.size(); ++k) {
        double g = ts[k] - ts[k - 1];
        if (ts[k] >= a0 && ts[k - 1] <= a1) longest = std::max(longest, g);
        if (ts[k] < a0 && ts[k] > a0 - 0.3) {
          gaps_before.push_back(g);
          ++before;
        }
      }
      t_busy.push_back(a1 - a0);
      pause.push_back(longest);
      gap_p99.push_back(Quantile(gaps_before, 0.99));
      iops_before.push_back(static_cast<double>(before) / 0.3);
      during.push_back(
          static_cast<double>(std::count_if(ts.begin(), ts.end(), [&](double t) { return t >= a0 && t <= a1; })));
      std::fprintf(stderr, "  snapshot %s: %.3f ms, longest write gap %.3f ms (p99 gap before %.3f ms, %.0f IOPS)\n", n,
                   (a1 - a0) * 1e3, longest * 1e3, gap_p99.back() * 1e3, iops_before.back());
    }
  }
  pa.reset();
  bench::RemoveCleanups();

  std::printf("{\"bench\": \"clone-create\", \"count\": %" PRIu64
              ", \"clone_s\": %s, \"create_plain_s\": %s, "
              "\"checkpoints_clones_pool\": %" PRIu64 ", \"checkpoints_plain_pool\": %" PRIu64
              ", \"list_with_space_s\": %.4f, \"listed\": %zu}\n",
              clones, JsonList(t_clone, "%.6f").c_str(), JsonList(t_create, "%.6f").c_str(), ck_a1 - ck_a0,
              ck_b1 - ck_b0, t_list, listed.size());
  std::printf("{\"bench\": \"delete\", \"count\": %" PRIu64 ", \"delete_clone_s\": %s, \"delete_plain_s\": %s}\n",
              clones, JsonList(t_del_clone, "%.6f").c_str(), JsonList(t_del_plain, "%.6f").c_str());
  std::printf(
      "{\"bench\": \"snapshot\", \"qd\": %u, \"idle_s\": %s, \"busy_s\": %s, \"busy_write_pause_s\": %s, "
      "\"busy_gap_p99_before_s\": %s, \"busy_iops_before\": %s, \"busy_writes_completed_during\": %s}\n",
      qd, JsonList(t_idle, "%.6f").c_str(), JsonList(t_busy, "%.6f").c_str(), JsonList(pause, "%.6f").c_str(),
      JsonList(gap_p99, "%.6f").c_str(), JsonList(iops_before, "%.0f").c_str(), JsonList(during, "%.0f").c_str());
  std::vector<double> ratio;
  for (size_t i = 0; i < t_clone.size(); ++i) ratio.push_back(t_clone[i] / t_create[i]);
  size_t h = std::min<size_t>(100, t_clone.size());
  std::vector<double> first(t_clone.begin(), t_clone.begin() + static_cast<long>(h));
  std::vector<double> last(t_clone.end() - static_cast<long>(h), t_clone.end());
  std::printf("\nms per operation: median [p10-p90] (max); pools on %s (64 KiB clusters), each call commits\n\n",
              dir.c_str());
  std::printf("| operation | count | ms | total s | baseline | baseline ms | ratio (median of pairs) |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| clone of one snapshot | %" PRIu64 " | %s | %.2f | create plain volume | %s | %.2f |\n", clones,
              StatsCell(t_clone, 1e3, "%.3f").c_str(), Summary(t_clone).total, StatsCell(t_create, 1e3, "%.3f").c_str(),
              Median(ratio));
  ratio.clear();
  for (size_t i = 0; i < t_del_clone.size(); ++i) ratio.push_back(t_del_clone[i] / t_del_plain[i]);
  std::printf("| delete clone (never written) | %" PRIu64 " | %s | %.2f | delete plain volume | %s | %.2f |\n", clones,
              StatsCell(t_del_clone, 1e3, "%.3f").c_str(), Summary(t_del_clone).total,
              StatsCell(t_del_plain, 1e3, "%.3f").c_str(), Median(ratio));
  ratio.clear();
  for (size_t i = 0; i < t_busy.size(); ++i) ratio.push_back(t_busy[i] / t_idle[i]);
  std::printf("| snapshot, busy volume (QD%u random 4 KiB writes) | %zu | %s | | snapshot, idle volume | %s | %.2f |\n",
              qd, t_busy.size(), StatsCell(t_busy, 1e3, "%.3f").c_str(), StatsCell(t_idle, 1e3, "%.3f").c_str(),
              Median(ratio));
  std::printf(
      "\nclone ms, first %zu vs last %zu: %.3f vs %.3f (median); checkpoints written during the clones: %" PRIu64
      " (plain pool: %" PRIu64 "); ListVolumes(with space) of %zu images: %.1f ms\n",
      h, h, Median(first) * 1e3, Median(last) * 1e3, ck_a1 - ck_a0, ck_b1 - ck_b0, listed.size(), t_list * 1e3);
  std::printf(
      "busy snapshots: longest gap between write completions during the call %s ms; p99 gap before it %s ms; "
      "%.0f IOPS before it; %.0f writes completed during the call (medians over %zu)\n",
      StatsCell(pause, 1e3, "%.3f").c_str(), StatsCell(gap_p99, 1e3, "%.3f").c_str(), Median(iops_before),
      Median(during), pause.size());
  return 0;
}

// ======================================================================
// admin
// ======================================================================

int RunAdmin(int argc, char** argv) {
  std::string path;
  uint64_t format_bytes = 0;
  uint32_t cluster = 64 * 1024;
  std::vector<std::string> ops;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a, Status::Invalid("needs a value"));
      return argv[++i];
    };
    if (a == "--pool") {
      path = next();
    } else if (a == "--format") {
      auto s = ParseSize(next());
      if (!s.ok()) Die("--format", s.status());
      format_bytes = *s;
    } else if (a == "--cluster-size") {
      auto s = ParseSize(next());
      if (!s.ok()) Die("--cluster-size", s.status());
      cluster = static_cast<uint32_t>(*s);
    } else {
      ops.push_back(a);
    }
  }
  if (path.empty()) {
    std::fprintf(
        stderr,
        "usage: snapshot_bench admin --pool PATH [--format SIZE [--cluster-size C]] "
        "create:NAME:SIZE|snapshot:SRC:NAME|clone:SNAP:NAME|delete:NAME|inflate:NAME|export-ro:NAME|list...\n");
    return 2;
  }
  if (format_bytes) {
    auto dev = OpenFilePoolDevice(path, true, format_bytes);
    if (!dev.ok()) Die("create " + path, dev.status());
    Check("Pool::Format", Pool::Format(dev->get(), cluster, true));
  }
  auto dev = OpenFilePoolDevice(path, false, 0);
  if (!dev.ok()) Die("open " + path, dev.status());
  auto pool = Pool::Open(std::move(dev.value()));
  if (!pool.ok()) Die("Pool::Open", pool.status());
  for (const std::string& op : ops) {
    std::vector<std::string> f;
    for (size_t p = 0; p <= op.size();) {
      size_t q = op.find(':', p);
      if (q == std::string::npos) q = op.size();
      f.push_back(op.substr(p, q - p));
      p = q + 1;
    }
    if (f[0] == "create" && f.size() == 3) {
      auto s = ParseSize(f[2]);
      if (!s.ok()) Die(op, s.status());
      Check(op, (*pool)->CreateVolume(f[1], *s, false).status());
    } else if (f[0] == "snapshot" && f.size() == 3) {
      Check(op, (*pool)->CreateSnapshot(f[1], f[2]).status());
    } else if (f[0] == "clone" && f.size() == 3) {
      Check(op, (*pool)->CloneVolume(f[1], f[2]).status());
    } else if (f[0] == "delete" && f.size() == 2) {
      Check(op, (*pool)->DeleteVolume(f[1]));
    } else if (f[0] == "export-ro" && f.size() == 2) {
      // nestord --export-all refuses to start on a snapshot not stored as
      // a read-only export: store it so.
      ExportSettings es;
      es.read_only = true;
      Check(op, (*pool)->SetExport(f[1], es));
    } else if (f[0] == "inflate" && f.size() == 2) {
      Check(op, (*pool)->InflateVolume(f[1]));
    } else if (f[0] == "list") {
      for (const VolumeInfo& v : (*pool)->ListVolumes(true)) {
        std::printf("{\"name\": \"%s\", \"snapshot\": %s, \"parent\": \"%s\", \"size\": %" PRIu64
                    ", \"allocated_bytes\": %" PRIu64 ", \"extents\": %" PRIu64 ", \"shared_bytes\": %" PRIu64 "}\n",
                    v.name.c_str(), v.snapshot ? "true" : "false", v.parent.c_str(), v.size, v.allocated_bytes,
                    v.extents, v.shared_bytes);
      }
    } else {
      Die("unknown operation " + op, Status::Invalid("see usage"));
    }
  }
  return 0;
}

int Main(int argc, char** argv) {
  SetLogLevel(LogLevel::kWarn);
  bench::SetProgram("snapshot_bench");
  bench::RemoveCleanupsOnStopSignals();
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "open") return RunOpen(argc, argv);
  if (mode == "ops") return RunOps(argc, argv);
  if (mode == "admin") return RunAdmin(argc, argv);
  std::fprintf(stderr, "usage: snapshot_bench open|ops|admin [options] (see bench/snapshot_bench.cc)\n");
  return 2;
}

}  // namespace
}  // namespace nestor::volume

int main(int argc, char** argv) { return nestor::volume::Main(argc, argv); }
