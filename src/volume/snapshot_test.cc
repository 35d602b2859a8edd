// Snapshots and clones (issue #12), each property on its own:
//   - a snapshot takes over its source's map; the source reads the same
//     through it, and its writes never reach the snapshot;
//   - chains of any depth read through every level (holes: zeros);
//   - every refusal: clone of a non-snapshot and snapshot of a snapshot
//     (EINVAL), delete of a snapshot with clones (EBUSY naming them), writes
//     to a snapshot (EROFS), resizing a snapshot, shrinking a clone, a
//     version 1 pool before `Upgrade()` (ENOTSUP);
//   - the image tree and the content persist through a clean reopen, log
//     replay after a crash, and a checkpoint;
//   - isolation: no clone reads another clone's writes, the snapshot stays
//     bit for bit what it was, a deleted image's space reads as zeros in
//     new volumes;
//   - DISCARD on a clone frees only where nothing below shows data (a no-op
//     elsewhere), WRITE_ZEROES always reads zeros;
//   - inflate and decouple keep the content and relink;
//   - space accounting (ListVolumes(true));
//   - races, with one io_uring per thread on a file-backed pool whose data
//     requests are delayed (wide windows): two reactors' first writes to
//     one shared cluster of a clone copy it once; a snapshot taken under a
//     writer holds exactly the writes of one instant (QD1: a prefix).
//
// Knobs: NESTOR_SNAPSHOT_RACE_ROUNDS (default 150) for the race tests.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/sanitizers.h"
#include "io/backend.h"
#include "io/uring.h"
#include "volume/format.h"
#include "volume/pool.h"
#include "volume/testing/borrowed_pool_device.h"
#include "volume/testing/sync_io.h"
#include "volume/testing/volatile_cache_device.h"

namespace nestor::volume {
namespace {

namespace fs = std::filesystem;
using testing::BorrowedPoolDevice;
using testing::StartIo;
using testing::SyncIo;
using testing::SyncRequest;
using testing::VolatileCacheDevice;

constexpr uint32_t kCluster = 64 * 1024;
constexpr uint64_t kBlk = 4096;

uint64_t EnvU64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return dflt;
  return std::strtoull(v, nullptr, 0);
}

uint64_t Mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// n bytes that depend on seed and on their position, never all zero.
std::vector<uint8_t> Pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w = Mix(seed * 0x100000001b3ull + i) | 1;
    std::memcpy(v.data() + i, &w, std::min<size_t>(8, n - i));
  }
  return v;
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

uint64_t Checksum(const std::vector<uint8_t>& v) {
  uint64_t h = 0x84222325cbf29ce4ull;
  for (size_t i = 0; i + 8 <= v.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, v.data() + i, 8);
    h = Mix(h ^ w);
  }
  return h;
}

std::string Join(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  std::string o;
  for (const auto& x : v) o += (o.empty() ? "" : ",") + x;
  return o;
}

// ---- an in-memory pool (inline completions) with a byte model per image ----

struct Img {
  std::shared_ptr<io::BlockBackend> b;
  std::unique_ptr<io::IoChannel> ch;
};

class MemPool {
 public:
  explicit MemPool(uint64_t bytes, uint32_t cluster = kCluster, uint64_t seed = 1)
      : dev_(std::make_unique<VolatileCacheDevice>(bytes, seed)), cluster_(cluster) {
    EXPECT_TRUE(Pool::Format(dev_.get(), cluster, false).ok());
    Reopen();
  }
  ~MemPool() { Close(); }

  Pool* pool() { return pool_.get(); }
  VolatileCacheDevice* dev() { return dev_.get(); }
  uint32_t cluster() const { return cluster_; }

  void Close() {
    imgs_.clear();
    pool_.reset();
  }
  // A clean close and open.
  void Reopen() {
    Close();
    auto p = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev_.get()));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    pool_ = std::move(p.value());
  }
  // Power loss right now, then a reboot on what the disk kept.
  void CrashAndReopen(uint64_t seed = 7) {
    auto image = dev_->Crash();
    Close();
    dev_ = VolatileCacheDevice::FromImage(std::move(image), seed);
    auto p = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev_.get()));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    pool_ = std::move(p.value());
  }

  io::IoChannel* Ch(const std::string& name) {
    auto it = imgs_.find(name);
    if (it != imgs_.end()) return it->second.ch.get();
    auto b = pool_->OpenVolume(name);
    EXPECT_TRUE(b.ok()) << name << ": " << b.status().ToString();
    if (!b.ok()) return nullptr;
    Img img;
    img.b = b.value();
    auto ch = img.b->OpenChannel(nullptr);
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    if (!ch.ok()) return nullptr;
    img.ch = std::move(ch.value());
    io::IoChannel* raw = img.ch.get();
    imgs_[name] = std::move(img);
    return raw;
  }
  void CloseImage(const std::string& name) { imgs_.erase(name); }

  int Write(const std::string& name, uint64_t off, const std::vector<uint8_t>& data) {
    io::IoChannel* ch = Ch(name);
    if (ch == nullptr) return INT_MIN;
    return SyncIo(ch, io::IoOp::kWrite, off, const_cast<uint8_t*>(data.data()), data.size());
  }
  int Op(const std::string& name, io::IoOp op, uint64_t off, uint64_t len, bool unmap = false) {
    io::IoChannel* ch = Ch(name);
    if (ch == nullptr) return INT_MIN;
    return SyncIo(ch, op, off, nullptr, len, unmap);
  }
  std::vector<uint8_t> Read(const std::string& name, uint64_t off, uint64_t len) {
    std::vector<uint8_t> buf(len, 0xA5);
    io::IoChannel* ch = Ch(name);
    if (ch == nullptr) return {};
    int r = SyncIo(ch, io::IoOp::kRead, off, buf.data(), len);
    EXPECT_EQ(r, static_cast<int>(len)) << "read " << name << " at " << off;
    return buf;
  }
  uint64_t Allocated(const std::string& name) {
    auto i = pool_->GetVolume(name);
    EXPECT_TRUE(i.ok()) << name;
    return i.ok() ? i->allocated_bytes : 0;
  }

 private:
  std::unique_ptr<VolatileCacheDevice> dev_;
  uint32_t cluster_;
  std::unique_ptr<Pool> pool_;
  std::map<std::string, Img> imgs_;
};

// What every image must read, and the tree it must be in.
struct Model {
  struct Image {
    std::vector<uint8_t> data;
    bool snapshot = false;
    std::string parent;
  };
  std::map<std::string, Image> images;

  void Volume(const std::string& name, uint64_t size) {
    images[name] = Image{std::vector<uint8_t>(size, 0), false, ""};
  }
  void Snapshot(const std::string& source, const std::string& name) {
    Image& src = images.at(source);
    images[name] = Image{src.data, true, src.parent};
    src.parent = name;
  }
  void Clone(const std::string& snap, const std::string& name) {
    images[name] = Image{images.at(snap).data, false, snap};
  }
  void Write(const std::string& name, uint64_t off, const std::vector<uint8_t>& d) {
    std::memcpy(images.at(name).data.data() + off, d.data(), d.size());
  }
  void Zero(const std::string& name, uint64_t off, uint64_t len) {
    std::memset(images.at(name).data.data() + off, 0, len);
  }
  std::vector<std::string> Children(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& [n, i] : images) {
      if (i.parent == name) out.push_back(n);
    }
    return out;
  }
};

