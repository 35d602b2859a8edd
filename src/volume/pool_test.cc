// Volume semantics users depend on, each on its own: holes and cluster
// remainders read as zeros, no volume reads another's bytes, discard frees
// and space is reused, a full pool fails only the writer, FLUSH makes
// acknowledged writes durable, resize, persistence across reopen.
#include "volume/pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "volume/testing/sync_io.h"
#include "volume/testing/volatile_cache_device.h"

namespace nestor::volume {
namespace {

using testing::SyncIo;
using testing::VolatileCacheDevice;
constexpr uint32_t kCluster = 64 * 1024;

struct Fixture {
  VolatileCacheDevice* dev = nullptr;
  std::unique_ptr<Pool> pool;
};

Fixture MakePool(uint64_t bytes, uint64_t seed = 1) {
  auto dev = std::make_unique<VolatileCacheDevice>(bytes, seed);
  EXPECT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
  Fixture f;
  f.dev = dev.get();
  auto pool = Pool::Open(std::move(dev));
  EXPECT_TRUE(pool.ok()) << pool.status().ToString();
  f.pool = std::move(pool.value());
  return f;
}

std::unique_ptr<io::IoChannel> Channel(Pool* pool, const std::string& name, std::shared_ptr<io::BlockBackend>* keep) {
  auto b = pool->OpenVolume(name);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  *keep = b.value();
  auto ch = (*keep)->OpenChannel(nullptr);
  EXPECT_TRUE(ch.ok());
  return std::move(ch.value());
}

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
  return v;
}

bool AllZero(const std::vector<uint8_t>& v) {
  for (uint8_t b : v) {
    if (b != 0) return false;
  }
  return true;
}

TEST(Pool, HolesAndClusterRemaindersReadZeros) {
  auto f = MakePool(16 << 20);
  ASSERT_TRUE(f.pool->CreateVolume("a", 4 << 20, false).ok());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = Channel(f.pool.get(), "a", &b);
  std::vector<uint8_t> buf(kCluster * 3, 0xEE);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), buf.size()), static_cast<int>(buf.size()));
  EXPECT_TRUE(AllZero(buf));
  // 4 KiB in the middle of cluster 1: the rest of the cluster reads zeros.
  auto data = Pattern(4096, 3);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, kCluster + 8192, data.data(), 4096), 4096);
  std::fill(buf.begin(), buf.end(), 0xEE);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), buf.size()), static_cast<int>(buf.size()));
  for (size_t i = 0; i < buf.size(); ++i) {
    uint8_t want = (i >= kCluster + 8192 && i < kCluster + 8192 + 4096) ? data[i - kCluster - 8192] : 0;
    ASSERT_EQ(buf[i], want) << i;
  }
  auto info = f.pool->GetVolume("a");
  EXPECT_EQ(info->allocated_bytes, kCluster);
}

TEST(Pool, NoVolumeReadsAnotherVolumesBytes) {
  auto f = MakePool(8 << 20);
  uint64_t cap = f.pool->Info().free_clusters * kCluster;
  ASSERT_TRUE(f.pool->CreateVolume("a", cap, false).ok());
  {
    std::shared_ptr<io::BlockBackend> b;
    auto ch = Channel(f.pool.get(), "a", &b);
    auto data = Pattern(cap, 9);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, data.data(), cap), static_cast<int>(cap));
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kFlush, 0, nullptr, 0), 0);
  }
  EXPECT_EQ(f.pool->Info().free_clusters, 0u);
  ASSERT_TRUE(f.pool->DeleteVolume("a").ok());
  ASSERT_TRUE(f.pool->CreateVolume("b", cap, false).ok());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = Channel(f.pool.get(), "b", &b);
  std::vector<uint8_t> buf(cap, 0xEE);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), cap), static_cast<int>(cap));
  EXPECT_TRUE(AllZero(buf));
  // Partial writes into every cluster (reusing a's clusters): the rest of
  // each cluster must still read zeros, never a's pattern.
  std::vector<uint8_t> sector(512, 0x5A);
  for (uint64_t c = 0; c < cap / kCluster; ++c) {
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, c * kCluster + 4096, sector.data(), 512), 512);
  }
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), cap), static_cast<int>(cap));
  for (uint64_t i = 0; i < cap; ++i) {
    uint64_t in = i % kCluster;
    ASSERT_EQ(buf[i], (in >= 4096 && in < 4608) ? 0x5A : 0) << i;
  }
}

