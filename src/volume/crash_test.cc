// Randomized crash consistency of pool volumes (the spec: random
// writes, discards, write-zeroes and flushes on several volumes, a crash at
// a random point, reopen; everything acknowledged before the last completed
// FLUSH intact, nothing reads foreign or stale bytes, `pool check` clean).
//
// Each iteration formats a small pool (5-12 MiB, 4/8/64 KiB clusters) on a
// VolatileCacheDevice (a disk with a volatile write cache) and creates 2-4
// volumes that together are 1.3-3x the pool, so writes hit ENOSPC. Then
// generations of random ops: writes (partial, whole-cluster, spanning),
// discards, write-zeroes with and without unmap, reads checked against the
// model, FLUSHes, Pool::Commit()s, clean reopens and rare control ops
// (grow, shrink + grow, delete + create, export settings). Each generation
// ends in a power loss: Crash() keeps, drops or tears (at 512-byte
// sectors) each write still in the cache; the image must pass `nestor pool
// check` (read-only check-mode open + Check()), reopen, pass Check(), and
// every sector of every volume is read back and checked against the model.
// The next generation continues on the reopened pool, so later crashes
// exercise replay after earlier ones. Long-lived iterations (marathons of
// small commits, "ring" runs of multi-block commits) take the log through
// checkpoints and wraps. A minority of generations inject faults: the
// device's Sync or writes fail, or (SharedDevice) the Sync right after a
// log entry, a checkpoint or an entry at the ring's start fails, leaving
// that write in the cache to be kept, dropped or torn.
//
// Every sector written carries a header (volume tag, sector, write
// generation) and a body derived from it, so a read can tell zeros, the
// expected value, a stale value of the same sector, another sector's or
// another volume's bytes, and garbage apart. The model keeps per sector:
//   cur      the value a read sees now (exact: a request that failed, e.g.
//            ENOSPC after some of its clusters were written, is resolved by
//            reading the range back: each sector is its old or new value);
//   durable  the value as of the last successful commit (FLUSH, commit,
//            control operation, clean shutdown, or the state read back
//            after a crash);
//   recent   every value the sector took since then (written or zeroed,
//            acknowledged or part of a failed request that landed).
// After a crash a sector must hold `durable` or one of `recent`; after a
// clean reopen exactly `cur`. Discard reads as zeros (partial clusters are
// zeroed in place, whole ones unmapped).
//
// Snapshots and clones (issue #12): at random points (quiet moments, like
// the control ops) a snapshot of a volume or clone (its channel open: the
// online path), a clone of a snapshot, inflate, decouple, the delete of an
// image without children, and operations that must be refused (a snapshot
// of a snapshot or a clone of a non-snapshot: EINVAL; deleting a snapshot
// with clones: EBUSY naming them; writes to a snapshot: EROFS; resizing a
// snapshot, shrinking a clone). Each image has its own model: a snapshot
// starts as a copy of its source's (every write completed before it) and
// never changes, a clone as a copy of its snapshot's. Sector headers name
// the image that wrote them; a generation is written by one image only,
// so a clone that reads another clone's write, or a deleted image's, fails.
// DISCARD on an image with a parent reads old-or-zeros per sector, and
// old where the parent shows data in the whole cluster (a no-op there).
// After every crash the image tree (snapshot flag, parent, children) must
// be exactly the model's: image operations commit before returning.
//
// Knobs: NESTOR_CRASH_ITERATIONS (default 600), NESTOR_CRASH_SEED (default
// time-based). Iteration i uses seed base+i, printed with every failure;
// NESTOR_CRASH_SEED=<seed> NESTOR_CRASH_ITERATIONS=1 replays it.
// NESTOR_LOG=<level> shows the pool's log lines (silenced by default: the
// injected faults make it log errors on purpose).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/log.h"
#include "volume/format.h"
#include "volume/pool.h"
#include "volume/testing/sync_io.h"
#include "volume/testing/volatile_cache_device.h"

namespace nestor::volume {
namespace {

using testing::CrashOptions;
using testing::SyncIo;
using testing::VolatileCacheDevice;

constexpr uint64_t kSector = 512;
constexpr uint64_t kSectorMagic = 0x5443455352415243ull;  // "CRASECT" + 'T'

uint64_t Mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A sector's content for (volume tag, sector number, write generation):
// the three in a header, then words derived from their hash.
uint64_t BodyWord(uint64_t h, size_t i) { return h ^ (i * 0x9e3779b97f4a7c15ull); }

void FillSector(uint8_t* out, uint64_t tag, uint64_t lba, uint64_t gen) {
  uint64_t w[kSector / 8];
  w[0] = kSectorMagic;
  w[1] = tag;
  w[2] = lba;
  w[3] = gen;
  uint64_t h = Mix(tag ^ Mix(lba ^ Mix(gen)));
  for (size_t i = 4; i < kSector / 8; ++i) w[i] = BodyWord(h, i);
  std::memcpy(out, w, kSector);
}

bool IsZero(const uint8_t* p, size_t n) {
  static const uint8_t kZeros[kSector] = {};
  for (; n >= kSector; p += kSector, n -= kSector) {
    if (std::memcmp(p, kZeros, kSector) != 0) return false;
  }
  return n == 0 || std::memcmp(p, kZeros, n) == 0;
}

// What a sector read back holds.
struct Decoded {
  enum Kind { kZeros, kValue, kForeign, kGarbage } kind = kGarbage;
  uint64_t gen = 0;           // kValue / kForeign
  uint64_t tag = 0, lba = 0;  // kForeign
};

// gen_tag[gen]: the tag of the image that wrote generation gen (images
// share sectors: a snapshot and its clones read what their source wrote,
// under the source's tag). A sector is a value if it is the sector asked
// for and its generation was written by the image its header names.
Decoded Decode(const uint8_t* p, uint64_t lba, const std::vector<uint64_t>& gen_tag) {
  Decoded d;
  if (IsZero(p, kSector)) {
    d.kind = Decoded::kZeros;
    return d;
  }
  uint64_t w[kSector / 8];
  std::memcpy(w, p, kSector);
  if (w[0] != kSectorMagic) return d;
  uint64_t h = Mix(w[1] ^ Mix(w[2] ^ Mix(w[3])));
  for (size_t i = 4; i < kSector / 8; ++i) {
    if (w[i] != BodyWord(h, i)) return d;  // a valid header, a wrong body
  }
  d.gen = w[3];
  d.tag = w[1];
  d.lba = w[2];
  if (w[2] != lba || d.gen == 0 || d.gen >= gen_tag.size() || gen_tag[d.gen] != w[1]) {
    d.kind = Decoded::kForeign;
    return d;
  }
  d.kind = Decoded::kValue;
  return d;
}

uint64_t EnvU64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return dflt;
  return std::strtoull(v, nullptr, 0);
}

// A PoolDevice over a shared VolatileCacheDevice, so the test keeps the
// device across a clean reopen (the pool owns its PoolDevice), plus one
// fault the device itself cannot express: failing a Sync in the middle of
// a commit (after its log entry or checkpoint was written).
class SharedDevice final : public PoolDevice {
 public:
  explicit SharedDevice(std::shared_ptr<VolatileCacheDevice> d) : d_(std::move(d)) {}
  uint64_t size_bytes() const override { return d_->size_bytes(); }
  std::string Describe() const override { return d_->Describe(); }
  Status ReadAt(uint64_t off, void* buf, size_t len) override { return d_->ReadAt(off, buf, len); }
  Status WriteAt(uint64_t off, const void* buf, size_t len) override {
    Status st = d_->WriteAt(off, buf, len);
    if (st.ok() && off >= target_lo_ && off < target_hi_ && sync_countdown_ < 0) {
      sync_countdown_ = 0;  // the Sync that would make it durable fails
      ++target_hits_;
    }
    return st;
  }
  Status Sync() override {
    if (sync_countdown_ == 0) {
      return Status::IoError("crash test: injected sync failure");
    }
    if (sync_countdown_ > 0) --sync_countdown_;
    return d_->Sync();
  }
  io::BlockBackend* data() override { return d_->data(); }

  // The (n+1)-th Sync from now and every later one fail; -1: none.
  void FailSyncAfter(int64_t n) { sync_countdown_ = n; }
  // Once a metadata write starts in [lo, hi) (a checkpoint slot, the start
  // of the log ring), the Sync after it and every later one fail.
  void FailSyncAfterWriteIn(uint64_t lo, uint64_t hi) { target_lo_ = lo, target_hi_ = hi; }
  void ClearFaults() {
    sync_countdown_ = -1;
    target_lo_ = target_hi_ = 0;
  }
  uint64_t target_hits() const { return target_hits_; }