// Every image reads its model's bytes; the pool lists exactly the model's
// images, with their snapshot flags, parents and children; Check() is clean.
void Verify(MemPool& p, const Model& m, const std::string& when) {
  SCOPED_TRACE(when);
  auto list = p.pool()->ListVolumes();
  ASSERT_EQ(list.size(), m.images.size());
  for (const auto& info : list) {
    auto it = m.images.find(info.name);
    ASSERT_NE(it, m.images.end()) << "unexpected image " << info.name;
    EXPECT_EQ(info.snapshot, it->second.snapshot) << info.name;
    EXPECT_EQ(info.parent, it->second.parent) << info.name;
    EXPECT_EQ(Join(info.children), Join(m.Children(info.name))) << info.name;
    EXPECT_EQ(info.size, it->second.data.size()) << info.name;
  }
  for (const auto& [name, img] : m.images) {
    auto got = p.Read(name, 0, img.data.size());
    ASSERT_EQ(got.size(), img.data.size()) << name;
    if (got != img.data) {
      size_t i = 0;
      while (got[i] == img.data[i]) ++i;
      ADD_FAILURE() << name << " differs from its model first at byte " << i << " (cluster " << i / p.cluster()
                    << "): read " << int(got[i]) << ", expected " << int(img.data[i]);
    }
  }
  CheckReport rep = p.pool()->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

// ---- basics ----

TEST(Snapshot, TakesOverTheMapAndTheSourceBecomesAClone) {
  MemPool p(16 << 20);
  Model m;
  ASSERT_TRUE(p.pool()->CreateVolume("v", 1 << 20, false).ok());
  m.Volume("v", 1 << 20);
  auto a = Pattern(3 * kCluster + 4096, 1);
  ASSERT_EQ(p.Write("v", 8192, a), static_cast<int>(a.size()));
  m.Write("v", 8192, a);
  uint64_t held = p.Allocated("v");
  EXPECT_EQ(held, 4u * kCluster);
  uint64_t used = p.pool()->Info().used_clusters;

  auto info = p.pool()->CreateSnapshot("v", "s");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  m.Snapshot("v", "s");
  EXPECT_TRUE(info->snapshot);
  EXPECT_EQ(info->name, "s");
  EXPECT_EQ(info->parent, "");
  EXPECT_EQ(info->size, 1u << 20);
  EXPECT_EQ(p.Allocated("s"), held) << "the snapshot takes over the source's clusters";
  EXPECT_EQ(p.Allocated("v"), 0u) << "the source becomes a clone with an empty map";
  EXPECT_EQ(p.pool()->Info().used_clusters, used) << "a snapshot copies nothing";
  EXPECT_EQ(p.pool()->GetVolume("v")->parent, "s");
  Verify(p, m, "right after the snapshot");

  // A first write into a shared cluster copies it (4 KiB of it new), one
  // into a hole of both allocates: two clusters, the snapshot unchanged.
  auto b = Pattern(4096, 2);
  ASSERT_EQ(p.Write("v", kCluster + 4096, b), 4096);
  ASSERT_EQ(p.Write("v", 10 * kCluster, b), 4096);
  m.Write("v", kCluster + 4096, b);
  m.Write("v", 10 * kCluster, b);
  EXPECT_EQ(p.Allocated("v"), 2u * kCluster);
  EXPECT_EQ(p.Allocated("s"), held);
  // A second write into the copied cluster goes in place.
  auto c = Pattern(512, 3);
  ASSERT_EQ(p.Write("v", kCluster + 512, c), 512);
  m.Write("v", kCluster + 512, c);
  EXPECT_EQ(p.Allocated("v"), 2u * kCluster);
  Verify(p, m, "after writes to the clone");
}

TEST(Snapshot, ChainsOfAnyDepthReadThroughEveryLevel) {
  MemPool p(32 << 20);
  Model m;
  constexpr uint64_t kSize = 2 << 20;  // 32 clusters
  ASSERT_TRUE(p.pool()->CreateVolume("v", kSize, false).ok());
  m.Volume("v", kSize);
  // Each level writes its own clusters and overwrites part of the level
  // before's; a snapshot closes the level. v's chain: s0 <- s1 <- ... <- v.
  constexpr int kLevels = 6;
  for (int level = 0; level < kLevels; ++level) {
    auto own = Pattern(kCluster, 100 + level);
    ASSERT_EQ(p.Write("v", level * 2 * kCluster + 4096, own), static_cast<int>(own.size()));
    m.Write("v", level * 2 * kCluster + 4096, own);
    if (level > 0) {  // half a cluster over the previous level's data
      auto over = Pattern(kCluster / 2, 200 + level);
      ASSERT_EQ(p.Write("v", (level - 1) * 2 * kCluster + 8192, over), static_cast<int>(over.size()));
      m.Write("v", (level - 1) * 2 * kCluster + 8192, over);
    }
    std::string s = "s" + std::to_string(level);
    auto info = p.pool()->CreateSnapshot("v", s);
    ASSERT_TRUE(info.ok()) << s << ": " << info.status().ToString();
    m.Snapshot("v", s);
  }
  EXPECT_EQ(p.pool()->GetVolume("s5")->parent, "s4");
  EXPECT_EQ(p.pool()->GetVolume("s0")->parent, "");
  // A snapshot of a clone of a snapshot of ...: c of s2, written, snapped
  // (cs), cloned (d), written: d -> cs -> s2 -> s1 -> s0 (depth 5).
  ASSERT_TRUE(p.pool()->CloneVolume("s2", "c").ok());
  m.Clone("s2", "c");
  auto cw = Pattern(kCluster + 8192, 300);
  ASSERT_EQ(p.Write("c", 3 * kCluster - 4096, cw), static_cast<int>(cw.size()));
  m.Write("c", 3 * kCluster - 4096, cw);
  ASSERT_TRUE(p.pool()->CreateSnapshot("c", "cs").ok());
  m.Snapshot("c", "cs");
  ASSERT_TRUE(p.pool()->CloneVolume("cs", "d").ok());
  m.Clone("cs", "d");
  auto dw = Pattern(4096, 301);
  ASSERT_EQ(p.Write("d", 20 * kCluster, dw), 4096);  // a hole at every level
  ASSERT_EQ(p.Write("d", 4096, dw), 4096);           // s0's cluster
  m.Write("d", 20 * kCluster, dw);
  m.Write("d", 4096, dw);
  EXPECT_EQ(p.pool()->GetVolume("cs")->parent, "s2");
  EXPECT_EQ(p.pool()->GetVolume("c")->parent, "cs");
  Verify(p, m, "chains of depth 7 (v) and 5 (d)");
  p.Reopen();
  Verify(p, m, "after a clean reopen");
}

// ---- refusals ----

TEST(Snapshot, RefusalsNameTheirReason) {
  MemPool p(16 << 20);
  Model m;
  ASSERT_TRUE(p.pool()->CreateVolume("v", 1 << 20, false).ok());
  ASSERT_TRUE(p.pool()->CreateVolume("plain", 1 << 20, false).ok());
  m.Volume("v", 1 << 20);
  m.Volume("plain", 1 << 20);
  auto a = Pattern(2 * kCluster, 1);
  ASSERT_EQ(p.Write("v", 0, a), static_cast<int>(a.size()));
  m.Write("v", 0, a);
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  m.Snapshot("v", "s");
  ASSERT_TRUE(p.pool()->CloneVolume("s", "c1").ok());
  m.Clone("s", "c1");

  auto clone_plain = p.pool()->CloneVolume("plain", "x");
  EXPECT_EQ(clone_plain.status().err(), EINVAL) << clone_plain.status().ToString();
  EXPECT_NE(clone_plain.status().message().find("plain"), std::string::npos) << clone_plain.status().ToString();
  auto clone_clone = p.pool()->CloneVolume("v", "x");  // v is a clone now, not a snapshot
  EXPECT_EQ(clone_clone.status().err(), EINVAL) << clone_clone.status().ToString();
  auto snap_snap = p.pool()->CreateSnapshot("s", "x");
  EXPECT_EQ(snap_snap.status().err(), EINVAL) << snap_snap.status().ToString();
  EXPECT_NE(snap_snap.status().message().find("snapshot"), std::string::npos) << snap_snap.status().ToString();

  Status del = p.pool()->DeleteVolume("s");
  EXPECT_EQ(del.err(), EBUSY) << del.ToString();
  EXPECT_NE(del.message().find("v"), std::string::npos) << del.ToString();
  EXPECT_NE(del.message().find("c1"), std::string::npos) << "the refusal names every clone: " << del.ToString();

  EXPECT_EQ(p.pool()->CloneVolume("nosuch", "x").status().err(), ENOENT);
  EXPECT_EQ(p.pool()->CreateSnapshot("nosuch", "x").status().err(), ENOENT);
  EXPECT_EQ(p.pool()->CreateSnapshot("plain", "v").status().err(), EEXIST);
  EXPECT_EQ(p.pool()->CloneVolume("s", "c1").status().err(), EEXIST);
  EXPECT_EQ(p.pool()->CreateSnapshot("plain", "bad/name").status().err(), EINVAL);
  EXPECT_EQ(p.pool()->CloneVolume("s", std::string(kMaxNameLen + 1, 'n')).status().err(), EINVAL);
  EXPECT_EQ(p.pool()->InflateVolume("nosuch").err(), ENOENT);
  EXPECT_EQ(p.pool()->DecoupleVolume("nosuch").err(), ENOENT);
  // Inflate and decouple need a clone.
  Status inf_plain = p.pool()->InflateVolume("plain");
  Status dec_plain = p.pool()->DecoupleVolume("plain");
  Status inf_snap = p.pool()->InflateVolume("s");
  EXPECT_FALSE(inf_plain.ok());
  EXPECT_FALSE(dec_plain.ok());
  EXPECT_FALSE(inf_snap.ok()) << "a snapshot's map never changes";
  std::cout << "inflate of a plain volume: " << inf_plain.ToString()
            << "\ndecouple of a plain volume: " << dec_plain.ToString()
            << "\ninflate of a snapshot: " << inf_snap.ToString() << "\n";

  // A snapshot is read-only: every modifying request fails with EROFS.
  auto w = Pattern(4096, 9);
  EXPECT_EQ(p.Write("s", 0, w), -EROFS);
  EXPECT_EQ(p.Write("s", 5 * kCluster, w), -EROFS) << "a write into a hole of the snapshot";
  EXPECT_EQ(p.Op("s", io::IoOp::kDiscard, 0, kCluster), -EROFS);
  EXPECT_EQ(p.Op("s", io::IoOp::kWriteZeroes, 0, 4096), -EROFS);
  EXPECT_EQ(p.Op("s", io::IoOp::kWriteZeroes, 0, kCluster, true), -EROFS);
  EXPECT_EQ(p.Read("s", 0, 2 * kCluster), a);

  // A snapshot is exported read-only only.
  ExportSettings rw;
  Status exp_rw = p.pool()->SetExport("s", rw);
  EXPECT_EQ(exp_rw.err(), EINVAL) << exp_rw.ToString();
  ExportSettings ro;
  ro.read_only = true;
  EXPECT_TRUE(p.pool()->SetExport("s", ro).ok());
  EXPECT_TRUE(p.pool()->ClearExport("s").ok());

  // Resize: a snapshot keeps its size; an image with a parent only grows.
  p.CloseImage("s");
  p.CloseImage("v");
  Status grow_snap = p.pool()->ResizeVolume("s", 2 << 20, false);
  Status shrink_snap = p.pool()->ResizeVolume("s", 512 << 10, true);
  Status shrink_clone = p.pool()->ResizeVolume("v", 512 << 10, true);
  EXPECT_FALSE(grow_snap.ok());
  EXPECT_FALSE(shrink_snap.ok());
  EXPECT_FALSE(shrink_clone.ok()) << "a clone cannot shrink";
  std::cout << "grow of a snapshot: " << grow_snap.ToString() << "\nshrink of a snapshot: " << shrink_snap.ToString()
            << "\nshrink of a clone: " << shrink_clone.ToString() << "\n";
  ASSERT_TRUE(p.pool()->ResizeVolume("v", 3 << 20, false).ok()) << "a clone grows";
  m.images["v"].data.resize(3 << 20, 0);
  // The grown part (beyond the snapshot's end) reads zeros, takes writes.
  auto g = Pattern(kCluster, 10);
  ASSERT_EQ(p.Write("v", (1 << 20) + kCluster - 4096, g), static_cast<int>(g.size()));
  m.Write("v", (1 << 20) + kCluster - 4096, g);
  Verify(p, m, "after the refusals");
  // The pool keeps refusing after a reopen (the flags are stored).
  p.Reopen();
  EXPECT_EQ(p.Write("s", 0, w), -EROFS);
  EXPECT_EQ(p.pool()->CreateSnapshot("s", "x").status().err(), EINVAL);
  Status del_open = p.pool()->DeleteVolume("s");  // open too: the clones are the reason named
  EXPECT_EQ(del_open.err(), EBUSY);
  EXPECT_NE(del_open.message().find("c1"), std::string::npos) << del_open.ToString();
  Verify(p, m, "after a reopen");
}

TEST(Snapshot, DeleteOfASnapshotWaitsForItsClones) {
  MemPool p(16 << 20);
  uint64_t free0 = p.pool()->Info().free_clusters;
  ASSERT_TRUE(p.pool()->CreateVolume("v", 1 << 20, false).ok());
  auto a = Pattern(4 * kCluster, 1);
  ASSERT_EQ(p.Write("v", 0, a), static_cast<int>(a.size()));
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  ASSERT_TRUE(p.pool()->CloneVolume("s", "c").ok());
  ASSERT_EQ(p.Write("c", 0, Pattern(4096, 2)), 4096);
  ASSERT_EQ(p.Write("v", kCluster, Pattern(4096, 3)), 4096);
  EXPECT_EQ(p.pool()->DeleteVolume("s").err(), EBUSY);
  p.CloseImage("c");
  ASSERT_TRUE(p.pool()->DeleteVolume("c").ok());
  Status st = p.pool()->DeleteVolume("s");
  EXPECT_EQ(st.err(), EBUSY) << "v is still a clone of s";
  EXPECT_NE(st.message().find("v"), std::string::npos) << st.ToString();
  EXPECT_EQ(p.pool()->GetVolume("s")->children, std::vector<std::string>{"v"});
  p.CloseImage("v");
  ASSERT_TRUE(p.pool()->DeleteVolume("v").ok());
  EXPECT_TRUE(p.pool()->GetVolume("s")->children.empty());
  p.CloseImage("s");
  ASSERT_TRUE(p.pool()->DeleteVolume("s").ok()) << "a snapshot without clones can be deleted";
  ASSERT_TRUE(p.pool()->Commit().ok());
  EXPECT_EQ(p.pool()->Info().free_clusters, free0) << "every cluster of the three images is free again";
  EXPECT_TRUE(p.pool()->Check().clean());
}

// Writes a version 1 pool: a fresh format whose superblock (and its copy
// in the checkpoint header) says version 1.
void FormatV1(VolatileCacheDevice* dev, uint32_t cluster) {
  ASSERT_TRUE(Pool::Format(dev, cluster, false).ok());
  std::vector<uint8_t> block(kBlock);
  ASSERT_TRUE(dev->ReadAt(0, block.data(), kBlock).ok());
  auto sb = DecodeSuperblock(block.data());
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  sb->version = 1;
  EncodeSuperblock(*sb, block.data());
  ASSERT_TRUE(dev->WriteAt(0, block.data(), kBlock).ok());
  ASSERT_TRUE(dev->ReadAt(sb->ckpt_offset[0], block.data(), kBlock).ok());
  auto h = DecodeCheckpointHeader(block.data());
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  std::vector<uint8_t> out(kBlock, 0);
  EncodeCheckpointHeader(*h, out.data(), &*sb);
  ASSERT_TRUE(dev->WriteAt(sb->ckpt_offset[0], out.data(), kBlock).ok());
  ASSERT_TRUE(dev->Sync().ok());
}

TEST(Snapshot, VersionOnePoolOpensAndSnapshotsOnlyAfterUpgrade) {
  auto dev = std::make_unique<VolatileCacheDevice>(16 << 20, 5);
  FormatV1(dev.get(), kCluster);
  if (HasFatalFailure()) return;
  auto a = Pattern(2 * kCluster, 4);
  {
    auto pool = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev.get()));
    ASSERT_TRUE(pool.ok()) << "a version 1 pool opens: " << pool.status().ToString();
    EXPECT_EQ((*pool)->superblock().version, 1u);
    ASSERT_TRUE((*pool)->CreateVolume("v", 1 << 20, false).ok());
    {
      auto b = *(*pool)->OpenVolume("v");
      auto ch = std::move(*b->OpenChannel(nullptr));
      ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, a.data(), a.size()), static_cast<int>(a.size()));
    }
    auto snap = (*pool)->CreateSnapshot("v", "s");
    EXPECT_EQ(snap.status().err(), ENOTSUP) << snap.status().ToString();
    EXPECT_NE(snap.status().message().find("upgrade"), std::string::npos)
        << "the refusal tells how: " << snap.status().ToString();
    auto clone = (*pool)->CloneVolume("v", "c");
    EXPECT_EQ(clone.status().err(), ENOTSUP) << clone.status().ToString();
    EXPECT_EQ((*pool)->ListVolumes().size(), 1u);
    EXPECT_TRUE((*pool)->Check().clean());
  }
  {
    // Still version 1 after a reopen: nothing was written in version 2.
    auto pool = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev.get()));
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    EXPECT_EQ((*pool)->superblock().version, 1u);
    Status up = (*pool)->Upgrade();
    ASSERT_TRUE(up.ok()) << up.ToString();
    EXPECT_EQ((*pool)->superblock().version, 2u);
    auto snap = (*pool)->CreateSnapshot("v", "s");
    ASSERT_TRUE(snap.ok()) << "after the upgrade: " << snap.status().ToString();
    ASSERT_TRUE((*pool)->CloneVolume("s", "c").ok());
    EXPECT_TRUE((*pool)->Upgrade().ok()) << "a version 2 pool is left alone";
    EXPECT_TRUE((*pool)->Check().clean());
  }
  // The upgrade is durable: a crash right after, and the pool is version 2
  // with its tree.
  auto image = dev->Crash();
  auto again = Pool::Open(VolatileCacheDevice::FromImage(std::move(image), 6));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->superblock().version, 2u);
  EXPECT_EQ((*again)->GetVolume("c")->parent, "s");
  EXPECT_EQ((*again)->GetVolume("v")->parent, "s");
  auto b = *(*again)->OpenVolume("c");
  auto ch = std::move(*b->OpenChannel(nullptr));
  std::vector<uint8_t> got(a.size());
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, got.data(), got.size()), static_cast<int>(got.size()));
  EXPECT_EQ(got, a);
  EXPECT_TRUE((*again)->Check().clean());
}

