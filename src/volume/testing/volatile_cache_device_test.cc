#include "volume/testing/volatile_cache_device.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <thread>
#include <vector>

namespace nestor::volume::testing {
namespace {

constexpr uint64_t kSize = 64 * 1024;
constexpr uint64_t kSector = VolatileCacheDevice::kSectorSize;

// Byte i of a pattern; patterns with different salts differ at every byte.
uint8_t PatternByte(uint64_t i, uint8_t salt) { return static_cast<uint8_t>(i * 7 + salt); }

std::vector<uint8_t> Pattern(uint64_t base, size_t len, uint8_t salt) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = PatternByte(base + i, salt);
  return v;
}

// Submits one request on an inline channel and returns its completion result.
int SubmitOne(io::IoChannel* ch, io::IoOp op, uint64_t off, uint64_t len, const iovec* iov = nullptr, int iovcnt = 0) {
  io::IoRequest req;
  int result = INT_MIN;
  req.op = op;
  req.offset = off;
  req.length = len;
  req.iov = iov;
  req.iovcnt = iovcnt;
  req.owner = &result;
  req.done = [](io::IoRequest* r, int res) { *static_cast<int*>(r->owner) = res; };
  ch->Submit(&req);
  EXPECT_NE(result, INT_MIN) << "completion did not run inline";
  return result;
}

int WriteVia(io::IoChannel* ch, uint64_t off, std::vector<uint8_t>& buf) {
  iovec iov{buf.data(), buf.size()};
  return SubmitOne(ch, io::IoOp::kWrite, off, buf.size(), &iov, 1);
}

std::unique_ptr<io::IoChannel> OpenChannel(VolatileCacheDevice& dev) {
  auto ch = dev.data()->OpenChannel(nullptr);
  EXPECT_TRUE(ch.ok());
  return std::move(*ch);
}

// A device whose whole durable image is Pattern(0, kSize, 1).
std::unique_ptr<VolatileCacheDevice> PatternedDevice(uint64_t seed, CrashOptions options = {}) {
  return VolatileCacheDevice::FromImage(Pattern(0, kSize, 1), seed, options);
}

TEST(VolatileCacheDevice, ReadWriteBothPaths) {
  VolatileCacheDevice dev(kSize, 1);
  EXPECT_EQ(dev.size_bytes(), kSize);
  EXPECT_EQ(dev.data()->size_bytes(), kSize);
  EXPECT_EQ(dev.data()->block_size(), 512u);
  auto ch = OpenChannel(dev);

  // WriteAt -> ReadAt and a two-iovec channel read.
  auto a = Pattern(4096, 4096, 3);
  ASSERT_TRUE(dev.WriteAt(4096, a.data(), a.size()).ok());
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE(dev.ReadAt(4096, got.data(), got.size()).ok());
  EXPECT_EQ(got, a);
  std::vector<uint8_t> lo(1000), hi(3096);
  iovec iov[2] = {{lo.data(), lo.size()}, {hi.data(), hi.size()}};
  ASSERT_EQ(SubmitOne(ch.get(), io::IoOp::kRead, 4096, 4096, iov, 2), 4096);
  lo.insert(lo.end(), hi.begin(), hi.end());
  EXPECT_EQ(lo, a);

  // Channel write (two iovecs) -> ReadAt.
  auto b = Pattern(8192, 8192, 5);
  iovec wiov[2] = {{b.data(), 512}, {b.data() + 512, b.size() - 512}};
  ASSERT_EQ(SubmitOne(ch.get(), io::IoOp::kWrite, 8192, b.size(), wiov, 2), 8192);
  got.resize(b.size());
  ASSERT_TRUE(dev.ReadAt(8192, got.data(), got.size()).ok());
  EXPECT_EQ(got, b);

  // Write-zeroes and discard write zeros; flush completes with 0.
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kWriteZeroes, 8192, 4096), 0);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kDiscard, 4096, 512), 0);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kFlush, 0, 0), 0);
  auto cur = dev.current_image();
  for (uint64_t i = 0; i < kSize; ++i) {
    uint8_t want = 0;
    if (i >= 4096 + 512 && i < 8192) want = a[i - 4096];
    if (i >= 12288 && i < 16384) want = b[i - 8192];
    ASSERT_EQ(cur[i], want) << "byte " << i;
  }
  EXPECT_EQ(dev.durable_image(), cur);
}

