// Randomized command sequences at the volume manager's limits (issue #10):
// create, delete and resize with extreme sizes (0, 1, 511, 512, cluster-1,
// 2^62 +- 4 KiB, 2^63, UINT64_MAX - 4095, UINT64_MAX, random) and names
// (length 0, 1, 63, 64, 255, odd bytes), plus small writes, reads,
// discards and write-zeroes through a volume's backend, also at the very
// end of the largest volumes and past it. After every step the pool is
// committed, closed and opened again, and must pass the pool check
// (Pool::Check, what `nestor pool check` runs).
//
// The model judges names and sizes by its own statement of the documented
// limits (docs/volumes.md, "Limits"), not by calling the validators. Per
// volume it keeps size, reservation, the set of mapped clusters and the
// fill byte of each written 512-byte sector. After each reopen the pool
// must list exactly the model's volumes with their sizes, allocated and
// reserved bytes, report the free clusters the model implies, and read
// back a sample of the written sectors, the first and the last sector.
//
// Bounded: NESTOR_SEQUENCE_STEPS steps (default 400) or 10 s, whichever
// comes first. The seed is printed; NESTOR_SEED=<seed> replays a run.
// NESTOR_LOG=<level> shows the pool's log lines (silenced by default).
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/log.h"
#include "volume/pool.h"
#include "volume/testing/sync_io.h"
#include "volume/testing/volatile_cache_device.h"

namespace nestor::volume {
namespace {

using testing::SyncIo;
using testing::VolatileCacheDevice;

// The documented limits, stated independently of src/volume/limits.h.
constexpr uint64_t kMaxSize = uint64_t{1} << 62;  // 4 EiB
constexpr size_t kMaxName = 63;
constexpr uint64_t kSector = 512;
constexpr uint64_t kDeviceBytes = 16 << 20;

bool NameIsValid(const std::string& n) {
  if (n.empty() || n.size() > kMaxName || n[0] == '.' || n[0] == '-') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

bool SizeIsValid(uint64_t s) { return s >= 4096 && s <= kMaxSize && s % 4096 == 0; }

// A name as the trace shows it: escaped, long ones cut.
std::string Show(const std::string& n) {
  std::string out;
  for (char c : n.substr(0, 40)) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      char b[8];
      std::snprintf(b, sizeof(b), "\\x%02x", u);
      out += b;
    }
  }
  return n.size() > 40 ? out + "...(" + std::to_string(n.size()) + ")" : out;
}

uint64_t EnvU64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : dflt;
}

struct ModelVolume {
  uint64_t size = 0;
  uint64_t reserved = 0;                // clusters (preallocated volumes)
  std::set<uint64_t> mapped;            // virtual clusters holding data
  std::map<uint64_t, uint8_t> sectors;  // byte offset of a written sector -> its fill byte
};

struct Counts {
  uint64_t steps = 0, ok = 0, einval = 0, enospc = 0, other_errors = 0;
  uint64_t huge_volume_writes = 0;  // writes into the last cluster of a volume >= 1 PiB
  uint64_t forced_shrinks = 0;
};

class Sequence {
 public:
  explicit Sequence(uint64_t seed) : rng_(seed), seed_(seed) {}

  void Run(uint64_t max_steps, std::chrono::steady_clock::time_point deadline);
  const Counts& counts() const { return counts_; }

 private:
  void Format();
  void Step();
  void Create();
  void Delete();
  void Resize();
  void Write();
  void Zero();
  void Read();
  void Reopen();
  void Verify();
  void CheckSector(io::IoChannel* ch, const std::string& name, uint64_t off, uint8_t want);

  std::string PickName();
  std::string PickExisting();
  uint64_t PickSize(const ModelVolume* cur);
  uint64_t Sectors(uint64_t lo, uint64_t hi) { return lo + rng_() % (hi - lo + 1); }
  bool Chance(unsigned percent) { return rng_() % 100 < percent; }
  std::unique_ptr<io::IoChannel> Open(const std::string& name, std::shared_ptr<io::BlockBackend>* keep);
  void Expect(const std::string& what, int got, int want);
  void Note(const std::string& what);

  // Clusters nobody may take: the unused reservations of all volumes but `except`.
  uint64_t ReservedUnused(const std::string& except) const;
  uint64_t Free() const;
  uint64_t ClustersOf(uint64_t bytes) const { return bytes / cs_ + (bytes % cs_ != 0); }

