// Snapshots of a volume under I/O, on the real data path: a pool file on
// tmpfs, io_uring channels on two reactor threads writing all the time, the
// committer running (it posts parked writes back when the write gate
// opens). Each snapshot must hold every write completed before
// CreateSnapshot was called and none submitted after it returned, with no
// torn block; the volume itself loses nothing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "io/uring.h"
#include "volume/aligned_buffer.h"
#include "volume/pool.h"
#include "volume/testing/sync_io.h"

namespace nestor::volume {
namespace {

using testing::StartIo;
using testing::SyncRequest;
constexpr uint32_t kCluster = 64 * 1024;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kVolBytes = 4 << 20;
constexpr uint64_t kBlocks = kVolBytes / kBlock;

// A block holds (block << 32 | generation) in every 8-byte word.
void Fill(uint8_t* buf, uint64_t block, uint32_t gen) {
  uint64_t w = block << 32 | gen;
  for (uint64_t i = 0; i < kBlock; i += 8) std::memcpy(buf + i, &w, 8);
}
// The generation a block holds (0: never written), or -1 if it is torn or
// holds another block's bytes.
int64_t GenOf(const uint8_t* buf, uint64_t block) {
  uint64_t first;
  std::memcpy(&first, buf, 8);
  for (uint64_t i = 8; i < kBlock; i += 8) {
    if (std::memcmp(buf + i, &first, 8) != 0) return -1;
  }
  if (first == 0) return 0;
  if (first >> 32 != block) return -1;
  return static_cast<int64_t>(first & 0xFFFFFFFF);
}

// A pool file on /dev/shm, removed however the test ends.
struct ScratchFile {
  explicit ScratchFile(std::string p) : path(std::move(p)) { unlink(path.c_str()); }
  ~ScratchFile() { unlink(path.c_str()); }
  std::string path;
};

// Synchronous I/O on a ring channel: submit, then run the reactor loop.
int RingIo(io::IoUring* ring, io::IoChannel* ch, io::IoOp op, uint64_t off, void* buf, uint64_t len) {
  SyncRequest r;
  iovec v;
  StartIo(ch, &r, &v, op, off, buf, len);
  while (r.result == INT_MIN) {
    ring->Submit();
    ring->Reap();
    ch->EndOfBatch();
  }
  return r.result;
}

struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<uint32_t> submitted[kBlocks] = {};
  std::atomic<uint32_t> completed[kBlocks] = {};
  std::atomic<uint64_t> errors{0}, writes{0};
};

// One reactor: keeps 8 writes in flight to its own blocks (block % 2 ==
// t), never two to one block, each a new generation.
void Writer(Pool* pool, int t, Shared* s) {
  auto ring = io::IoUring::Create(64);
  ASSERT_TRUE(ring.ok());
  auto b = pool->OpenVolume("v");
  ASSERT_TRUE(b.ok());
  auto ch = std::move(*(*b)->OpenChannel(ring->get()));
  constexpr int kQd = 8;
  SyncRequest reqs[kQd];
  iovec vecs[kQd];
  AlignedBuffer bufs(kQd * kBlock);
  uint64_t blk[kQd] = {};
  uint32_t gen[kQd] = {};
  bool busy[kQd] = {};
  std::vector<bool> in_flight(kBlocks, false);
  std::vector<uint32_t> last(kBlocks, 0);
  std::mt19937_64 rng(t + 1);
  auto reap = [&] {
    (*ring)->Submit();
    (*ring)->Reap();
    ch->EndOfBatch();
    for (int i = 0; i < kQd; ++i) {
      if (!busy[i] || reqs[i].result == INT_MIN) continue;
      if (reqs[i].result != static_cast<int>(kBlock)) s->errors.fetch_add(1);
      s->completed[blk[i]].store(gen[i], std::memory_order_seq_cst);
      s->writes.fetch_add(1);
      in_flight[blk[i]] = false;
      busy[i] = false;
    }
  };
  while (!s->stop.load()) {
    for (int i = 0; i < kQd; ++i) {
      if (busy[i]) continue;
      uint64_t block = (rng() % (kBlocks / 2)) * 2 + t;
      if (in_flight[block]) continue;
      blk[i] = block;
      gen[i] = ++last[block];
      in_flight[block] = true;
      busy[i] = true;
      uint8_t* buf = bufs.data() + i * kBlock;
      Fill(buf, block, gen[i]);
      s->submitted[block].store(gen[i], std::memory_order_seq_cst);  // before it can land
      reqs[i].result = INT_MIN;
      StartIo(ch.get(), &reqs[i], &vecs[i], io::IoOp::kWrite, block * kBlock, buf, kBlock);
    }
    reap();
  }
  for (bool any = true; any;) {
    reap();
    any = false;
    for (bool x : busy) any |= x;
  }
}

TEST(SnapshotOnline, EachSnapshotHoldsExactlyTheWritesAroundItsInstant) {
  ScratchFile file("/dev/shm/nestor-snap-online-" + std::to_string(getpid()));
  const std::string& path = file.path;
  auto dev = OpenFilePoolDevice(path, true, 256ull << 20);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  ASSERT_TRUE(Pool::Format(dev->get(), kCluster, false).ok());
  auto opened = Pool::Open(std::move(*dev));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Pool> pool = std::move(*opened);
  ASSERT_TRUE(pool->CreateVolume("v", kVolBytes, false).ok());
  pool->StartCommitter();

  auto s = std::make_unique<Shared>();
  std::thread w0(Writer, pool.get(), 0, s.get()), w1(Writer, pool.get(), 1, s.get());
  constexpr int kSnapshots = 12;
  std::vector<std::vector<uint32_t>> before(kSnapshots, std::vector<uint32_t>(kBlocks));
  std::vector<std::vector<uint32_t>> after(kSnapshots, std::vector<uint32_t>(kBlocks));
  std::vector<double> pause_ms;
  while (s->writes.load() < 2000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int k = 0; k < kSnapshots; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (uint64_t b = 0; b < kBlocks; ++b) before[k][b] = s->completed[b].load(std::memory_order_seq_cst);
    auto t0 = std::chrono::steady_clock::now();
    auto snap = pool->CreateSnapshot("v", "s" + std::to_string(k));
    pause_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    for (uint64_t b = 0; b < kBlocks; ++b) after[k][b] = s->submitted[b].load(std::memory_order_seq_cst);
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  }
  uint64_t writes_during = s->writes.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  s->stop.store(true);
  w0.join();
  w1.join();
  EXPECT_EQ(s->errors.load(), 0u);
  EXPECT_GT(s->writes.load(), writes_during) << "writes did not go on after the snapshots";
  std::sort(pause_ms.begin(), pause_ms.end());
  std::cout << "snapshots under I/O: " << kSnapshots << ", CreateSnapshot median " << pause_ms[pause_ms.size() / 2]
            << " ms, max " << pause_ms.back() << " ms; " << s->writes.load() << " writes\n";

  // Every snapshot, and the volume, read back on a ring channel.
  auto ring = io::IoUring::Create(64);
  ASSERT_TRUE(ring.ok());
  AlignedBuffer buf(kVolBytes);
  for (int k = 0; k <= kSnapshots; ++k) {
    std::string name = k < kSnapshots ? "s" + std::to_string(k) : "v";
    auto b = pool->OpenVolume(name);
    ASSERT_TRUE(b.ok());
    auto ch = std::move(*(*b)->OpenChannel(ring->get()));
    ASSERT_EQ(RingIo(ring->get(), ch.get(), io::IoOp::kRead, 0, buf.data(), kVolBytes), static_cast<int>(kVolBytes));
    for (uint64_t blk = 0; blk < kBlocks; ++blk) {
      int64_t g = GenOf(buf.data() + blk * kBlock, blk);
      ASSERT_GE(g, 0) << name << ": block " << blk << " is torn or holds another block's bytes";
      if (k == kSnapshots) {
        ASSERT_EQ(static_cast<uint32_t>(g), s->completed[blk].load()) << "the volume lost block " << blk;
        continue;
      }
      ASSERT_GE(static_cast<uint32_t>(g), before[k][blk])
          << name << ": block " << blk << " misses a write completed before the snapshot";
      ASSERT_LE(static_cast<uint32_t>(g), after[k][blk])
          << name << ": block " << blk << " holds a write submitted after the snapshot returned";
    }
  }
  auto check = pool->Check();
  EXPECT_TRUE(check.clean()) << (check.problems.empty() ? "" : check.problems.front());
  EXPECT_EQ(pool->GetVolume("v")->parent, "s" + std::to_string(kSnapshots - 1));
  pool.reset();
}

// Forwards to a device; holds ReadAt of the data area (the copy-up of
// inflate reads there) while `hold` is set.
class HoldDevice final : public PoolDevice {
 public:
  explicit HoldDevice(std::unique_ptr<PoolDevice> d) : d_(std::move(d)) {}
  uint64_t size_bytes() const override { return d_->size_bytes(); }
  std::string Describe() const override { return d_->Describe(); }
  Status ReadAt(uint64_t off, void* buf, size_t len) override {
    if (hold.load() && off >= data_offset) {
      entered.store(true);
      std::unique_lock<std::mutex> l(m_);
      cv_.wait(l, [&] { return !hold.load(); });
    }
    return d_->ReadAt(off, buf, len);
  }
  Status WriteAt(uint64_t off, const void* buf, size_t len) override { return d_->WriteAt(off, buf, len); }
  Status Sync() override { return d_->Sync(); }
  io::BlockBackend* data() override { return d_->data(); }
  void Release() {
    {
      std::lock_guard<std::mutex> l(m_);
      hold.store(false);
    }
    cv_.notify_all();
  }
  std::atomic<bool> hold{false}, entered{false};
  uint64_t data_offset = UINT64_MAX;