TEST(VolatileCacheDevice, OutOfRange) {
  VolatileCacheDevice dev(kSize, 1);
  auto ch = OpenChannel(dev);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(dev.ReadAt(kSize - 2048, buf.data(), buf.size()).err(), EINVAL);
  EXPECT_EQ(dev.WriteAt(kSize, buf.data(), 1).err(), EINVAL);
  EXPECT_EQ(dev.WriteAt(UINT64_MAX - 10, buf.data(), 4096).err(), EINVAL);
  EXPECT_TRUE(dev.ReadAt(kSize - 4096, buf.data(), buf.size()).ok());
  iovec iov{buf.data(), buf.size()};
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kRead, kSize - 512, 4096, &iov, 1), -EINVAL);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kWrite, kSize, 4096, &iov, 1), -EINVAL);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kWriteZeroes, kSize - 512, 1024), -EINVAL);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kDiscard, UINT64_MAX - 511, 1024), -EINVAL);
  // iovecs that do not add up to length.
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kWrite, 0, 8192, &iov, 1), -EINVAL);
  EXPECT_EQ(dev.writes(), 0u);
  EXPECT_EQ(dev.pending_bytes(), 0u);
}

TEST(VolatileCacheDevice, SyncedWritesSurviveCrash) {
  VolatileCacheDevice dev(kSize, 7);
  auto ch = OpenChannel(dev);
  auto a = Pattern(0, 8192, 3);
  ASSERT_TRUE(dev.WriteAt(0, a.data(), a.size()).ok());
  ASSERT_TRUE(dev.Sync().ok());
  auto b = Pattern(16384, 4096, 9);
  ASSERT_EQ(WriteVia(ch.get(), 16384, b), 4096);
  ASSERT_EQ(SubmitOne(ch.get(), io::IoOp::kFlush, 0, 0), 0);
  EXPECT_EQ(dev.pending_bytes(), 0u);
  auto want = dev.current_image();
  EXPECT_EQ(dev.durable_image(), want);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(dev.Crash(), want);
}

enum Outcome { kKept, kDropped, kTorn };

// Classifies img[off, off+len) against old (salt 1) and new (salt `salt`)
// patterns: fails on a byte that is neither, or a sector piece that mixes.
Outcome Classify(const std::vector<uint8_t>& img, uint64_t off, uint64_t len, uint8_t salt) {
  uint64_t new_pieces = 0, pieces = 0;
  for (uint64_t s = off / kSector; s * kSector < off + len; ++s) {
    uint64_t lo = std::max(off, s * kSector), hi = std::min(off + len, (s + 1) * kSector);
    bool is_new = img[lo] == PatternByte(lo, salt);
    for (uint64_t i = lo; i < hi; ++i) {
      uint8_t want = is_new ? PatternByte(i, salt) : PatternByte(i, 1);
      if (img[i] != want) {
        ADD_FAILURE() << "byte " << i << " is " << int(img[i]) << ": neither old (" << int(PatternByte(i, 1))
                      << ") nor new (" << int(PatternByte(i, salt)) << ") consistently across sector " << s;
        return kTorn;
      }
    }
    ++pieces;
    new_pieces += is_new;
  }
  return new_pieces == pieces ? kKept : new_pieces == 0 ? kDropped : kTorn;
}

void ExpectUnchangedOutside(const std::vector<uint8_t>& img, uint64_t off, uint64_t len) {
  for (uint64_t i = 0; i < img.size(); ++i) {
    if (i >= off && i < off + len) continue;
    ASSERT_EQ(img[i], PatternByte(i, 1)) << "byte " << i << " outside the write changed";
  }
}

TEST(VolatileCacheDevice, UnsyncedWriteIsKeptDroppedOrTorn) {
  constexpr int kSeeds = 300;
  int counts[3] = {0, 0, 0};
  for (int seed = 0; seed < kSeeds; ++seed) {
    auto dev = PatternedDevice(seed);
    auto w = Pattern(8192, 4096, 2);  // 8 sectors
    ASSERT_TRUE(dev->WriteAt(8192, w.data(), w.size()).ok());
    EXPECT_EQ(dev->pending_bytes(), 4096u);
    auto img = dev->Crash();
    ASSERT_EQ(img.size(), kSize);
    ExpectUnchangedOutside(img, 8192, 4096);
    ++counts[Classify(img, 8192, 4096, 2)];
    // Crash does not change the device.
    EXPECT_EQ(dev->pending_bytes(), 4096u);
    EXPECT_EQ(dev->durable_image(), Pattern(0, kSize, 1));
  }
  // Each fate has probability 1/3: expect ~100 of each.
  EXPECT_GT(counts[kKept], kSeeds / 6);
  EXPECT_GT(counts[kDropped], kSeeds / 6);
  EXPECT_GT(counts[kTorn], kSeeds / 6);
}

