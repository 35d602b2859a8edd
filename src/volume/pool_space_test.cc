// Space accounting (space.h): ComputeSpace against a per-cluster model of
// the chains (random forests of snapshots and clones), the cases the model
// spells out, its cost at 1,000 clones of 16K extents each, and
// ListVolumes(true) on a real pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <thread>
#include <vector>

#include "base/sanitizers.h"
#include "volume/pool.h"
#include "volume/space.h"
#include "volume/testing/sync_io.h"
#include "volume/testing/volatile_cache_device.h"

namespace nestor::volume {
namespace {

struct Img {
  int64_t parent = -1;
  bool snapshot = false;
  uint64_t size = 0;  // clusters
  std::vector<Extent> map;
};

std::vector<ImageSpace> Compute(const std::vector<Img>& imgs, std::vector<int>* calls = nullptr) {
  std::vector<SpaceImage> in(imgs.size());
  for (size_t i = 0; i < imgs.size(); ++i) {
    in[i].parent = imgs[i].parent;
    in[i].snapshot = imgs[i].snapshot;
    in[i].size = imgs[i].size;
    for (const Extent& e : imgs[i].map) in[i].allocated += e.n;
    int64_t p = imgs[i].parent;
    if (p >= 0 && static_cast<size_t>(p) < imgs.size()) in[p].has_children = true;
  }
  if (calls != nullptr) calls->assign(imgs.size(), 0);
  return ComputeSpace(in, [&](size_t i, std::vector<Extent>* out) {
    if (calls != nullptr) ++(*calls)[i];
    out->insert(out->end(), imgs[i].map.begin(), imgs[i].map.end());
  });
}

bool Maps(const Img& img, uint64_t v) {
  for (const Extent& e : img.map) {
    if (v >= e.v && v < e.v + e.n) return true;
  }
  return false;
}

// The definitions (space.h), cluster by cluster.
std::vector<ImageSpace> Model(const std::vector<Img>& imgs) {
  std::vector<ImageSpace> out(imgs.size());
  for (size_t i = 0; i < imgs.size(); ++i) {
    const Img& img = imgs[i];
    bool has_children = false;
    for (const Img& c : imgs) has_children |= c.parent == static_cast<int64_t>(i);
    uint64_t allocated = 0;
    for (const Extent& e : img.map) allocated += e.n;
    out[i].delete_frees = has_children ? 0 : allocated;
    if (img.snapshot) {
      for (const Extent& e : img.map) {
        for (uint64_t v = e.v; v < e.v + e.n; ++v) {
          bool read = false;
          for (const Img& c : imgs) {
            read |= c.parent == static_cast<int64_t>(i) && v < c.size && !Maps(c, v);
          }
          out[i].shared += read;
        }
      }
    } else {
      for (uint64_t v = 0; v < img.size; ++v) {
        if (Maps(img, v)) continue;
        bool shown = false;
        for (int64_t a = img.parent; a >= 0 && !shown; a = imgs[a].parent) shown = Maps(imgs[a], v);
        out[i].shared += shown;
      }
    }
  }
  return out;
}

Extent X(uint64_t v, uint64_t n) {
  static uint64_t p = 0;
  p += n + 1;  // physically apart: like ExtentMap's runs, they never merge there
  return Extent{v, p, n};
}

void ExpectSpace(const std::vector<ImageSpace>& got, const std::vector<ImageSpace>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].shared, want[i].shared) << "image " << i;
    EXPECT_EQ(got[i].delete_frees, want[i].delete_frees) << "image " << i;
  }
}

TEST(Space, PlainVolumeSharesNothing) {
  std::vector<Img> imgs = {{-1, false, 16, {X(0, 3), X(3, 2), X(10, 1)}}};
  ExpectSpace(Compute(imgs), {{0, 6}});
}

TEST(Space, SnapshotAndTwoClones) {
  // snap maps 0..9; a overwrote 2..3; b overwrote everything.
  std::vector<Img> imgs = {
      {-1, true, 10, {X(0, 10)}},
      {0, false, 10, {X(2, 2)}},
      {0, false, 10, {X(0, 4), X(4, 6)}},
  };
  ExpectSpace(Compute(imgs), {{8, 0}, {8, 2}, {0, 10}});
  ExpectSpace(Compute(imgs), Model(imgs));
}

TEST(Space, SnapshotAllOverwrittenIsExclusive) {
  std::vector<Img> imgs = {
      {-1, true, 8, {X(0, 4)}},
      {0, false, 8, {X(0, 2), X(2, 2), X(6, 1)}},
  };
  // The clone reads nothing of the snapshot (its holes there show zeros).
  ExpectSpace(Compute(imgs), {{0, 0}, {0, 5}});
}