 private:
  std::shared_ptr<VolatileCacheDevice> d_;
  int64_t sync_countdown_ = -1;
  uint64_t target_lo_ = 0, target_hi_ = 0;
  uint64_t target_hits_ = 0;
};

struct Totals {
  uint64_t iterations = 0;
  uint64_t crash_points = 0;
  uint64_t clean_reopens = 0;
  uint64_t ops = 0;
  uint64_t writes = 0;
  uint64_t enospc = 0;
  uint64_t eio = 0;
  uint64_t flushes = 0;
  uint64_t failed_flushes = 0;
  uint64_t fault_generations = 0;
  uint64_t targeted_faults = 0;  // a Sync failed right after a checkpoint / log-start write
  uint64_t control_ops = 0;
  uint64_t checkpoints = 0;
  uint64_t log_entries = 0;
  uint64_t log_wrap_iterations = 0;
  uint64_t recovered_sectors_new = 0;  // after a crash: held a value newer than `durable`
  // Snapshots and clones (issue #12): committed image operations, refusals
  // checked, and crash points with a non-trivial image tree.
  uint64_t snapshots = 0, clones = 0, inflates = 0, decouples = 0, image_deletes = 0;
  uint64_t image_enospc = 0;  // inflate/decouple/snapshot refused for lack of space
  uint64_t refusals = 0;      // refused as they must be (EINVAL, EBUSY, EROFS)
  uint64_t clone_discards = 0;
  uint64_t crash_points_with_tree = 0;    // crashes with at least one snapshot
  uint64_t checkpoints_with_tree = 0;     // written by a pool that had snapshots at its close
  uint64_t torn_image_ops = 0;            // failed in their commit (fault), then a crash decided
  uint64_t torn_image_ops_kept = 0;       // ... and the crash kept them
  uint64_t max_depth = 0;                 // the longest chain seen (images)
  uint64_t cluster_sizes[3] = {0, 0, 0};  // iterations with 4K / 8K / 64K clusters
};

struct SectorState {
  uint64_t durable = 0;  // generation; 0 = zeros
  uint64_t cur = 0;
};

struct VolModel {
  std::string name;
  uint64_t tag = 0;
  uint64_t size = 0;  // bytes
  bool prealloc = false;
  bool exported = false;
  ExportSettings exp;
  std::vector<SectorState> s;
  std::vector<std::vector<uint64_t>> recent;  // per sector, since the last commit
  std::vector<uint64_t> touched;              // sectors whose recent is non-empty
  std::shared_ptr<io::BlockBackend> backend;
  std::unique_ptr<io::IoChannel> ch;
  // Snapshots and clones: a snapshot is read-only and its sectors never
  // change (its model is the source's at the instant it was taken); an
  // image with a parent reads through to it (s holds what it shows).
  bool snapshot = false;
  std::string parent;  // "" none
  // An image operation on it failed in a commit (injected fault): until the
  // crash decides, its parent may be either (discards are checked leniently).
  bool uncertain = false;
  uint64_t sectors() const { return size / kSector; }
};

constexpr uint64_t kWholeVolume = UINT64_MAX;  // OpRec::count of a control op
constexpr size_t kHistoryMax = 200000;         // OpRecs kept for failure reports

// One operation, for the failure report.
struct OpRec {
  uint32_t generation = 0;
  uint32_t index = 0;
  const char* kind = "";
  uint64_t tag = 0;
  uint64_t sector = 0, count = 0;
  uint64_t gen = 0;  // value written (0: zeros / none); control ops: the new size
  int result = 0;
};

const char* OpName(io::IoOp op, bool unmap) {
  switch (op) {
    case io::IoOp::kWrite: return "write";
    case io::IoOp::kDiscard: return "discard";
    case io::IoOp::kWriteZeroes: return unmap ? "write-zeroes+unmap" : "write-zeroes";
    case io::IoOp::kRead: return "read";
    case io::IoOp::kFlush: return "flush";
  }
  return "?";
}

class Iteration {
 public:
  Iteration(uint64_t seed, Totals* totals) : seed_(seed), rng_(Mix(seed)), totals_(totals) {}

  // false: a failure was reported (ADD_FAILURE) and the iteration stopped.
  bool Run();