  std::mt19937_64 rng_;
  uint64_t seed_;
  uint32_t cs_ = 0;
  uint64_t data_clusters_ = 0;
  VolatileCacheDevice* dev_ = nullptr;
  std::unique_ptr<Pool> pool_;
  std::map<std::string, ModelVolume> model_;
  std::deque<std::string> trace_;  // the last steps, printed on failure
  Counts counts_;
};

void Sequence::Note(const std::string& what) {
  trace_.push_back(what);
  if (trace_.size() > 12) trace_.pop_front();
}

void Sequence::Expect(const std::string& what, int got, int want) {
  Note(what + " -> " + std::to_string(got));
  if (got == 0 || got > 0)
    ++counts_.ok;
  else if (got == -EINVAL)
    ++counts_.einval;
  else if (got == -ENOSPC)
    ++counts_.enospc;
  else
    ++counts_.other_errors;
  EXPECT_EQ(got, want) << what;
}

void Sequence::Format() {
  cs_ = Chance(50) ? 4096 : 65536;
  auto dev = std::make_unique<VolatileCacheDevice>(kDeviceBytes, seed_);
  ASSERT_TRUE(Pool::Format(dev.get(), cs_, false).ok());
  dev_ = dev.get();
  auto pool = Pool::Open(std::move(dev));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  pool_ = std::move(pool.value());
  data_clusters_ = pool_->superblock().data_clusters;
  Note("format: cluster " + std::to_string(cs_) + ", " + std::to_string(data_clusters_) + " data clusters");
}

void Sequence::Run(uint64_t max_steps, std::chrono::steady_clock::time_point deadline) {
  Format();
  if (::testing::Test::HasFailure()) return;
  while (counts_.steps < max_steps && std::chrono::steady_clock::now() < deadline) {
    ++counts_.steps;
    Step();
    if (!::testing::Test::HasFailure()) Reopen();
    if (!::testing::Test::HasFailure()) Verify();
    if (::testing::Test::HasFailure()) {
      std::string t;
      for (const auto& s : trace_) t += "  " + s + "\n";
      ADD_FAILURE() << "seed " << seed_ << " (replay: NESTOR_SEED=" << seed_ << "), step " << counts_.steps
                    << ", cluster size " << cs_ << "; last steps:\n"
                    << t;
      return;
    }
  }
}

void Sequence::Step() {
  unsigned r = rng_() % 100;
  if (r < 25) return Create();
  if (r < 33) return Delete();
  if (r < 50) return Resize();
  if (r < 75) return Write();
  if (r < 87) return Zero();
  return Read();
}

std::string Sequence::PickName() {
  static const char* kOdd[] = {"a/b", "a b", "..",   ".hidden", "-x",    "a\nb", "\xc3\xa9t\xc3\xa9",
                               "a:b", "a*",  "../x", "x\x7f",   "tab\t", "_ok",  "A.b-C_9"};
  switch (rng_() % 14) {
    case 0: return "";
    case 1: return std::string(1, "aZ9._-/ "[rng_() % 8]);
    case 2: return std::string(62, 'n') + static_cast<char>('0' + rng_() % 3);  // 63: the longest
    case 3: return std::string(64, 'n');
    case 4: return std::string(255, 'x');
    case 5: return std::string("a\0b", 3);
    case 6:
    case 7: return kOdd[rng_() % (sizeof(kOdd) / sizeof(kOdd[0]))];
    default: return "v" + std::to_string(rng_() % 6);
  }
}

std::string Sequence::PickExisting() {
  if (model_.empty() || Chance(10)) return PickName();
  auto it = model_.begin();
  std::advance(it, static_cast<long>(rng_() % model_.size()));
  return it->first;
}

uint64_t Sequence::PickSize(const ModelVolume* cur) {
  switch (rng_() % 18) {
    case 0: return 0;
    case 1: return 1;
    case 2: return 511;
    case 3: return 512;
    case 4: return cs_ - 1;
    case 5: return cs_;
    case 6: return UINT64_MAX;
    case 7: return UINT64_MAX - 4095;
    case 8: return uint64_t{1} << 63;
    case 9: return kMaxSize;
    case 10: return kMaxSize + 4096;
    case 11: return kMaxSize - 4096;
    case 12: return uint64_t{1} << 50;  // 1 PiB: more clusters than a u32 count
    case 13: return rng_();
    case 14:
      if (cur != nullptr) return cur->size > cs_ ? cur->size - cs_ : cur->size + cs_;
      [[fallthrough]];
    case 15:
      if (cur != nullptr) return cur->size / 2 / 4096 * 4096;
      [[fallthrough]];
    default: return 4096 * Sectors(1, 1024);  // up to 4 MiB
  }
}