TEST(VolatileCacheDevice, UnalignedWriteTearsAtSectorBoundaries) {
  // 1500 bytes from sector 16 + 100: four pieces (100..511, 3 more sectors'
  // worth, the last one partial), each atomic.
  const uint64_t off = 8192 + 100, len = 1500;
  int counts[3] = {0, 0, 0};
  auto dev = PatternedDevice(42);
  auto ch = OpenChannel(*dev);
  auto w = Pattern(off, len, 4);
  ASSERT_EQ(WriteVia(ch.get(), off, w), static_cast<int>(len));
  for (int i = 0; i < 300; ++i) {
    auto img = dev->Crash();
    ExpectUnchangedOutside(img, off, len);
    ++counts[Classify(img, off, len, 4)];
  }
  EXPECT_GT(counts[kKept], 0);
  EXPECT_GT(counts[kDropped], 0);
  EXPECT_GT(counts[kTorn], 0);
}

TEST(VolatileCacheDevice, CachedWritesReplayInOrder) {
  // X then Y over the same two sectors: each sector ends up old, X or Y,
  // and both X (Y dropped) and Y show up.
  bool saw[3] = {false, false, false};
  for (int seed = 0; seed < 200; ++seed) {
    auto dev = PatternedDevice(seed);
    auto x = Pattern(0, 1024, 2), y = Pattern(0, 1024, 3);
    ASSERT_TRUE(dev->WriteAt(0, x.data(), x.size()).ok());
    ASSERT_TRUE(dev->WriteAt(0, y.data(), y.size()).ok());
    auto img = dev->Crash();
    ExpectUnchangedOutside(img, 0, 1024);
    for (uint64_t s = 0; s < 2; ++s) {
      int which = -1;
      for (int v = 0; v < 3; ++v) {
        bool all = true;
        for (uint64_t i = s * kSector; i < (s + 1) * kSector; ++i) {
          all = all && img[i] == PatternByte(i, static_cast<uint8_t>(v + 1));
        }
        if (all) which = v;
      }
      ASSERT_GE(which, 0) << "sector " << s << " is neither old, X nor Y (seed " << seed << ")";
      saw[which] = true;
    }
  }
  EXPECT_TRUE(saw[0] && saw[1] && saw[2]);
}

TEST(VolatileCacheDevice, CrashWeights) {
  auto w = Pattern(4096, 8192, 2);
  auto keep = PatternedDevice(1, CrashOptions{1, 0, 0});
  auto drop = PatternedDevice(1, CrashOptions{0, 1, 0});
  auto tear = PatternedDevice(1, CrashOptions{0, 0, 1});
  for (auto* dev : {keep.get(), drop.get(), tear.get()}) {
    ASSERT_TRUE(dev->WriteAt(4096, w.data(), w.size()).ok());
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(keep->Crash(), keep->current_image());
    EXPECT_EQ(drop->Crash(), drop->durable_image());
    EXPECT_EQ(Classify(tear->Crash(), 4096, 8192, 2), kTorn);
  }
  keep->set_crash_options(CrashOptions{0, 1, 0});
  EXPECT_EQ(keep->Crash(), keep->durable_image());
}

TEST(VolatileCacheDevice, FromImageRoundTrip) {
  VolatileCacheDevice dev(kSize, 3);
  auto a = Pattern(12288, 4096, 6);
  ASSERT_TRUE(dev.WriteAt(12288, a.data(), a.size()).ok());
  ASSERT_TRUE(dev.Sync().ok());
  auto image = dev.durable_image();

  auto rebooted = VolatileCacheDevice::FromImage(image, 9);
  EXPECT_EQ(rebooted->size_bytes(), kSize);
  EXPECT_EQ(rebooted->pending_bytes(), 0u);
  EXPECT_EQ(rebooted->durable_image(), image);
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE(rebooted->ReadAt(12288, got.data(), got.size()).ok());
  EXPECT_EQ(got, a);
  EXPECT_EQ(rebooted->Crash(), image);

  // Reboot on a crashed image: what it reads is exactly that image.
  auto b = Pattern(0, 8192, 8);
  ASSERT_TRUE(dev.WriteAt(0, b.data(), b.size()).ok());
  auto crashed = dev.Crash();
  auto after = VolatileCacheDevice::FromImage(crashed, 10);
  std::vector<uint8_t> all(kSize);
  ASSERT_TRUE(after->ReadAt(0, all.data(), all.size()).ok());
  EXPECT_EQ(all, crashed);
}