 private:
  // ---- random helpers ----
  uint64_t Below(uint64_t n) { return n <= 1 ? 0 : std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  uint64_t Range(uint64_t lo, uint64_t hi) { return lo + Below(hi - lo + 1); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  bool Fail(const std::string& what) {
    if (!failed_) {
      ADD_FAILURE() << "seed=" << seed_ << " generation " << generation_ << " op " << op_index_ << ": " << what
                    << "\n  replay: NESTOR_CRASH_SEED=" << seed_ << " NESTOR_CRASH_ITERATIONS=1";
    } else {
      ADD_FAILURE() << "seed=" << seed_ << ": " << what;
    }
    failed_ = true;
    return false;
  }

  bool Setup();
  bool Generation();
  bool DoOp();
  bool DataOp(VolModel& v, io::IoOp op, bool unmap, uint64_t sector, uint64_t count);
  bool ReadCheck(VolModel& v, uint64_t sector, uint64_t count);
  bool FlushOp(VolModel& v);
  bool CommitOp();
  bool ControlOp();
  // ---- snapshots and clones ----
  bool ImageOp();
  bool SnapshotOp(VolModel& v);
  bool CloneOp(VolModel& snap);
  bool InflateOp(VolModel& v, bool decouple);
  bool DeleteLeafOp();
  bool RefusalOp();
  // An image operation whose commit failed (EIO, injected fault): the
  // crash decides whether it happened; the model keeps both outcomes.
  bool Pending(int kind, const std::string& name, std::unique_ptr<VolModel> model, const std::string& source,
               const std::string& old_parent, const std::string& new_parent);
  bool ResolvePending(bool live);
  bool SnapshotDataOp(VolModel& v, io::IoOp op, bool unmap, uint64_t sector, uint64_t count);
  bool CloneDiscard(VolModel& v, uint64_t sector, uint64_t count);
  VolModel* Find(const std::string& name);
  std::vector<std::string> ChildrenOf(const std::string& name) const;
  VolModel* AnyWritable();
  uint64_t Depth(const VolModel& v);
  bool Burst();
  bool Storm();
  bool CrashAndReopen();
  bool CleanReopen();
  bool OpenPool(std::shared_ptr<VolatileCacheDevice> dev, const char* why);
  bool OpenChannels();
  bool OpenChannel(VolModel& v);
  void CloseChannels();
  void ClosePool();
  bool CheckPool(const char* when);
  bool VerifyAll(bool after_crash);
  bool ReadRange(VolModel& v, uint64_t sector, uint64_t count, std::vector<uint8_t>* buf);

  // ---- model ----
  void Set(VolModel& v, uint64_t sector, uint64_t value);
  void Committed();  // a commit succeeded: every sector is durable as it is now
  void PickRange(const VolModel& v, int shape, uint64_t* sector, uint64_t* count);
  VolModel* AddVolume(uint64_t size, bool prealloc, const char* prefix = "vol");
  std::string Describe(const VolModel& v, uint64_t sector, const Decoded& d);
  std::string History(const VolModel& v, uint64_t sector);
  std::string ValueName(uint64_t gen);

  const uint64_t seed_;
  std::mt19937_64 rng_;
  Totals* totals_;
  bool failed_ = false;

  // configuration
  uint32_t cluster_ = 0;
  uint64_t cs_sectors_ = 0;  // sectors per cluster
  uint64_t dev_bytes_ = 0;
  uint64_t capacity_ = 0;  // data bytes of the pool
  double flush_p_ = 0.05;
  double commit_p_ = 0.02;
  uint32_t generations_ = 1;
  uint32_t max_ops_ = 200;
  bool faults_ = false;
  bool marathon_ = false;
  bool ring_ = false;
  Superblock sb_;

  // state
  std::shared_ptr<VolatileCacheDevice> dev_;
  SharedDevice* shared_ = nullptr;  // owned by pool_
  std::unique_ptr<Pool> pool_;
  std::vector<std::unique_ptr<VolModel>> vols_;
  uint64_t next_tag_ = 0;
  uint64_t next_gen_ = 0;
  bool fault_armed_ = false;
  bool pool_failed_ = false;  // a commit failed: the pool refuses further commits
  bool wrapped_ = false;      // the log ring was seen to wrap
  uint32_t generation_ = 0;
  uint32_t op_index_ = 0;
  std::vector<OpRec> history_;
  std::vector<uint8_t> buf_;
  std::vector<uint64_t> gen_tag_{0};  // the writer of each generation (Decode)
  struct PendingImage {
    int kind = 0;  // 0 none, 1 snapshot, 2 clone, 3 relink (inflate/decouple), 4 delete
    std::string name, source, old_parent, new_parent;
    std::unique_ptr<VolModel> model;  // snapshot/clone: the new image; delete: the deleted one
  } pending_;
};

// Images (volumes, snapshots, clones) an iteration keeps at most: every
// crash reads all of them back.
constexpr size_t kMaxImages = 8;

VolModel* Iteration::AddVolume(uint64_t size, bool prealloc, const char* prefix) {
  auto v = std::make_unique<VolModel>();
  v->tag = (seed_ << 16) ^ (++next_tag_);
  v->name = prefix + std::to_string(next_tag_);
  v->size = size;
  v->prealloc = prealloc;
  v->s.assign(size / kSector, SectorState{});
  v->recent.assign(size / kSector, {});
  vols_.push_back(std::move(v));
  return vols_.back().get();
}

bool Iteration::Setup() {
  // Cluster size: mostly small, so the pool fills up and the log turns over.
  uint64_t r = Below(100);
  int cs_index;
  if (r < 45) {
    cluster_ = 4096, cs_index = 0;
  } else if (r < 85) {
    cluster_ = 8192, cs_index = 1;
  } else {
    cluster_ = 64 * 1024, cs_index = 2;
  }
  static const uint64_t kSmall[] = {5, 6, 8};
  static const uint64_t kLarge[] = {6, 8, 12};
  dev_bytes_ = (cluster_ == 64 * 1024 ? kLarge[Below(3)] : kSmall[Below(3)]) << 20;
  // Long-lived pools, so the log ring turns over (4 MiB at least, entries
  // of 4 KiB and up) and crashes land after checkpoints and wraps:
  // marathons (many small commits) and ring runs (storms of commits of
  // several blocks each, so entries stop fitting the end of the ring).
  uint64_t kind = Below(1000);
  marathon_ = kind < 50;
  ring_ = kind >= 50 && kind < 65;
  if (ring_) cluster_ = 4096, cs_index = 0, dev_bytes_ = 12 << 20;
  totals_->cluster_sizes[cs_index]++;
  faults_ = (marathon_ || ring_) ? Chance(0.5) : Chance(0.15);
  flush_p_ = marathon_ ? 0.5 : ring_ ? 0.2 : 0.02 + 0.13 * std::uniform_real_distribution<double>(0, 1)(rng_);
  commit_p_ = Chance(0.5) ? 0.02 : 0.005;
  generations_ = static_cast<uint32_t>(marathon_ ? Range(40, 60) : ring_ ? Range(25, 35) : Range(1, 10));
  max_ops_ = marathon_ ? 360 : ring_ ? 120 : 200;

  dev_ = std::make_shared<VolatileCacheDevice>(dev_bytes_, Mix(seed_ + 1));
  Status st = Pool::Format(dev_.get(), cluster_, false);
  if (!st.ok()) return Fail("format: " + st.ToString());
  if (!OpenPool(dev_, "format")) return false;
  sb_ = pool_->superblock();
  capacity_ = sb_.data_clusters * cluster_;
  cs_sectors_ = cluster_ / kSector;

  // 2-4 volumes, together 1.3x-3x the pool; sizes in 4 KiB, not always
  // whole clusters. Sometimes one small preallocated volume.
  int n = static_cast<int>(Range(2, 4));
  double over = 1.3 + 1.7 * std::uniform_real_distribution<double>(0, 1)(rng_);
  uint64_t total = static_cast<uint64_t>(over * static_cast<double>(capacity_));
  bool prealloc = Chance(0.2);
  for (int i = 0; i < n; ++i) {
    uint64_t share = total / n;
    uint64_t size = share / 2 + Below(share);
    if (Chance(0.5)) size = size / cluster_ * cluster_;
    size = std::max<uint64_t>(size / 4096 * 4096, 4096);
    bool pre = prealloc && i == 0;
    if (pre) size = std::max<uint64_t>((capacity_ / 8) / 4096 * 4096, 4096);
    auto info = pool_->CreateVolume("vol" + std::to_string(next_tag_ + 1), size, pre);
    if (!info.ok()) return Fail("create volume: " + info.status().ToString());
    AddVolume(size, pre);
  }
  Committed();
  return OpenChannels();
}

bool Iteration::OpenPool(std::shared_ptr<VolatileCacheDevice> dev, const char* why) {
  auto shared = std::make_unique<SharedDevice>(dev);
  SharedDevice* raw = shared.get();
  auto pool = Pool::Open(std::move(shared));
  if (!pool.ok()) return Fail(std::string("Pool::Open after ") + why + ": " + pool.status().ToString());
  pool_ = std::move(pool.value());
  shared_ = raw;
  dev_ = std::move(dev);
  fault_armed_ = false;
  pool_failed_ = false;
  return true;
}

bool Iteration::OpenChannel(VolModel& v) {
  auto b = pool_->OpenVolume(v.name);
  if (!b.ok()) return Fail("open volume " + v.name + ": " + b.status().ToString());
  v.backend = b.value();
  if (v.backend->size_bytes() != v.size) {
    return Fail("volume " + v.name + " has size " + std::to_string(v.backend->size_bytes()) + ", expected " +
                std::to_string(v.size));
  }
  auto ch = v.backend->OpenChannel(nullptr);
  if (!ch.ok()) return Fail("open channel " + v.name + ": " + ch.status().ToString());
  v.ch = std::move(ch.value());
  return true;
}

bool Iteration::OpenChannels() {
  for (auto& v : vols_) {
    if (!OpenChannel(*v)) return false;
  }
  return true;
}

void Iteration::CloseChannels() {
  for (auto& v : vols_) {
    v->ch.reset();
    v->backend.reset();
  }
}

void Iteration::ClosePool() {
  CloseChannels();
  if (pool_ == nullptr) return;
  PoolInfo info = pool_->Info();
  totals_->checkpoints += info.checkpoints;
  if (std::any_of(vols_.begin(), vols_.end(), [](const auto& v) { return v->snapshot; })) {
    totals_->checkpoints_with_tree += info.checkpoints;  // about: the tree may be younger than some of them
  }
  totals_->log_entries += info.log_entries;
  // The destructor commits what is pending: let it, without faults.
  dev_->ClearFaults();
  shared_->ClearFaults();
  totals_->targeted_faults += shared_->target_hits();
  pool_.reset();
  shared_ = nullptr;
}

void Iteration::Set(VolModel& v, uint64_t sector, uint64_t value) {
  v.s[sector].cur = value;
  auto& r = v.recent[sector];
  if (r.empty()) v.touched.push_back(sector);
  if (r.empty() || r.back() != value) r.push_back(value);
}

void Iteration::Committed() {
  for (auto& v : vols_) {
    for (uint64_t s : v->touched) {
      if (s >= v->s.size()) continue;  // truncated by a shrink
      v->s[s].durable = v->s[s].cur;
      v->recent[s].clear();
    }
    v->touched.clear();
  }
}

std::string Iteration::ValueName(uint64_t gen) {
  if (gen == 0) return "zeros";
  for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
    if (it->gen == gen) {
      std::ostringstream o;
      o << "gen " << gen << " (" << it->kind << " op " << it->generation << "." << it->index << ")";
      return o.str();
    }
  }
  return "gen " + std::to_string(gen);
}

std::string Iteration::History(const VolModel& v, uint64_t sector) {
  // The ops that touched the sector, plus pool-wide events (crashes,
  // reopens, faults, control ops, failed commits and the latest commit).
  std::ostringstream o;
  int shown = 0;
  bool commit_shown = false;
  for (auto it = history_.rbegin(); it != history_.rend() && shown < 16; ++it) {
    bool all = it->tag == 0;
    if (!all && (it->tag != v.tag || sector < it->sector || sector >= it->sector + it->count)) continue;
    bool commit = all && (std::strcmp(it->kind, "FLUSH") == 0 || std::strcmp(it->kind, "Pool::Commit") == 0);
    if (commit && it->result == 0) {
      if (commit_shown) continue;
      commit_shown = true;
    }
    o << "\n    " << it->generation << "." << it->index << " " << it->kind;
    if (it->count == kWholeVolume) {
      o << " " << v.name;
      if (it->gen != 0) o << " to " << it->gen << " bytes";
    } else if (!all) {
      o << " [" << it->sector << ",+" << it->count << ")";
    }
    if (it->gen != 0 && it->count != kWholeVolume) o << " gen " << it->gen;
    o << " -> " << it->result;
    ++shown;
  }
  return o.str();
}

std::string Iteration::Describe(const VolModel& v, uint64_t sector, const Decoded& d) {
  std::ostringstream o;
  switch (d.kind) {
    case Decoded::kZeros: o << "zeros"; break;
    case Decoded::kValue: o << ValueName(d.gen); break;
    case Decoded::kGarbage: o << "garbage (neither zeros nor a sector this test wrote)"; break;
    case Decoded::kForeign: {
      const VolModel* owner = nullptr;
      for (auto& w : vols_) {
        if (w->tag == d.tag) owner = w.get();
      }
      o << "FOREIGN bytes: "
        << (d.tag == v.tag ? "this image"
            : owner        ? owner->name
                           : "a deleted image")
        << " sector " << d.lba << " " << ValueName(d.gen);
      if (d.gen < gen_tag_.size() && gen_tag_[d.gen] != d.tag) o << " (that generation was written elsewhere)";
      break;
    }
  }
  const SectorState& st = v.s[sector];
  o << "; model: durable " << ValueName(st.durable) << ", current " << ValueName(st.cur) << ", since last commit {";
  for (size_t i = 0; i < v.recent[sector].size(); ++i) o << (i ? ", " : "") << v.recent[sector][i];
  o << "}; last ops on it (newest first):" << History(v, sector);
  return o.str();
}

void Iteration::PickRange(const VolModel& v, int shape, uint64_t* sector, uint64_t* count) {
  uint64_t total = v.sectors();
  uint64_t cs = cs_sectors_;
  uint64_t s = 0, n = 1;
  switch (shape) {
    case 0:  // small, anywhere
      s = Below(total);
      n = Range(1, 16);
      break;
    case 1: {  // whole clusters, aligned
      uint64_t clusters = (total + cs - 1) / cs;
      s = Below(clusters) * cs;
      n = Range(1, 3) * cs;
      break;
    }
    case 2:  // spanning cluster boundaries, unaligned
      s = Below(total);
      n = Range(1, 2 * cs + 16);
      break;
    default: {  // large, for filling the pool (up to 8 clusters or 256 KiB)
      s = Below(total);
      if (Chance(0.5)) s = s / cs * cs;
      n = Range(cs, std::min<uint64_t>(8 * cs, 512));
      break;
    }
  }
  n = std::min(n, total - s);
  *sector = s;
  *count = std::max<uint64_t>(n, 1);
}

bool Iteration::ReadRange(VolModel& v, uint64_t sector, uint64_t count, std::vector<uint8_t>* buf) {
  buf->resize(count * kSector);
  std::fill(buf->begin(), buf->end(), 0xA5);
  int r = SyncIo(v.ch.get(), io::IoOp::kRead, sector * kSector, buf->data(), count * kSector);
  if (r != static_cast<int>(count * kSector)) {
    return Fail("read " + v.name + " [" + std::to_string(sector) + ",+" + std::to_string(count) + ") returned " +
                std::to_string(r));
  }
  return true;
}

bool Iteration::DataOp(VolModel& v, io::IoOp op, bool unmap, uint64_t sector, uint64_t count) {
  const bool write = op == io::IoOp::kWrite;
  uint64_t gen = 0;
  if (write) {
    gen = ++next_gen_;
    gen_tag_.push_back(v.tag);
    buf_.resize(count * kSector);
    for (uint64_t i = 0; i < count; ++i) FillSector(buf_.data() + i * kSector, v.tag, sector + i, gen);
  }
  int r = SyncIo(v.ch.get(), op, sector * kSector, write ? buf_.data() : nullptr, count * kSector, unmap);
  history_.push_back(OpRec{generation_, op_index_, OpName(op, unmap), v.tag, sector, count, gen, r});
  int ok = write ? static_cast<int>(count * kSector) : 0;
  if (write) totals_->writes++;
  if (r == ok) {
    if (op == io::IoOp::kDiscard && (!v.parent.empty() || v.uncertain)) return CloneDiscard(v, sector, count);
    for (uint64_t i = 0; i < count; ++i) Set(v, sector + i, gen);
    return true;
  }
  // On an image with a parent, WRITE_ZEROES over its ancestors' data takes
  // a cluster of zeros (a copy on write): it may find the pool full too.
  const bool may_need_space = write || (op == io::IoOp::kWriteZeroes && (!v.parent.empty() || v.uncertain));
  if (r == -ENOSPC && may_need_space) {
    totals_->enospc++;
    if (v.prealloc) {
      return Fail("write " + v.name + " [" + std::to_string(sector) + ",+" + std::to_string(count) +
                  ") failed with ENOSPC although the volume is preallocated (its space is guaranteed)" +
                  History(v, sector));
    }
  } else if (r == -EIO && fault_armed_) {
    totals_->eio++;
  } else {
    return Fail(std::string(OpName(op, unmap)) + " " + v.name + " [" + std::to_string(sector) + ",+" +
                std::to_string(count) + ") returned " + std::to_string(r));
  }
  // Failed part-way: each sector holds its old value or the new one. Read
  // back which; the new ones may survive a crash like any unflushed write.
  std::vector<uint8_t> back;
  if (!ReadRange(v, sector, count, &back)) return false;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t s = sector + i;
    Decoded d = Decode(back.data() + i * kSector, s, gen_tag_);
    uint64_t got = d.kind == Decoded::kValue ? d.gen : 0;
    bool valid = d.kind == Decoded::kZeros || d.kind == Decoded::kValue;
    if (!valid || (got != v.s[s].cur && got != gen)) {
      return Fail("after " + std::string(OpName(op, unmap)) + " failed with " + std::to_string(r) + ", " + v.name +
                  " sector " + std::to_string(s) + " reads " + Describe(v, s, d));
    }
    if (got != v.s[s].cur) Set(v, s, got);
  }
  return true;
}

bool Iteration::ReadCheck(VolModel& v, uint64_t sector, uint64_t count) {
  std::vector<uint8_t> back;
  if (!ReadRange(v, sector, count, &back)) return false;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t s = sector + i;
    Decoded d = Decode(back.data() + i * kSector, s, gen_tag_);
    uint64_t got = d.kind == Decoded::kValue ? d.gen : 0;
    bool valid = d.kind == Decoded::kZeros || d.kind == Decoded::kValue;
    if (!valid || got != v.s[s].cur) {
      return Fail("live read of " + v.name + " sector " + std::to_string(s) + ": " + Describe(v, s, d));
    }
  }
  return true;
}