// The loader checks the tree as it replays: records that would make a
// malformed one are corruption (EUCLEAN; `pool check` names them).
void WriteLogEntry(VolatileCacheDevice* dev, const std::vector<Record>& records) {
  std::vector<uint8_t> block(kBlock);
  ASSERT_TRUE(dev->ReadAt(0, block.data(), kBlock).ok());
  auto sb = DecodeSuperblock(block.data());
  ASSERT_TRUE(sb.ok());
  std::string payload;
  for (const Record& r : records) AppendRecord(r, &payload);
  std::string entry = EncodeLogEntry(1, static_cast<uint32_t>(records.size()), payload, PoolId(*sb));
  ASSERT_TRUE(dev->WriteAt(sb->log_offset, entry.data(), entry.size()).ok());
  ASSERT_TRUE(dev->Sync().ok());
}

TEST(SnapshotLoad, MalformedTreeRecordsAreCorruption) {
  const Record a{RecordType::kVolumeCreate, 1, 1 << 20, 0, 0, "a"};
  const Record s{RecordType::kSnapshotCreate, 2, 1, 0, 0, "s"};
  const Record c{RecordType::kVolumeClone, 3, 2, 1 << 20, 0, "c"};
  struct Case {
    const char* what;
    std::vector<Record> records;
    bool v1 = false;
  };
  const std::vector<Case> cases = {
      {"clone of a non-snapshot", {a, Record{RecordType::kVolumeClone, 2, 1, 1 << 20, 0, "c"}}},
      {"snapshot of a snapshot", {a, s, Record{RecordType::kSnapshotCreate, 3, 2, 0, 0, "x"}}},
      {"clone smaller than its snapshot", {a, s, Record{RecordType::kVolumeClone, 3, 2, 4096, 0, "c"}}},
      {"link to a non-snapshot", {a, s, c, Record{RecordType::kImageLink, 3, 1, 0, 0, {}}}},
      {"link to an unknown image", {a, s, c, Record{RecordType::kImageLink, 3, 9, 0, 0, {}}}},
      {"a snapshot made writable", {a, s, c, Record{RecordType::kImageLink, 2, 0, 0, 0, {}}}},
      {"delete of a snapshot with clones", {a, s, c, Record{RecordType::kVolumeDelete, 2, 0, 0, 0, {}}}},
      {"snapshot records in a version 1 pool", {a, s}, true},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    auto dev = std::make_unique<VolatileCacheDevice>(16 << 20, 1);
    if (k.v1) {
      FormatV1(dev.get(), kCluster);
    } else {
      ASSERT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
    }
    WriteLogEntry(dev.get(), k.records);
    auto pool = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev.get()));
    ASSERT_FALSE(pool.ok()) << "the pool opened";
    EXPECT_EQ(pool.status().err(), EUCLEAN) << pool.status().ToString();
    PoolOptions check;
    check.read_only = true;
    check.check_mode = true;
    auto checked = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev.get()), check);
    ASSERT_TRUE(checked.ok()) << checked.status().ToString();
    EXPECT_FALSE((*checked)->Check().clean()) << "pool check found nothing";
  }
  // And the well-formed tree loads, clean.
  auto dev = std::make_unique<VolatileCacheDevice>(16 << 20, 1);
  ASSERT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
  WriteLogEntry(dev.get(), {a, s, c});
  auto pool = Pool::Open(std::make_unique<BorrowedPoolDevice>(dev.get()));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ((*pool)->GetVolume("c")->parent, "s");
  EXPECT_EQ((*pool)->GetVolume("a")->parent, "s");
  EXPECT_TRUE((*pool)->Check().clean());
}

// ---- persistence ----

TEST(Snapshot, TreePersistsThroughReopenLogReplayAndCheckpoint) {
  MemPool p(32 << 20, kCluster, 11);
  Model m;
  ASSERT_TRUE(p.pool()->CreateVolume("gold", 1 << 20, false).ok());
  m.Volume("gold", 1 << 20);
  auto g = Pattern(6 * kCluster, 1);
  ASSERT_EQ(p.Write("gold", 0, g), static_cast<int>(g.size()));
  m.Write("gold", 0, g);
  ASSERT_TRUE(p.pool()->CreateSnapshot("gold", "g1").ok());
  m.Snapshot("gold", "g1");
  auto h = Pattern(2 * kCluster, 2);
  ASSERT_EQ(p.Write("gold", kCluster, h), static_cast<int>(h.size()));
  m.Write("gold", kCluster, h);
  ASSERT_TRUE(p.pool()->CreateSnapshot("gold", "g2").ok());
  m.Snapshot("gold", "g2");
  for (const char* c : {"a", "b", "c"}) {
    ASSERT_TRUE(p.pool()->CloneVolume("g2", c).ok());
    m.Clone("g2", c);
  }
  ASSERT_TRUE(p.pool()->CloneVolume("g1", "old").ok());
  m.Clone("g1", "old");
  auto w = Pattern(8192, 3);
  ASSERT_EQ(p.Write("a", 4096, w), 8192);
  m.Write("a", 4096, w);
  ASSERT_EQ(p.Write("b", 3 * kCluster, w), 8192);
  m.Write("b", 3 * kCluster, w);
  ASSERT_EQ(p.Op("b", io::IoOp::kFlush, 0, 0), 0);
  Verify(p, m, "live");

  p.Reopen();
  Verify(p, m, "after a clean reopen");

  // Relinks and deletes, then a crash: the log replays them.
  ASSERT_TRUE(p.pool()->DecoupleVolume("a").ok());  // a: g2 -> g1
  m.images["a"].parent = "g1";
  ASSERT_TRUE(p.pool()->InflateVolume("b").ok());  // b: no parent
  m.images["b"].parent = "";
  p.CloseImage("c");
  ASSERT_TRUE(p.pool()->DeleteVolume("c").ok());
  m.images.erase("c");
  p.CrashAndReopen(12);
  Verify(p, m, "after a crash (log replay)");

  // A checkpoint: enough commits to pass half the log.
  uint64_t before = p.pool()->Info().checkpoints;
  for (int i = 0; i < 400 && p.pool()->Info().checkpoints == before; ++i) {
    ASSERT_TRUE(p.pool()->SetExport("old", ExportSettings{static_cast<uint16_t>(1 + i % 8)}).ok());
  }
  ASSERT_GT(p.pool()->Info().checkpoints, before) << "no checkpoint was written";
  ASSERT_TRUE(p.pool()->ClearExport("old").ok());
  p.CrashAndReopen(13);
  Verify(p, m, "after a crash (checkpoint)");
  // And after the checkpoint, the tree still changes and replays.
  ASSERT_TRUE(p.pool()->CreateSnapshot("a", "a1").ok());
  m.Snapshot("a", "a1");
  p.CrashAndReopen(14);
  Verify(p, m, "after a crash (checkpoint + log)");
}

// ---- isolation ----

TEST(SnapshotIsolation, NoCloneReadsAnotherClonesWrites) {
  MemPool p(48 << 20);
  Model m;
  constexpr uint64_t kSize = 2 << 20;
  ASSERT_TRUE(p.pool()->CreateVolume("gold", kSize, false).ok());
  m.Volume("gold", kSize);
  auto g = Pattern(kSize - 3 * kCluster, 42);  // the last 3 clusters: holes
  ASSERT_EQ(p.Write("gold", 0, g), static_cast<int>(g.size()));
  m.Write("gold", 0, g);
  ASSERT_TRUE(p.pool()->CreateSnapshot("gold", "golden").ok());
  m.Snapshot("gold", "golden");
  uint64_t sum = Checksum(p.Read("golden", 0, kSize));
  constexpr int kClones = 4;
  for (int c = 0; c < kClones; ++c) {
    std::string name = "fn" + std::to_string(c);
    ASSERT_TRUE(p.pool()->CloneVolume("golden", name).ok());
    m.Clone("golden", name);
  }
  // Every clone writes the same places (partial clusters, whole ones,
  // spanning, into the holes), each its own bytes, interleaved.
  std::mt19937_64 rng(1);
  for (int round = 0; round < 60; ++round) {
    uint64_t off = (rng() % (kSize / 512)) * 512;
    uint64_t len = std::min<uint64_t>(kSize - off, 512 * (1 + rng() % 300));
    if (round % 10 == 0) off = kSize - 2 * kCluster, len = kCluster;  // a hole of the snapshot
    for (int c = 0; c < kClones; ++c) {
      std::string name = "fn" + std::to_string(c);
      auto d = Pattern(len, 1000 * (c + 1) + round);
      ASSERT_EQ(p.Write(name, off, d), static_cast<int>(len));
      m.Write(name, off, d);
    }
  }
  // The source volume writes too (it is a clone of the snapshot as well).
  auto s = Pattern(kCluster, 77);
  ASSERT_EQ(p.Write("gold", 0, s), static_cast<int>(s.size()));
  m.Write("gold", 0, s);
  Verify(p, m, "after the clones wrote");
  EXPECT_EQ(Checksum(p.Read("golden", 0, kSize)), sum) << "the snapshot changed";
  ASSERT_TRUE(p.pool()->Commit().ok());
  p.CrashAndReopen();
  Verify(p, m, "after a crash");
  EXPECT_EQ(Checksum(p.Read("golden", 0, kSize)), sum) << "the snapshot changed";
  // Deleting the clones frees exactly their exclusive space.
  ASSERT_TRUE(p.pool()->Commit().ok());
  uint64_t free0 = p.pool()->Info().free_clusters;
  uint64_t exclusive = 0;
  for (int c = 0; c < kClones; ++c) {
    std::string name = "fn" + std::to_string(c);
    exclusive += p.Allocated(name);
    p.CloseImage(name);
    ASSERT_TRUE(p.pool()->DeleteVolume(name).ok());
    m.images.erase(name);
  }
  ASSERT_TRUE(p.pool()->Commit().ok());
  EXPECT_EQ(p.pool()->Info().free_clusters - free0, exclusive / kCluster);
  Verify(p, m, "after the clones were deleted");
  EXPECT_EQ(Checksum(p.Read("golden", 0, kSize)), sum) << "the snapshot changed";
}