TEST(Pool, DiscardAndWriteZeroesReleaseSpaceForReuse) {
  auto f = MakePool(8 << 20);
  uint64_t free0 = f.pool->Info().free_clusters;
  ASSERT_TRUE(f.pool->CreateVolume("a", 1 << 20, false).ok());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = Channel(f.pool.get(), "a", &b);
  auto data = Pattern(1 << 20, 1);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, data.data(), data.size()), 1 << 20);
  EXPECT_EQ(f.pool->Info().free_clusters, free0 - 16);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kDiscard, 0, nullptr, 512 << 10), 0);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWriteZeroes, 512 << 10, nullptr, 256 << 10, true), 0);
  // Plain write-zeroes keeps the space but zeros the bytes.
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWriteZeroes, 768 << 10, nullptr, 4096, false), 0);
  ASSERT_EQ(f.pool->GetVolume("a")->allocated_bytes, 4u * kCluster);
  std::vector<uint8_t> buf(1 << 20);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), buf.size()), 1 << 20);
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], i < (768u << 10) + 4096 ? 0 : data[i]) << i;
  // Freed clusters come back only after the unmap is committed.
  ASSERT_TRUE(f.pool->Commit().ok());
  EXPECT_EQ(f.pool->Info().free_clusters, free0 - 4);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, data.data(), 768 << 10), 768 << 10);
  EXPECT_EQ(f.pool->Info().free_clusters, free0 - 16);
  EXPECT_TRUE(f.pool->Check().clean());
}

TEST(Pool, FullPoolFailsOnlyTheWriter) {
  auto f = MakePool(8 << 20);
  uint64_t cap = f.pool->Info().free_clusters * kCluster;
  ASSERT_TRUE(f.pool->CreateVolume("hog", cap, false).ok());
  ASSERT_TRUE(f.pool->CreateVolume("other", 1 << 20, false).ok());
  std::shared_ptr<io::BlockBackend> bh, bo;
  auto hog = Channel(f.pool.get(), "hog", &bh);
  auto other = Channel(f.pool.get(), "other", &bo);
  auto small = Pattern(4096, 4);
  ASSERT_EQ(SyncIo(other.get(), io::IoOp::kWrite, 0, small.data(), 4096), 4096);
  auto data = Pattern(cap, 2);
  // hog takes everything left, then one more cluster fails with ENOSPC.
  uint64_t fit = cap - kCluster;
  ASSERT_EQ(SyncIo(hog.get(), io::IoOp::kWrite, 0, data.data(), fit), static_cast<int>(fit));
  EXPECT_EQ(SyncIo(hog.get(), io::IoOp::kWrite, fit, data.data(), 4096), -ENOSPC);
  EXPECT_EQ(SyncIo(other.get(), io::IoOp::kWrite, kCluster, small.data(), 4096), -ENOSPC);
  // Reads, overwrites of allocated space and other volumes keep working.
  std::vector<uint8_t> buf(4096);
  ASSERT_EQ(SyncIo(hog.get(), io::IoOp::kRead, 0, buf.data(), 4096), 4096);
  EXPECT_EQ(0, std::memcmp(buf.data(), data.data(), 4096));
  ASSERT_EQ(SyncIo(other.get(), io::IoOp::kWrite, 0, small.data(), 4096), 4096);
  ASSERT_EQ(SyncIo(other.get(), io::IoOp::kRead, 0, buf.data(), 4096), 4096);
  EXPECT_EQ(0, std::memcmp(buf.data(), small.data(), 4096));
  // Free space, commit: the failed write now succeeds.
  ASSERT_EQ(SyncIo(hog.get(), io::IoOp::kDiscard, 0, nullptr, kCluster * 2), 0);
  ASSERT_EQ(SyncIo(hog.get(), io::IoOp::kFlush, 0, nullptr, 0), 0);
  EXPECT_EQ(SyncIo(hog.get(), io::IoOp::kWrite, fit, data.data(), 4096), 4096);
  EXPECT_EQ(SyncIo(other.get(), io::IoOp::kWrite, kCluster, small.data(), 4096), 4096);
  EXPECT_TRUE(f.pool->Check().clean());
}

TEST(Pool, PreallocatedVolumeKeepsItsSpace) {
  auto f = MakePool(8 << 20);
  uint64_t free0 = f.pool->Info().free_clusters;
  ASSERT_TRUE(f.pool->CreateVolume("gold", 1 << 20, true).ok());
  EXPECT_EQ(f.pool->CreateVolume("big", free0 * kCluster, true).status().err(), ENOSPC);
  ASSERT_TRUE(f.pool->CreateVolume("thin", free0 * kCluster, false).ok());
  std::shared_ptr<io::BlockBackend> bt, bg;
  auto thin = Channel(f.pool.get(), "thin", &bt);
  auto gold = Channel(f.pool.get(), "gold", &bg);
  auto data = Pattern(free0 * kCluster, 5);
  uint64_t left = (free0 - 16) * kCluster;
  ASSERT_EQ(SyncIo(thin.get(), io::IoOp::kWrite, 0, data.data(), left), static_cast<int>(left));
  EXPECT_EQ(SyncIo(thin.get(), io::IoOp::kWrite, left, data.data(), 4096), -ENOSPC);
  ASSERT_EQ(SyncIo(gold.get(), io::IoOp::kWrite, 0, data.data(), 1 << 20), 1 << 20);
}