uint64_t Sequence::ReservedUnused(const std::string& except) const {
  uint64_t sum = 0;
  for (const auto& [name, v] : model_) {
    if (name != except && v.reserved > v.mapped.size()) sum += v.reserved - v.mapped.size();
  }
  return sum;
}

uint64_t Sequence::Free() const {
  uint64_t used = 0;
  for (const auto& [name, v] : model_) used += v.mapped.size();
  return data_clusters_ - used;
}

void Sequence::Create() {
  std::string name = PickName();
  uint64_t size = PickSize(nullptr);
  bool prealloc = Chance(20);
  int want = 0;
  uint64_t need = ClustersOf(size);
  if (!NameIsValid(name) || !SizeIsValid(size))
    want = -EINVAL;
  else if (model_.count(name) != 0)
    want = -EEXIST;
  else if (prealloc && Free() < ReservedUnused("") + need)
    want = -ENOSPC;
  auto r = pool_->CreateVolume(name, size, prealloc);
  int got = r.ok() ? 0 : -r.status().err();
  Expect("create '" + Show(name) + "' size " + std::to_string(size) + (prealloc ? " preallocated" : ""), got, want);
  if (r.ok() && want == 0) model_[name] = ModelVolume{size, prealloc ? need : 0, {}, {}};
  if (!r.ok() && want == -EINVAL) {
    // The message names what is wrong: the name, or the size and its limit.
    const std::string& m = r.status().message();
    bool names_it = m.find("name") != std::string::npos || m.find(std::to_string(size)) != std::string::npos;
    EXPECT_TRUE(names_it) << m;
  }
}

void Sequence::Delete() {
  std::string name = PickExisting();
  int want = model_.count(name) != 0 ? 0 : -ENOENT;
  Expect("delete '" + Show(name) + "'", -pool_->DeleteVolume(name).err(), want);
  if (want == 0) model_.erase(name);
}

void Sequence::Resize() {
  std::string name = PickExisting();
  auto it = model_.find(name);
  ModelVolume* v = it != model_.end() ? &it->second : nullptr;
  uint64_t size = PickSize(v);
  bool force = Chance(50);
  int want = 0;
  uint64_t keep = ClustersOf(size);
  if (!SizeIsValid(size))
    want = -EINVAL;
  else if (v == nullptr)
    want = -ENOENT;
  else if (size < v->size && !v->mapped.empty() && *v->mapped.rbegin() >= size / cs_ && !force)
    want = -ENOTEMPTY;
  else if (v->reserved > 0 && keep > v->reserved && Free() < ReservedUnused("") + (keep - v->reserved)) {
    want = -ENOSPC;
  }
  Expect("resize '" + Show(name) + "' to " + std::to_string(size) + (force ? " force" : ""),
         -pool_->ResizeVolume(name, size, force).err(), want);
  if (want != 0) return;
  if (size < v->size) {
    counts_.forced_shrinks += !v->mapped.empty() && *v->mapped.rbegin() >= keep;
    v->mapped.erase(v->mapped.lower_bound(keep), v->mapped.end());
    v->sectors.erase(v->sectors.lower_bound(size), v->sectors.end());
  }
  if (v->reserved > 0) v->reserved = keep;
  v->size = size;
}

std::unique_ptr<io::IoChannel> Sequence::Open(const std::string& name, std::shared_ptr<io::BlockBackend>* keep) {
  auto b = pool_->OpenVolume(name);
  EXPECT_TRUE(b.ok()) << name << ": " << b.status().ToString();
  if (!b.ok()) return nullptr;
  *keep = b.value();
  EXPECT_EQ((*keep)->size_bytes(), model_[name].size);
  auto ch = (*keep)->OpenChannel(nullptr);
  EXPECT_TRUE(ch.ok());
  return ch.ok() ? std::move(ch.value()) : nullptr;
}