TEST(Space, Chain) {
  // g (0..3) <- s2 (4..7) <- c (0); d, a clone of g, overwrote 0..3.
  std::vector<Img> imgs = {
      {-1, true, 8, {X(0, 4)}},
      {0, true, 8, {X(4, 4)}},
      {1, false, 8, {X(0, 1)}},
      {0, false, 8, {X(0, 4)}},
  };
  // g: s2 reads all of it (its holes); s2: c reads all of it; c reads 7.
  ExpectSpace(Compute(imgs), {{4, 0}, {4, 0}, {7, 1}, {0, 4}});
  ExpectSpace(Compute(imgs), Model(imgs));
}

TEST(Space, ChildSizes) {
  // A child smaller than its snapshot reads nothing past its end; a larger
  // one reads only what the chain maps.
  std::vector<Img> imgs = {
      {-1, true, 10, {X(0, 10)}},
      {0, false, 5, {}},
      {0, false, 20, {X(12, 2), X(3, 1)}},
  };
  ExpectSpace(Compute(imgs), {{10, 0}, {5, 0}, {9, 3}});
  imgs.pop_back();
  ExpectSpace(Compute(imgs), {{5, 0}, {5, 0}});
}

TEST(Space, HolesInTheChain) {
  std::vector<Img> imgs = {
      {-1, true, 8, {X(0, 2), X(5, 1)}},
      {0, false, 8, {X(1, 5)}},
  };
  ExpectSpace(Compute(imgs), {{1, 0}, {1, 5}});
}

TEST(Space, AdjacentAndUnsortedExtentsMerge) {
  std::vector<Img> imgs = {
      {-1, true, 16, {X(4, 2), X(0, 2), X(2, 2)}},  // 0..5, as three runs out of order
      {0, false, 16, {X(1, 1), X(3, 2)}},
  };
  ExpectSpace(Compute(imgs), {{3, 0}, {3, 3}});
  ExpectSpace(Compute(imgs), Model(imgs));
}

TEST(Space, BadLinksCountAsNoParent) {
  std::vector<Img> imgs = {
      {1, true, 4, {X(0, 4)}},   // a cycle with 1
      {0, false, 4, {X(0, 1)}},  //
      {7, false, 4, {X(0, 1)}},  // out of range
      {3, false, 4, {X(0, 1)}},  // itself
  };
  std::vector<int> calls;
  auto got = Compute(imgs, &calls);
  ASSERT_EQ(got.size(), 4u);
  for (int c : calls) EXPECT_EQ(c, 1);
  EXPECT_EQ(got[2].shared, 0u);
  EXPECT_EQ(got[3].shared, 0u);
  EXPECT_EQ(got[2].delete_frees, 1u);
}