TEST(VolatileCacheDevice, FailWritesAfter) {
  VolatileCacheDevice dev(kSize, 1);
  auto ch = OpenChannel(dev);
  auto a = Pattern(0, 4096, 2);
  ASSERT_TRUE(dev.WriteAt(0, a.data(), a.size()).ok());  // before the knob: not counted
  dev.FailWritesAfter(2);
  ASSERT_TRUE(dev.WriteAt(4096, a.data(), a.size()).ok());
  ASSERT_EQ(WriteVia(ch.get(), 8192, a), 4096);
  Status st = dev.WriteAt(12288, a.data(), a.size());
  EXPECT_EQ(st.err(), EIO);
  EXPECT_EQ(WriteVia(ch.get(), 16384, a), -EIO);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kWriteZeroes, 0, 4096), -EIO);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kDiscard, 0, 4096), -EIO);
  EXPECT_EQ(dev.writes(), 3u);
  EXPECT_EQ(dev.failed_writes(), 4u);
  EXPECT_EQ(dev.pending_bytes(), 3 * 4096u);

  // Failed writes left nothing behind; reads and syncs still work.
  auto cur = dev.current_image();
  for (uint64_t i = 0; i < kSize; ++i) {
    uint8_t want = i < 12288 ? a[i % 4096] : 0;
    ASSERT_EQ(cur[i], want) << "byte " << i;
  }
  std::vector<uint8_t> got(4096);
  ASSERT_TRUE(dev.ReadAt(0, got.data(), got.size()).ok());
  EXPECT_EQ(got, a);
  ASSERT_TRUE(dev.Sync().ok());
  EXPECT_EQ(dev.Crash(), cur);

  dev.ClearFaults();
  EXPECT_TRUE(dev.WriteAt(12288, a.data(), a.size()).ok());
  EXPECT_EQ(dev.writes(), 4u);
}

TEST(VolatileCacheDevice, FailSync) {
  VolatileCacheDevice dev(kSize, 1);
  auto ch = OpenChannel(dev);
  auto a = Pattern(0, 4096, 2);
  ASSERT_TRUE(dev.WriteAt(0, a.data(), a.size()).ok());
  dev.FailSync(true);
  Status st = dev.Sync();
  EXPECT_EQ(st.err(), EIO);
  EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kFlush, 0, 0), -EIO);
  EXPECT_EQ(dev.syncs(), 0u);
  EXPECT_EQ(dev.failed_syncs(), 2u);
  EXPECT_EQ(dev.pending_bytes(), 4096u);
  EXPECT_EQ(dev.durable_image(), std::vector<uint8_t>(kSize, 0));
  dev.FailSync(false);
  ASSERT_TRUE(dev.Sync().ok());
  EXPECT_EQ(dev.syncs(), 1u);
  EXPECT_EQ(dev.pending_bytes(), 0u);
}

TEST(VolatileCacheDevice, Counters) {
  VolatileCacheDevice dev(kSize, 1);
  auto ch = OpenChannel(dev);
  auto a = Pattern(0, 4096, 2);
  ASSERT_TRUE(dev.WriteAt(0, a.data(), 1024).ok());
  ASSERT_EQ(WriteVia(ch.get(), 4096, a), 4096);
  ASSERT_EQ(SubmitOne(ch.get(), io::IoOp::kWriteZeroes, 8192, 8192), 0);
  EXPECT_EQ(dev.writes(), 3u);
  EXPECT_EQ(dev.pending_writes(), 3u);
  EXPECT_EQ(dev.pending_bytes(), 1024u + 4096u + 8192u);
  EXPECT_NE(dev.Describe().find("pending_writes=3"), std::string::npos) << dev.Describe();
  ASSERT_TRUE(dev.Sync().ok());
  ASSERT_EQ(SubmitOne(ch.get(), io::IoOp::kFlush, 0, 0), 0);
  EXPECT_EQ(dev.syncs(), 2u);
  EXPECT_EQ(dev.pending_writes(), 0u);
  EXPECT_EQ(dev.pending_bytes(), 0u);
}

TEST(VolatileCacheDevice, ConcurrentChannels) {
  VolatileCacheDevice dev(kSize, 1);
  constexpr int kThreads = 4;
  constexpr uint64_t region = kSize / kThreads;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&dev, t] {
      auto ch = OpenChannel(dev);
      for (int round = 0; round < 50; ++round) {
        for (uint64_t off = t * region; off < (t + 1) * region; off += 4096) {
          auto buf = Pattern(off, 4096, static_cast<uint8_t>(2 + round % 2));
          if (round % 2) {
            EXPECT_EQ(WriteVia(ch.get(), off, buf), 4096);
          } else {
            EXPECT_TRUE(dev.WriteAt(off, buf.data(), buf.size()).ok());
          }
        }
        if (round % 10 == 0) {
          EXPECT_EQ(SubmitOne(ch.get(), io::IoOp::kFlush, 0, 0), 0);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  // The last round (49, odd) wrote salt 3 everywhere.
  EXPECT_EQ(dev.current_image(), Pattern(0, kSize, 3));
  EXPECT_EQ(dev.writes(), kThreads * 50 * (region / 4096));
}

}  // namespace
}  // namespace nestor::volume::testing