TEST(Pool, FlushedWritesSurviveACrash) {
  auto f = MakePool(8 << 20, 42);
  ASSERT_TRUE(f.pool->CreateVolume("a", 2 << 20, false).ok());
  auto data = Pattern(1 << 20, 8);
  {
    std::shared_ptr<io::BlockBackend> b;
    auto ch = Channel(f.pool.get(), "a", &b);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 4096, data.data(), data.size()), 1 << 20);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kFlush, 0, nullptr, 0), 0);
    auto more = Pattern(4096, 1);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 1536 << 10, more.data(), 4096), 4096);  // unflushed
  }
  auto image = f.dev->Crash();
  auto dev = VolatileCacheDevice::FromImage(std::move(image), 1);
  auto pool = Pool::Open(std::move(dev));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_TRUE((*pool)->Check().clean());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = Channel(pool->get(), "a", &b);
  std::vector<uint8_t> buf(1 << 20);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 4096, buf.data(), buf.size()), 1 << 20);
  EXPECT_EQ(buf, data);
}

TEST(Pool, ResizeGrowsAndRefusesToShrinkBelowData) {
  auto f = MakePool(8 << 20);
  ASSERT_TRUE(f.pool->CreateVolume("a", 1 << 20, false).ok());
  {
    std::shared_ptr<io::BlockBackend> b;
    auto ch = Channel(f.pool.get(), "a", &b);
    auto data = Pattern(4096, 1);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 900 << 10, data.data(), 4096), 4096);
    EXPECT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 1 << 20, data.data(), 4096), -EINVAL);
    ASSERT_TRUE(f.pool->ResizeVolume("a", 2 << 20, false).ok());  // grow while open
    EXPECT_EQ(b->size_bytes(), 2u << 20);
    EXPECT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 1 << 20, data.data(), 4096), 4096);
    EXPECT_EQ(f.pool->ResizeVolume("a", 512 << 10, false).err(), EBUSY);  // shrink while open
  }
  EXPECT_EQ(f.pool->ResizeVolume("a", 512 << 10, false).err(), ENOTEMPTY);
  ASSERT_TRUE(f.pool->ResizeVolume("a", 512 << 10, true).ok());
  EXPECT_EQ(f.pool->GetVolume("a")->allocated_bytes, 0u);
  EXPECT_TRUE(f.pool->Check().clean());
}

TEST(Pool, ControlErrorsAndPersistence) {
  auto dev = std::make_unique<VolatileCacheDevice>(8 << 20, 3);
  auto* raw = dev.get();
  ASSERT_TRUE(Pool::Format(raw, kCluster, false).ok());
  EXPECT_EQ(Pool::Format(raw, kCluster, false).err(), EEXIST);
  {
    auto pool = Pool::Open(std::move(dev));
    ASSERT_TRUE(pool.ok());
    ASSERT_TRUE((*pool)->CreateVolume("a", 1 << 20, false).ok());
    ASSERT_TRUE((*pool)->CreateVolume("b", 1 << 20, true).ok());
    EXPECT_EQ((*pool)->CreateVolume("a", 1 << 20, false).status().err(), EEXIST);
    EXPECT_EQ((*pool)->CreateVolume("bad/name", 1 << 20, false).status().err(), EINVAL);
    EXPECT_EQ((*pool)->CreateVolume("c", 1000, false).status().err(), EINVAL);
    EXPECT_EQ((*pool)->DeleteVolume("zz").err(), ENOENT);
    ASSERT_TRUE((*pool)->DeleteVolume("a").ok());
    ASSERT_TRUE((*pool)->CreateVolume("d", 2 << 20, false).ok());
    auto open = (*pool)->OpenVolume("d");
    EXPECT_EQ((*pool)->DeleteVolume("d").err(), EBUSY);
    // Crash right after the control calls returned: they were committed.
    auto image = raw->Crash();
    auto again = Pool::Open(VolatileCacheDevice::FromImage(image, 2));
    ASSERT_TRUE(again.ok());
    auto vols = (*again)->ListVolumes();
    ASSERT_EQ(vols.size(), 2u);
    EXPECT_EQ(vols[0].name, "b");
    EXPECT_EQ(vols[0].reserved_bytes, 1u << 20);
    EXPECT_EQ(vols[1].name, "d");
    EXPECT_EQ(vols[1].size, 2u << 20);
  }
}

TEST(Pool, InterleavedSequentialWritersKeepContiguousExtents) {
  auto f = MakePool(16 << 20);
  ASSERT_TRUE(f.pool->CreateVolume("a", 8 << 20, false).ok());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = Channel(f.pool.get(), "a", &b);
  auto data = Pattern(4096, 1);
  for (uint64_t i = 0; i < 32; ++i) {  // two streams, 32 clusters each, alternating
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, i * kCluster, data.data(), 4096), 4096);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, (64 + i) * kCluster, data.data(), 4096), 4096);
  }
  EXPECT_EQ(f.pool->GetVolume("a")->extents, 2u);
  EXPECT_TRUE(f.pool->Check().clean());
}