// Random forests of snapshots and clones (parents anywhere in the list),
// each image's result against the model.
TEST(Space, RandomForestsMatchTheModel) {
  std::mt19937_64 rng(12);
  for (int round = 0; round < 400; ++round) {
    size_t n = 1 + rng() % 10;
    std::vector<Img> imgs(n);
    // Build in creation order, then shuffle the list.
    for (size_t i = 0; i < n; ++i) {
      Img& img = imgs[i];
      img.snapshot = rng() % 2 == 0;
      img.size = 1 + rng() % 40;
      if (i > 0 && rng() % 4 != 0) {
        // Parents are snapshots (rarely a writable one: the model covers it).
        std::vector<int64_t> snaps;
        for (size_t j = 0; j < i; ++j) {
          if (imgs[j].snapshot || rng() % 8 == 0) snaps.push_back(static_cast<int64_t>(j));
        }
        if (!snaps.empty()) img.parent = snaps[rng() % snaps.size()];
      }
      for (uint64_t v = rng() % 3; v < img.size;) {
        uint64_t len = std::min<uint64_t>(1 + rng() % 6, img.size - v);
        if (rng() % 2) img.map.push_back(X(v, len));
        v += len + rng() % 2;  // sometimes adjacent runs
      }
    }
    std::vector<size_t> perm(n);
    for (size_t i = 0; i < n; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<size_t> where(n);
    for (size_t i = 0; i < n; ++i) where[perm[i]] = i;
    std::vector<Img> shuffled(n);
    for (size_t i = 0; i < n; ++i) {
      shuffled[where[i]] = imgs[i];
      if (imgs[i].parent >= 0) shuffled[where[i]].parent = static_cast<int64_t>(where[imgs[i].parent]);
    }
    std::vector<int> calls;
    auto got = Compute(shuffled, &calls);
    auto want = Model(shuffled);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(calls[i], 1) << "round " << round << " image " << i;
      ASSERT_EQ(got[i].shared, want[i].shared) << "round " << round << " image " << i;
      ASSERT_EQ(got[i].delete_frees, want[i].delete_frees) << "round " << round << " image " << i;
    }
  }
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// 1,000 clones of one snapshot, 16K extents each (and the snapshot too):
// 16 distinct maps, shared round-robin to keep the test's memory small.
// Timed twice, in CPU time (the machine running tests may be busy; wall
// time is printed): as the pool does it, walking ExtentMaps (well under a
// second; not asserted in sanitizer builds, where iterating the B-tree
// alone takes seconds), and the computation alone, the extents copied from
// vectors (under 2 s even in sanitizer builds).
TEST(Space, ThousandClonesOf16KExtents) {
  constexpr size_t kClones = 1000, kExtents = 16384, kMaps = 16;
  constexpr uint64_t kSize = kExtents * 64;  // virtual clusters per image
  std::mt19937_64 rng(5);
  auto make = [&](ExtentMap* m) {
    uint64_t p = 0;
    for (size_t k = 0; k < kExtents; ++k) {
      uint64_t v = k * 64 + rng() % 32, n = 1 + rng() % 32;
      m->Map(v, p, n);
      p += n + 1;
    }
  };
  ExtentMap golden;
  make(&golden);
  std::vector<ExtentMap> maps(kMaps);
  for (auto& m : maps) make(&m);
  ASSERT_EQ(golden.extent_count(), kExtents);
  auto list = [](const ExtentMap& m) {
    std::vector<Extent> l;
    m.ForEach([&](const Extent& e) { l.push_back(e); });
    return l;
  };
  std::vector<Extent> golden_list = list(golden);
  std::vector<std::vector<Extent>> lists;
  for (const auto& m : maps) lists.push_back(list(m));

  std::vector<SpaceImage> in(1 + kClones);
  in[0] = SpaceImage{-1, true, true, kSize, golden.mapped_clusters()};
  for (size_t i = 1; i <= kClones; ++i) {
    in[i] = SpaceImage{0, false, false, kSize, maps[i % kMaps].mapped_clusters()};
  }

  auto t0 = std::chrono::steady_clock::now();
  double c0 = ThreadCpuSeconds();
  auto got = ComputeSpace(in, [&](size_t i, std::vector<Extent>* out) {
    const ExtentMap& m = i == 0 ? golden : maps[i % kMaps];
    out->reserve(m.extent_count());
    m.ForEach([out](const Extent& e) { out->push_back(e); });
  });
  double walked = ThreadCpuSeconds() - c0;
  double walked_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  t0 = std::chrono::steady_clock::now();
  c0 = ThreadCpuSeconds();
  auto again = ComputeSpace(in, [&](size_t i, std::vector<Extent>* out) {
    const auto& l = i == 0 ? golden_list : lists[i % kMaps];
    out->insert(out->end(), l.begin(), l.end());
  });
  double alone = ThreadCpuSeconds() - c0;
  double alone_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf(
      "space: 1 snapshot + %zu clones x %zu extents%s: maps walked %.3f s CPU (%.0f us per clone; %.3f s wall), "
      "computation alone %.3f s CPU (%.0f us per clone; %.3f s wall)\n",
      kClones, kExtents, kSanitized ? " (sanitizer build)" : "", walked, walked * 1e6 / kClones, walked_wall, alone,
      alone * 1e6 / kClones, alone_wall);
  if (!kSanitized) {
    EXPECT_LT(walked, 1.0);
  }
  EXPECT_LT(alone, 2.0);

  // The results, against a count per cluster: the snapshot shares what
  // some map leaves a hole over; a clone reads the golden clusters its map
  // leaves holes over.
  std::vector<uint8_t> covered(kSize, 0), in_golden(kSize, 0);
  for (const auto& l : lists) {
    for (const Extent& e : l) {
      for (uint64_t v = e.v; v < e.v + e.n; ++v) ++covered[v];
    }
  }
  for (const Extent& e : golden_list) {
    for (uint64_t v = e.v; v < e.v + e.n; ++v) in_golden[v] = 1;
  }
  uint64_t snap_shared = 0;
  for (uint64_t v = 0; v < kSize; ++v) snap_shared += in_golden[v] && covered[v] < kMaps;
  EXPECT_EQ(got[0].shared, snap_shared);
  EXPECT_EQ(got[0].delete_frees, 0u);
  for (size_t m = 0; m < kMaps; ++m) {
    uint64_t reads = 0;
    std::vector<uint8_t> mine(kSize, 0);
    for (const Extent& e : lists[m]) {
      for (uint64_t v = e.v; v < e.v + e.n; ++v) mine[v] = 1;
    }
    for (uint64_t v = 0; v < kSize; ++v) reads += in_golden[v] && !mine[v];
    size_t clone = m == 0 ? kMaps : m;  // clone i walks maps[i % kMaps]
    EXPECT_EQ(got[clone].shared, reads) << "map " << m;
  }
  for (size_t i = 0; i <= kClones; ++i) {
    EXPECT_EQ(again[i].shared, got[i].shared) << i;
    EXPECT_EQ(again[i].delete_frees, got[i].delete_frees) << i;
    if (i > 0) {
      EXPECT_EQ(got[i].shared, got[1 + (i - 1) % kMaps].shared) << i;
      EXPECT_EQ(got[i].delete_frees, maps[i % kMaps].mapped_clusters()) << i;
    }
  }
}

// ---- through the pool ----

using testing::SyncIo;
using testing::VolatileCacheDevice;
constexpr uint32_t kCluster = 64 * 1024;

void WriteClusters(Pool* pool, const std::string& name, std::vector<uint64_t> clusters) {
  auto b = pool->OpenVolume(name);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto ch = (*b)->OpenChannel(nullptr);
  ASSERT_TRUE(ch.ok());
  std::vector<uint8_t> buf(kCluster, 0x5A);
  for (uint64_t c : clusters) {
    ASSERT_EQ(SyncIo(ch->get(), io::IoOp::kWrite, c * kCluster, buf.data(), buf.size()), static_cast<int>(kCluster));
  }
}

const VolumeInfo* Find(const std::vector<VolumeInfo>& list, const std::string& name) {
  for (const auto& i : list) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

TEST(PoolSpace, ListVolumesFillsSpace) {
  auto dev = std::make_unique<VolatileCacheDevice>(64 << 20, 1);
  ASSERT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
  auto opened = Pool::Open(std::move(dev));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Pool* pool = opened->get();
  ASSERT_TRUE(pool->CreateVolume("base", 16 * kCluster, false).ok());
  ASSERT_TRUE(pool->CreateVolume("plain", 16 * kCluster, false).ok());
  WriteClusters(pool, "base", {0, 1, 2, 3, 4, 5, 6, 7});
  WriteClusters(pool, "plain", {3, 9});
  auto snap = pool->CreateSnapshot("base", "snap");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  ASSERT_TRUE(pool->CloneVolume("snap", "c1").ok());
  WriteClusters(pool, "base", {1});
  WriteClusters(pool, "c1", {0, 12});

  auto list = pool->ListVolumes(true);
  const VolumeInfo* s = Find(list, "snap");
  const VolumeInfo* b = Find(list, "base");
  const VolumeInfo* c = Find(list, "c1");
  const VolumeInfo* p = Find(list, "plain");
  ASSERT_TRUE(s && b && c && p);
  for (const auto& i : list) {
    ASSERT_TRUE(i.space_known) << i.name << ": ListVolumes(true) must call FillSpace (pool_space.cc)";
  }
  // snap holds 0..7; base reads all but 1, c1 all but 0: all 8 shared.
  EXPECT_EQ(s->shared_bytes, 8u * kCluster);
  EXPECT_EQ(s->delete_frees_bytes, 0u);
  EXPECT_EQ(b->shared_bytes, 7u * kCluster);
  EXPECT_EQ(b->delete_frees_bytes, 1u * kCluster);
  EXPECT_EQ(c->shared_bytes, 7u * kCluster);
  EXPECT_EQ(c->delete_frees_bytes, 2u * kCluster);
  EXPECT_EQ(p->shared_bytes, 0u);
  EXPECT_EQ(p->delete_frees_bytes, 2u * kCluster);

  // Both clones overwrite cluster 0: the snapshot alone holds it.
  WriteClusters(pool, "base", {0});
  list = pool->ListVolumes(true);
  EXPECT_EQ(Find(list, "snap")->shared_bytes, 7u * kCluster);
  EXPECT_EQ(Find(list, "base")->shared_bytes, 6u * kCluster);
  // Without with_space, nothing is computed.
  for (const auto& i : pool->ListVolumes()) EXPECT_FALSE(i.space_known) << i.name;

  // A snapshot of a clone: c1's clusters (0, 12) go to c1-s, and c1 reads
  // through two levels.
  ASSERT_TRUE(pool->CreateSnapshot("c1", "c1-s").ok());
  WriteClusters(pool, "c1", {5});
  list = pool->ListVolumes(true);
  EXPECT_EQ(Find(list, "snap")->shared_bytes, 7u * kCluster);  // 0: base and c1-s hold their own
  EXPECT_EQ(Find(list, "c1-s")->shared_bytes, 2u * kCluster);
  EXPECT_EQ(Find(list, "c1-s")->delete_frees_bytes, 0u);
  EXPECT_EQ(Find(list, "c1")->shared_bytes, 8u * kCluster);  // 0..7 and 12, but 5
  EXPECT_EQ(Find(list, "c1")->delete_frees_bytes, 1u * kCluster);
  EXPECT_EQ(Find(list, "base")->shared_bytes, 6u * kCluster);

  // Deleting frees exactly what the listing said, leaf first.
  for (const char* name : {"c1", "c1-s", "base", "plain"}) {
    list = pool->ListVolumes(true);
    uint64_t frees = Find(list, name)->delete_frees_bytes;
    EXPECT_GT(frees, 0u) << name;
    uint64_t free0 = pool->Info().free_clusters;
    ASSERT_TRUE(pool->DeleteVolume(name).ok()) << name;
    ASSERT_TRUE(pool->Commit().ok());
    EXPECT_EQ((pool->Info().free_clusters - free0) * kCluster, frees) << name;
  }
  // The snapshot, childless now, is all exclusive.
  list = pool->ListVolumes(true);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].shared_bytes, 0u);
  EXPECT_EQ(list[0].delete_frees_bytes, 8u * kCluster);
  EXPECT_TRUE(pool->Check().clean());
}

