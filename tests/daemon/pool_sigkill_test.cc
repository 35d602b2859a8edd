// Acknowledged writes to a thin pool volume survive SIGKILL of nestord
// without any FLUSH (issue #10, item 1). Two queues on two reactors write
// 64 KiB blocks at random offsets (most of them first writes that allocate
// clusters) and discard some ranges, at queue depth 16, never flushing;
// the commit timer is pushed out of the way (--commit-ms 60000), so only
// the journal can carry the new mappings across the crash. nestord is
// SIGKILLed right after the last completion, restarted, and every block
// must read back as the model says; three rounds in a row. Before the
// journal, the first round read old data (zeros) back.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <vector>

#include "nestor/client.hpp"
#include "nestord_process.h"
#include "volume/pool.h"

namespace nestor::testing {
namespace {

using client::Device;
constexpr uint64_t kCluster = 64 << 10;
constexpr uint64_t kVolume = 32 << 20;
constexpr uint64_t kBlock = 64 << 10;
constexpr uint64_t kBlocks = kVolume / kBlock;

void Fill(uint8_t* p, uint32_t gen, uint64_t block) {
  for (uint64_t i = 0; i < kBlock; i += 8) {
    uint64_t v = (uint64_t{gen} << 32 | block) * 0x9e3779b97f4a7c15ull + i;
    std::memcpy(p + i, &v, 8);
  }
}

class PoolSigkill : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = d_.dir() + "/pool.img";
    auto dev = volume::OpenFilePoolDevice(pool_, true, 64ull << 20);
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    ASSERT_TRUE(volume::Pool::Format(dev->get(), kCluster, false).ok());
    auto pool = volume::Pool::Open(std::move(dev.value()));
    ASSERT_TRUE(pool.ok());
    ASSERT_TRUE((*pool)->CreateVolume("a", kVolume, false).ok());
  }
  void TearDown() override {
    if (::testing::Test::HasFailure()) std::cerr << "---- nestord log ----\n" << d_.Log();
  }
  void Start() {
    unlink(d_.Socket("a").c_str());
    std::string err;
    ASSERT_TRUE(d_.Start({"--pool", pool_, "--export-all", "--pool-queues", "2", "--reactors", "2", "--commit-ms",
                          "60000", "--journal-dir", d_.dir() + "/journal"},
                         {"a"}, &err))
        << err;
  }
  std::unique_ptr<Device> Connect() {
    client::Options o;
    o.socket_path = d_.Socket("a");
    o.num_queues = 2;
    o.polled = true;
    o.buffer_bytes = 2 * 16 * kBlock + (1 << 20);
    auto dev = Device::Connect(o);
    EXPECT_TRUE(dev.ok()) << dev.status().message();
    return dev.ok() ? std::move(dev.value()) : nullptr;
  }

  NestordProcess d_;
  std::string pool_;
  std::vector<uint32_t> gen_ = std::vector<uint32_t>(kBlocks, 0);  // 0: zeros
};

TEST_F(PoolSigkill, UnflushedWritesSurviveThreeKills) {
  std::mt19937_64 rng(static_cast<uint64_t>(getpid()));
  uint32_t gen = 0;
  for (int round = 0;; ++round) {
    Start();
    auto dev = Connect();
    ASSERT_NE(dev, nullptr);
    // Verify what earlier rounds wrote (all of it acknowledged, none flushed).
    std::vector<uint8_t> want(kBlock);
    auto* rbuf = static_cast<uint8_t*>(dev->AllocBuffer(kBlock));
    for (uint64_t b = 0; b < kBlocks; ++b) {
      ASSERT_TRUE(dev->queue(0).Read(b * kBlock, rbuf, kBlock).ok());
      if (gen_[b] == 0) {
        std::memset(want.data(), 0, kBlock);
      } else {
        Fill(want.data(), gen_[b], b);
      }
      ASSERT_EQ(std::memcmp(rbuf, want.data(), kBlock), 0)
          << "round " << round << ": block " << b << " lost its acknowledged generation " << gen_[b];
    }
    if (round == 3) break;
    // This round: 2 queues x 16 in flight, 200 writes and a few discards each.
    for (uint32_t q = 0; q < 2; ++q) {
      std::vector<uint8_t*> bufs;
      for (int i = 0; i < 16; ++i) bufs.push_back(static_cast<uint8_t*>(dev->AllocBuffer(kBlock)));
      int submitted = 0, completed = 0;
      std::vector<uint64_t> slot_block(16);
      std::vector<bool> busy_block(kBlocks, false);
      client::Completion c[16];
      int inflight = 0;
      while (completed < 200) {
        while (inflight < 16 && submitted < 200) {
          uint64_t b;
          do b = rng() % kBlocks;
          while (busy_block[b]);
          int slot = 0;
          while (slot_block[slot] != 0) ++slot;
          slot_block[slot] = b + 1;
          busy_block[b] = true;
          client::Request r;
          r.user_data = reinterpret_cast<void*>(static_cast<uintptr_t>(slot));
          if (submitted % 25 == 24) {
            r.op = client::Op::kDiscard;
            r.offset = b * kBlock;
            r.len = kBlock;
            gen_[b] = 0;
          } else {
            ++gen;
            Fill(bufs[slot], gen, b);
            r.op = client::Op::kWrite;
            r.offset = b * kBlock;
            r.len = kBlock;
            r.buf = bufs[slot];
            gen_[b] = gen;  // acknowledged below before the kill
          }
          ASSERT_EQ(dev->queue(q).Submit(r), 1);
          ++submitted;
          ++inflight;
        }
        int n = dev->queue(q).Poll(c, 16);
        for (int i = 0; i < n; ++i) {
          ASSERT_EQ(c[i].result, 0);
          int slot = static_cast<int>(reinterpret_cast<uintptr_t>(c[i].user_data));
          busy_block[slot_block[slot] - 1] = false;
          slot_block[slot] = 0;
        }
        completed += n;
        inflight -= n;
      }
    }
    d_.Kill();  // SIGKILL right after the last acknowledgement
    dev.reset();
  }
  EXPECT_TRUE(d_.Stop());
  // Offline: the pool is consistent after all this.
  auto dev = volume::OpenFilePoolDevice(pool_, false, 0);
  ASSERT_TRUE(dev.ok());
  volume::PoolOptions po;
  po.check_mode = true;
  auto pool = volume::Pool::Open(std::move(dev.value()), po);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  volume::CheckReport rep = (*pool)->Check();
  EXPECT_TRUE(rep.clean()) << rep.problems[0];
}

}  // namespace
}  // namespace nestor::testing