bool Iteration::FlushOp(VolModel& v) {
  if (v.snapshot) {  // FLUSHes go to writable images (a pool whose only images are snapshots: a commit)
    VolModel* w = AnyWritable();
    return w == nullptr ? CommitOp() : FlushOp(*w);
  }
  int r = SyncIo(v.ch.get(), io::IoOp::kFlush, 0, nullptr, 0);
  history_.push_back(OpRec{generation_, op_index_, "FLUSH", 0, 0, 0, 0, r});
  totals_->flushes++;
  if (r == 0) {
    if (pool_failed_) return Fail("FLUSH succeeded after an earlier commit failed");
    if (!ResolvePending(true)) return false;
    Committed();
    return true;
  }
  if (r == -EIO && (fault_armed_ || pool_failed_)) {
    totals_->failed_flushes++;
    pool_failed_ = true;
    return true;
  }
  return Fail("FLUSH returned " + std::to_string(r));
}

bool Iteration::CommitOp() {
  Status st = pool_->Commit();
  history_.push_back(OpRec{generation_, op_index_, "Pool::Commit", 0, 0, 0, 0, -st.err()});
  if (st.ok()) {
    if (pool_failed_) return Fail("Pool::Commit succeeded after an earlier commit failed");
    if (!ResolvePending(true)) return false;
    Committed();
    return true;
  }
  if (fault_armed_ || pool_failed_) {
    pool_failed_ = true;
    return true;
  }
  return Fail("Pool::Commit: " + st.ToString());
}

bool Iteration::CheckPool(const char* when) {
  CheckReport rep = pool_->Check();
  if (rep.clean()) return true;
  std::string all;
  for (const auto& p : rep.problems) all += "\n    " + p;
  return Fail(std::string("pool check ") + when + " is not clean:" + all);
}

// Control operations (each commits, like a FLUSH): grow, shrink (closed,
// forced) possibly followed by a grow, delete + create.
bool Iteration::ControlOp() {
  totals_->control_ops++;
  VolModel& v = *vols_[Below(vols_.size())];
  uint64_t r = Below(4);
  if (r == 3 && v.snapshot) r = 0;  // export settings: writable images (a snapshot's grow is refused below)
  if (r == 3) {                     // export settings: stored in the pool like the volume itself
    Status st;
    if (v.exported && Chance(0.4)) {
      st = pool_->ClearExport(v.name);
      history_.push_back(OpRec{generation_, op_index_, "clear export", v.tag, 0, kWholeVolume, 0, -st.err()});
      if (st.ok()) v.exported = false;
    } else {
      ExportSettings e;
      e.queues = static_cast<uint16_t>(Range(1, 64));
      e.read_only = Chance(0.3);
      e.read_iops = Chance(0.5) ? 0 : Range(1, 1000000);
      e.write_iops = Chance(0.5) ? 0 : Range(1, 1000000);
      e.read_bps = Chance(0.5) ? 0 : Range(1, 1ull << 40);
      e.write_bps = Chance(0.5) ? 0 : Range(1, 1ull << 40);
      st = pool_->SetExport(v.name, e);
      history_.push_back(OpRec{generation_, op_index_, "set export", v.tag, 0, kWholeVolume, 0, -st.err()});
      if (st.ok()) v.exported = true, v.exp = e;
    }
    if (!st.ok()) return Fail("export settings of " + v.name + ": " + st.ToString());
    Committed();
    return true;
  }
  // A preallocated volume grows only if the pool can reserve the space.
  auto grow_failed = [&](const Status& st) { return !(st.ok() || (v.prealloc && st.err() == ENOSPC)); };
  if (r == 0) {
    uint64_t size = v.size + Range(1, 2 * cluster_ / 4096 + 2) * 4096;
    Status st = pool_->ResizeVolume(v.name, size, false);
    history_.push_back(OpRec{generation_, op_index_, "grow", v.tag, 0, kWholeVolume, size, -st.err()});
    if (v.snapshot) {  // read-only, fixed size
      if (st.ok()) return Fail("grow of snapshot " + v.name + " succeeded (a snapshot cannot be resized)");
      totals_->refusals++;
      return ReadCheck(v, 0, std::min<uint64_t>(v.sectors(), 64));
    }
    if (grow_failed(st)) return Fail("grow " + v.name + ": " + st.ToString());
    if (!st.ok()) return true;
    uint64_t old = v.size;
    v.size = size;
    v.s.resize(size / kSector);
    v.recent.resize(size / kSector);
    Committed();
    return ReadCheck(v, old / kSector, (size - old) / kSector);  // the new space reads zeros
  }
  if (r == 1 && v.size > 4096) {
    v.ch.reset();
    v.backend.reset();
    uint64_t size = std::max<uint64_t>(Range(1, v.size / 4096 - 1) * 4096, 4096);
    Status st = pool_->ResizeVolume(v.name, size, true);
    history_.push_back(OpRec{generation_, op_index_, "shrink", v.tag, 0, kWholeVolume, size, -st.err()});
    if (v.snapshot || !v.parent.empty()) {  // snapshots keep their size; images with a parent only grow
      if (st.ok()) {
        return Fail("shrink of " + std::string(v.snapshot ? "snapshot " : "clone ") + v.name + " to " +
                    std::to_string(size) + " bytes succeeded (images with a parent only grow)");
      }
      totals_->refusals++;
      if (!OpenChannel(v)) return false;
      return ReadCheck(v, size / kSector, std::min<uint64_t>(v.sectors() - size / kSector, 64));
    }
    if (!st.ok()) {
      return Fail("shrink " + v.name + (v.prealloc ? " (preallocated)" : "") + " to " + std::to_string(size) +
                  " bytes: " + st.ToString() + " (a shrink needs no space)");
    }
    uint64_t old = v.size;
    v.size = size;
    v.s.resize(size / kSector);
    v.recent.resize(size / kSector);
    Committed();
    if (Chance(0.6)) {  // grow back: the new space must read zeros
      uint64_t grown = std::min(old, size + Range(1, 2 * cluster_ / 4096) * 4096);
      st = pool_->ResizeVolume(v.name, grown, false);
      history_.push_back(OpRec{generation_, op_index_, "grow", v.tag, 0, kWholeVolume, grown, -st.err()});
      if (grow_failed(st)) return Fail("grow " + v.name + ": " + st.ToString());
      if (!st.ok()) return OpenChannel(v);
      v.size = grown;
      v.s.resize(grown / kSector);
      v.recent.resize(grown / kSector);
      Committed();
      if (!OpenChannel(v)) return false;
      return ReadCheck(v, size / kSector, (grown - size) / kSector);  // the new space reads zeros
    }
    return OpenChannel(v);
  }
  // Delete and create another (its id may be the deleted one's). A
  // snapshot with clones is refused, naming them.
  v.ch.reset();
  v.backend.reset();
  Status st = pool_->DeleteVolume(v.name);
  history_.push_back(OpRec{generation_, op_index_, "delete", v.tag, 0, kWholeVolume, 0, -st.err()});
  std::vector<std::string> children = ChildrenOf(v.name);
  if (!children.empty()) {
    if (st.err() != EBUSY) {
      return Fail("delete of snapshot " + v.name + " with clone(s) (" + children[0] + ", ...) returned " +
                  st.ToString() + ", expected EBUSY");
    }
    for (const auto& c : children) {
      if (st.message().find(c) == std::string::npos) {
        return Fail("delete of snapshot " + v.name + " refused without naming its clone " + c + ": " + st.ToString());
      }
    }
    totals_->refusals++;
    return OpenChannel(v);
  }
  if (!st.ok()) return Fail("delete " + v.name + ": " + st.ToString());
  uint64_t size = v.size;
  bool was_snapshot = v.snapshot;
  vols_.erase(std::find_if(vols_.begin(), vols_.end(), [&](auto& p) { return p.get() == &v; }));
  Committed();
  if (was_snapshot) totals_->image_deletes++;
  size = std::max<uint64_t>((size / 2 + Below(size)) / 4096 * 4096, 4096);
  auto info = pool_->CreateVolume("vol" + std::to_string(next_tag_ + 1), size, false);
  history_.push_back(OpRec{generation_, op_index_, "create", 0, 0, 0, 0, -info.status().err()});
  if (!info.ok()) return Fail("create: " + info.status().ToString());
  VolModel* nv = AddVolume(size, false);
  Committed();
  return OpenChannel(*nv);
}

// ---- snapshots and clones ----

VolModel* Iteration::Find(const std::string& name) {
  for (auto& v : vols_) {
    if (v->name == name) return v.get();
  }
  return nullptr;
}

std::vector<std::string> Iteration::ChildrenOf(const std::string& name) const {
  std::vector<std::string> out;
  for (const auto& v : vols_) {
    if (!name.empty() && v->parent == name) out.push_back(v->name);
  }
  return out;
}

VolModel* Iteration::AnyWritable() {
  std::vector<VolModel*> w;
  for (auto& v : vols_) {
    if (!v->snapshot) w.push_back(v.get());
  }
  return w.empty() ? nullptr : w[Below(w.size())];
}

uint64_t Iteration::Depth(const VolModel& v) {
  uint64_t d = 1;
  for (const VolModel* p = Find(v.parent); p != nullptr && d < 1000; p = Find(p->parent)) ++d;
  return d;
}

// A snapshot, clone, inflate, decouple, delete of a leaf, or an operation
// that must be refused; each commits (or changes nothing), like ControlOp.
bool Iteration::ImageOp() {
  if (pending_.kind != 0) return true;  // one interrupted operation at a time
  std::vector<VolModel*> writable, snaps, clones;
  for (auto& v : vols_) {
    (v->snapshot ? snaps : writable).push_back(v.get());
    if (!v->snapshot && !v->parent.empty()) clones.push_back(v.get());
  }
  bool room = vols_.size() < kMaxImages;
  uint64_t k = Below(100);
  if (!room && k < 50) k = 80;  // make room first
  if (k < 28 && !writable.empty()) return SnapshotOp(*writable[Below(writable.size())]);
  if (k < 50 && !snaps.empty()) return CloneOp(*snaps[Below(snaps.size())]);
  if (k < 62 && !clones.empty()) return InflateOp(*clones[Below(clones.size())], false);
  if (k < 76 && !clones.empty()) return InflateOp(*clones[Below(clones.size())], true);
  if (k < 92) return DeleteLeafOp();
  return RefusalOp();
}