// ListVolumes(true) while a clone takes first writes (copy-on-write) on
// another thread: the walk holds the clone's lock shared (TSan checks it),
// and every listing is within bounds.
TEST(PoolSpace, ListWhileWriting) {
  auto dev = std::make_unique<VolatileCacheDevice>(64 << 20, 2);
  ASSERT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
  auto opened = Pool::Open(std::move(dev));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Pool* pool = opened->get();
  constexpr uint64_t kClusters = 64;
  ASSERT_TRUE(pool->CreateVolume("v", kClusters * kCluster, false).ok());
  std::vector<uint64_t> half;
  for (uint64_t c = 0; c < kClusters / 2; ++c) half.push_back(c);
  WriteClusters(pool, "v", half);
  auto snap = pool->CreateSnapshot("v", "s");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();

  std::atomic<bool> done{false};
  std::thread writer([&] {
    [&] {
      auto b = pool->OpenVolume("v");
      ASSERT_TRUE(b.ok());
      auto ch = (*b)->OpenChannel(nullptr);
      ASSERT_TRUE(ch.ok());
      std::vector<uint8_t> buf(4096, 0x33);
      std::mt19937_64 rng(3);
      for (int i = 0; i < 600; ++i) {
        uint64_t off = (rng() % kClusters) * kCluster + (rng() % (kCluster / 4096)) * 4096;
        ASSERT_EQ(SyncIo(ch->get(), io::IoOp::kWrite, off, buf.data(), buf.size()), 4096);
      }
    }();
    done = true;  // also after a failed assertion
  });
  int lists = 0;
  while (!done.load() || lists == 0) {
    auto list = pool->ListVolumes(true);
    const VolumeInfo* s = Find(list, "s");
    const VolumeInfo* v = Find(list, "v");
    ASSERT_TRUE(s && v);
    EXPECT_LE(s->shared_bytes, kClusters / 2 * kCluster);
    EXPECT_LE(v->shared_bytes, kClusters / 2 * kCluster);
    EXPECT_EQ(s->delete_frees_bytes, 0u);
    ++lists;
  }
  writer.join();
  auto list = pool->ListVolumes(true);
  const VolumeInfo* s = Find(list, "s");
  const VolumeInfo* v = Find(list, "v");
  // Every cluster the clone wrote of the first half it no longer reads.
  EXPECT_EQ(s->shared_bytes, v->shared_bytes);
  EXPECT_EQ(v->delete_frees_bytes, v->allocated_bytes);
  std::printf("space: %d listings while writing\n", lists);
}

}  // namespace
}  // namespace nestor::volume
