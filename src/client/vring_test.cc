#include "client/vring.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <set>

#include "client/fake_blk_device_test.h"

namespace nestor::client {
namespace {

using testing::TestDevice;

class VringTest : public ::testing::Test {
 protected:
  void Make(uint32_t n, bool event_idx) {
    mem_ = static_cast<uint8_t*>(std::aligned_alloc(64, (DriverVring::Bytes(n) + 63) & ~size_t{63}));
    ring_.Init(mem_, n, event_idx);
    dev_ = std::make_unique<TestDevice>(ring_.desc(), ring_.avail(), ring_.used(), n, event_idx);
  }
  void TearDown() override { std::free(mem_); }
  int AddSimple(uint32_t nsegs) {
    std::vector<Segment> s(nsegs);
    for (uint32_t i = 0; i < nsegs; ++i) s[i] = {0x1000u * (i + 1), 512, i + 1 == nsegs};
    return ring_.AddChain(s.data(), nsegs);
  }
  uint8_t* mem_ = nullptr;
  DriverVring ring_;
  std::unique_ptr<TestDevice> dev_;
};

TEST_F(VringTest, ChainIsVisibleOnlyAfterPublish) {
  Make(8, false);
  int h = AddSimple(3);
  ASSERT_GE(h, 0);
  uint16_t head;
  EXPECT_FALSE(dev_->Pop(&head));
  ring_.Publish();
  ASSERT_TRUE(dev_->Pop(&head));
  EXPECT_EQ(head, h);
  auto chain = dev_->Chain(head);
  ASSERT_EQ(chain.size(), 3u);
  EXPECT_EQ(chain[0].addr, 0x1000u);
  EXPECT_FALSE(chain[0].flags & virtio::kDescFlagWrite);
  EXPECT_TRUE(chain[2].flags & virtio::kDescFlagWrite);
  EXPECT_FALSE(chain[2].flags & virtio::kDescFlagNext);
  EXPECT_EQ(ring_.free_descs(), 5u);
}

TEST_F(VringTest, FullRingIsEagainAndOutOfOrderCompletionFrees) {
  Make(8, false);
  int a = AddSimple(3), b = AddSimple(3);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(AddSimple(3), -EAGAIN);
  EXPECT_EQ(AddSimple(0), -EINVAL);
  ring_.Publish();
  uint16_t h;
  ASSERT_TRUE(dev_->Pop(&h));
  ASSERT_TRUE(dev_->Pop(&h));
  dev_->Push(b, 0);  // complete the second one first
  virtio::UsedElem e;
  ASSERT_EQ(ring_.PopUsed(&e), 1);
  EXPECT_EQ(e.id, uint32_t(b));
  ring_.FreeChain(e.id);
  EXPECT_EQ(ring_.free_descs(), 5u);
  EXPECT_EQ(ring_.PopUsed(&e), 0);
  dev_->Push(a, 0);
  ASSERT_EQ(ring_.PopUsed(&e), 1);
  ring_.FreeChain(e.id);
  EXPECT_EQ(ring_.free_descs(), 8u);
  EXPECT_EQ(ring_.inflight_chains(), 0u);
}

TEST_F(VringTest, RandomTrafficKeepsFreeListConsistent) {
  Make(64, true);
  std::mt19937 rng(1);
  std::vector<uint16_t> pending;  // popped by the device, not yet completed
  uint64_t completed = 0;
  for (int step = 0; step < 200000; ++step) {
    if (rng() % 2) {
      if (AddSimple(1 + rng() % 5) >= 0) ring_.Publish();
    }
    uint16_t h;
    while (dev_->Pop(&h)) pending.push_back(h);
    if (!pending.empty() && rng() % 2) {
      size_t k = rng() % pending.size();
      dev_->Push(pending[k], 0);
      pending.erase(pending.begin() + static_cast<long>(k));
    }
    virtio::UsedElem e;
    int rc;
    while ((rc = ring_.PopUsed(&e)) == 1) {
      ring_.FreeChain(e.id);
      ++completed;
    }
    ASSERT_EQ(rc, 0);
  }
  EXPECT_GT(completed, 10000u);
  // Every descriptor is either free or in a pending chain.
  uint32_t in_chains = 0;
  for (uint16_t h : pending) in_chains += static_cast<uint32_t>(dev_->Chain(h).size());
  EXPECT_EQ(ring_.free_descs() + in_chains, 64u);
}

TEST_F(VringTest, IndirectUsesOneRingDescriptor) {
  Make(4, false);
  virtio::Desc tables[4][8];
  Segment segs[5];
  for (uint32_t i = 0; i < 5; ++i) segs[i] = {0x1000u * (i + 1), 512, i == 4};
  for (int r = 0; r < 4; ++r) ASSERT_GE(ring_.AddIndirect(tables[r], segs, 5), 0);
  EXPECT_EQ(ring_.AddIndirect(tables[0], segs, 5), -EAGAIN);
  EXPECT_EQ(ring_.free_descs(), 0u);
  ring_.Publish();
  uint16_t h;
  ASSERT_TRUE(dev_->Pop(&h));
  auto chain = dev_->Chain(h);
  ASSERT_EQ(chain.size(), 5u);
  EXPECT_EQ(chain[4].addr, 0x5000u);
  EXPECT_TRUE(chain[4].flags & virtio::kDescFlagWrite);
  EXPECT_EQ(dev_->indirect_seen(), 1u);
  dev_->Push(h, 0);
  virtio::UsedElem e;
  ASSERT_EQ(ring_.PopUsed(&e), 1);
  ring_.FreeChain(e.id);
  EXPECT_EQ(ring_.free_descs(), 1u);
}

TEST_F(VringTest, RejectsUsedIdNotInFlight) {
  Make(8, false);
  int a = AddSimple(2);
  ring_.Publish();
  uint16_t h;
  ASSERT_TRUE(dev_->Pop(&h));
  dev_->Push(a + 1, 0);  // never submitted
  virtio::UsedElem e;
  EXPECT_EQ(ring_.PopUsed(&e), -EPROTO);
}

TEST_F(VringTest, RejectsUsedIdOutOfRange) {
  Make(8, false);
  AddSimple(2);
  ring_.Publish();
  dev_->Push(1000, 0);
  virtio::UsedElem e;
  EXPECT_EQ(ring_.PopUsed(&e), -EPROTO);
}

TEST_F(VringTest, RejectsUsedIndexJump) {
  Make(8, false);
  AddSimple(2);
  ring_.Publish();
  ring_.used()->idx = 5;  // five completions for one request
  virtio::UsedElem e;
  EXPECT_EQ(ring_.PopUsed(&e), -EPROTO);
}

TEST_F(VringTest, KickFollowsNoNotifyFlag) {
  Make(8, false);
  AddSimple(2);
  ring_.Publish();
  EXPECT_TRUE(ring_.KickNeeded());
  EXPECT_FALSE(ring_.KickNeeded());  // nothing new since
  dev_->SetNoNotify(true);
  AddSimple(2);
  ring_.Publish();
  EXPECT_FALSE(ring_.KickNeeded());
}

TEST_F(VringTest, KickFollowsAvailEvent) {
  Make(16, true);
  dev_->SetAvailEvent(0);  // wants a kick when avail moves past 0
  AddSimple(2);
  ring_.Publish();
  EXPECT_TRUE(ring_.KickNeeded());
  AddSimple(2);
  ring_.Publish();
  EXPECT_FALSE(ring_.KickNeeded());  // event 0 already passed
  dev_->SetAvailEvent(3);
  AddSimple(1);
  ring_.Publish();  // idx 2 -> 3: event 3 not reached
  EXPECT_FALSE(ring_.KickNeeded());
  AddSimple(1);
  ring_.Publish();  // idx 3 -> 4: crosses event 3
  EXPECT_TRUE(ring_.KickNeeded());
}

TEST_F(VringTest, SuppressedInterruptsNeverCallEnabledDo) {
  for (bool event_idx : {false, true}) {
    Make(16, event_idx);
    ring_.SuppressInterrupts();
    int calls = 0;
    for (int i = 0; i < 70000; ++i) {  // wraps the 16-bit indices
      int h = AddSimple(1);
      ASSERT_GE(h, 0);
      ring_.Publish();
      uint16_t d;
      ASSERT_TRUE(dev_->Pop(&d));
      calls += dev_->Push(d, 0);
      virtio::UsedElem e;
      ASSERT_EQ(ring_.PopUsed(&e), 1);
      ring_.FreeChain(e.id);
      ring_.SuppressInterrupts();
    }
    EXPECT_EQ(calls, 0) << "event_idx " << event_idx;
    ring_.EnableInterrupts();
    EXPECT_FALSE(ring_.HasUsed());
    AddSimple(1);
    ring_.Publish();
    uint16_t d;
    ASSERT_TRUE(dev_->Pop(&d));
    EXPECT_TRUE(dev_->Push(d, 0)) << "event_idx " << event_idx;
    EXPECT_TRUE(ring_.HasUsed());
    std::free(mem_);
    mem_ = nullptr;
  }
}

}  // namespace
}  // namespace nestor::client