bool Iteration::SnapshotOp(VolModel& v) {
  std::string name = "snap" + std::to_string(next_tag_ + 1);
  // The source is open (its channel), so this is the online path: writes
  // are gated and drained; none is in flight here (inline completions).
  auto info = pool_->CreateSnapshot(v.name, name);
  history_.push_back(OpRec{generation_, op_index_, "snapshot", v.tag, 0, kWholeVolume, 0, -info.status().err()});
  if (!info.ok()) {
    if (v.prealloc && info.status().err() == ENOSPC) {  // a preallocated source must stay preallocated
      totals_->image_enospc++;
      return true;
    }
    if (fault_armed_ && info.status().err() == EIO) {
      auto s = std::make_unique<VolModel>();
      s->tag = (seed_ << 16) ^ (++next_tag_);
      s->name = name;
      s->size = v.size;
      s->s = v.s;
      s->recent = v.recent;  // what it may hold: as v, since the last commit
      s->touched = v.touched;
      s->snapshot = true;
      s->parent = v.parent;
      v.uncertain = true;
      return Pending(1, name, std::move(s), v.name, v.parent, name);
    }
    return Fail("snapshot of " + v.name + " as " + name + ": " + info.status().ToString());
  }
  Committed();  // every write completed before it is in it, and durable
  totals_->snapshots++;
  std::string parent = v.parent;
  VolModel* s = AddVolume(v.size, false, "snap");
  s->snapshot = true;
  s->parent = parent;
  s->s = v.s;
  v.parent = name;
  if (!info->snapshot || info->name != name || info->parent != parent || info->size != v.size) {
    return Fail("snapshot " + name + " of " + v.name +
                ": CreateSnapshot returned snapshot=" + std::to_string(info->snapshot) + " name '" + info->name +
                "' parent '" + info->parent + "' size " + std::to_string(info->size) + ", expected a snapshot of " +
                std::to_string(v.size) + " bytes with parent '" + parent + "'");
  }
  totals_->max_depth = std::max(totals_->max_depth, Depth(v));
  if (!OpenChannel(*s)) return false;
  uint64_t sec, n;
  PickRange(*s, static_cast<int>(Below(4)), &sec, &n);
  if (!ReadCheck(*s, sec, n)) return false;
  return ReadCheck(v, sec, n);  // the source reads the same through its new parent
}

bool Iteration::CloneOp(VolModel& snap) {
  std::string name = "clone" + std::to_string(next_tag_ + 1);
  auto info = pool_->CloneVolume(snap.name, name);
  history_.push_back(OpRec{generation_, op_index_, "clone", snap.tag, 0, kWholeVolume, 0, -info.status().err()});
  if (!info.ok()) {
    if (fault_armed_ && info.status().err() == EIO) {
      auto c = std::make_unique<VolModel>();
      c->tag = (seed_ << 16) ^ (++next_tag_);
      c->name = name;
      c->size = snap.size;
      c->s = snap.s;
      c->recent.assign(snap.s.size(), {});
      c->parent = snap.name;
      return Pending(2, name, std::move(c), snap.name, snap.name, snap.name);
    }
    return Fail("clone of " + snap.name + " as " + name + ": " + info.status().ToString());
  }
  Committed();
  totals_->clones++;
  VolModel* c = AddVolume(snap.size, false, "clone");
  c->parent = snap.name;
  c->s = snap.s;
  if (info->snapshot || info->name != name || info->parent != snap.name || info->size != snap.size) {
    return Fail("clone " + name + " of " + snap.name + ": CloneVolume returned snapshot=" +
                std::to_string(info->snapshot) + " parent '" + info->parent + "' size " + std::to_string(info->size));
  }
  totals_->max_depth = std::max(totals_->max_depth, Depth(*c));
  if (!OpenChannel(*c)) return false;
  uint64_t sec, n;
  PickRange(*c, static_cast<int>(Below(4)), &sec, &n);
  return ReadCheck(*c, sec, n);
}

bool Iteration::InflateOp(VolModel& v, bool decouple) {
  const std::string before = v.parent;
  const VolModel* p = Find(v.parent);
  if (p == nullptr) return Fail("model: " + v.name + " has an unknown parent " + v.parent);
  const std::string after = decouple ? p->parent : "";
  // On an open clone (its channel): the online path.
  Status st = decouple ? pool_->DecoupleVolume(v.name) : pool_->InflateVolume(v.name);
  const char* what = decouple ? "decouple" : "inflate";
  history_.push_back(OpRec{generation_, op_index_, what, v.tag, 0, kWholeVolume, 0, -st.err()});
  std::string expect_parent = after;
  if (!st.ok() && fault_armed_ && st.err() == EIO) {
    v.uncertain = true;
    return Pending(3, v.name, nullptr, "", before, after);
  }
  if (!st.ok()) {
    if (st.err() != ENOSPC) return Fail(std::string(what) + " " + v.name + ": " + st.ToString());
    totals_->image_enospc++;  // nothing lost: the content and the parent stay
    expect_parent = before;
  } else {
    Committed();
    v.parent = after;
    (decouple ? totals_->decouples : totals_->inflates)++;
  }
  auto info = pool_->GetVolume(v.name);
  if (!info.ok()) return Fail(std::string(what) + " " + v.name + ": GetVolume: " + info.status().ToString());
  if (info->parent != expect_parent) {
    return Fail(std::string(what) + " " + v.name + " (" + (st.ok() ? "ok" : st.ToString()) + "): parent '" +
                info->parent + "', expected '" + expect_parent + "'");
  }
  uint64_t sec, n;
  PickRange(v, static_cast<int>(Below(4)), &sec, &n);
  return ReadCheck(v, sec, n);  // the content is unchanged
}

bool Iteration::DeleteLeafOp() {
  size_t writable = 0;
  for (auto& v : vols_) writable += v->snapshot ? 0 : 1;
  std::vector<VolModel*> leaves;
  for (auto& v : vols_) {
    if (!ChildrenOf(v->name).empty()) continue;
    if (!v->snapshot && writable <= 1) continue;  // keep one writable image
    leaves.push_back(v.get());
  }
  if (leaves.empty()) return true;
  VolModel& v = *leaves[Below(leaves.size())];
  v.ch.reset();
  v.backend.reset();
  Status st = pool_->DeleteVolume(v.name);
  history_.push_back(OpRec{generation_, op_index_, "delete image", v.tag, 0, kWholeVolume, 0, -st.err()});
  if (!st.ok() && fault_armed_ && st.err() == EIO) {
    auto it = std::find_if(vols_.begin(), vols_.end(), [&](auto& p) { return p.get() == &v; });
    std::unique_ptr<VolModel> gone = std::move(*it);
    vols_.erase(it);
    std::string name = gone->name;
    return Pending(4, name, std::move(gone), "", "", "");
  }
  if (!st.ok()) return Fail("delete of " + v.name + " (no children): " + st.ToString());
  vols_.erase(std::find_if(vols_.begin(), vols_.end(), [&](auto& p) { return p.get() == &v; }));
  Committed();
  totals_->image_deletes++;
  return true;
}

bool Iteration::RefusalOp() {
  std::vector<VolModel*> snaps, writable, parents;
  for (auto& v : vols_) {
    (v->snapshot ? snaps : writable).push_back(v.get());
    if (!ChildrenOf(v->name).empty()) parents.push_back(v.get());
  }
  const size_t before = pool_->ListVolumes().size();
  const std::string name = "refused" + std::to_string(next_tag_ + 1);
  uint64_t k = Below(3);
  if (k == 0 && !snaps.empty()) {
    VolModel& s = *snaps[Below(snaps.size())];
    auto r = pool_->CreateSnapshot(s.name, name);
    history_.push_back(
        OpRec{generation_, op_index_, "snapshot of a snapshot", s.tag, 0, kWholeVolume, 0, -r.status().err()});
    if (r.status().err() != EINVAL) {
      return Fail("snapshot of snapshot " + s.name + " returned " + r.status().ToString() + ", expected EINVAL");
    }
  } else if (k == 1 && !writable.empty()) {
    VolModel& w = *writable[Below(writable.size())];
    auto r = pool_->CloneVolume(w.name, name);
    history_.push_back(
        OpRec{generation_, op_index_, "clone of a non-snapshot", w.tag, 0, kWholeVolume, 0, -r.status().err()});
    if (r.status().err() != EINVAL) {
      return Fail("clone of " + w.name + " (not a snapshot) returned " + r.status().ToString() + ", expected EINVAL");
    }
  } else if (!parents.empty()) {
    VolModel& p = *parents[Below(parents.size())];
    p.ch.reset();
    p.backend.reset();
    Status st = pool_->DeleteVolume(p.name);
    history_.push_back(OpRec{generation_, op_index_, "delete with clones", p.tag, 0, kWholeVolume, 0, -st.err()});
    std::vector<std::string> children = ChildrenOf(p.name);
    if (st.err() != EBUSY) {
      return Fail("delete of snapshot " + p.name + " with clone(s) " + children[0] + "... returned " + st.ToString() +
                  ", expected EBUSY");
    }
    for (const auto& c : children) {
      if (st.message().find(c) == std::string::npos) {
        return Fail("delete of snapshot " + p.name + " refused without naming its clone " + c + ": " + st.ToString());
      }
    }
    if (!OpenChannel(p)) return false;
  } else {
    return true;
  }
  totals_->refusals++;
  if (pool_->ListVolumes().size() != before || pool_->GetVolume(name).ok()) {
    return Fail("a refused operation changed the image list (" + name + ")");
  }
  return true;
}

// Writes, discards and write-zeroes of a snapshot fail with EROFS and
// change nothing; mostly, a snapshot is read and compared.
bool Iteration::Pending(int kind, const std::string& name, std::unique_ptr<VolModel> model, const std::string& source,
                        const std::string& old_parent, const std::string& new_parent) {
  totals_->torn_image_ops++;
  if (pending_.kind != 0) return Fail("model: two image operations pending");
  pending_.kind = kind;
  pending_.name = name;
  pending_.source = source;
  pending_.old_parent = old_parent;
  pending_.new_parent = new_parent;
  pending_.model = std::move(model);
  return true;
}