TEST(SnapshotIsolation, DeletedImagesSpaceReadsZerosInNewVolumes) {
  constexpr uint32_t kCs = 8192;  // small clusters: many of them
  MemPool p(6 << 20, kCs, 21);
  uint64_t free0 = p.pool()->Info().free_clusters;
  uint64_t n = free0 / 2;  // clusters of v
  uint64_t bytes = n * kCs;
  ASSERT_TRUE(p.pool()->CreateVolume("v", bytes, false).ok());
  auto full = Pattern(bytes, 5);
  ASSERT_EQ(p.Write("v", 0, full), static_cast<int>(bytes));
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  ASSERT_TRUE(p.pool()->CloneVolume("s", "c").ok());
  // The clone and the source overwrite the rest: the pool is full of
  // non-zero clusters owned by three images (2n - 2 of them).
  auto cw = Pattern((n / 2 - 1) * kCs, 6);
  ASSERT_EQ(p.Write("c", 0, cw), static_cast<int>(cw.size()));
  auto vw = Pattern((n - 1 - n / 2) * kCs, 7);
  ASSERT_EQ(p.Write("v", n / 2 * kCs, vw), static_cast<int>(vw.size()));
  ASSERT_TRUE(p.pool()->Commit().ok());
  EXPECT_LT(p.pool()->Info().free_clusters, free0 / 8);
  for (const char* n : {"c", "v", "s"}) {
    p.CloseImage(n);
    ASSERT_TRUE(p.pool()->DeleteVolume(n).ok()) << n;
  }
  p.CrashAndReopen();
  ASSERT_EQ(p.pool()->Info().free_clusters, free0);
  // A new volume takes every cluster: one sector written in each; the rest
  // of every cluster must read zeros (nothing of the deleted images).
  uint64_t nbytes = free0 * kCs;
  ASSERT_TRUE(p.pool()->CreateVolume("n", nbytes, false).ok());
  auto sector = Pattern(512, 8);
  for (uint64_t c = 0; c < free0; ++c) {
    ASSERT_EQ(p.Write("n", c * kCs + (c % (kCs / 512)) * 512, sector), 512) << "cluster " << c;
  }
  EXPECT_EQ(p.pool()->Info().free_clusters, 0u) << "every freed cluster is in the new volume";
  auto got = p.Read("n", 0, nbytes);
  for (uint64_t c = 0; c < free0; ++c) {
    uint64_t at = (c % (kCs / 512)) * 512;
    const uint8_t* cl = got.data() + c * kCs;
    ASSERT_EQ(0, std::memcmp(cl + at, sector.data(), 512)) << "cluster " << c;
    ASSERT_TRUE(AllZero(cl, at) && AllZero(cl + at + 512, kCs - at - 512))
        << "cluster " << c << " of the new volume shows a deleted image's bytes";
  }
  EXPECT_TRUE(p.pool()->Check().clean());
}

TEST(SnapshotIsolation, DiscardAndWriteZeroesOnAClone) {
  MemPool p(16 << 20);
  Model m;
  constexpr uint64_t kSize = 16 * kCluster;
  ASSERT_TRUE(p.pool()->CreateVolume("v", kSize, false).ok());
  m.Volume("v", kSize);
  auto d = Pattern(8 * kCluster, 1);  // clusters 0-7 hold data, 8-15 are holes
  ASSERT_EQ(p.Write("v", 0, d), static_cast<int>(d.size()));
  m.Write("v", 0, d);
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  m.Snapshot("v", "s");
  ASSERT_TRUE(p.pool()->CloneVolume("s", "c").ok());
  m.Clone("s", "c");
  uint64_t sum = Checksum(p.Read("s", 0, kSize));
  auto w = Pattern(kCluster, 2);
  ASSERT_EQ(p.Write("c", 0, w), static_cast<int>(kCluster));             // copied over the snapshot's
  ASSERT_EQ(p.Write("c", 8 * kCluster, w), static_cast<int>(kCluster));  // in a hole of every level
  ASSERT_EQ(p.Write("c", 9 * kCluster, w), static_cast<int>(kCluster));
  m.Write("c", 0, w);
  m.Write("c", 8 * kCluster, w);
  m.Write("c", 9 * kCluster, w);
  EXPECT_EQ(p.Allocated("c"), 3u * kCluster);

  // DISCARD where the snapshot shows data: a no-op (the clone's own bytes
  // and the snapshot's stay), whether the clone holds the cluster or not.
  ASSERT_EQ(p.Op("c", io::IoOp::kDiscard, 0, kCluster), 0);
  ASSERT_EQ(p.Op("c", io::IoOp::kDiscard, kCluster, 2 * kCluster), 0);
  EXPECT_EQ(p.Read("c", 0, 3 * kCluster),
            std::vector<uint8_t>(m.images["c"].data.begin(), m.images["c"].data.begin() + 3 * kCluster))
      << "DISCARD over the snapshot's data changed what the clone reads";
  // Where nothing below shows data: freed, reads zeros.
  ASSERT_EQ(p.Op("c", io::IoOp::kDiscard, 8 * kCluster, kCluster), 0);
  m.Zero("c", 8 * kCluster, kCluster);
  ASSERT_TRUE(p.pool()->Commit().ok());
  EXPECT_EQ(p.Allocated("c"), 2u * kCluster) << "the discard over a hole of the snapshot frees the cluster";

  // WRITE_ZEROES reads zeros everywhere: partial, whole, with and without
  // unmap, over the clone's own cluster and over the snapshot's.
  ASSERT_EQ(p.Op("c", io::IoOp::kWriteZeroes, 2 * kCluster + 4096, 8192), 0);
  m.Zero("c", 2 * kCluster + 4096, 8192);
  ASSERT_EQ(p.Op("c", io::IoOp::kWriteZeroes, 3 * kCluster, kCluster, true), 0);
  m.Zero("c", 3 * kCluster, kCluster);
  ASSERT_EQ(p.Op("c", io::IoOp::kWriteZeroes, 0, kCluster, true), 0);
  m.Zero("c", 0, kCluster);
  ASSERT_EQ(p.Op("c", io::IoOp::kWriteZeroes, 4 * kCluster, 2 * kCluster, false), 0);
  m.Zero("c", 4 * kCluster, 2 * kCluster);
  ASSERT_EQ(p.Op("c", io::IoOp::kWriteZeroes, 9 * kCluster, kCluster, true), 0);
  m.Zero("c", 9 * kCluster, kCluster);
  ASSERT_EQ(p.Op("c", io::IoOp::kWriteZeroes, 12 * kCluster - 512, 1024, true), 0);  // holes at every level
  m.Zero("c", 12 * kCluster - 512, 1024);
  Verify(p, m, "after discards and write-zeroes");
  EXPECT_EQ(Checksum(p.Read("s", 0, kSize)), sum) << "the snapshot changed";
  ASSERT_EQ(p.Op("c", io::IoOp::kFlush, 0, 0), 0);
  p.CrashAndReopen();
  Verify(p, m, "after a crash");
}

// ---- inflate, decouple ----

TEST(Snapshot, InflateAndDecoupleKeepTheContentAndRelink) {
  MemPool p(32 << 20);
  Model m;
  constexpr uint64_t kSize = 16 * kCluster;
  ASSERT_TRUE(p.pool()->CreateVolume("v", kSize, false).ok());
  m.Volume("v", kSize);
  auto l1 = Pattern(4 * kCluster, 1);  // s1 holds clusters 0-3
  ASSERT_EQ(p.Write("v", 0, l1), static_cast<int>(l1.size()));
  m.Write("v", 0, l1);
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s1").ok());
  m.Snapshot("v", "s1");
  auto l2 = Pattern(3 * kCluster, 2);  // s2 holds clusters 2-4
  ASSERT_EQ(p.Write("v", 2 * kCluster, l2), static_cast<int>(l2.size()));
  m.Write("v", 2 * kCluster, l2);
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s2").ok());
  m.Snapshot("v", "s2");
  ASSERT_TRUE(p.pool()->CloneVolume("s2", "c").ok());
  m.Clone("s2", "c");
  auto cw = Pattern(4096, 3);  // c holds cluster 3 (copied) and 10
  ASSERT_EQ(p.Write("c", 3 * kCluster + 4096, cw), 4096);
  ASSERT_EQ(p.Write("c", 10 * kCluster, cw), 4096);
  m.Write("c", 3 * kCluster + 4096, cw);
  m.Write("c", 10 * kCluster, cw);
  EXPECT_EQ(p.Allocated("c"), 2u * kCluster);
  p.Ch("c");  // open, as under I/O

  // Decouple: c copies what s2 holds itself and it lacks (clusters 2, 4),
  // then reads through s1.
  Status st = p.pool()->DecoupleVolume("c");
  ASSERT_TRUE(st.ok()) << st.ToString();
  m.images["c"].parent = "s1";
  EXPECT_EQ(p.Allocated("c"), 4u * kCluster);
  Verify(p, m, "after decouple");
  // Inflate: c copies the rest it reads (clusters 0, 1) and has no parent.
  st = p.pool()->InflateVolume("c");
  ASSERT_TRUE(st.ok()) << st.ToString();
  m.images["c"].parent = "";
  EXPECT_EQ(p.Allocated("c"), 6u * kCluster);
  Verify(p, m, "after inflate");
  // c stands alone: it may shrink, and writes stay its own.
  ASSERT_EQ(p.Write("c", 0, Pattern(kCluster, 4)), static_cast<int>(kCluster));
  m.Write("c", 0, Pattern(kCluster, 4));
  // A decoupled clone of depth 1 (parent without parent) has no parent after.
  ASSERT_TRUE(p.pool()->CloneVolume("s1", "d").ok());
  m.Clone("s1", "d");
  ASSERT_TRUE(p.pool()->DecoupleVolume("d").ok());
  m.images["d"].parent = "";
  EXPECT_EQ(p.Allocated("d"), 4u * kCluster);
  p.CrashAndReopen();
  Verify(p, m, "after a crash");
  p.CloseImage("c");
  EXPECT_TRUE(p.pool()->ResizeVolume("c", kSize / 2, true).ok()) << "an inflated clone is a plain volume";
}

TEST(Snapshot, InflateOnAFullPoolFailsWithoutLosingAnything) {
  constexpr uint32_t kCs = 8192;
  MemPool p(6 << 20, kCs, 31);
  ASSERT_NE(p.pool(), nullptr);
  Model m;
  uint64_t free0 = p.pool()->Info().free_clusters;
  uint64_t bytes = free0 * kCs * 2 / 3 / 4096 * 4096;
  ASSERT_TRUE(p.pool()->CreateVolume("v", bytes, false).ok());
  m.Volume("v", bytes);
  auto d = Pattern(bytes, 1);
  ASSERT_EQ(p.Write("v", 0, d), static_cast<int>(bytes));
  m.Write("v", 0, d);
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  m.Snapshot("v", "s");
  Status st = p.pool()->InflateVolume("v");  // needs 2/3 of the pool, 1/3 is free
  EXPECT_EQ(st.err(), ENOSPC) << st.ToString();
  m.images["v"].parent = st.ok() ? "" : "s";
  Verify(p, m, "after a failed inflate");
  p.CrashAndReopen();
  Verify(p, m, "after a crash");
}