TEST(Pool, ExportSettingsPersistThroughLogAndCheckpoint) {
  auto f = MakePool(8 << 20);
  ASSERT_TRUE(f.pool->CreateVolume("a", 1 << 20, false).ok());
  ASSERT_TRUE(f.pool->CreateVolume("b", 1 << 20, false).ok());
  ExportSettings s;
  s.queues = 4;
  s.read_only = true;
  s.write_iops = 5000;
  s.read_bps = 1 << 20;
  s.frontends = 64;
  ASSERT_TRUE(f.pool->SetExport("a", s).ok());
  ExportSettings writers;  // several writing frontends only when asked for
  writers.frontends = 2;
  EXPECT_EQ(f.pool->SetExport("b", writers).err(), EINVAL);
  writers.shared_writers = true;
  ASSERT_TRUE(f.pool->SetExport("b", writers).ok());
  EXPECT_EQ(f.pool->GetVolume("b")->export_settings, writers);
  ASSERT_TRUE(f.pool->SetExport("b", ExportSettings{}).ok());
  ASSERT_TRUE(f.pool->ClearExport("b").ok());
  EXPECT_EQ(f.pool->SetExport("zz", s).err(), ENOENT);
  auto check = [&](Pool* p) {
    auto a = p->GetVolume("a");
    ASSERT_TRUE(a->exported);
    EXPECT_EQ(a->export_settings, s);
    EXPECT_FALSE(p->GetVolume("b")->exported);
  };
  auto reopened = Pool::Open(VolatileCacheDevice::FromImage(f.dev->Crash(), 1));  // from the log
  ASSERT_TRUE(reopened.ok());
  check(reopened->get());
  ASSERT_TRUE((*reopened)->Commit().ok());
  // Force a checkpoint: enough pending records to pass half the log.
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE((*reopened)->SetExport("b", ExportSettings{static_cast<uint16_t>(1 + i % 8)}).ok());
  }
  ASSERT_TRUE((*reopened)->ClearExport("b").ok());
  EXPECT_GE((*reopened)->Info().checkpoints, 1u);
  auto* dev = static_cast<VolatileCacheDevice*>((*reopened)->device());
  auto again = Pool::Open(VolatileCacheDevice::FromImage(dev->Crash(), 2));
  ASSERT_TRUE(again.ok());
  check(again->get());
  EXPECT_TRUE((*again)->Check().clean());
}

// Issue #10: a size the extent map cannot cover (ClustersFor wrapped to 0)
// was accepted; one write later the pool no longer opened ("corrupt"), and
// with it every healthy volume. The size must be refused by create and
// resize, and the pool must keep opening.
TEST(Pool, OversizedVolumeIsRefusedAndThePoolKeepsOpening) {
  auto f = MakePool(8 << 20, 7);
  ASSERT_TRUE(f.pool->CreateVolume("ok", 1 << 20, false).ok());
  const uint64_t huge = 18446744073709547520ull;  // UINT64_MAX - 4095, a multiple of 4 KiB
  auto big = f.pool->CreateVolume("big", huge, false);
  EXPECT_EQ(big.status().err(), EINVAL);
  EXPECT_NE(big.status().message().find("exceeds the maximum volume size"), std::string::npos)
      << big.status().ToString();
  EXPECT_EQ(f.pool->ResizeVolume("ok", huge, false).err(), EINVAL);
  EXPECT_EQ(f.pool->GetVolume("ok")->size, 1u << 20);
  auto data = Pattern(4096, 6);
  for (const char* name : {"ok", "big"}) {
    if (!f.pool->GetVolume(name).ok()) continue;  // refused above (the fix)
    std::shared_ptr<io::BlockBackend> b;
    auto ch = Channel(f.pool.get(), name, &b);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, data.data(), 4096), 4096);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kFlush, 0, nullptr, 0), 0);
  }
  auto again = Pool::Open(VolatileCacheDevice::FromImage(f.dev->Crash(), 1));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->Check().clean());
  std::shared_ptr<io::BlockBackend> b;
  auto ch = Channel(again->get(), "ok", &b);
  std::vector<uint8_t> buf(4096);
  ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kRead, 0, buf.data(), 4096), 4096);
  EXPECT_EQ(buf, data);
}