void Sequence::Write() {
  if (model_.empty()) return Create();
  std::string name = PickExisting();
  auto it = model_.find(name);
  if (it == model_.end()) return;
  ModelVolume& v = it->second;
  std::shared_ptr<io::BlockBackend> keep;
  auto ch = Open(name, &keep);
  if (ch == nullptr) return;
  // Sector-aligned, inside one cluster (a write allocates at most one).
  uint64_t sectors = v.size / kSector;
  uint64_t off = 0;
  switch (rng_() % 4) {
    case 0: off = 0; break;
    case 1: off = (sectors - 1 - rng_() % std::min<uint64_t>(sectors, 64)) * kSector; break;  // the end
    default: off = rng_() % sectors * kSector; break;
  }
  uint64_t within = off % cs_;
  uint64_t len = std::min({Sectors(1, 16) * kSector, cs_ - within, v.size - off});
  bool past_end = Chance(8);
  if (past_end) off = Chance(50) ? v.size - kSector * (Chance(50) ? 0 : 1) : UINT64_MAX - kSector + 1;
  if (past_end && off + len <= v.size && off + len >= off) len += kSector;  // make it cross the end
  uint8_t fill = static_cast<uint8_t>(1 + rng_() % 255);
  std::vector<uint8_t> buf(len, fill);
  uint64_t vcl = off / cs_;
  int want = static_cast<int>(len);
  if (past_end)
    want = -EINVAL;
  else if (v.mapped.count(vcl) == 0 && Free() <= ReservedUnused(name))
    want = -ENOSPC;
  Expect("write '" + Show(name) + "' " + std::to_string(len) + " at " + std::to_string(off),
         SyncIo(ch.get(), io::IoOp::kWrite, off, buf.data(), len), want);
  if (want < 0) return;
  v.mapped.insert(vcl);
  for (uint64_t s = off; s < off + len; s += kSector) v.sectors[s] = fill;
  if (v.size >= (uint64_t{1} << 50) && vcl + 1 == ClustersOf(v.size)) ++counts_.huge_volume_writes;
}

void Sequence::Zero() {
  if (model_.empty()) return Create();
  std::string name = PickExisting();
  auto it = model_.find(name);
  if (it == model_.end()) return;
  ModelVolume& v = it->second;
  std::shared_ptr<io::BlockBackend> keep;
  auto ch = Open(name, &keep);
  if (ch == nullptr) return;
  uint64_t off = 0, len = v.size;  // the whole volume, or a few clusters
  if (Chance(70)) {
    off = rng_() % (v.size / kSector) * kSector;
    if (!v.sectors.empty() && Chance(50))
      off = v.sectors.lower_bound(off) != v.sectors.end() ? v.sectors.lower_bound(off)->first / cs_ * cs_ : off;
    len = std::min(v.size - off, Sectors(1, 3 * cs_ / kSector) * kSector);
  }
  unsigned kind = rng_() % 3;  // discard, write-zeroes with unmap, plain write-zeroes
  io::IoOp op = kind == 0 ? io::IoOp::kDiscard : io::IoOp::kWriteZeroes;
  bool past_end = Chance(5);
  if (past_end) off = v.size - len;  // one sector more crosses the end
  Expect(std::string(kind == 0   ? "discard"
                     : kind == 1 ? "write-zeroes+unmap"
                                 : "write-zeroes") +
             " '" + Show(name) + "' " + std::to_string(len + past_end * kSector) + " at " + std::to_string(off),
         SyncIo(ch.get(), op, off, nullptr, len + past_end * kSector, kind == 1), past_end ? -EINVAL : 0);
  if (past_end) return;
  v.sectors.erase(v.sectors.lower_bound(off), v.sectors.lower_bound(off + len));
  if (kind == 2) return;
  // Whole clusters inside the range are unmapped; partial ones zeroed in place.
  uint64_t first = ClustersOf(off), end = (off + len) / cs_;
  if (first < end) v.mapped.erase(v.mapped.lower_bound(first), v.mapped.lower_bound(end));
}

void Sequence::Read() {
  if (model_.empty()) return Create();
  std::string name = PickExisting();
  auto it = model_.find(name);
  if (it == model_.end()) return;
  const ModelVolume& v = it->second;
  std::shared_ptr<io::BlockBackend> keep;
  auto ch = Open(name, &keep);
  if (ch == nullptr) return;
  uint64_t off = Chance(50) && !v.sectors.empty() ? v.sectors.begin()->first : rng_() % (v.size / kSector) * kSector;
  uint64_t len = std::min<uint64_t>(v.size - off, Sectors(1, 256) * kSector);
  bool past_end = Chance(8);
  if (past_end) off = v.size - len;  // one sector more crosses the end
  std::vector<uint8_t> buf(len + kSector, 0xEE);
  int got = SyncIo(ch.get(), io::IoOp::kRead, off, buf.data(), len + past_end * kSector);
  Expect("read '" + Show(name) + "' " + std::to_string(len + past_end * kSector) + " at " + std::to_string(off), got,
         past_end ? -EINVAL : static_cast<int>(len));
  if (got < 0) return;
  for (uint64_t s = 0; s < len; s += kSector) {
    auto f = v.sectors.find(off + s);
    uint8_t want = f == v.sectors.end() ? 0 : f->second;
    for (uint64_t i = 0; i < kSector; ++i) {
      if (buf[s + i] != want) {
        ADD_FAILURE() << "read '" << name << "' at " << off + s + i << ": " << int{buf[s + i]} << ", want "
                      << int{want};
        return;
      }
    }
  }
}