// A preallocated source stays preallocated: the snapshot needs room to
// guarantee every cluster it takes over again (ENOSPC otherwise, nothing
// changed), and the source's copies-on-write never fail for space.
TEST(Snapshot, PreallocatedSourceKeepsItsGuarantee) {
  constexpr uint32_t kCs = 8192;
  MemPool p(6 << 20, kCs, 41);
  ASSERT_NE(p.pool(), nullptr);
  const uint64_t free0 = p.pool()->Info().free_clusters;
  constexpr uint64_t kPre = 16;  // clusters of the preallocated volume
  ASSERT_TRUE(p.pool()->CreateVolume("pre", kPre * kCs, true).ok());
  auto d = Pattern(kPre * kCs, 1);
  ASSERT_EQ(p.Write("pre", 0, d), static_cast<int>(d.size()));
  // A thin volume takes all but kPre + 3 free clusters.
  const uint64_t thin = free0 - kPre - (kPre + 3);
  ASSERT_TRUE(p.pool()->CreateVolume("thin", (thin + 8) * kCs, false).ok());
  ASSERT_EQ(p.Write("thin", 0, Pattern(thin * kCs, 2)), static_cast<int>(thin * kCs));
  ASSERT_TRUE(p.pool()->Commit().ok());
  ASSERT_EQ(p.pool()->Info().free_clusters, kPre + 3);
  auto s1 = p.pool()->CreateSnapshot("pre", "s1");
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  EXPECT_EQ(p.pool()->GetVolume("pre")->reserved_bytes, kPre * kCs) << "the source keeps its reservation";
  EXPECT_EQ(p.pool()->GetVolume("s1")->reserved_bytes, 0u);
  // The kPre free clusters are promised to pre now: the thin volume gets 3.
  int thin_writes = 0;
  for (uint64_t c = thin; c < thin + 8; ++c) {
    if (p.Write("thin", c * kCs, Pattern(512, 3)) == 512) ++thin_writes;
  }
  EXPECT_EQ(thin_writes, 3) << "the thin volume took space promised to the preallocated one";
  // pre rewrites every cluster (each a copy on write): all succeed.
  for (uint64_t c = 0; c < kPre; ++c) {
    ASSERT_EQ(p.Write("pre", c * kCs + 512, Pattern(512, 10 + c)), 512) << "cluster " << c;
  }
  // No room to promise pre's clusters again: a second snapshot is refused.
  auto s2 = p.pool()->CreateSnapshot("pre", "s2");
  EXPECT_EQ(s2.status().err(), ENOSPC) << s2.status().ToString();
  EXPECT_FALSE(p.pool()->GetVolume("s2").ok());
  EXPECT_EQ(p.pool()->GetVolume("pre")->parent, "s1");
  EXPECT_EQ(p.Read("s1", 0, kPre * kCs), d) << "the snapshot changed";
  p.CrashAndReopen();
  EXPECT_EQ(p.Read("s1", 0, kPre * kCs), d);
  EXPECT_EQ(p.pool()->GetVolume("pre")->reserved_bytes, kPre * kCs);
  CheckReport rep = p.pool()->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

// A pool at its image capacity (ImageCapacity: volumes, snapshots and
// clones, each with the longest name and the largest export record) whose
// data clusters are each their own extent: the checkpoint still fits its
// slot, one more image is refused, and everything reopens.
TEST(Snapshot, CheckpointAtFullImageCapacity) {
#ifdef NESTOR_TSAN
  // A checkpoint holds every image's 8 shard locks at once
  // (Pool::LockVolumes); TSan's deadlock detector follows at most 64 locks
  // held by one thread and aborts ("CHECK failed: n_all_locks_ < ...").
  GTEST_SKIP() << "a checkpoint of more than 7 images holds more locks than TSan can follow";
#endif
  constexpr uint32_t kCs = 4096;
  MemPool p(6 << 20, kCs, 51);
  ASSERT_NE(p.pool(), nullptr);
  const uint32_t cap = ImageCapacity(p.pool()->superblock());
  ASSERT_GE(cap, 4u);
  std::cout << "image capacity " << cap << ", " << p.pool()->superblock().data_clusters << " data clusters\n";
  const uint64_t data = p.pool()->superblock().data_clusters;
  // Every other cluster of a volume twice the pool's size: one extent each.
  ASSERT_TRUE(p.pool()->CreateVolume("frag", 2 * data * kCs, false).ok());
  auto d = Pattern(512, 1);
  for (uint64_t c = 0; c < data; ++c) ASSERT_EQ(p.Write("frag", 2 * c * kCs, d), 512) << c;
  EXPECT_EQ(p.pool()->GetVolume("frag")->extents, data);
  p.CloseImage("frag");
  auto name = [](const char* prefix, uint32_t i) {
    std::string n = prefix + std::to_string(i);
    return n + std::string(kMaxNameLen - n.size(), 'x');
  };
  ExportSettings e;
  e.read_only = true;
  e.read_iops = e.write_iops = e.read_bps = e.write_bps = UINT64_MAX / 3;
  e.access.socket_uid = e.access.socket_gid = 1000;
  e.access.socket_mode = 0600;
  for (uint32_t i = 0; i < ExportAccess::kMaxAllowIds / 2; ++i) {
    e.access.allow_uids.push_back(2000 + i);
    e.access.allow_gids.push_back(3000 + i);
  }
  // Volumes and a snapshot of each, until the pool is full of images.
  uint32_t images = 1;
  for (uint32_t i = 0; images < cap; ++i) {
    std::string v = name("v", i);
    ASSERT_TRUE(p.pool()->CreateVolume(v, 1 << 20, false).ok()) << images << " of " << cap;
    ASSERT_TRUE(p.pool()->SetExport(v, e).ok());
    ++images;
    if (images == cap) break;
    std::string sn = name("s", i);
    ASSERT_TRUE(p.pool()->CreateSnapshot(v, sn).ok()) << images << " of " << cap;
    ASSERT_TRUE(p.pool()->SetExport(sn, e).ok());
    ++images;
  }
  EXPECT_EQ(p.pool()->ListVolumes().size(), cap);
  auto more = p.pool()->CreateVolume("one-more", 1 << 20, false);
  EXPECT_EQ(more.status().err(), ENOSPC) << more.status().ToString();
  auto snap_more = p.pool()->CreateSnapshot(name("v", 0), "one-more");
  EXPECT_EQ(snap_more.status().err(), ENOSPC) << snap_more.status().ToString();
  auto clone_more = p.pool()->CloneVolume(name("s", 0), "one-more");
  EXPECT_EQ(clone_more.status().err(), ENOSPC) << clone_more.status().ToString();
  // A checkpoint of all of it.
  const uint64_t before = p.pool()->Info().checkpoints;
  for (int i = 0; i < 2000 && p.pool()->Info().checkpoints == before; ++i) {
    ExportSettings f = e;
    f.queues = static_cast<uint16_t>(1 + i % 4);
    Status st = p.pool()->SetExport(name("v", 0), f);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  ASSERT_GT(p.pool()->Info().checkpoints, before) << "no checkpoint was written";
  p.CrashAndReopen(52);
  EXPECT_EQ(p.pool()->ListVolumes().size(), cap);
  EXPECT_EQ(p.pool()->GetVolume("frag")->extents, data);
  EXPECT_EQ(p.pool()->GetVolume(name("v", 1))->parent, name("s", 1));
  EXPECT_EQ(p.pool()->GetVolume(name("s", 1))->export_settings, e);
  CheckReport rep = p.pool()->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

// Requests with many buffers (the data path cuts them into pieces, each
// with its own iovec array of ThinChannel::kChildIov): a first write, an
// overwrite in place and a copy on write into a shared cluster, with as
// many buffers as virtio-blk passes (BlkQueue::kMaxIov, 160) inside one
// cluster, land byte for byte. With more (240), a request may fail, but
// never changes bytes outside its range.
TEST(Snapshot, ManyBufferWritesLandExactly) {
  MemPool p(16 << 20);
  Model m;
  ASSERT_TRUE(p.pool()->CreateVolume("v", 1 << 20, false).ok());
  m.Volume("v", 1 << 20);
  auto base = Pattern(4 * kCluster, 1);
  ASSERT_EQ(p.Write("v", 0, base), static_cast<int>(base.size()));
  m.Write("v", 0, base);
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  m.Snapshot("v", "s");
  ASSERT_TRUE(p.pool()->CloneVolume("s", "c").ok());
  m.Clone("s", "c");
  constexpr uint64_t kPiece = 256;
  std::vector<int> results;
  auto write_many = [&](const std::string& name, uint64_t off, uint64_t seed, int bufs) {
    auto d = Pattern(bufs * kPiece, seed);
    std::vector<iovec> iov(bufs);
    for (int i = 0; i < bufs; ++i) iov[i] = iovec{d.data() + i * kPiece, kPiece};
    SyncRequest r;
    r.op = io::IoOp::kWrite;
    r.offset = off;
    r.length = d.size();
    r.iov = iov.data();
    r.iovcnt = bufs;
    r.done = [](io::IoRequest* q, int res) { static_cast<SyncRequest*>(q)->result = res; };
    p.Ch(name)->Submit(&r);
    results.push_back(r.result);
    if (r.result == static_cast<int>(d.size())) {
      m.Write(name, off, d);
    } else {
      EXPECT_GT(bufs, 190) << name << " at " << off << ": a write of " << bufs << " buffers returned " << r.result;
      m.Write(name, off, p.Read(name, off, d.size()));  // its range: whatever it reads now
    }
  };
  for (int bufs : {160, 240}) {
    SCOPED_TRACE(std::to_string(bufs) + " buffers");
    write_many("c", kCluster + 4096 * (bufs / 160), 2 + bufs, bufs);     // copy on write of the snapshot's cluster
    write_many("c", (8 + bufs / 80) * kCluster + 4096, 3 + bufs, bufs);  // first write into a hole
    write_many("c", (8 + bufs / 80) * kCluster + 512, 4 + bufs, bufs);   // in place
    write_many("v", (bufs / 80) * kCluster + 1024, 5 + bufs, bufs);      // the source, copy on write
    Verify(p, m, "after writes of many buffers");
  }
  std::cout << "results of the writes (160 buffers, then 240):";
  for (int r : results) std::cout << " " << r;
  std::cout << "\n";
}

// ---- space accounting ----

TEST(Snapshot, SpaceAccountingSharedAndExclusive) {
  MemPool p(16 << 20);
  ASSERT_TRUE(p.pool()->CreateVolume("v", 1 << 20, false).ok());
  ASSERT_EQ(p.Write("v", 0, Pattern(4 * kCluster, 1)), static_cast<int>(4 * kCluster));
  ASSERT_TRUE(p.pool()->CreateSnapshot("v", "s").ok());
  ASSERT_EQ(p.Write("v", 0, Pattern(4096, 2)), 4096);  // v: cluster 0 its own
  ASSERT_TRUE(p.pool()->CloneVolume("s", "c").ok());
  ASSERT_EQ(p.Write("c", 0, Pattern(2 * kCluster, 3)), static_cast<int>(2 * kCluster));  // c: 0, 1
  ASSERT_EQ(p.Write("c", 8 * kCluster, Pattern(4096, 4)), 4096);                         // c: 8
  std::map<std::string, VolumeInfo> by;
  for (auto& i : p.pool()->ListVolumes(true)) by[i.name] = i;
  ASSERT_EQ(by.size(), 3u);
  for (auto& [n, i] : by) EXPECT_TRUE(i.space_known) << n;
  // s holds 0-3; v still reads 1-3 from it, c reads 2-3: 1-3 are shared.
  EXPECT_EQ(by["s"].allocated_bytes, 4u * kCluster);
  EXPECT_EQ(by["s"].shared_bytes, 3u * kCluster);
  EXPECT_EQ(by["s"].delete_frees_bytes, 0u) << "a snapshot with clones cannot be deleted";
  EXPECT_EQ(by["v"].allocated_bytes, 1u * kCluster);
  EXPECT_EQ(by["v"].shared_bytes, 3u * kCluster);
  EXPECT_EQ(by["v"].delete_frees_bytes, 1u * kCluster);
  EXPECT_EQ(by["c"].allocated_bytes, 3u * kCluster);
  EXPECT_EQ(by["c"].shared_bytes, 2u * kCluster);
  EXPECT_EQ(by["c"].delete_frees_bytes, 3u * kCluster);
  auto plain = p.pool()->ListVolumes(false);
  for (auto& i : plain) EXPECT_FALSE(i.space_known) << i.name;
}

// ---- process crash (the journal) ----

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A process crash (SIGKILL) loses the pool's memory only: the device's
// current view (every completed write, in the page cache) and the journal
// directory as they are. After every completed operation on images of a
// tree (writes and copies-on-write into clones, discards and write-zeroes
// on them, snapshots, clones, inflate, decouple, deletes), a new pool on
// that view, with the journal, must show every image and the tree exactly.
TEST(SnapshotProcessCrash, EveryCompletedChangeSurvives) {
  const char* t = std::getenv("TMPDIR");
  std::string tmpl = std::string(t ? t : "/tmp") + "/nestor-snappcrash.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const fs::path root = tmpl, jdir = root / "journal", rdir = root / "reopen";
  constexpr uint32_t kCs = 16384;
  constexpr uint64_t kSize = 512 << 10;
  auto owned = std::make_unique<VolatileCacheDevice>(8 << 20, 3);
  VolatileCacheDevice* dev = owned.get();
  ASSERT_TRUE(Pool::Format(dev, kCs, false).ok());
  PoolOptions o;
  o.journal_dir = jdir.string();
  o.boot_id = "boot-a";
  auto opened = Pool::Open(std::move(owned), o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Pool> pool = std::move(opened.value());
  ASSERT_TRUE(pool->CreateVolume("v", kSize, false).ok());
  Model m;
  m.Volume("v", kSize);
  std::map<std::string, Img> imgs;
  auto ch = [&](const std::string& n) -> io::IoChannel* {
    auto& i = imgs[n];
    if (i.ch == nullptr) {
      i.b = *pool->OpenVolume(n);
      i.ch = std::move(*i.b->OpenChannel(nullptr));
    }
    return i.ch.get();
  };
  std::mt19937_64 rng(EnvU64("NESTOR_SEED", 12));
  int verified = 0;
  auto verify = [&](const std::string& where, bool read_only) {
    SCOPED_TRACE(where);
    std::vector<uint8_t> image = dev->current_image();
    fs::remove_all(rdir);
    fs::create_directories(rdir);
    if (fs::exists(jdir)) {
      for (const auto& e : fs::directory_iterator(jdir)) {
        std::ofstream(rdir / e.path().filename(), std::ios::binary) << ReadFile(e.path());
      }
    }
    PoolOptions ro = o;
    ro.journal_dir = rdir.string();
    ro.read_only = read_only;
    auto p = Pool::Open(VolatileCacheDevice::FromImage(std::move(image), 1), ro);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    CheckReport rep = (*p)->Check();
    ASSERT_TRUE(rep.clean()) << rep.problems[0];
    auto list = (*p)->ListVolumes();
    ASSERT_EQ(list.size(), m.images.size());
    for (const auto& info : list) {
      auto it = m.images.find(info.name);
      ASSERT_NE(it, m.images.end()) << info.name;
      ASSERT_EQ(info.parent, it->second.parent) << info.name;
      ASSERT_EQ(info.snapshot, it->second.snapshot) << info.name;
      auto b = (*p)->OpenVolume(info.name);
      ASSERT_TRUE(b.ok());
      auto c = (*b)->OpenChannel(nullptr);
      std::vector<uint8_t> got(kSize);
      ASSERT_EQ(SyncIo(c->get(), io::IoOp::kRead, 0, got.data(), kSize), static_cast<int>(kSize));
      ASSERT_TRUE(got == it->second.data) << info.name << " differs after the process crash";
    }
    ++verified;
  };
  int next = 0;
  // Sanitized runs (NESTOR_CRASH_ITERATIONS=40, Makefile) take fewer steps.
  const int steps = EnvU64("NESTOR_CRASH_ITERATIONS", 600) < 100 ? 60 : 160;
  for (int op = 0; op < steps && !HasFatalFailure(); ++op) {
    std::vector<std::string> writable, snaps, clones, leaves;
    for (const auto& [n, i] : m.images) {
      (i.snapshot ? snaps : writable).push_back(n);
      if (!i.snapshot && !i.parent.empty()) clones.push_back(n);
      if (m.Children(n).empty()) leaves.push_back(n);
    }
    uint64_t k = rng() % 100;
    std::string what;
    if (k < 45) {  // a write somewhere in a writable image (first writes: copies on write)
      const std::string& n = writable[rng() % writable.size()];
      uint64_t off = (rng() % (kSize / 512)) * 512;
      uint64_t len = std::min<uint64_t>(kSize - off, 512 * (1 + rng() % 64));
      auto d = Pattern(len, 5000 + op);
      ASSERT_EQ(SyncIo(ch(n), io::IoOp::kWrite, off, d.data(), len), static_cast<int>(len));
      m.Write(n, off, d);
      what = "write " + n;
    } else if (k < 55) {  // discard or write-zeroes (+unmap) of whole clusters
      const std::string& n = writable[rng() % writable.size()];
      uint64_t off = (rng() % (kSize / kCs)) * kCs;
      uint64_t len = std::min<uint64_t>(kSize - off, kCs * (1 + rng() % 3));
      bool discard = rng() % 2 == 0;
      ASSERT_EQ(SyncIo(ch(n), discard ? io::IoOp::kDiscard : io::IoOp::kWriteZeroes, off, nullptr, len, true), 0);
      if (discard) {  // a no-op over the parent's data, zeros elsewhere: what the live pool reads
        std::vector<uint8_t> live(len);
        ASSERT_EQ(SyncIo(ch(n), io::IoOp::kRead, off, live.data(), len), static_cast<int>(len));
        m.Write(n, off, live);
      } else {
        m.Zero(n, off, len);
      }
      what = (discard ? "discard " : "write-zeroes ") + n;
    } else if (k < 68 && m.images.size() < 7) {  // 7: a checkpoint holds 8 locks per image (TSan follows 64)
      const std::string& n = writable[rng() % writable.size()];
      std::string s = "s" + std::to_string(next++);
      auto r = pool->CreateSnapshot(n, s);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      m.Snapshot(n, s);
      what = "snapshot " + n;
    } else if (k < 80 && !snaps.empty() && m.images.size() < 7) {
      const std::string& sn = snaps[rng() % snaps.size()];
      std::string c = "c" + std::to_string(next++);
      ASSERT_TRUE(pool->CloneVolume(sn, c).ok());
      m.Clone(sn, c);
      what = "clone " + sn;
    } else if (k < 90 && !clones.empty()) {
      const std::string& n = clones[rng() % clones.size()];
      bool decouple = rng() % 2 == 0;
      Status st = decouple ? pool->DecoupleVolume(n) : pool->InflateVolume(n);
      ASSERT_TRUE(st.ok()) << st.ToString();
      std::string parent = m.images[n].parent;
      m.images[n].parent = decouple ? m.images[parent].parent : "";
      what = (decouple ? "decouple " : "inflate ") + n;
    } else if (leaves.size() > 1) {
      std::string n = leaves[rng() % leaves.size()];
      if (!m.images[n].snapshot && writable.size() == 1) continue;
      imgs.erase(n);
      ASSERT_TRUE(pool->DeleteVolume(n).ok());
      m.images.erase(n);
      what = "delete " + n;
    } else {
      continue;
    }
    verify("after op " + std::to_string(op) + " (" + what + ")", op % 5 != 0);
  }
  std::cout << verified << " process-crash points verified\n";
  imgs.clear();
  pool.reset();
  fs::remove_all(root);
}

// ---- races: a file-backed pool, one io_uring per thread ----

// A pool device on a file whose data requests wait delay_us before they
// start (io_uring timeouts): a first write's copy stays in flight long
// enough for the other reactor's write to arrive.
class DelayedFileDevice final : public PoolDevice {
 public:
  static std::unique_ptr<DelayedFileDevice> Open(const std::string& path, uint64_t size, uint32_t delay_us) {
    auto base = OpenFilePoolDevice(path, true, size);
    EXPECT_TRUE(base.ok()) << base.status().ToString();
    if (!base.ok()) return nullptr;
    io::FileBackendOptions o;
    o.lock = io::FileBackendOptions::Lock::kCallerHolds;  // base holds it
    o.delay_us = delay_us;
    auto data = io::OpenFileBackend(path, size, o);
    EXPECT_TRUE(data.ok()) << data.status().ToString();
    if (!data.ok()) return nullptr;
    auto d = std::unique_ptr<DelayedFileDevice>(new DelayedFileDevice);
    d->base_ = std::move(base.value());
    d->data_ = std::move(data.value());
    return d;
  }
  uint64_t size_bytes() const override { return base_->size_bytes(); }
  std::string Describe() const override { return data_->Describe(); }
  Status ReadAt(uint64_t off, void* buf, size_t len) override { return base_->ReadAt(off, buf, len); }
  Status WriteAt(uint64_t off, const void* buf, size_t len) override { return base_->WriteAt(off, buf, len); }
  Status Sync() override { return base_->Sync(); }
  io::BlockBackend* data() override { return data_.get(); }

 private:
  DelayedFileDevice() = default;
  std::unique_ptr<PoolDevice> base_;
  std::unique_ptr<io::BlockBackend> data_;
};

// One reactor: a ring and a channel of one image, used by the thread that
// made it. Io() submits and polls until the request completes.
class Reactor {
 public:
  bool Open(Pool* pool, const std::string& name) {
    auto r = io::IoUring::Create(64);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return false;
    ring_ = std::move(r.value());
    auto b = pool->OpenVolume(name);
    EXPECT_TRUE(b.ok()) << name << ": " << b.status().ToString();
    if (!b.ok()) return false;
    backend_ = b.value();
    auto ch = backend_->OpenChannel(ring_.get());
    EXPECT_TRUE(ch.ok()) << ch.status().ToString();
    if (!ch.ok()) return false;
    ch_ = std::move(ch.value());
    return true;
  }
  void Close() {
    ch_.reset();
    backend_.reset();
    ring_.reset();
  }
  io::IoChannel* ch() { return ch_.get(); }
  // One reactor iteration.
  void Poll() {
    ring_->Submit();
    ring_->Reap();
    ch_->EndOfBatch();
  }
  int Wait(SyncRequest* r) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (r->result == INT_MIN) {
      Poll();
      if (r->result != INT_MIN) {
        ring_->Submit();  // what its completion posted to other rings (a parked write's wake-up)
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "a request did not complete in 60 s";
        std::abort();  // its memory is still the ring's
      }
      sched_yield();
    }
    return r->result;
  }
  int Io(io::IoOp op, uint64_t off, void* buf, uint64_t len) {
    SyncRequest r;
    iovec v;
    StartIo(ch_.get(), &r, &v, op, off, buf, len);
    return Wait(&r);
  }

 private:
  std::unique_ptr<io::IoUring> ring_;
  std::shared_ptr<io::BlockBackend> backend_;
  std::unique_ptr<io::IoChannel> ch_;
};

// 4 KiB-aligned buffers (O_DIRECT).
struct AlignedBlock {
  explicit AlignedBlock(size_t n) : n(n) {
    p = static_cast<uint8_t*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096));
    std::memset(p, 0, n);
  }
  ~AlignedBlock() { std::free(p); }
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
  uint8_t* p;
  size_t n;
};

class SnapshotRace : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("nestor-snaprace-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    pool_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void OpenPool(uint64_t bytes, uint32_t delay_us) {
    std::string path = (dir_ / "pool").string();
    {
      auto d = OpenFilePoolDevice(path, true, bytes);
      ASSERT_TRUE(d.ok()) << d.status().ToString();
      ASSERT_TRUE(Pool::Format(d->get(), kCluster, true).ok());
    }
    auto dev = DelayedFileDevice::Open(path, bytes, delay_us);
    ASSERT_NE(dev, nullptr);
    auto p = Pool::Open(std::move(dev));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    pool_ = std::move(p.value());
    pool_->StartCommitter();
  }
  fs::path dir_;
  std::unique_ptr<Pool> pool_;
};