// Writes one log entry of `records` right after a fresh format (seq 1 at
// the start of the log ring): a pool as an older nestor could have left it.
void WriteFirstLogEntry(VolatileCacheDevice* dev, const std::vector<Record>& records) {
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

// A pool written before the limits may hold an oversized volume, with data
// even in its last cluster: it still opens, the check names the volume and
// the limit, the volume cannot be opened until it is shrunk (or deleted),
// and the other volumes are served meanwhile.
TEST(Pool, StoredOversizedVolumeLoadsAndCanBeShrunk) {
  auto dev = std::make_unique<VolatileCacheDevice>(8 << 20, 11);
  ASSERT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
  const uint64_t huge = 18446744073709547520ull;
  const uint64_t last = huge / kCluster;  // its last (partial) cluster
  WriteFirstLogEntry(dev.get(),
                     {Record{RecordType::kVolumeCreate, 1, 1 << 20, 0, 0, "ok"},
                      Record{RecordType::kVolumeCreate, 2, huge, 0, 0, "big"}, Record{RecordType::kMap, 2, 0, 0, 1, {}},
                      Record{RecordType::kMap, 2, last, 1, 1, {}}, Record{RecordType::kMap, 1, 0, 2, 1, {}}});
  auto pool = Pool::Open(std::move(dev));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  Pool* p = pool->get();
  CheckReport rep = p->Check();
  ASSERT_EQ(rep.problems.size(), 1u);
  EXPECT_NE(rep.problems[0].find("volume 'big'"), std::string::npos) << rep.problems[0];
  EXPECT_NE(rep.problems[0].find("exceeds the maximum volume size"), std::string::npos) << rep.problems[0];
  auto open = p->OpenVolume("big");
  EXPECT_EQ(open.status().err(), EUCLEAN);
  EXPECT_NE(open.status().message().find("'big'"), std::string::npos) << open.status().ToString();
  {
    std::shared_ptr<io::BlockBackend> b;
    auto ch = Channel(p, "ok", &b);
    auto data = Pattern(4096, 2);
    ASSERT_EQ(SyncIo(ch.get(), io::IoOp::kWrite, 0, data.data(), 4096), 4096);
  }
  EXPECT_EQ(p->ResizeVolume("big", 1 << 20, false).err(), ENOTEMPTY);  // its last cluster holds data
  ASSERT_TRUE(p->ResizeVolume("big", 1 << 20, true).ok());
  EXPECT_EQ(p->GetVolume("big")->allocated_bytes, kCluster);  // cluster 0 kept
  EXPECT_TRUE(p->Check().clean());
  auto* raw = static_cast<VolatileCacheDevice*>(p->device());
  auto again = Pool::Open(VolatileCacheDevice::FromImage(raw->Crash(), 3));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->Check().clean());
  EXPECT_TRUE((*again)->OpenVolume("big").ok());
}

// A record that cannot be applied names the volume it belongs to.
TEST(Pool, ExtentBeyondAVolumeNamesTheVolume) {
  auto dev = std::make_unique<VolatileCacheDevice>(8 << 20, 12);
  ASSERT_TRUE(Pool::Format(dev.get(), kCluster, false).ok());
  WriteFirstLogEntry(dev.get(), {Record{RecordType::kVolumeCreate, 1, 1 << 20, 0, 0, "db0"},
                                 Record{RecordType::kMap, 1, 16, 0, 1, {}}});  // 1 MiB: clusters 0..15
  auto pool = Pool::Open(std::move(dev));
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().err(), EUCLEAN);
  EXPECT_NE(pool.status().message().find("volume 'db0'"), std::string::npos) << pool.status().ToString();
}

// A checksummed superblock whose layout only adds up modulo 2^64 is
// refused, not trusted (the allocator would size itself by data_clusters).
TEST(Pool, SuperblockLayoutThatWrapsIsCorrupt) {
  auto sb = PlanLayout(8 << 20, kCluster);
  ASSERT_TRUE(sb.ok());
  std::vector<uint8_t> block(kBlock);
  EncodeSuperblock(*sb, block.data());
  ASSERT_TRUE(DecodeSuperblock(block.data()).ok());
  Superblock bad = *sb;
  bad.data_clusters = (UINT64_MAX / kCluster) + 2;  // data_clusters * cluster wraps to a small number
  EncodeSuperblock(bad, block.data());
  EXPECT_EQ(DecodeSuperblock(block.data()).status().err(), EUCLEAN);
  bad = *sb;
  bad.ckpt_bytes = UINT64_MAX - kBlock + 1;  // kBlock + ckpt_bytes wraps to 0
  bad.ckpt_offset[1] = 0;
  bad.log_offset = bad.ckpt_bytes;
  EncodeSuperblock(bad, block.data());
  EXPECT_EQ(DecodeSuperblock(block.data()).status().err(), EUCLEAN);
}