void Sequence::Reopen() {
  ASSERT_TRUE(pool_->Commit().ok());
  std::vector<uint8_t> image = dev_->durable_image();
  pool_.reset();
  auto dev = VolatileCacheDevice::FromImage(std::move(image), seed_ + counts_.steps);
  dev_ = dev.get();
  auto pool = Pool::Open(std::move(dev));
  ASSERT_TRUE(pool.ok()) << "reopen: " << pool.status().ToString();
  pool_ = std::move(pool.value());
  CheckReport rep = pool_->Check();
  for (const auto& p : rep.problems) ADD_FAILURE() << "pool check: " << p;
}

void Sequence::CheckSector(io::IoChannel* ch, const std::string& name, uint64_t off, uint8_t want) {
  uint8_t buf[kSector];
  std::fill(buf, buf + kSector, 0xEE);
  ASSERT_EQ(SyncIo(ch, io::IoOp::kRead, off, buf, kSector), static_cast<int>(kSector)) << name << " at " << off;
  for (uint8_t b : buf) ASSERT_EQ(b, want) << "volume '" << name << "' sector at " << off;
}

void Sequence::Verify() {
  auto vols = pool_->ListVolumes();
  ASSERT_EQ(vols.size(), model_.size());
  for (const VolumeInfo& got : vols) {
    auto it = model_.find(got.name);
    ASSERT_NE(it, model_.end()) << "unexpected volume '" << got.name << "'";
    const ModelVolume& v = it->second;
    EXPECT_EQ(got.size, v.size) << got.name;
    EXPECT_EQ(got.allocated_bytes, v.mapped.size() * cs_) << got.name;
    EXPECT_EQ(got.reserved_bytes, v.reserved * cs_) << got.name;
    std::shared_ptr<io::BlockBackend> keep;
    auto ch = Open(got.name, &keep);
    ASSERT_NE(ch, nullptr);
    auto at = [&](uint64_t off) {
      auto f = v.sectors.find(off);
      return f == v.sectors.end() ? uint8_t{0} : f->second;
    };
    CheckSector(ch.get(), got.name, 0, at(0));
    CheckSector(ch.get(), got.name, v.size - kSector, at(v.size - kSector));
    int sampled = 0;
    for (auto s = v.sectors.begin(); s != v.sectors.end() && sampled < 16; ++s, ++sampled) {
      CheckSector(ch.get(), got.name, s->first, s->second);
    }
  }
  EXPECT_EQ(pool_->Info().free_clusters, Free());
}

TEST(VolumeSequence, ExtremeSizesAndNamesKeepThePoolOpenAndClean) {
  const LogLevel level = GetLogLevel();
  if (std::getenv("NESTOR_LOG") == nullptr) SetLogLevel(static_cast<LogLevel>(static_cast<int>(LogLevel::kError) + 1));
  uint64_t seed = EnvU64("NESTOR_SEED", 0);
  if (std::getenv("NESTOR_SEED") == nullptr) {
    seed = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
           (static_cast<uint64_t>(getpid()) << 40);
    seed &= (uint64_t{1} << 48) - 1;
  }
  const uint64_t steps = EnvU64("NESTOR_SEQUENCE_STEPS", 400);
  std::printf("volume sequence test: seed=%llu (replay: NESTOR_SEED=%llu), up to %llu steps or 10 s\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(steps));
  std::fflush(stdout);
  auto start = std::chrono::steady_clock::now();
  Sequence s(seed);
  s.Run(steps, start + std::chrono::seconds(10));
  const Counts& c = s.counts();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "volume sequence test: %llu steps (%llu ok, %llu EINVAL, %llu ENOSPC, %llu other errors), "
      "%llu writes at the end of a volume >= 1 PiB, %llu forced shrinks that dropped data, %.1f s\n",
      (unsigned long long)c.steps, (unsigned long long)c.ok, (unsigned long long)c.einval, (unsigned long long)c.enospc,
      (unsigned long long)c.other_errors, (unsigned long long)c.huge_volume_writes,
      (unsigned long long)c.forced_shrinks, secs);
  std::fflush(stdout);
  SetLogLevel(level);
  if (HasFailure() || c.steps < 200) return;  // short runs (replays) need not reach every path
  EXPECT_GT(c.einval, 0u) << "no invalid name or size was ever tried";
  EXPECT_GT(c.ok, c.steps / 4) << "too few steps succeeded to exercise the pool";
}

}  // namespace
}  // namespace nestor::volume