// Two reactors race first writes (different 4 KiB blocks) into the same
// cluster of a clone, which reads that cluster from its snapshot: the
// cluster is copied once (the clone grows by exactly one cluster per raced
// cluster), and it holds both writes and the snapshot's bytes around them.
TEST_F(SnapshotRace, FirstWritesToASharedClusterCopyItOnce) {
  const uint64_t rounds = EnvU64("NESTOR_SNAPSHOT_RACE_ROUNDS", 150);
  const uint64_t size = rounds * kCluster;
  OpenPool(2 * size + (16 << 20), 100);
  ASSERT_NE(pool_, nullptr);
  ASSERT_TRUE(pool_->CreateVolume("gold", size, false).ok());
  std::vector<uint8_t> gold = Pattern(size, 1);
  {
    Reactor r;
    ASSERT_TRUE(r.Open(pool_.get(), "gold"));
    AlignedBlock b(size);
    std::memcpy(b.p, gold.data(), size);
    ASSERT_EQ(r.Io(io::IoOp::kWrite, 0, b.p, size), static_cast<int>(size));
    r.Close();
  }
  ASSERT_TRUE(pool_->CreateSnapshot("gold", "golden").ok());
  ASSERT_TRUE(pool_->CloneVolume("golden", "c").ok());
  ASSERT_EQ(pool_->GetVolume("c")->allocated_bytes, 0u);
  const uint64_t parked0 = pool_->Info().parked_writes;

  // Round r: thread t writes block blk[t][r] of cluster r.
  constexpr uint64_t kBlocks = kCluster / kBlk;
  std::vector<uint64_t> blk[2];
  std::mt19937_64 rng(7);
  for (uint64_t r = 0; r < rounds; ++r) {
    uint64_t a = rng() % kBlocks, b = rng() % (kBlocks - 1);
    if (b >= a) ++b;
    blk[0].push_back(a);
    blk[1].push_back(b);
  }
  std::atomic<int64_t> go{-1};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> failed{false};
  std::vector<int> results[2];
  auto writer = [&](int t) {
    Reactor re;
    if (!re.Open(pool_.get(), "c")) {
      failed = true;
      return;
    }
    AlignedBlock buf(kBlk);
    results[t].resize(rounds);
    for (uint64_t r = 0; r < rounds && !failed; ++r) {
      while (go.load(std::memory_order_acquire) < static_cast<int64_t>(r)) {
        if (failed) break;
        re.Poll();  // a reactor keeps polling between requests
      }
      auto d = Pattern(kBlk, 1000 * (t + 1) + r);
      std::memcpy(buf.p, d.data(), kBlk);
      results[t][r] = re.Io(io::IoOp::kWrite, r * kCluster + blk[t][r] * kBlk, buf.p, kBlk);
      done.fetch_add(1, std::memory_order_acq_rel);
    }
    re.Close();
  };
  std::thread t0(writer, 0), t1(writer, 1);
  std::vector<uint64_t> allocated(rounds);
  for (uint64_t r = 0; r < rounds && !failed; ++r) {
    go.store(static_cast<int64_t>(r), std::memory_order_release);
    while (done.load(std::memory_order_acquire) < 2 * (r + 1) && !failed) std::this_thread::yield();
    allocated[r] = pool_->GetVolume("c")->allocated_bytes;
  }
  t0.join();
  t1.join();
  const uint64_t parked = pool_->Info().parked_writes - parked0;
  std::cout << "raced " << rounds << " clusters; " << parked << " writes waited for the other's copy\n";
  for (uint64_t r = 0; r < rounds; ++r) {
    ASSERT_EQ(results[0][r], static_cast<int>(kBlk)) << "round " << r;
    ASSERT_EQ(results[1][r], static_cast<int>(kBlk)) << "round " << r;
    ASSERT_EQ(allocated[r], (r + 1) * kCluster)
        << "round " << r << ": the clone holds " << allocated[r] / kCluster << " clusters after " << r + 1
        << " raced first writes (a shared cluster copied twice, or a copy lost)";
  }
  EXPECT_GT(parked, 0u) << "no write ever waited for the other reactor's copy: the race was not exercised";
  // Content: both writes, the snapshot's bytes around them.
  Reactor re;
  ASSERT_TRUE(re.Open(pool_.get(), "c"));
  AlignedBlock got(size);
  ASSERT_EQ(re.Io(io::IoOp::kRead, 0, got.p, size), static_cast<int>(size));
  std::vector<uint8_t> want = gold;
  for (uint64_t r = 0; r < rounds; ++r) {
    for (int t = 0; t < 2; ++t) {
      auto d = Pattern(kBlk, 1000 * (t + 1) + r);
      std::memcpy(want.data() + r * kCluster + blk[t][r] * kBlk, d.data(), kBlk);
    }
  }
  for (uint64_t r = 0; r < rounds; ++r) {
    ASSERT_EQ(0, std::memcmp(got.p + r * kCluster, want.data() + r * kCluster, kCluster))
        << "cluster " << r << " of the clone: blocks " << blk[0][r] << " and " << blk[1][r]
        << " written, the rest the snapshot's";
  }
  re.Close();
  Reactor rs;
  ASSERT_TRUE(rs.Open(pool_.get(), "golden"));
  ASSERT_EQ(rs.Io(io::IoOp::kRead, 0, got.p, size), static_cast<int>(size));
  EXPECT_EQ(0, std::memcmp(got.p, gold.data(), size)) << "the snapshot changed";
  rs.Close();
  EXPECT_EQ(pool_->GetVolume("c")->allocated_bytes, rounds * kCluster);
  ASSERT_TRUE(pool_->Commit().ok());
  CheckReport rep = pool_->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

// Inflate and decouple of a clone under writes from another reactor: the
// copies and the writes meet cluster by cluster (a copy waits for a first
// write in progress, a write for a copy); afterwards the clone holds the
// snapshot's bytes overlaid with every write, in order, and its parent
// link changed.
TEST_F(SnapshotRace, InflateAndDecoupleUnderWrites) {
  constexpr uint64_t kSize = 8 << 20;  // 128 clusters
  constexpr uint64_t kBlocks = kSize / kBlk;
  OpenPool(64 << 20, 30);
  ASSERT_NE(pool_, nullptr);
  ASSERT_TRUE(pool_->CreateVolume("v", kSize, false).ok());
  std::vector<uint8_t> want = Pattern(kSize, 1);
  {
    Reactor r;
    ASSERT_TRUE(r.Open(pool_.get(), "v"));
    AlignedBlock b(kSize);
    std::memcpy(b.p, want.data(), kSize);
    ASSERT_EQ(r.Io(io::IoOp::kWrite, 0, b.p, kSize), static_cast<int>(kSize));
    auto over = Pattern(kSize / 2, 2);  // s2 holds the middle half
    std::memcpy(b.p, over.data(), over.size());
    r.Close();
    ASSERT_TRUE(pool_->CreateSnapshot("v", "s1").ok());
    ASSERT_TRUE(r.Open(pool_.get(), "v"));
    ASSERT_EQ(r.Io(io::IoOp::kWrite, kSize / 4, b.p, over.size()), static_cast<int>(over.size()));
    std::memcpy(want.data() + kSize / 4, over.data(), over.size());
    r.Close();
  }
  ASSERT_TRUE(pool_->CreateSnapshot("v", "s2").ok());
  ASSERT_TRUE(pool_->CloneVolume("s2", "c").ok());
  std::vector<uint64_t> last(kBlocks, 0);  // the last write of each block (index + 1)
  for (int phase = 0; phase < 2; ++phase) {
    SCOPED_TRACE(phase == 0 ? "decouple" : "inflate");
    std::atomic<bool> stop{false}, failed{false};
    std::atomic<uint64_t> writes{0};
    std::thread writer([&] {
      Reactor re;
      if (!re.Open(pool_.get(), "c")) {
        failed = true;
        return;
      }
      struct Slot {
        SyncRequest r;
        iovec v;
        uint64_t block = 0;
        bool busy = false;
        std::unique_ptr<AlignedBlock> buf = std::make_unique<AlignedBlock>(kBlk);
      };
      std::vector<Slot> slots(4);
      std::vector<bool> in_flight(kBlocks, false);
      std::mt19937_64 rng(100 + phase);
      uint64_t n = writes.load();
      for (;;) {
        bool busy = false;
        for (auto& s : slots) {
          if (s.busy && s.r.result != INT_MIN) {
            if (s.r.result != static_cast<int>(kBlk)) {
              ADD_FAILURE() << "write of block " << s.block << " returned " << s.r.result;
              failed = true;
            }
            in_flight[s.block] = false;
            s.busy = false;
          }
          busy = busy || s.busy;
        }
        if ((stop.load() || failed.load()) && !busy) break;
        for (auto& s : slots) {
          if (s.busy || stop.load()) continue;
          uint64_t b = rng() % kBlocks;
          if (in_flight[b]) continue;
          ++n;
          auto d = Pattern(kBlk, 0x7000000 + n);
          std::memcpy(s.buf->p, d.data(), kBlk);
          last[b] = n;
          in_flight[b] = true;
          s.block = b;
          s.busy = true;
          s.r.result = INT_MIN;
          StartIo(re.ch(), &s.r, &s.v, io::IoOp::kWrite, b * kBlk, s.buf->p, kBlk);
        }
        re.Poll();
      }
      writes.store(n);
      re.Close();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    Status st = phase == 0 ? pool_->DecoupleVolume("c") : pool_->InflateVolume("c");
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    stop = true;
    writer.join();
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_FALSE(failed.load());
    EXPECT_EQ(pool_->GetVolume("c")->parent, phase == 0 ? "s1" : "");
    std::cout << (phase == 0 ? "decouple" : "inflate") << " under " << writes.load() << " writes in all\n";
    Reactor re;
    ASSERT_TRUE(re.Open(pool_.get(), "c"));
    AlignedBlock got(kSize);
    ASSERT_EQ(re.Io(io::IoOp::kRead, 0, got.p, kSize), static_cast<int>(kSize));
    re.Close();
    for (uint64_t b = 0; b < kBlocks; ++b) {
      std::vector<uint8_t> w = last[b] == 0
                                   ? std::vector<uint8_t>(want.begin() + b * kBlk, want.begin() + (b + 1) * kBlk)
                                   : Pattern(kBlk, 0x7000000 + last[b]);
      ASSERT_EQ(0, std::memcmp(got.p + b * kBlk, w.data(), kBlk))
          << "block " << b << " of the clone (last write " << last[b] << ")";
    }
  }
  EXPECT_EQ(pool_->GetVolume("c")->allocated_bytes, kSize) << "the inflated clone holds every cluster";
  ASSERT_TRUE(pool_->Commit().ok());
  CheckReport rep = pool_->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

// Lock-free reads through the chain against the end of that chain: a
// reactor keeps reading a clone (every byte the snapshot's) while the clone
// is inflated, the snapshot and its other clone are deleted and their
// clusters are rewritten by a new volume. A read that resolved to the
// snapshot's cluster before it was freed must still get the snapshot's
// bytes (the grace period), never the new volume's.
TEST_F(SnapshotRace, ReadsThroughTheChainSurviveInflateAndDeleteOfTheSnapshot) {
  constexpr uint64_t kSize = 4 << 20;
  OpenPool(32 << 20, 200);
  ASSERT_NE(pool_, nullptr);
  ASSERT_TRUE(pool_->CreateVolume("v", kSize, false).ok());
  const std::vector<uint8_t> gold = Pattern(kSize, 3);
  {
    Reactor r;
    ASSERT_TRUE(r.Open(pool_.get(), "v"));
    AlignedBlock b(kSize);
    std::memcpy(b.p, gold.data(), kSize);
    ASSERT_EQ(r.Io(io::IoOp::kWrite, 0, b.p, kSize), static_cast<int>(kSize));
    r.Close();
  }
  ASSERT_TRUE(pool_->CreateSnapshot("v", "golden").ok());
  ASSERT_TRUE(pool_->CloneVolume("golden", "c").ok());
  std::atomic<bool> stop{false}, failed{false};
  std::atomic<uint64_t> reads{0};
  static constexpr uint64_t kLen = 64 * 1024;
  std::thread reader([&] {
    Reactor re;
    if (!re.Open(pool_.get(), "c")) {
      failed = true;
      return;
    }
    constexpr int kQd = 4;
    struct Slot {
      SyncRequest r;
      iovec v;
      uint64_t off = 0;
      bool busy = false;
      std::unique_ptr<AlignedBlock> buf = std::make_unique<AlignedBlock>(kLen);
    };
    std::vector<Slot> slots(kQd);
    std::mt19937_64 rng(9);
    for (;;) {
      bool busy = false;
      for (auto& s : slots) {
        if (s.busy && s.r.result != INT_MIN) {
          s.busy = false;
          reads.fetch_add(1);
          if (s.r.result != static_cast<int>(kLen) || std::memcmp(s.buf->p, gold.data() + s.off, kLen) != 0) {
            if (!failed.exchange(true)) {
              ADD_FAILURE() << "read of the clone at " << s.off << " returned " << s.r.result
                            << (s.r.result == static_cast<int>(kLen) ? " with bytes that are not the snapshot's" : "");
            }
          }
        }
        busy = busy || s.busy;
      }
      if ((stop.load() || failed.load()) && !busy) break;
      for (auto& s : slots) {
        if (s.busy || stop.load()) continue;
        s.off = (rng() % (kSize / 4096)) * 4096;
        if (s.off + kLen > kSize) s.off = kSize - kLen;
        s.busy = true;
        s.r.result = INT_MIN;
        StartIo(re.ch(), &s.r, &s.v, io::IoOp::kRead, s.off, s.buf->p, kLen);
      }
      re.Poll();
    }
    re.Close();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Status st = pool_->InflateVolume("c");
  EXPECT_TRUE(st.ok()) << st.ToString();
  st = pool_->DeleteVolume("v");
  EXPECT_TRUE(st.ok()) << st.ToString();
  st = pool_->DeleteVolume("golden");
  EXPECT_TRUE(st.ok()) << st.ToString();
  // Their clusters are free (after the commit and the grace period): a new
  // volume writes junk over as many clusters as it can get.
  ASSERT_TRUE(pool_->CreateVolume("junk", 16 << 20, false).ok());
  {
    Reactor r;
    ASSERT_TRUE(r.Open(pool_.get(), "junk"));
    AlignedBlock b(kCluster);
    std::memset(b.p, 0xEE, kCluster);
    for (uint64_t off = 0; off < (16u << 20); off += kCluster) {
      int res = r.Io(io::IoOp::kWrite, off, b.p, kCluster);
      if (res == -ENOSPC) break;
      ASSERT_EQ(res, static_cast<int>(kCluster));
    }
    r.Close();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  reader.join();
  std::cout << reads.load() << " reads of the clone across its inflate and the delete of its snapshot\n";
  EXPECT_FALSE(failed.load());
  ASSERT_TRUE(pool_->Commit().ok());
  CheckReport rep = pool_->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

// A write that does not drain (its reactor is not polling) makes an online
// snapshot give up after drain_timeout_ms: EBUSY, no snapshot, the gate
// open again; once the write is done, the snapshot is taken.
TEST_F(SnapshotRace, UndrainedWriteTimesTheSnapshotOut) {
  OpenPool(16 << 20, 0);
  ASSERT_NE(pool_, nullptr);
  ASSERT_TRUE(pool_->CreateVolume("v", 1 << 20, false).ok());
  Reactor re;
  ASSERT_TRUE(re.Open(pool_.get(), "v"));
  AlignedBlock a(kBlk), b(kBlk);
  std::memset(a.p, 0x11, kBlk);
  std::memset(b.p, 0x22, kBlk);
  SyncRequest r;
  iovec v;
  StartIo(re.ch(), &r, &v, io::IoOp::kWrite, 0, a.p, kBlk);  // prepared, not submitted: in flight
  ASSERT_EQ(r.result, INT_MIN);
  auto start = std::chrono::steady_clock::now();
  auto s = pool_->CreateSnapshot("v", "s", 50);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.status().err(), EBUSY) << s.status().ToString();
  EXPECT_GE(took, std::chrono::milliseconds(50));
  EXPECT_LT(took, std::chrono::seconds(5));
  EXPECT_FALSE(pool_->GetVolume("s").ok());
  EXPECT_EQ(pool_->GetVolume("v")->parent, "");
  ASSERT_EQ(re.Wait(&r), static_cast<int>(kBlk));
  ASSERT_EQ(re.Io(io::IoOp::kWrite, kBlk, b.p, kBlk), static_cast<int>(kBlk)) << "the gate stayed closed";
  s = pool_->CreateSnapshot("v", "s", 50);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  re.Close();
  Reactor rs;
  ASSERT_TRUE(rs.Open(pool_.get(), "s"));
  AlignedBlock got(2 * kBlk);
  ASSERT_EQ(rs.Io(io::IoOp::kRead, 0, got.p, 2 * kBlk), static_cast<int>(2 * kBlk));
  EXPECT_EQ(0, std::memcmp(got.p, a.p, kBlk));
  EXPECT_EQ(0, std::memcmp(got.p + kBlk, b.p, kBlk));
  rs.Close();
}

// A writer thread (its own ring) writes blocks in a cycle; the main thread
// takes snapshots of the volume meanwhile. Block b's content names the
// write (its index i, b == i % kBlocks). Each snapshot must hold exactly
// the writes of one instant: every write completed before CreateSnapshot
// was called, none submitted after it returned; at QD1 that is a prefix
// of the writes, exactly.
class SnapshotUnderWrites : public SnapshotRace, public ::testing::WithParamInterface<int> {};

constexpr uint64_t kWriteBlocks = 256;  // 1 MiB: 16 clusters
constexpr uint64_t kMaxWrites = 1 << 20;

void FillWrite(uint8_t* p, uint64_t i) {
  auto d = Pattern(kBlk, 0x5000000 + i);
  std::memcpy(p, d.data(), kBlk);
  uint64_t hdr[2] = {i + 1, i % kWriteBlocks};
  std::memcpy(p, hdr, sizeof hdr);
}

// The write a block holds: its index + 1, 0 for zeros, UINT64_MAX garbage.
uint64_t WhichWrite(const uint8_t* p, uint64_t block) {
  if (AllZero(p, kBlk)) return 0;
  uint64_t hdr[2];
  std::memcpy(hdr, p, sizeof hdr);
  if (hdr[0] == 0 || hdr[0] > kMaxWrites || hdr[1] != block) return UINT64_MAX;
  std::vector<uint8_t> want(kBlk);
  FillWrite(want.data(), hdr[0] - 1);
  return std::memcmp(p, want.data(), kBlk) == 0 ? hdr[0] : UINT64_MAX;
}

TEST_P(SnapshotUnderWrites, EachSnapshotHoldsTheWritesOfOneInstant) {
  const int qd = GetParam();
  const int snapshots = 12;
  OpenPool(64 << 20, 50);
  ASSERT_NE(pool_, nullptr);
  ASSERT_TRUE(pool_->CreateVolume("v", kWriteBlocks * kBlk, false).ok());
  std::atomic<uint64_t> submitted{0};  // writes [0, submitted) were submitted
  std::vector<std::atomic<uint8_t>> completed(kMaxWrites);
  std::atomic<uint64_t> completed_prefix{0};  // writes [0, prefix) all completed
  std::atomic<bool> stop{false}, failed{false};
  std::thread writer([&] {
    Reactor re;
    if (!re.Open(pool_.get(), "v")) {
      failed = true;
      return;
    }
    struct Slot {
      SyncRequest r;
      iovec v;
      uint64_t i = 0;
      bool busy = false;
      std::unique_ptr<AlignedBlock> buf = std::make_unique<AlignedBlock>(kBlk);
    };
    std::vector<Slot> slots(static_cast<size_t>(qd));
    uint64_t next = 0, prefix = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    for (;;) {
      bool any_busy = false;
      for (auto& s : slots) {
        if (s.busy && s.r.result != INT_MIN) {
          if (s.r.result != static_cast<int>(kBlk)) {
            ADD_FAILURE() << "write " << s.i << " returned " << s.r.result;
            failed = true;
          }
          completed[s.i].store(1, std::memory_order_release);
          s.busy = false;
        }
        any_busy = any_busy || s.busy;
      }
      while (prefix < next && completed[prefix].load(std::memory_order_acquire)) ++prefix;
      completed_prefix.store(prefix, std::memory_order_release);
      if ((stop.load() || failed.load()) && !any_busy) break;
      for (auto& s : slots) {
        // Never two writes of one block in flight: write i waits for i - kWriteBlocks.
        if (s.busy || stop.load() || next >= kMaxWrites || next >= prefix + kWriteBlocks) continue;
        s.i = next;
        FillWrite(s.buf->p, next);
        s.busy = true;
        submitted.store(next + 1, std::memory_order_release);
        s.r.result = INT_MIN;  // StartIo leaves it as the last request left it
        StartIo(re.ch(), &s.r, &s.v, io::IoOp::kWrite, (next % kWriteBlocks) * kBlk, s.buf->p, kBlk);
        ++next;
      }
      re.Poll();
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "the writer is stuck (" << next << " writes submitted, " << prefix << " completed)";
        std::abort();
      }
    }
    re.Close();
  });
  struct Taken {
    std::string name;
    std::vector<uint8_t> done_before;  // completed[] when CreateSnapshot was called
    uint64_t submitted_after = 0;
  };
  std::vector<Taken> taken;
  std::mt19937_64 rng(static_cast<uint64_t>(qd));
  for (int j = 0; j < snapshots && !failed; ++j) {
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 8000));
    // At least a few writes between snapshots, however slow the machine.
    const uint64_t want = (taken.empty() ? 0 : taken.back().submitted_after) + 8;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (completed_prefix.load() < want && std::chrono::steady_clock::now() < until && !failed) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    Taken t;
    t.name = "s" + std::to_string(j);
    uint64_t sub = submitted.load(std::memory_order_acquire);
    t.done_before.resize(sub);
    for (uint64_t i = 0; i < sub; ++i) t.done_before[i] = completed[i].load(std::memory_order_acquire);
    auto info = pool_->CreateSnapshot("v", t.name);
    t.submitted_after = submitted.load(std::memory_order_acquire);
    if (!info.ok()) {
      ADD_FAILURE() << t.name << ": " << info.status().ToString();
      break;
    }
    taken.push_back(std::move(t));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  stop = true;
  writer.join();
  ASSERT_FALSE(failed.load());
  const uint64_t total = submitted.load();
  std::cout << "QD" << qd << ": " << total << " writes, " << taken.size() << " snapshots\n";

  // Each snapshot's blocks, checked against its instant.
  Reactor re;
  AlignedBlock got(kWriteBlocks * kBlk);
  uint64_t prev_k = 0;
  for (const Taken& t : taken) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(re.Open(pool_.get(), t.name));
    ASSERT_EQ(re.Io(io::IoOp::kRead, 0, got.p, got.n), static_cast<int>(got.n));
    re.Close();
    std::vector<uint64_t> holds(kWriteBlocks);
    uint64_t k = 0;  // writes [0, k) are in, by the highest one seen
    for (uint64_t b = 0; b < kWriteBlocks; ++b) {
      holds[b] = WhichWrite(got.p + b * kBlk, b);
      ASSERT_NE(holds[b], UINT64_MAX) << "block " << b << " holds bytes no write wrote";
      k = std::max(k, holds[b]);
      // Not a write submitted after CreateSnapshot returned.
      ASSERT_LE(holds[b], t.submitted_after)
          << "block " << b << " holds write " << holds[b] - 1 << ", submitted after the snapshot returned";
      // Every write of this block completed before the call is in (this one or a later).
      uint64_t last_done = 0;
      for (uint64_t i = b; i < t.done_before.size(); i += kWriteBlocks) {
        if (t.done_before[i]) last_done = i + 1;
      }
      ASSERT_GE(holds[b], last_done) << "block " << b << ": write " << last_done - 1
                                     << " completed before the snapshot was called, it holds "
                                     << (holds[b] == 0 ? std::string("zeros") : std::to_string(holds[b] - 1));
    }
    if (qd == 1) {
      // A prefix: block b holds the last write < k of it.
      for (uint64_t b = 0; b < kWriteBlocks; ++b) {
        uint64_t want = 0;
        if (k > b) want = b + ((k - 1 - b) / kWriteBlocks) * kWriteBlocks + 1;
        ASSERT_EQ(holds[b], want) << "block " << b << ": not the prefix of the first " << k << " writes";
      }
    }
    EXPECT_GE(k, prev_k) << "a later snapshot holds fewer writes";
    prev_k = k;
  }
  // The volume itself holds every write.
  ASSERT_TRUE(re.Open(pool_.get(), "v"));
  ASSERT_EQ(re.Io(io::IoOp::kRead, 0, got.p, got.n), static_cast<int>(got.n));
  re.Close();
  for (uint64_t b = 0; b < kWriteBlocks; ++b) {
    uint64_t want = total > b ? b + ((total - 1 - b) / kWriteBlocks) * kWriteBlocks + 1 : 0;
    ASSERT_EQ(WhichWrite(got.p + b * kBlk, b), want) << "block " << b << " of the volume";
  }
  ASSERT_TRUE(pool_->Commit().ok());
  CheckReport rep = pool_->Check();
  EXPECT_TRUE(rep.clean()) << (rep.problems.empty() ? "" : rep.problems[0]);
}

INSTANTIATE_TEST_SUITE_P(QueueDepth, SnapshotUnderWrites, ::testing::Values(1, 8),
                         [](const ::testing::TestParamInfo<int>& i) { return "QD" + std::to_string(i.param); });

}  // namespace
}  // namespace nestor::volume