 private:
  std::unique_ptr<PoolDevice> d_;
  std::mutex m_;
  std::condition_variable cv_;
};

// Found by review: a guest write parked behind inflate's copy of its
// cluster must be resumed even while a commit (here for a FLUSH, with
// frees pending from a discard) waits out the grace period for that very
// write. When the copy's wake-up went through the committer, both hung.
TEST(SnapshotOnline, InflateResumesAParkedWriteWhileACommitWaitsForIt) {
  ScratchFile file("/dev/shm/nestor-inflate-wake-" + std::to_string(getpid()));
  const std::string& path = file.path;
  auto dev = OpenFilePoolDevice(path, true, 64ull << 20);
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(Pool::Format(dev->get(), kCluster, false).ok());
  auto held = std::make_unique<HoldDevice>(std::move(*dev));
  HoldDevice* h = held.get();
  auto opened = Pool::Open(std::move(held));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Pool> pool = std::move(*opened);
  h->data_offset = pool->superblock().data_offset;
  ASSERT_TRUE(pool->CreateVolume("v", 4 << 20, false).ok());
  ASSERT_TRUE(pool->CreateVolume("o", 4 << 20, false).ok());
  pool->StartCommitter();
  auto ring = io::IoUring::Create(64);
  ASSERT_TRUE(ring.ok());
  io::IoUring* r = ring->get();
  AlignedBuffer buf(2 * kCluster);
  std::memset(buf.data(), 0xab, 2 * kCluster);
  {
    auto bv = pool->OpenVolume("v");
    auto cv = std::move(*(*bv)->OpenChannel(r));
    ASSERT_EQ(RingIo(r, cv.get(), io::IoOp::kWrite, 0, buf.data(), 2 * kCluster), static_cast<int>(2 * kCluster));
  }
  auto bo = pool->OpenVolume("o");
  auto co = std::move(*(*bo)->OpenChannel(r));
  ASSERT_EQ(RingIo(r, co.get(), io::IoOp::kWrite, 0, buf.data(), kCluster), static_cast<int>(kCluster));
  ASSERT_TRUE(pool->CreateSnapshot("v", "s").ok());
  ASSERT_TRUE(pool->CloneVolume("s", "c").ok());
  auto bc = pool->OpenVolume("c");
  auto cc = std::move(*(*bc)->OpenChannel(r));

  h->hold.store(true);
  Status inflated;
  std::thread inflate([&] { inflated = pool->InflateVolume("c"); });
  while (!h->entered.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  SyncRequest w, d, f;  // a write parked on the copy; a discard (frees pending); a FLUSH
  iovec wv, dv, fv;
  std::memset(buf.data(), 0xcd, 4096);
  StartIo(cc.get(), &w, &wv, io::IoOp::kWrite, 0, buf.data(), 4096);
  StartIo(co.get(), &d, &dv, io::IoOp::kDiscard, 0, nullptr, kCluster);
  for (int i = 0; i < 100 && d.result == INT_MIN; ++i) {
    r->Submit();
    r->Reap();
    co->EndOfBatch();
  }
  EXPECT_EQ(d.result, 0);
  EXPECT_EQ(w.result, INT_MIN) << "the write did not wait for the copy of its cluster";
  StartIo(co.get(), &f, &fv, io::IoOp::kFlush, 0, nullptr, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the commit is waiting for the write
  h->Release();
  auto t0 = std::chrono::steady_clock::now();
  while ((w.result == INT_MIN || f.result == INT_MIN) &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
    r->Submit();
    r->Reap();
    cc->EndOfBatch();
    co->EndOfBatch();
  }
  ASSERT_EQ(w.result, 4096) << "the parked write never ended";
  ASSERT_EQ(f.result, 0) << "the FLUSH never ended";
  inflate.join();
  ASSERT_TRUE(inflated.ok()) << inflated.ToString();
  AlignedBuffer back(2 * kCluster);
  ASSERT_EQ(RingIo(r, cc.get(), io::IoOp::kRead, 0, back.data(), 2 * kCluster), static_cast<int>(2 * kCluster));
  for (uint64_t i = 0; i < 2 * kCluster; ++i) {
    ASSERT_EQ(back.data()[i], i < 4096 ? 0xcd : 0xab) << "byte " << i;
  }
  EXPECT_EQ(pool->GetVolume("c")->parent, "");
  cc.reset(), co.reset();
  bc->reset(), bo->reset();
  pool.reset();
}

}  // namespace
}  // namespace nestor::volume