// After a crash (or, if the failure was not in a commit, at the next
// successful one): the pool says which outcome the interrupted image
// operation has; the model takes it. The live pool's channels are opened
// here; after a crash OpenChannels does it.
bool Iteration::ResolvePending(bool live) {
  if (pending_.kind == 0) return true;
  PendingImage p = std::move(pending_);
  pending_ = PendingImage{};
  for (auto& v : vols_) v->uncertain = false;
  auto info = pool_->GetVolume(p.name);
  const bool exists = info.ok();
  bool kept = false;
  if (p.kind == 1 || p.kind == 2) {  // snapshot, clone: the new image exists or not
    kept = exists;
    if (exists) {
      VolModel* m = p.model.get();
      vols_.push_back(std::move(p.model));
      if (p.kind == 1) {
        VolModel* src = Find(p.source);
        if (src == nullptr) return Fail("model: the source " + p.source + " of snapshot " + p.name + " is gone");
        src->parent = p.name;
      }
      if (live && !OpenChannel(*m)) return false;
    }
  } else if (p.kind == 3) {  // inflate, decouple: either parent
    VolModel* v = Find(p.name);
    if (v == nullptr || !exists) return Fail("image " + p.name + " is gone after an interrupted inflate/decouple");
    if (info->parent != p.old_parent && info->parent != p.new_parent) {
      return Fail("image " + p.name + " has parent '" + info->parent + "' after an interrupted inflate/decouple, " +
                  "expected '" + p.old_parent + "' or '" + p.new_parent + "'");
    }
    kept = info->parent == p.new_parent;
    v->parent = info->parent;
  } else {  // delete: gone or not
    kept = !exists;
    if (exists) {
      VolModel* m = p.model.get();
      vols_.push_back(std::move(p.model));
      if (live && !OpenChannel(*m)) return false;
    }
  }
  if (kept) totals_->torn_image_ops_kept++;
  history_.push_back(OpRec{generation_, op_index_, kept ? "interrupted image op: done" : "interrupted image op: undone",
                           0, 0, 0, 0, 0});
  return true;
}

bool Iteration::SnapshotDataOp(VolModel& v, io::IoOp op, bool unmap, uint64_t sector, uint64_t count) {
  if (Chance(0.8)) return ReadCheck(v, sector, count);
  const bool write = op == io::IoOp::kWrite;
  uint64_t gen = 0;
  if (write) {
    gen = ++next_gen_;
    gen_tag_.push_back(v.tag);
    buf_.resize(count * kSector);
    for (uint64_t i = 0; i < count; ++i) FillSector(buf_.data() + i * kSector, v.tag, sector + i, gen);
  }
  int r = SyncIo(v.ch.get(), op, sector * kSector, write ? buf_.data() : nullptr, count * kSector, unmap);
  history_.push_back(OpRec{generation_, op_index_, OpName(op, unmap), v.tag, sector, count, gen, r});
  if (r != -EROFS) {
    return Fail(std::string(OpName(op, unmap)) + " of snapshot " + v.name + " [" + std::to_string(sector) + ",+" +
                std::to_string(count) + ") returned " + std::to_string(r) + ", expected -EROFS (" +
                std::to_string(-EROFS) + ")");
  }
  totals_->refusals++;
  return ReadCheck(v, sector, count);
}

// DISCARD on an image with a parent frees only where nothing below shows
// data, elsewhere it is a no-op: each sector reads its old value or zeros,
// and never what the parent holds; in a whole cluster where the parent
// shows data it reads its old value.
bool Iteration::CloneDiscard(VolModel& v, uint64_t sector, uint64_t count) {
  totals_->clone_discards++;
  std::vector<uint8_t> back;
  if (!ReadRange(v, sector, count, &back)) return false;
  const VolModel* p = Find(v.parent);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t s = sector + i;
    Decoded d = Decode(back.data() + i * kSector, s, gen_tag_);
    uint64_t got = d.kind == Decoded::kValue ? d.gen : 0;
    bool valid = d.kind == Decoded::kZeros || d.kind == Decoded::kValue;
    uint64_t c0 = s / cs_sectors_ * cs_sectors_;
    bool whole = c0 >= sector && c0 + cs_sectors_ <= sector + count;
    bool below = false;
    for (uint64_t k = c0; whole && !v.uncertain && p != nullptr && k < c0 + cs_sectors_ && k < p->sectors(); ++k) {
      below = below || p->s[k].cur != 0;
    }
    if (!valid || !(got == v.s[s].cur || (got == 0 && !below))) {
      return Fail("discard of " + v.name + " (parent " + v.parent + ") [" + std::to_string(sector) + ",+" +
                  std::to_string(count) + "): sector " + std::to_string(s) + " reads " + Describe(v, s, d) +
                  (below ? " (the parent shows data in this cluster: the discard must leave it unchanged)"
                         : " (must read its old value or zeros)"));
    }
    if (got != v.s[s].cur) Set(v, s, got);
  }
  return true;
}

bool Iteration::DoOp() {
  VolModel& v = *vols_[Below(vols_.size())];
  double x = std::uniform_real_distribution<double>(0, 1)(rng_);
  double flush_p = fault_armed_ ? 0.25 : flush_p_;
  if (x < flush_p) return FlushOp(v);
  x -= flush_p;
  if (x < commit_p_) return CommitOp();
  x -= commit_p_;
  bool quiet = !fault_armed_ && !pool_failed_;
  if (x < 0.004) return quiet ? CleanReopen() : true;
  x -= 0.004;
  if (x < 0.006) return quiet ? ControlOp() : true;
  x -= 0.006;
  // Image operations also under armed faults (more often: their commits
  // may fail, and the crash decides), not once a commit failed.
  // Long-lived pools churn the log with plain volumes mostly (discards of a
  // clone over its parent's data do not free anything).
  const double image_p = (marathon_ || ring_) ? 0.0005 : fault_armed_ ? 0.03 : 0.008;
  if (x < image_p) return pool_failed_ ? true : ImageOp();
  x -= image_p;
  // The rest are data ops: x rescaled to [0, 1).
  x /= 1 - flush_p - commit_p_ - 0.010 - image_p;
  uint64_t s, n;
  if (x < 0.08) {  // read and compare with the model
    PickRange(v, static_cast<int>(Below(4)), &s, &n);
    return ReadCheck(v, s, n);
  }
  x -= 0.08;
  // Marathons churn allocations (discard, rewrite) to fill the log, and
  // now and then batch a few hundred scattered ones into one commit: log
  // entries of several blocks, so some do not fit the end of the ring and
  // the writer wraps early (the reader's "try offset 0" path).
  if ((marathon_ && x < 0.01) || (faults_ && x < 0.004)) return Burst();
  if (ring_ && x < 0.05) return Storm();
  double zero_share = marathon_ ? 0.4 : 0.25;
  if (x < zero_share) {
    PickRange(v, marathon_ && Chance(0.7) ? 1 : static_cast<int>(Below(3)), &s, &n);
    uint64_t k = Below(10);
    io::IoOp op = k < 4 ? io::IoOp::kDiscard : io::IoOp::kWriteZeroes;
    bool unmap = k >= 4 && k < 8;
    return v.snapshot ? SnapshotDataOp(v, op, unmap, s, n) : DataOp(v, op, unmap, s, n);
  }
  PickRange(v, static_cast<int>(Below(4)), &s, &n);
  return v.snapshot ? SnapshotDataOp(v, io::IoOp::kWrite, false, s, n) : DataOp(v, io::IoOp::kWrite, false, s, n);
}

bool Iteration::Burst() {
  // Every other cluster of every volume, each its own record: holding data
  // -> discard (an unmap record), else a one-sector write (a map record, if
  // space is left, e.g. freed by the previous burst's commit).
  // Once a write finds the pool full, the rest of the burst only discards.
  uint64_t phase = Below(2);
  bool full = false;
  for (size_t vi = 0; vi < vols_.size(); ++vi) {
    VolModel& v = *vols_[vi];
    if (v.snapshot) continue;  // read-only
    uint64_t clusters = v.sectors() / cs_sectors_;
    for (uint64_t c = phase; c < clusters; c += 2) {
      uint64_t s0 = c * cs_sectors_;
      bool data = false;
      for (uint64_t k = 0; k < cs_sectors_ && !data; ++k) data = v.s[s0 + k].cur != 0;
      if (!data && full) continue;
      // A clone's discard over its parent's data is a no-op: no churn there.
      const VolModel* p = Find(v.parent);
      bool below = false;
      for (uint64_t k = s0; p != nullptr && k < s0 + cs_sectors_ && k < p->sectors() && !below; ++k) {
        below = p->s[k].cur != 0;
      }
      if (below || v.uncertain) continue;
      uint64_t enospc = totals_->enospc;
      bool ok = data ? DataOp(v, io::IoOp::kDiscard, false, s0, cs_sectors_)
                     : DataOp(v, io::IoOp::kWrite, false, s0 + Below(cs_sectors_), 1);
      if (!ok) return false;
      full = full || totals_->enospc != enospc;
    }
  }
  return true;
}

bool Iteration::Storm() {
  for (uint64_t rounds = Range(4, 10); rounds > 0; --rounds) {
    if (!Burst()) return false;
    if (!(Chance(0.5) ? CommitOp() : FlushOp(*vols_[Below(vols_.size())]))) return false;
  }
  return true;
}