// Issue #11: export access settings. A pool written before them holds
// ExportSet records (type 7, 45 bytes): they load with the default access;
// the new record (type 10) is written only when the access is not the
// default, round-trips every field, and fits a checkpoint's room for it.
TEST(ExportRecords, OldExportSetDecodesWithDefaultAccess) {
  // Byte for byte what nestor wrote before issue #11: type 7, volume 3,
  // queues 2 | readonly << 16, then the four QoS limits.
  std::string old;
  auto put = [&](auto v) { old.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(uint8_t{7});
  put(uint32_t{3});
  put(uint64_t{2} | uint64_t{1} << 16);
  for (uint64_t q : {1u, 2u, 3u, 4u}) put(uint64_t{q});
  ASSERT_EQ(old.size(), 45u);
  std::vector<Record> recs;
  ASSERT_TRUE(DecodeRecords(reinterpret_cast<const uint8_t*>(old.data()), old.size(), &recs).ok());
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].type, RecordType::kExportSet);
  EXPECT_EQ(recs[0].a, 2u | 1u << 16);
  EXPECT_EQ(recs[0].qos[3], 4u);
  EXPECT_TRUE(recs[0].access.IsDefault());
  // And default settings are still written that way (older nestor reads them).
  ExportSettings s;
  s.queues = 2;
  s.read_only = true;
  s.read_iops = 1, s.write_iops = 2, s.read_bps = 3, s.write_bps = 4;
  std::string now;
  AppendRecord(ExportRecord(3, s), &now);
  EXPECT_EQ(now, old);
}

TEST(ExportRecords, AccessRecordRoundTripsAndFitsItsRoom) {
  ExportSettings s;
  s.queues = 64;
  s.write_iops = 77;
  s.access.socket_uid = 0;
  s.access.socket_gid = 64055;
  s.access.socket_mode = 0660;
  s.access.allow_uids = {1000, 1001, 0, 65534};
  s.access.allow_gids = {4294967294u, 5, 6, 7};
  Record r = ExportRecord(9, s);
  EXPECT_EQ(r.type, RecordType::kExportSetAccess);
  std::string buf;
  AppendRecord(r, &buf);
  // The checkpoint keeps 85 bytes per volume for its export record (a
  // VolumeCreate's worst case, format.cc PlanLayout).
  EXPECT_LE(buf.size(), size_t{1 + 4 + 8 + 8 + 1 + kMaxNameLen});
  std::vector<Record> recs;
  ASSERT_TRUE(DecodeRecords(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), &recs).ok());
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].type, RecordType::kExportSetAccess);
  EXPECT_EQ(recs[0].volume, 9u);
  EXPECT_EQ(recs[0].a, 64u);
  EXPECT_EQ(recs[0].qos[1], 77u);
  EXPECT_EQ(recs[0].access, s.access);
  // Unset fields survive as unset; every truncation is corruption.
  ExportSettings only_mode;
  only_mode.access.socket_mode = 0;
  buf.clear();
  AppendRecord(ExportRecord(1, only_mode), &buf);
  recs.clear();
  ASSERT_TRUE(DecodeRecords(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), &recs).ok());
  EXPECT_EQ(recs[0].access, only_mode.access);
  EXPECT_EQ(recs[0].access.socket_uid, ExportAccess::kUnset);
  buf.clear();
  AppendRecord(r, &buf);
  for (size_t n = 1; n < buf.size(); ++n) {
    recs.clear();
    EXPECT_EQ(DecodeRecords(reinterpret_cast<const uint8_t*>(buf.data()), n, &recs).err(), EUCLEAN) << n;
  }
}

TEST(ExportRecords, PoolKeepsAccessThroughLogCheckpointAndOldRecords) {
  auto f = MakePool(8 << 20);
  ASSERT_TRUE(f.pool->CreateVolume("a", 1 << 20, false).ok());
  ExportSettings s;
  s.access.socket_gid = 65534;
  s.access.socket_mode = 0660;
  s.access.allow_uids = {65534};
  ASSERT_TRUE(f.pool->SetExport("a", s).ok());
  ExportSettings bad = s;
  bad.access.socket_mode = 01777;
  EXPECT_EQ(f.pool->SetExport("a", bad).err(), EINVAL);
  bad = s;
  bad.access.allow_gids = {1, 2, 3, 4, 5, 6, 7, 8};  // 9 ids in all
  EXPECT_EQ(f.pool->SetExport("a", bad).err(), EINVAL);
  auto reopened = Pool::Open(VolatileCacheDevice::FromImage(f.dev->Crash(), 1));  // from the log
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ((*reopened)->GetVolume("a")->export_settings, s);
  for (int i = 0; i < 400; ++i) {  // pass half the log: a checkpoint
    ExportSettings t = s;
    t.queues = static_cast<uint16_t>(1 + i % 8);
    ASSERT_TRUE((*reopened)->SetExport("a", t).ok());
  }
  ASSERT_TRUE((*reopened)->SetExport("a", s).ok());
  EXPECT_GE((*reopened)->Info().checkpoints, 1u);
  auto* dev = static_cast<VolatileCacheDevice*>((*reopened)->device());
  auto again = Pool::Open(VolatileCacheDevice::FromImage(dev->Crash(), 2));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->GetVolume("a")->export_settings, s);
  EXPECT_TRUE((*again)->Check().clean());

  // A log written by an older nestor: ExportSet (type 7) only.
  auto old = std::make_unique<VolatileCacheDevice>(8 << 20, 12);
  ASSERT_TRUE(Pool::Format(old.get(), kCluster, false).ok());
  Record e{RecordType::kExportSet, 1, 2, 0, 0, {}};
  WriteFirstLogEntry(old.get(), {Record{RecordType::kVolumeCreate, 1, 1 << 20, 0, 0, "db0"}, e});
  auto pool = Pool::Open(std::move(old));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto v = (*pool)->GetVolume("db0");
  ASSERT_TRUE(v->exported);
  EXPECT_EQ(v->export_settings.queues, 2);
  EXPECT_TRUE(v->export_settings.access.IsDefault());
}