bool Iteration::VerifyAll(bool after_crash) {
  // The reopened pool must have exactly the model's volumes.
  auto list = pool_->ListVolumes();
  if (list.size() != vols_.size()) {
    return Fail("pool has " + std::to_string(list.size()) + " volumes, expected " + std::to_string(vols_.size()));
  }
  for (auto& v : vols_) {
    auto it = std::find_if(list.begin(), list.end(), [&](const VolumeInfo& i) { return i.name == v->name; });
    if (it == list.end()) return Fail("volume " + v->name + " is missing");
    if (it->size != v->size || (it->reserved_bytes > 0) != v->prealloc) {
      return Fail("volume " + v->name + ": size " + std::to_string(it->size) + " reserved " +
                  std::to_string(it->reserved_bytes) + ", expected size " + std::to_string(v->size) +
                  (v->prealloc ? ", preallocated" : ", thin"));
    }
    if (it->exported != v->exported || (v->exported && !(it->export_settings == v->exp))) {
      return Fail("volume " + v->name + ": export settings differ from the last ones committed (exported " +
                  std::to_string(it->exported) + ", expected " + std::to_string(v->exported) + ")");
    }
    // The image tree: every committed snapshot, clone, inflate, decouple
    // and delete is in it, exactly.
    std::vector<std::string> children = ChildrenOf(v->name), listed = it->children;
    std::sort(children.begin(), children.end());
    std::sort(listed.begin(), listed.end());
    if (it->snapshot != v->snapshot || it->parent != v->parent || listed != children) {
      auto join = [](const std::vector<std::string>& l) {
        std::string o;
        for (const auto& x : l) o += (o.empty() ? "" : ",") + x;
        return "{" + o + "}";
      };
      return Fail("image " + v->name + ": snapshot " + std::to_string(it->snapshot) + " parent '" + it->parent +
                  "' children " + join(listed) + ", expected snapshot " + std::to_string(v->snapshot) + " parent '" +
                  v->parent + "' children " + join(children) +
                  (after_crash ? " (after a crash)" : " (after a clean reopen)"));
    }
  }
  // Every used cluster belongs to exactly one image; deleting an image frees
  // what it holds, or nothing while it has clones.
  uint64_t held = 0;
  for (const VolumeInfo& i : pool_->ListVolumes(true)) {
    held += i.allocated_bytes;
    uint64_t frees = i.children.empty() ? i.allocated_bytes : 0;
    if (!i.space_known || i.delete_frees_bytes != frees) {
      return Fail("image " + i.name + ": delete would free " + std::to_string(i.delete_frees_bytes) +
                  " bytes, it holds " + std::to_string(i.allocated_bytes) + " and has " +
                  std::to_string(i.children.size()) + " clone(s)");
    }
  }
  if (held != pool_->Info().used_clusters * cluster_) {
    return Fail("the images hold " + std::to_string(held / cluster_) + " clusters, the pool uses " +
                std::to_string(pool_->Info().used_clusters));
  }
  std::vector<uint8_t> back;
  const uint64_t chunk = 512;  // sectors per read
  int bad = 0;
  std::string report;
  std::vector<std::vector<uint64_t>> seen(vols_.size());
  for (size_t vi = 0; vi < vols_.size(); ++vi) {
    VolModel& v = *vols_[vi];
    seen[vi].resize(v.sectors());
    for (uint64_t s0 = 0; s0 < v.sectors(); s0 += chunk) {
      uint64_t n = std::min(chunk, v.sectors() - s0);
      if (!ReadRange(v, s0, n, &back)) return false;
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t s = s0 + i;
        Decoded d = Decode(back.data() + i * kSector, s, gen_tag_);
        uint64_t got = d.kind == Decoded::kValue ? d.gen : 0;
        bool valid = d.kind == Decoded::kZeros || d.kind == Decoded::kValue;
        const SectorState& st = v.s[s];
        const auto& rec = v.recent[s];
        bool allowed = valid && (after_crash ? got == st.durable || std::find(rec.begin(), rec.end(), got) != rec.end()
                                             : got == st.cur);
        if (!allowed) {
          if (bad < 6) report += "\n  " + v.name + " sector " + std::to_string(s) + ": " + Describe(v, s, d);
          ++bad;
        }
        seen[vi][s] = got;
      }
    }
  }
  if (bad > 0) {
    return Fail(std::to_string(bad) + " sector(s) hold what they may not " +
                (after_crash ? "after the crash" : "after a clean reopen") + ":" + report);
  }
  // Adopt what survived: all of it is durable now (the image is the device).
  for (size_t vi = 0; vi < vols_.size(); ++vi) {
    VolModel& v = *vols_[vi];
    for (uint64_t s = 0; s < v.sectors(); ++s) {
      if (seen[vi][s] != v.s[s].durable) totals_->recovered_sectors_new++;
      v.s[s] = SectorState{seen[vi][s], seen[vi][s]};
    }
    for (uint64_t s : v.touched) {
      if (s < v.recent.size()) v.recent[s].clear();
    }
    v.touched.clear();
  }
  return true;
}

bool Iteration::CrashAndReopen() {
  uint64_t r = Below(10);
  CrashOptions co;
  if (r < 2)
    co = CrashOptions{4, 1, 1};  // mostly kept
  else if (r < 4)
    co = CrashOptions{1, 4, 1};  // mostly dropped
  else if (r < 6)
    co = CrashOptions{1, 1, 4};  // mostly torn
  dev_->set_crash_options(co);
  std::vector<uint8_t> image = dev_->Crash();
  // Log wrap: the ring's first entry is seq 1 until the writer comes round.
  uint32_t magic;
  uint64_t seq;
  std::memcpy(&magic, image.data() + sb_.log_offset, 4);
  std::memcpy(&seq, image.data() + sb_.log_offset + 8, 8);
  if (magic == kLogMagic && seq > 1) wrapped_ = true;
  history_.push_back(OpRec{generation_, op_index_, "CRASH", 0, 0, 0, 0, 0});
  ClosePool();
  totals_->crash_points++;
  for (auto& v : vols_) {
    if (v->snapshot) {
      totals_->crash_points_with_tree++;
      break;
    }
  }
  std::shared_ptr<VolatileCacheDevice> dev =
      VolatileCacheDevice::FromImage(std::move(image), Mix(seed_ ^ (generation_ + 77)));
  {
    // What `nestor pool check` does: a read-only open that collects
    // problems instead of stopping at the first, then Check().
    PoolOptions opts;
    opts.read_only = true;
    opts.check_mode = true;
    auto checker = Pool::Open(std::make_unique<SharedDevice>(dev), opts);
    if (!checker.ok()) return Fail("pool check (read-only open) after the crash: " + checker.status().ToString());
    CheckReport rep = (*checker)->Check();
    if (!rep.clean()) {
      std::string all;
      for (const auto& p : rep.problems) all += "\n    " + p;
      return Fail("pool check after the crash is not clean:" + all);
    }
  }
  if (!OpenPool(std::move(dev), "crash")) return false;
  if (!CheckPool("after the crash")) return false;
  if (!ResolvePending(false)) return false;
  if (!OpenChannels()) return false;
  return VerifyAll(true);
}

bool Iteration::CleanReopen() {
  // Half the time the pool's destructor does the final commit.
  if (Chance(0.5)) {
    Status st = pool_->Commit();
    history_.push_back(OpRec{generation_, op_index_, "commit + clean reopen", 0, 0, 0, 0, -st.err()});
    if (!st.ok()) return Fail("commit before a clean reopen: " + st.ToString());
  } else {
    history_.push_back(OpRec{generation_, op_index_, "clean reopen", 0, 0, 0, 0, 0});
  }
  if (!CheckPool("before a clean reopen")) return false;
  ClosePool();
  Committed();
  totals_->clean_reopens++;
  if (!OpenPool(dev_, "clean shutdown")) return false;
  if (!CheckPool("after a clean reopen")) return false;
  if (!OpenChannels()) return false;
  return VerifyAll(false);
}

bool Iteration::Generation() {
  uint32_t ops = static_cast<uint32_t>(Range(1, max_ops_));
  // Faults: in a minority of iterations, about half the generations arm one.
  int64_t arm_at = -1;
  // Long-lived pools mostly arm a targeted fault for the whole generation.
  bool long_lived = marathon_ || ring_;
  bool targeted = false;
  if (faults_ && long_lived) {
    if (Chance(0.35)) {
      arm_at = 0, targeted = true;
    } else if (Chance(0.1)) {
      arm_at = static_cast<int64_t>(Below(ops));
    }
  } else if (faults_ && Chance(0.6)) {
    arm_at = static_cast<int64_t>(Below(ops));
  }
  for (op_index_ = 0; op_index_ < ops; ++op_index_) {
    if (static_cast<int64_t>(op_index_) == arm_at) {
      totals_->fault_generations++;
      fault_armed_ = true;
      // Long-lived pools: the Sync after the next checkpoint or the next
      // entry at the start of the ring fails (the write may be torn).
      uint64_t k = targeted ? 3 + (Chance(0.7) ? 0 : 1) : Below(3);
      const char* what;
      if (k == 3) {
        shared_->FailSyncAfterWriteIn(sb_.ckpt_offset[0], sb_.log_offset);
        what = "fault: the Sync after the next checkpoint write fails";
      } else if (k == 4) {
        shared_->FailSyncAfterWriteIn(sb_.log_offset, sb_.log_offset + kBlock);
        what = "fault: the Sync after the next entry at the ring's start fails";
      } else if (k == 0) {
        dev_->FailSync(true);
        what = "fault: device Sync fails";
      } else if (k == 1) {
        dev_->FailWritesAfter(Below(40));
        what = "fault: device writes fail after a few";
      } else {
        shared_->FailSyncAfter(static_cast<int64_t>(Below(4)));
        what = "fault: a later Sync fails (mid-commit)";
      }
      history_.push_back(OpRec{generation_, op_index_, what, 0, 0, 0, 0, 0});
    }
    totals_->ops++;
    if (!DoOp()) return false;
    if (history_.size() > kHistoryMax) history_.erase(history_.begin(), history_.end() - kHistoryMax / 2);
  }
  return CrashAndReopen();
}

bool Iteration::Run() {
  if (!Setup()) return false;
  for (generation_ = 1; generation_ <= generations_; ++generation_) {
    if (!Generation()) return false;
  }
  if (!CheckPool("at the end")) return false;
  ClosePool();
  totals_->iterations++;
  if (wrapped_) totals_->log_wrap_iterations++;
  return true;
}

// ---- deterministic reductions of what the randomized test found ----

struct SmallPool {
  std::shared_ptr<VolatileCacheDevice> dev;
  std::unique_ptr<Pool> pool;
};

SmallPool MakeSmallPool(uint32_t cluster) {
  SmallPool p;
  p.dev = std::make_shared<VolatileCacheDevice>(8 << 20, 1);
  EXPECT_TRUE(Pool::Format(p.dev.get(), cluster, false).ok());
  auto pool = Pool::Open(std::make_unique<SharedDevice>(p.dev));
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  if (pool.ok()) p.pool = std::move(pool.value());
  return p;
}

std::unique_ptr<io::IoChannel> ChannelOf(Pool* pool, const std::string& name, std::shared_ptr<io::BlockBackend>* keep) {
  auto b = pool->OpenVolume(name);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!b.ok()) return nullptr;
  *keep = b.value();
  auto ch = (*keep)->OpenChannel(nullptr);
  EXPECT_TRUE(ch.ok());
  return ch.ok() ? std::move(ch.value()) : nullptr;
}