// Snapshots and clones, end to end on one pool (the randomized and race
// tests are in snapshot_test.cc and crash_test.cc).
std::vector<uint8_t> ReadAll(io::IoChannel* ch, uint64_t off, uint64_t len) {
  std::vector<uint8_t> buf(len, 0xEE);
  EXPECT_EQ(SyncIo(ch, io::IoOp::kRead, off, buf.data(), len), static_cast<int>(len));
  return buf;
}

TEST(Snapshots, CloneReadsThroughCopiesOnWriteAndPersists) {
  auto f = MakePool(32 << 20);
  ASSERT_TRUE(f.pool->CreateVolume("gold", 1 << 20, false).ok());
  std::shared_ptr<io::BlockBackend> gb;
  auto g = Channel(f.pool.get(), "gold", &gb);
  auto a = Pattern(3 * kCluster, 1);
  ASSERT_EQ(SyncIo(g.get(), io::IoOp::kWrite, 0, a.data(), a.size()), static_cast<int>(a.size()));
  auto snap = f.pool->CreateSnapshot("gold", "gold-s1");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_TRUE(snap->snapshot);
  EXPECT_EQ(snap->allocated_bytes, 3u * kCluster);
  EXPECT_EQ(f.pool->GetVolume("gold")->parent, "gold-s1");
  EXPECT_EQ(f.pool->GetVolume("gold")->allocated_bytes, 0u);
  // The source keeps its content, and writes after the snapshot copy.
  EXPECT_EQ(ReadAll(g.get(), 0, a.size()), a);
  auto b = Pattern(4096, 9);
  ASSERT_EQ(SyncIo(g.get(), io::IoOp::kWrite, kCluster + 4096, b.data(), b.size()), 4096);
  auto want_gold = a;
  std::copy(b.begin(), b.end(), want_gold.begin() + kCluster + 4096);
  EXPECT_EQ(ReadAll(g.get(), 0, a.size()), want_gold);
  EXPECT_EQ(f.pool->GetVolume("gold")->allocated_bytes, kCluster);

  ASSERT_TRUE(f.pool->CloneVolume("gold-s1", "c1").ok());
  ASSERT_TRUE(f.pool->CloneVolume("gold-s1", "c2").ok());
  std::shared_ptr<io::BlockBackend> b1, b2, sb;
  auto c1 = Channel(f.pool.get(), "c1", &b1);
  auto c2 = Channel(f.pool.get(), "c2", &b2);
  auto s = Channel(f.pool.get(), "gold-s1", &sb);
  EXPECT_EQ(ReadAll(c1.get(), 0, a.size()), a);
  auto x = Pattern(8192, 40);
  ASSERT_EQ(SyncIo(c1.get(), io::IoOp::kWrite, 2 * kCluster - 4096, x.data(), x.size()), 8192);
  auto want1 = a;
  std::copy(x.begin(), x.end(), want1.begin() + 2 * kCluster - 4096);
  EXPECT_EQ(ReadAll(c1.get(), 0, a.size()), want1);
  EXPECT_EQ(ReadAll(c2.get(), 0, a.size()), a) << "a clone read another clone's write";
  EXPECT_EQ(ReadAll(s.get(), 0, a.size()), a) << "the snapshot changed";
  EXPECT_EQ(SyncIo(s.get(), io::IoOp::kWrite, 0, x.data(), 4096), -EROFS);
  EXPECT_EQ(f.pool->GetVolume("c1")->allocated_bytes, 2u * kCluster);

  // WRITE_ZEROES on a clone reads zeros; DISCARD over the snapshot's data keeps it.
  ASSERT_EQ(SyncIo(c2.get(), io::IoOp::kWriteZeroes, 0, nullptr, kCluster, true), 0);
  ASSERT_EQ(SyncIo(c2.get(), io::IoOp::kDiscard, kCluster, nullptr, kCluster), 0);
  auto r2 = ReadAll(c2.get(), 0, a.size());
  EXPECT_TRUE(AllZero(std::vector<uint8_t>(r2.begin(), r2.begin() + kCluster)));
  EXPECT_TRUE(std::equal(r2.begin() + kCluster, r2.end(), a.begin() + kCluster));

  // Refusals.
  EXPECT_EQ(f.pool->DeleteVolume("gold-s1").err(), EBUSY);
  EXPECT_EQ(f.pool->CloneVolume("gold", "bad").status().err(), EINVAL);
  EXPECT_EQ(f.pool->CreateSnapshot("gold-s1", "bad").status().err(), EINVAL);
  EXPECT_EQ(f.pool->ResizeVolume("c1", 512 << 10, true).err(), ENOTSUP);
  EXPECT_EQ(f.pool->ResizeVolume("gold-s1", 2 << 20, false).err(), EROFS);
  EXPECT_TRUE(f.pool->Check().clean());

  // A snapshot of a clone, and a decouple / inflate down the chain.
  ASSERT_TRUE(f.pool->CreateSnapshot("c1", "c1-s1").ok());
  ASSERT_TRUE(f.pool->CloneVolume("c1-s1", "c3").ok());
  std::shared_ptr<io::BlockBackend> b3;
  auto c3 = Channel(f.pool.get(), "c3", &b3);
  EXPECT_EQ(ReadAll(c3.get(), 0, a.size()), want1);
  ASSERT_TRUE(f.pool->DecoupleVolume("c3").ok());
  EXPECT_EQ(f.pool->GetVolume("c3")->parent, "gold-s1");
  EXPECT_EQ(ReadAll(c3.get(), 0, a.size()), want1);
  ASSERT_TRUE(f.pool->InflateVolume("c3").ok());
  EXPECT_EQ(f.pool->GetVolume("c3")->parent, "");
  EXPECT_EQ(ReadAll(c3.get(), 0, a.size()), want1);
  EXPECT_EQ(f.pool->GetVolume("c3")->allocated_bytes, 3u * kCluster);
  EXPECT_TRUE(f.pool->Check().clean()) << f.pool->Check().problems.front();

  // Everything survives a reopen, through the log and through a checkpoint.
  ASSERT_TRUE(f.pool->Commit().ok());
  c1.reset(), c2.reset(), c3.reset(), s.reset(), g.reset();
  b1.reset(), b2.reset(), b3.reset(), sb.reset(), gb.reset();
  for (int round = 0; round < 2; ++round) {
    auto* dev = static_cast<VolatileCacheDevice*>(f.pool->device());
    auto again = Pool::Open(VolatileCacheDevice::FromImage(dev->Crash(), 3 + round));
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    f.pool = std::move(*again);
    auto check = f.pool->Check();
    EXPECT_TRUE(check.clean()) << (check.problems.empty() ? "" : check.problems.front());
    EXPECT_EQ(f.pool->GetVolume("c1")->parent, "c1-s1");
    EXPECT_EQ(f.pool->GetVolume("gold-s1")->children.size(), 3u);
    auto r1 = Channel(f.pool.get(), "c1", &b1);
    EXPECT_EQ(ReadAll(r1.get(), 0, a.size()), want1);
    auto rg = Channel(f.pool.get(), "gold", &gb);
    EXPECT_EQ(ReadAll(rg.get(), 0, a.size()), want_gold);
    auto rs = Channel(f.pool.get(), "gold-s1", &sb);
    EXPECT_EQ(ReadAll(rs.get(), 0, a.size()), a);
    r1.reset(), rg.reset(), rs.reset();
    b1.reset(), gb.reset(), sb.reset();
    for (int i = 0; i < 400 && round == 0; ++i) {  // pass half the log: the next open loads a checkpoint
      ASSERT_TRUE(f.pool->ResizeVolume("c3", (4 << 20) + (i % 2) * 4096, false).ok());
    }
    if (round == 0) {
      EXPECT_GE(f.pool->Info().checkpoints, 1u);
    }
  }
  // Clones go first; then the snapshot can.
  ASSERT_TRUE(f.pool->DeleteVolume("c3").ok());
  ASSERT_TRUE(f.pool->DeleteVolume("c2").ok());
  EXPECT_EQ(f.pool->DeleteVolume("c1-s1").err(), EBUSY);
  ASSERT_TRUE(f.pool->DeleteVolume("c1").ok());
  ASSERT_TRUE(f.pool->DeleteVolume("c1-s1").ok());
  ASSERT_TRUE(f.pool->DeleteVolume("gold").ok());
  ASSERT_TRUE(f.pool->DeleteVolume("gold-s1").ok());
  ASSERT_TRUE(f.pool->Commit().ok());
  EXPECT_EQ(f.pool->Info().used_clusters, 0u);
  EXPECT_TRUE(f.pool->Check().clean());
}

}  // namespace
}  // namespace nestor::volume