// Shrinking to a size inside a cluster keeps that cluster mapped, with the
// old bytes past the new end; growing again must not show them.
TEST(VolumeCrashFound, GrowAfterShrinkReadsZeros) {
  constexpr uint32_t kCluster = 64 * 1024;
  auto p = MakeSmallPool(kCluster);
  ASSERT_NE(p.pool, nullptr);
  ASSERT_TRUE(p.pool->CreateVolume("a", 1 << 20, false).ok());
  std::vector<uint8_t> data(kCluster, 0x5A);
  {
    std::shared_ptr<io::BlockBackend> b;
    auto ch = ChannelOf(p.pool.get(), "a", &b);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, data.data(), kCluster), static_cast<int>(kCluster));
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kFlush, 0, nullptr, 0), 0);
  }
  ASSERT_TRUE(p.pool->ResizeVolume("a", 4096, true).ok());
  ASSERT_TRUE(p.pool->ResizeVolume("a", 1 << 20, false).ok());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = ChannelOf(p.pool.get(), "a", &b);
  std::vector<uint8_t> buf(kCluster, 0xEE);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), kCluster), static_cast<int>(kCluster));
  EXPECT_EQ(0, std::memcmp(buf.data(), data.data(), 4096));
  EXPECT_TRUE(IsZero(buf.data() + 4096, kCluster - 4096))
      << "bytes written before the shrink reappear past the old end after the grow";
}

// A preallocated volume's space is guaranteed: a write into it must not
// fail with ENOSPC, also right after it discarded some of its clusters
// (freed only when the unmap commits) while the rest of the pool is full.
TEST(VolumeCrashFound, PreallocatedVolumeWritesAfterItsOwnDiscard) {
  constexpr uint32_t kCluster = 64 * 1024;
  auto p = MakeSmallPool(kCluster);
  ASSERT_NE(p.pool, nullptr);
  uint64_t free0 = p.pool->Info().free_clusters;
  ASSERT_TRUE(p.pool->CreateVolume("gold", 4 * kCluster, true).ok());
  ASSERT_TRUE(p.pool->CreateVolume("thin", free0 * kCluster, false).ok());
  std::shared_ptr<io::BlockBackend> bg, bt;
  auto gold = ChannelOf(p.pool.get(), "gold", &bg);
  auto thin = ChannelOf(p.pool.get(), "thin", &bt);
  std::vector<uint8_t> data((free0 - 4) * kCluster, 0x33);
  ASSERT_EQ(SyncIo(thin.get(), io::IoOp::kWrite, 0, data.data(), data.size()), static_cast<int>(data.size()));
  ASSERT_EQ(SyncIo(gold.get(), io::IoOp::kWrite, 0, data.data(), 4 * kCluster), static_cast<int>(4 * kCluster));
  EXPECT_EQ(p.pool->Info().free_clusters, 0u);
  ASSERT_EQ(SyncIo(gold.get(), io::IoOp::kDiscard, 0, nullptr, kCluster), 0);
  EXPECT_EQ(SyncIo(gold.get(), io::IoOp::kWrite, 0, data.data(), 4096), 4096)
      << "the preallocated volume lost its guaranteed space until the next commit";
  EXPECT_EQ(SyncIo(thin.get(), io::IoOp::kWrite, data.size(), data.data(), 4096), -ENOSPC);
  EXPECT_TRUE(p.pool->Check().clean());
}

// Shrinking a preallocated volume needs no space, yet it fails with ENOSPC
// when the pool is full: the clusters it unmaps count as unused
// reservation before they are free. And the failed resize has already
// unmapped them (a pending unmap record, committed by the next commit):
// the data past the new end is gone while the volume keeps its size.
TEST(VolumeCrashFound, ShrinkPreallocatedVolumeInFullPool) {
  constexpr uint32_t kCluster = 64 * 1024;
  auto p = MakeSmallPool(kCluster);
  ASSERT_NE(p.pool, nullptr);
  uint64_t free0 = p.pool->Info().free_clusters;
  ASSERT_TRUE(p.pool->CreateVolume("gold", 4 * kCluster, true).ok());
  ASSERT_TRUE(p.pool->CreateVolume("thin", free0 * kCluster, false).ok());
  std::vector<uint8_t> data((free0 - 4) * kCluster, 0x33);
  {
    std::shared_ptr<io::BlockBackend> bg, bt;
    auto gold = ChannelOf(p.pool.get(), "gold", &bg);
    auto thin = ChannelOf(p.pool.get(), "thin", &bt);
    ASSERT_EQ(SyncIo(thin.get(), io::IoOp::kWrite, 0, data.data(), data.size()), static_cast<int>(data.size()));
    ASSERT_EQ(SyncIo(gold.get(), io::IoOp::kWrite, 0, data.data(), 4 * kCluster), static_cast<int>(4 * kCluster));
    ASSERT_EQ(SyncIo(gold.get(), io::IoOp::kFlush, 0, nullptr, 0), 0);
  }
  Status st = p.pool->ResizeVolume("gold", kCluster, true);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (!st.ok()) {
    // It failed: then nothing may have changed.
    EXPECT_EQ(p.pool->GetVolume("gold")->size, 4u * kCluster);
    EXPECT_EQ(p.pool->GetVolume("gold")->allocated_bytes, 4u * kCluster) << "the failed shrink unmapped data";
    std::shared_ptr<io::BlockBackend> bg;
    auto gold = ChannelOf(p.pool.get(), "gold", &bg);
    std::vector<uint8_t> buf(kCluster, 0xEE);
    ASSERT_EQ(SyncIo(gold.get(), io::IoOp::kRead, 3 * kCluster, buf.data(), kCluster), static_cast<int>(kCluster));
    EXPECT_EQ(0, std::memcmp(buf.data(), data.data(), kCluster)) << "the failed shrink discarded data";
  }
  EXPECT_TRUE(p.pool->Check().clean());
}

TEST(VolumeCrash, RandomOpsSurviveCrashes) {
  const LogLevel level = GetLogLevel();
  if (std::getenv("NESTOR_LOG") == nullptr) {
    // Injected faults make the pool log errors on purpose, and every open
    // logs a line; one level above kError silences everything.
    SetLogLevel(static_cast<LogLevel>(static_cast<int>(LogLevel::kError) + 1));
  }
  const uint64_t iterations = EnvU64("NESTOR_CRASH_ITERATIONS", 600);
  uint64_t base = EnvU64("NESTOR_CRASH_SEED", 0);
  if (std::getenv("NESTOR_CRASH_SEED") == nullptr) {
    base = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
           (static_cast<uint64_t>(getpid()) << 40);
    base &= (1ull << 48) - 1;  // short enough to paste
  }
  std::printf("volume crash test: base seed=%llu iterations=%llu (iteration i uses seed base+i)\n",
              static_cast<unsigned long long>(base), static_cast<unsigned long long>(iterations));
  std::fflush(stdout);
  Totals t;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < iterations; ++i) {
    uint64_t seed = base + i;
    SCOPED_TRACE("seed=" + std::to_string(seed));
    Iteration it(seed, &t);
    if (!it.Run()) break;  // reported; one failing iteration is enough
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "volume crash test: %llu iterations (4K/8K/64K clusters: %llu/%llu/%llu), %llu crash points, "
      "%llu clean reopens, %llu random ops (%llu write requests, %llu ENOSPC, %llu EIO), %llu flushes (%llu failed), "
      "%llu fault generations (%llu targeted faults hit), %llu control ops, %llu checkpoints, %llu log entries, "
      "log wrapped in %llu iterations, %llu sectors recovered newer than the last flush, %.1f s\n",
      (unsigned long long)t.iterations, (unsigned long long)t.cluster_sizes[0], (unsigned long long)t.cluster_sizes[1],
      (unsigned long long)t.cluster_sizes[2], (unsigned long long)t.crash_points, (unsigned long long)t.clean_reopens,
      (unsigned long long)t.ops, (unsigned long long)t.writes, (unsigned long long)t.enospc, (unsigned long long)t.eio,
      (unsigned long long)t.flushes, (unsigned long long)t.failed_flushes, (unsigned long long)t.fault_generations,
      (unsigned long long)t.targeted_faults, (unsigned long long)t.control_ops, (unsigned long long)t.checkpoints,
      (unsigned long long)t.log_entries, (unsigned long long)t.log_wrap_iterations,
      (unsigned long long)t.recovered_sectors_new, secs);
  std::printf(
      "volume crash test: images: %llu snapshots, %llu clones, %llu inflates, %llu decouples, %llu deletes of "
      "snapshots/leaves, %llu refused for space, %llu refusals checked, %llu discards of clones, %llu crash points "
      "with snapshots, chains up to %llu images, %llu image operations interrupted by a failed commit (%llu "
      "kept), %llu checkpoints by pools with snapshots\n",
      (unsigned long long)t.snapshots, (unsigned long long)t.clones, (unsigned long long)t.inflates,
      (unsigned long long)t.decouples, (unsigned long long)t.image_deletes, (unsigned long long)t.image_enospc,
      (unsigned long long)t.refusals, (unsigned long long)t.clone_discards,
      (unsigned long long)t.crash_points_with_tree, (unsigned long long)t.max_depth,
      (unsigned long long)t.torn_image_ops, (unsigned long long)t.torn_image_ops_kept,
      (unsigned long long)t.checkpoints_with_tree);
  std::fflush(stdout);
  SetLogLevel(level);
  if (HasFailure() || iterations < 300) return;  // short runs (replays) need not reach every path
  EXPECT_GT(t.enospc, 0u) << "no write ever hit a full pool";
  EXPECT_GT(t.checkpoints, 0u) << "no checkpoint was written";
  EXPECT_GT(t.log_wrap_iterations, 0u) << "the log never wrapped";
  EXPECT_GT(t.failed_flushes, 0u) << "no injected fault ever failed a FLUSH";
  EXPECT_GT(t.targeted_faults, 0u) << "no Sync ever failed right after a checkpoint or wrapped log write";
  EXPECT_GT(t.recovered_sectors_new, 0u) << "no unflushed write ever survived a crash";
  EXPECT_GT(t.snapshots, 0u) << "no snapshot was taken";
  EXPECT_GT(t.clones, 0u) << "no clone was made";
  EXPECT_GT(t.inflates, 0u) << "no inflate completed";
  EXPECT_GT(t.decouples, 0u) << "no decouple completed";
  EXPECT_GT(t.image_deletes, 0u) << "no snapshot or leaf image was deleted";
  EXPECT_GT(t.refusals, 0u) << "no refusal was checked";
  EXPECT_GT(t.crash_points_with_tree, 0u) << "no crash hit a pool with snapshots";
  EXPECT_GE(t.max_depth, 4u) << "no chain of 4 images";
  EXPECT_GT(t.torn_image_ops, 0u) << "no image operation was interrupted by a failed commit";
  EXPECT_GT(t.checkpoints_with_tree, 0u) << "no checkpoint was written by a pool with snapshots";
}

}  // namespace
}  // namespace nestor::volume
