// Unit tests for SplitQueue (device side of a split virtqueue) over a fake
// guest memory. The test plays the driver: it fills descriptors, publishes
// heads in the avail ring and reads back the used ring.
#include "virtio/virtqueue.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "virtio/guest_memory.h"
#include "virtio/ring_layout.h"

namespace nestor::virtio {
namespace {

constexpr uint32_t kN = 16;  // queue size

// Guest physical layout:
//   region 0: [0x10000, 0x20000)    rings, indirect tables, small buffers
//   (gap)
//   region 1: [0x200000, 0x204000)  data buffers
//   region 2: [0x204000, 0x208000)  gpa-adjacent to region 1, but a separate
//                                   host buffer: a buffer crossing 0x204000
//                                   must become two iovecs.
constexpr uint64_t kR0 = 0x10000;
constexpr uint64_t kR0Size = 0x10000;
constexpr uint64_t kR1 = 0x200000;
constexpr uint64_t kR1Size = 0x4000;
constexpr uint64_t kR2 = kR1 + kR1Size;
constexpr uint64_t kR2Size = 0x4000;
constexpr uint64_t kGap = 0x100000;  // not mapped

constexpr uint64_t kDescGpa = kR0;
constexpr uint64_t kAvailGpa = kR0 + 0x1000;
constexpr uint64_t kUsedGpa = kR0 + 0x2000;
constexpr uint64_t kIndirectGpa = kR0 + 0x3000;
constexpr uint64_t kIndirect2Gpa = kR0 + 0x3800;
constexpr uint64_t kBuf = kR0 + 0x4000;  // scratch buffers in region 0

constexpr int kMaxIov = 32;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using HostBuf = std::unique_ptr<uint8_t, FreeDeleter>;

// One spare page past the end: two regions are never adjacent in host
// memory (TSan's allocator places them back to back), so a walk that ran
// from one into the other would be caught.
HostBuf Alloc(size_t n) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(4096, n + 4096));
  std::memset(p, 0, n + 4096);
  return HostBuf(p);
}

class VirtqueueTest : public ::testing::Test {
 protected:
  VirtqueueTest()
      : r0_(Alloc(kR0Size)),
        r1_(Alloc(kR1Size)),
        r2_(Alloc(kR2Size)),
        mem_({GuestRegion{kR1, kR1Size, 0x7f0000200000, r1_.get()},
              GuestRegion{kR0, kR0Size, 0x7f0000010000, r0_.get()},
              GuestRegion{kR2, kR2Size, 0x7f0000300000, r2_.get()}}) {
    desc_ = reinterpret_cast<Desc*>(Host(kDescGpa));
    avail_ = reinterpret_cast<AvailRing*>(Host(kAvailGpa));
    used_ = reinterpret_cast<UsedRing*>(Host(kUsedGpa));
  }

  uint8_t* Host(uint64_t gpa) {
    if (gpa >= kR0 && gpa < kR0 + kR0Size) return r0_.get() + (gpa - kR0);
    if (gpa >= kR1 && gpa < kR1 + kR1Size) return r1_.get() + (gpa - kR1);
    if (gpa >= kR2 && gpa < kR2 + kR2Size) return r2_.get() + (gpa - kR2);
    ADD_FAILURE() << "test bug: gpa " << gpa << " not in a region";
    return nullptr;
  }

  void Start(bool event_idx = false, bool indirect = false, uint16_t last_avail = 0, uint16_t used_idx = 0) {
    VringSetup s;
    s.size = kN;
    s.desc = desc_;
    s.avail = avail_;
    s.used = used_;
    s.last_avail = last_avail;
    s.used_idx = used_idx;
    s.event_idx = event_idx;
    s.indirect = indirect;
    q_.Init(s, &mem_);
  }

  // Driver side helpers.
  void SetDesc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    desc_[i] = Desc{addr, len, flags, next};
  }
  void SetTableDesc(uint64_t table_gpa, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    Desc d{addr, len, flags, next};
    std::memcpy(Host(table_gpa) + i * sizeof(Desc), &d, sizeof(d));
  }
  void Publish(uint16_t head) {
    avail_->ring[avail_->idx & (kN - 1)] = head;
    ++avail_->idx;
  }
  uint16_t& UsedEvent() { return *UsedEventPtr(avail_, kN); }
  uint16_t& AvailEvent() { return *AvailEventPtr(used_, kN); }

  // Device side: pop the one published head and walk it.
  Status PopAndWalk(Chain* c, int max_iov = kMaxIov) {
    EXPECT_EQ(q_.Available(), 1);
    uint16_t head = q_.PopHead();
    return q_.WalkChain(head, iov_, max_iov, c);
  }

  void ExpectIov(int i, uint64_t gpa, size_t len) {
    EXPECT_EQ(iov_[i].iov_base, static_cast<void*>(Host(gpa))) << "iov " << i;
    EXPECT_EQ(iov_[i].iov_len, len) << "iov " << i;
  }

  // Walks head and expects a malformed-chain error.
  void ExpectRejected(uint16_t head) {
    Chain c;
    Status st = q_.WalkChain(head, iov_, kMaxIov, &c);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.err(), EINVAL) << st.ToString();
  }

  HostBuf r0_, r1_, r2_;
  GuestMemoryMap mem_;
  Desc* desc_ = nullptr;
  AvailRing* avail_ = nullptr;
  UsedRing* used_ = nullptr;
  SplitQueue q_;
  iovec iov_[kMaxIov];
};

// ---------------------------------------------------------------------------
// Ring layout helpers

TEST(RingLayoutTest, SizesAndTrailers) {
  EXPECT_EQ(DescTableBytes(kN), 256u);
  EXPECT_EQ(AvailRingBytes(kN), 6u + 2u * kN);
  EXPECT_EQ(UsedRingBytes(kN), 6u + 8u * kN);
  alignas(8) uint8_t buf[512] = {};
  auto* avail = reinterpret_cast<AvailRing*>(buf);
  auto* used = reinterpret_cast<UsedRing*>(buf);
  EXPECT_EQ(reinterpret_cast<uint8_t*>(UsedEventPtr(avail, kN)) - buf, 4 + 2 * kN);
  EXPECT_EQ(reinterpret_cast<uint8_t*>(AvailEventPtr(used, kN)) - buf, 4 + 8 * kN);
}

TEST(RingLayoutTest, NeedEvent) {
  // event in [old, new) -> notify.
  EXPECT_TRUE(NeedEvent(0, 1, 0));
  EXPECT_FALSE(NeedEvent(1, 1, 0));
  EXPECT_TRUE(NeedEvent(5, 8, 3));
  EXPECT_TRUE(NeedEvent(3, 8, 3));
  EXPECT_TRUE(NeedEvent(7, 8, 3));
  EXPECT_FALSE(NeedEvent(8, 8, 3));
  EXPECT_FALSE(NeedEvent(2, 8, 3));
  // Wrap-around: old = 65534, new = 1 covers 65534, 65535, 0.
  EXPECT_TRUE(NeedEvent(65534, 1, 65534));
  EXPECT_TRUE(NeedEvent(65535, 1, 65534));
  EXPECT_TRUE(NeedEvent(0, 1, 65534));
  EXPECT_FALSE(NeedEvent(1, 1, 65534));
  EXPECT_FALSE(NeedEvent(65533, 1, 65534));
  // No movement never notifies.
  EXPECT_FALSE(NeedEvent(4, 4, 4));
}

// ---------------------------------------------------------------------------
// Popping and walking chains

TEST_F(VirtqueueTest, InitReportsState) {
  Start(false, false, 7, 5);
  EXPECT_EQ(q_.size(), kN);
  EXPECT_EQ(q_.last_avail(), 7);
  EXPECT_EQ(q_.used_idx(), 5);
  EXPECT_FALSE(q_.HasUnpublished());
}

TEST_F(VirtqueueTest, EmptyQueueHasNothingAvailable) {
  Start();
  EXPECT_EQ(q_.Available(), 0);
}

TEST_F(VirtqueueTest, SimpleChainReadableThenWritable) {
  Start();
  // Out of order indices on purpose: 5 -> 9 -> 2.
  SetDesc(5, kBuf, 16, kDescFlagNext, 9);
  SetDesc(9, kR1, 512, kDescFlagNext, 2);
  SetDesc(2, kBuf + 0x100, 1, kDescFlagWrite);
  Publish(5);

  ASSERT_EQ(q_.Available(), 1);
  uint16_t head = q_.PopHead();
  EXPECT_EQ(head, 5);
  EXPECT_EQ(q_.last_avail(), 1);
  EXPECT_EQ(q_.Available(), 0);

  Chain c;
  Status st = q_.WalkChain(head, iov_, kMaxIov, &c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.head, 5);
  EXPECT_EQ(c.n_readable, 2);
  EXPECT_EQ(c.n_writable, 1);
  EXPECT_EQ(c.readable_bytes, 528u);
  EXPECT_EQ(c.writable_bytes, 1u);
  EXPECT_FALSE(c.too_many_segments);
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 0x100));
  ExpectIov(0, kBuf, 16);
  ExpectIov(1, kR1, 512);
  ExpectIov(2, kBuf + 0x100, 1);
}

TEST_F(VirtqueueTest, SeveralHeadsPoppedInOrder) {
  Start();
  SetDesc(0, kBuf, 8, 0);
  SetDesc(3, kBuf, 8, kDescFlagWrite);
  SetDesc(1, kBuf, 8, 0);
  Publish(3);
  Publish(0);
  Publish(1);
  ASSERT_EQ(q_.Available(), 3);
  EXPECT_EQ(q_.PopHead(), 3);
  EXPECT_EQ(q_.PopHead(), 0);
  EXPECT_EQ(q_.Available(), 1);
  EXPECT_EQ(q_.PopHead(), 1);
  EXPECT_EQ(q_.Available(), 0);
  EXPECT_EQ(q_.last_avail(), 3);
}

TEST_F(VirtqueueTest, AvailRingWrapsAroundQueueSizeAndIndex) {
  // last_avail near the u16 wrap: slots are idx & (N-1).
  avail_->idx = 65534;
  Start(false, false, 65534);
  EXPECT_EQ(q_.Available(), 0);
  for (uint16_t h = 0; h < 4; ++h) {
    SetDesc(h, kBuf, 4, 0);
    Publish(h);
  }
  EXPECT_EQ(avail_->idx, 2);
  ASSERT_EQ(q_.Available(), 4);
  for (uint16_t h = 0; h < 4; ++h) EXPECT_EQ(q_.PopHead(), h);
  EXPECT_EQ(q_.last_avail(), 2);
  EXPECT_EQ(q_.Available(), 0);
}

TEST_F(VirtqueueTest, SingleWritableDescriptor) {
  Start();
  SetDesc(0, kBuf, 100, kDescFlagWrite);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c).ok());
  EXPECT_EQ(c.n_readable, 0);
  EXPECT_EQ(c.n_writable, 1);
  EXPECT_EQ(c.writable_bytes, 100u);
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 99));
  ExpectIov(0, kBuf, 100);
}

TEST_F(VirtqueueTest, ReadableOnlyChainHasNoStatusByte) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kBuf + 16, 16, 0);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c).ok());
  EXPECT_EQ(c.n_readable, 2);
  EXPECT_EQ(c.n_writable, 0);
  EXPECT_EQ(c.last_writable_byte, nullptr);
}

TEST_F(VirtqueueTest, LastWritableByteIsInLastWritableDescriptor) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kR1, 4096, kDescFlagWrite | kDescFlagNext, 2);
  SetDesc(2, kBuf + 0x200, 7, kDescFlagWrite);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c).ok());
  EXPECT_EQ(c.n_writable, 2);
  EXPECT_EQ(c.writable_bytes, 4103u);
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 0x200 + 6));
}

TEST_F(VirtqueueTest, ZeroLengthDescriptorsAddNoIovec) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kBuf + 16, 0, kDescFlagNext, 2);
  SetDesc(2, kBuf + 32, 1, kDescFlagWrite);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c).ok());
  EXPECT_EQ(c.n_readable, 1);
  EXPECT_EQ(c.n_writable, 1);
  EXPECT_EQ(c.readable_bytes, 16u);
  ExpectIov(0, kBuf, 16);
  ExpectIov(1, kBuf + 32, 1);
}

TEST_F(VirtqueueTest, ChainOfExactlyQueueSizeDescriptorsIsAccepted) {
  Start();
  for (uint16_t i = 0; i < kN; ++i) {
    bool last = i == kN - 1;
    SetDesc(i, kBuf + 16 * i, 16, last ? kDescFlagWrite : kDescFlagNext, last ? 0 : i + 1);
  }
  Publish(0);
  Chain c;
  Status st = PopAndWalk(&c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.n_readable, static_cast<int>(kN - 1));
  EXPECT_EQ(c.n_writable, 1);
  EXPECT_EQ(c.readable_bytes, 16u * (kN - 1));
}

TEST_F(VirtqueueTest, BufferCrossingRegionBoundaryBecomesTwoIovecs) {
  Start();
  SetDesc(0, kR2 - 100, 300, kDescFlagNext, 1);     // 100 in r1, 200 in r2
  SetDesc(1, kR2 - 512, 1024 + 1, kDescFlagWrite);  // 512 in r1, 513 in r2
  Publish(0);
  Chain c;
  Status st = PopAndWalk(&c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.n_readable, 2);
  EXPECT_EQ(c.n_writable, 2);
  EXPECT_EQ(c.readable_bytes, 300u);
  EXPECT_EQ(c.writable_bytes, 1025u);
  ExpectIov(0, kR2 - 100, 100);
  ExpectIov(1, kR2, 200);
  ExpectIov(2, kR2 - 512, 512);
  ExpectIov(3, kR2, 513);
  // The two halves really are in different host buffers.
  EXPECT_NE(static_cast<uint8_t*>(iov_[0].iov_base) + 100, iov_[1].iov_base);
  EXPECT_EQ(c.last_writable_byte, Host(kR2 + 512));
}

TEST_F(VirtqueueTest, BufferEndingExactlyAtRegionEndIsOneIovec) {
  Start();
  SetDesc(0, kR2 - 64, 64, kDescFlagWrite);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c).ok());
  EXPECT_EQ(c.n_writable, 1);
  ExpectIov(0, kR2 - 64, 64);
  EXPECT_EQ(c.last_writable_byte, Host(kR2 - 1));
}

TEST_F(VirtqueueTest, BufferAtEndOfLastRegionIsAccepted) {
  Start();
  SetDesc(0, kR2 + kR2Size - 16, 16, kDescFlagWrite);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c).ok());
  EXPECT_EQ(c.last_writable_byte, Host(kR2 + kR2Size - 1));
}

// ---------------------------------------------------------------------------
// Indirect descriptors

TEST_F(VirtqueueTest, IndirectTableIsWalked) {
  Start(false, /*indirect=*/true);
  // Table order 0 -> 2 -> 1 -> 3.
  SetTableDesc(kIndirectGpa, 0, kBuf, 16, kDescFlagNext, 2);
  SetTableDesc(kIndirectGpa, 2, kR2 - 256, 512, kDescFlagNext, 1);  // crosses r1/r2
  SetTableDesc(kIndirectGpa, 1, kR1, 1024, kDescFlagWrite | kDescFlagNext, 3);
  SetTableDesc(kIndirectGpa, 3, kBuf + 0x80, 1, kDescFlagWrite);
  SetDesc(7, kIndirectGpa, 4 * sizeof(Desc), kDescFlagIndirect);
  Publish(7);
  Chain c;
  Status st = PopAndWalk(&c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.head, 7);
  EXPECT_EQ(c.n_readable, 3);
  EXPECT_EQ(c.n_writable, 2);
  EXPECT_EQ(c.readable_bytes, 528u);
  EXPECT_EQ(c.writable_bytes, 1025u);
  ExpectIov(0, kBuf, 16);
  ExpectIov(1, kR2 - 256, 256);
  ExpectIov(2, kR2, 256);
  ExpectIov(3, kR1, 1024);
  ExpectIov(4, kBuf + 0x80, 1);
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 0x80));
  EXPECT_FALSE(c.too_many_segments);
}

TEST_F(VirtqueueTest, IndirectDescriptorWriteFlagIsIgnored) {
  // VIRTIO 2.7.5.3.2: the device MUST ignore WRITE on the descriptor that
  // refers to an indirect table.
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 16, kDescFlagNext, 1);
  SetTableDesc(kIndirectGpa, 1, kBuf + 0x40, 1, kDescFlagWrite);
  SetDesc(0, kIndirectGpa, 2 * sizeof(Desc), kDescFlagIndirect | kDescFlagWrite);
  Publish(0);
  Chain c;
  Status st = PopAndWalk(&c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.n_readable, 1);
  EXPECT_EQ(c.n_writable, 1);
}

TEST_F(VirtqueueTest, IndirectTableOfMaximumLengthChainIsAccepted) {
  Start(false, true);
  constexpr uint16_t kCount = 64;  // longer than the queue itself
  for (uint16_t i = 0; i < kCount; ++i) {
    bool last = i == kCount - 1;
    SetTableDesc(kIndirectGpa, i, kBuf + 8 * i, 8, last ? kDescFlagWrite : kDescFlagNext, last ? 0 : i + 1);
  }
  SetDesc(0, kIndirectGpa, kCount * sizeof(Desc), kDescFlagIndirect);
  Publish(0);
  Chain c;
  Status st = PopAndWalk(&c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.readable_bytes, 8u * (kCount - 1));
  EXPECT_EQ(c.writable_bytes, 8u);
  EXPECT_TRUE(c.too_many_segments);  // 64 segments > kMaxIov (32)
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 8 * (kCount - 1) + 7));
}

TEST_F(VirtqueueTest, IndirectRejectedWithoutFeature) {
  Start(false, /*indirect=*/false);
  SetTableDesc(kIndirectGpa, 0, kBuf, 16, 0);
  SetDesc(0, kIndirectGpa, sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
}

// ---------------------------------------------------------------------------
// Malformed chains: each must be rejected with a Status, never crash.

TEST_F(VirtqueueTest, RejectsHeadOutOfRange) {
  Start();
  ExpectRejected(kN);
  ExpectRejected(0xffff);
  // Also when it arrives through the avail ring.
  SetDesc(0, kBuf, 1, kDescFlagWrite);
  Publish(kN + 3);
  Chain c;
  EXPECT_FALSE(PopAndWalk(&c).ok());
}

TEST_F(VirtqueueTest, RejectsNextOutOfRange) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, kN);
  ExpectRejected(0);
  SetDesc(0, kBuf, 16, kDescFlagNext, 0xffff);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsLoopInDirectChain) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kBuf, 16, kDescFlagNext, 2);
  SetDesc(2, kBuf, 16, kDescFlagNext, 1);  // 1 -> 2 -> 1 ...
  ExpectRejected(0);
  SetDesc(4, kBuf, 16, kDescFlagWrite | kDescFlagNext, 4);  // self loop
  ExpectRejected(4);
}

TEST_F(VirtqueueTest, RejectsLoopInIndirectTable) {
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 16, kDescFlagNext, 1);
  SetTableDesc(kIndirectGpa, 1, kBuf, 16, kDescFlagNext, 0);
  SetDesc(0, kIndirectGpa, 2 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
  // Self loop in a one-entry table.
  SetTableDesc(kIndirect2Gpa, 0, kBuf, 16, kDescFlagNext, 0);
  SetDesc(1, kIndirect2Gpa, sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(1);
}

TEST_F(VirtqueueTest, RejectsIndirectNextOutOfTable) {
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 16, kDescFlagNext, 2);  // table has 2 entries
  SetTableDesc(kIndirectGpa, 1, kBuf, 1, kDescFlagWrite);
  SetDesc(0, kIndirectGpa, 2 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsBadIndirectTableLength) {
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 1, kDescFlagWrite);
  SetTableDesc(kIndirectGpa, 1, kBuf, 1, kDescFlagWrite);
  for (uint32_t len : {0u, 1u, 8u, 15u, 17u, 24u, 31u}) {
    SCOPED_TRACE(len);
    SetDesc(0, kIndirectGpa, len, kDescFlagIndirect);
    ExpectRejected(0);
  }
  // Far too long to be mapped (and longer than the largest allowed table).
  SetDesc(0, kIndirectGpa, 0xfffffff0u, kDescFlagIndirect);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsNestedIndirect) {
  Start(false, true);
  SetTableDesc(kIndirect2Gpa, 0, kBuf, 1, kDescFlagWrite);
  SetTableDesc(kIndirectGpa, 0, kBuf, 16, kDescFlagNext, 1);
  SetTableDesc(kIndirectGpa, 1, kIndirect2Gpa, sizeof(Desc), kDescFlagIndirect);
  SetDesc(0, kIndirectGpa, 2 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsIndirectCombinedWithNext) {
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 1, kDescFlagWrite);
  SetDesc(0, kIndirectGpa, sizeof(Desc), kDescFlagIndirect | kDescFlagNext, 1);
  SetDesc(1, kBuf + 0x10, 1, kDescFlagWrite);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsIndirectAfterDirectDescriptor) {
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 1, kDescFlagWrite);
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kIndirectGpa, sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsIndirectTableNotMapped) {
  Start(false, true);
  SetDesc(0, kGap, 2 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
  // Starts mapped, runs off the end of region 0 into the gap.
  SetDesc(0, kR0 + kR0Size - 16, 2 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
  // addr + len overflows.
  SetDesc(0, ~0ull - 15, 2 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsReadableAfterWritable) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kBuf + 16, 1, kDescFlagWrite | kDescFlagNext, 2);
  SetDesc(2, kBuf + 32, 16, 0);
  ExpectRejected(0);
  // Even a zero-length readable after a writable one.
  SetDesc(2, kBuf + 32, 0, 0);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsReadableAfterWritableInIndirectTable) {
  Start(false, true);
  SetTableDesc(kIndirectGpa, 0, kBuf, 1, kDescFlagWrite | kDescFlagNext, 1);
  SetTableDesc(kIndirectGpa, 1, kBuf + 16, 16, kDescFlagNext, 2);
  SetTableDesc(kIndirectGpa, 2, kBuf + 32, 1, kDescFlagWrite);
  SetDesc(0, kIndirectGpa, 3 * sizeof(Desc), kDescFlagIndirect);
  ExpectRejected(0);
}

// Regression: the order check once used n_writable > 0, which stays 0 when
// the writable descriptor's iovecs did not fit (kNoRoom).
TEST_F(VirtqueueTest, RejectsReadableAfterWritableWhenIovecsOverflowed) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kR2 - 8, 16, kDescFlagWrite | kDescFlagNext, 2);  // 2 iovecs, only 1 slot left
  SetDesc(2, kBuf + 32, 16, 0);                                // readable after writable
  Chain c;
  Status st = q_.WalkChain(0, iov_, 2, &c);
  EXPECT_FALSE(st.ok()) << "readable after writable accepted (too_many_segments=" << c.too_many_segments << ")";
}

// Regression: a zero-length writable descriptor once returned before it
// was recorded, so readable descriptors after it were accepted.
TEST_F(VirtqueueTest, RejectsReadableAfterZeroLengthWritable) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kBuf + 16, 0, kDescFlagWrite | kDescFlagNext, 2);
  SetDesc(2, kBuf + 32, 512, kDescFlagNext, 3);
  SetDesc(3, kBuf + 0x400, 1, kDescFlagWrite);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsUnmappedAddress) {
  Start();
  SetDesc(0, kGap, 16, 0);  // in the hole between region 0 and region 1
  ExpectRejected(0);
  SetDesc(0, 0, 16, 0);  // below everything
  ExpectRejected(0);
  SetDesc(0, kR2 + kR2Size, 1, kDescFlagWrite);  // just past the last region
  ExpectRejected(0);
  // Starts mapped but runs off the end of region 0 into the hole.
  SetDesc(0, kR0 + kR0Size - 8, 16, kDescFlagWrite);
  ExpectRejected(0);
  // Runs off the end of region 2.
  SetDesc(0, kR2 + kR2Size - 8, 9, kDescFlagWrite);
  ExpectRejected(0);
  // Second descriptor unmapped after a good one.
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kGap, 1, kDescFlagWrite);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, RejectsAddressPlusLengthOverflow) {
  Start();
  SetDesc(0, ~0ull - 0xff, 0x200, 0);
  ExpectRejected(0);
  SetDesc(0, ~0ull, 1, kDescFlagWrite);  // addr + len wraps to 0
  ExpectRejected(0);
  SetDesc(0, ~0ull, 0xffffffffu, kDescFlagWrite);
  ExpectRejected(0);
  // Overflowing writable after a valid readable.
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, ~0ull - 0x10, 0x100, kDescFlagWrite);
  ExpectRejected(0);
}

TEST_F(VirtqueueTest, MalformedChainDoesNotStopLaterChains) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 0);  // loop
  SetDesc(1, kBuf, 1, kDescFlagWrite);
  Publish(0);
  Publish(1);
  ASSERT_EQ(q_.Available(), 2);
  Chain c;
  EXPECT_FALSE(q_.WalkChain(q_.PopHead(), iov_, kMaxIov, &c).ok());
  EXPECT_TRUE(q_.WalkChain(q_.PopHead(), iov_, kMaxIov, &c).ok());
  EXPECT_EQ(c.head, 1);
  EXPECT_EQ(c.n_writable, 1);
}

// ---------------------------------------------------------------------------
// Too many segments

TEST_F(VirtqueueTest, TooManySegmentsStillReportsStatusByte) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kR1, 512, kDescFlagNext, 2);
  SetDesc(2, kR1 + 512, 512, kDescFlagWrite | kDescFlagNext, 3);
  SetDesc(3, kBuf + 0x300, 1, kDescFlagWrite);
  Publish(0);
  Chain c;
  Status st = PopAndWalk(&c, 2);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(c.too_many_segments);
  EXPECT_EQ(c.readable_bytes, 528u);
  EXPECT_EQ(c.writable_bytes, 513u);
  EXPECT_LE(c.n_readable + c.n_writable, 2);
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 0x300));
}

TEST_F(VirtqueueTest, TooManySegmentsFromRegionSplit) {
  Start();
  SetDesc(0, kR2 - 8, 16, kDescFlagWrite);  // needs 2 iovecs
  Publish(0);
  Chain c;
  Status st = PopAndWalk(&c, 1);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(c.too_many_segments);
  EXPECT_EQ(c.writable_bytes, 16u);
  EXPECT_EQ(c.last_writable_byte, Host(kR2 + 7));
  EXPECT_LE(c.n_writable, 1);
}

TEST_F(VirtqueueTest, TooManySegmentsNeverWritesPastMaxIov) {
  Start();
  for (uint16_t i = 0; i < 8; ++i) {
    bool last = i == 7;
    SetDesc(i, kBuf + 64 * i, 32, last ? kDescFlagWrite : kDescFlagNext, i + 1);
  }
  Publish(0);
  std::memset(iov_, 0xA5, sizeof(iov_));
  iovec pattern;
  std::memset(&pattern, 0xA5, sizeof(pattern));
  Chain c;
  Status st = PopAndWalk(&c, 3);  // only 3 slots for 8 segments
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(c.too_many_segments);
  for (int i = 3; i < kMaxIov; ++i) {
    EXPECT_EQ(std::memcmp(&iov_[i], &pattern, sizeof(iovec)), 0) << "iov " << i << " clobbered";
  }
  EXPECT_EQ(c.readable_bytes, 7u * 32);
  EXPECT_EQ(c.writable_bytes, 32u);
  EXPECT_EQ(c.last_writable_byte, Host(kBuf + 64 * 7 + 31));
}

TEST_F(VirtqueueTest, ExactlyMaxIovSegmentsFit) {
  Start();
  SetDesc(0, kBuf, 16, kDescFlagNext, 1);
  SetDesc(1, kR2 - 8, 16, kDescFlagNext, 2);  // 2 iovecs
  SetDesc(2, kBuf + 0x40, 1, kDescFlagWrite);
  Publish(0);
  Chain c;
  ASSERT_TRUE(PopAndWalk(&c, 4).ok());
  EXPECT_FALSE(c.too_many_segments);
  EXPECT_EQ(c.n_readable, 3);
  EXPECT_EQ(c.n_writable, 1);
  ExpectIov(3, kBuf + 0x40, 1);
}

// ---------------------------------------------------------------------------
// Available(): broken driver detection

TEST_F(VirtqueueTest, AvailableDetectsIndexJumpLargerThanSize) {
  Start();
  avail_->idx = kN;
  EXPECT_EQ(q_.Available(), static_cast<int>(kN));
  avail_->idx = kN + 1;
  EXPECT_EQ(q_.Available(), -1);
  avail_->idx = 0xffff;  // "moved backwards" by one
  EXPECT_EQ(q_.Available(), -1);
}

TEST_F(VirtqueueTest, AvailableAcrossIndexWrap) {
  avail_->idx = 4;
  Start(false, false, 65530);
  EXPECT_EQ(q_.Available(), 10);
  avail_->idx = static_cast<uint16_t>(65530 + kN);
  EXPECT_EQ(q_.Available(), static_cast<int>(kN));
  avail_->idx = static_cast<uint16_t>(65530 + kN + 1);
  EXPECT_EQ(q_.Available(), -1);
}

// ---------------------------------------------------------------------------
// Used ring

TEST_F(VirtqueueTest, PushUsedIsInvisibleUntilPublished) {
  Start();
  q_.PushUsed(3, 100);
  q_.PushUsed(7, 0);
  EXPECT_TRUE(q_.HasUnpublished());
  EXPECT_EQ(q_.used_idx(), 2);
  EXPECT_EQ(used_->idx, 0);
  EXPECT_EQ(used_->ring[0].id, 3u);
  EXPECT_EQ(used_->ring[0].len, 100u);
  EXPECT_EQ(used_->ring[1].id, 7u);
  EXPECT_EQ(used_->ring[1].len, 0u);

  q_.PublishUsed();
  EXPECT_EQ(used_->idx, 2);
  EXPECT_FALSE(q_.HasUnpublished());
  // Nothing new: no store, no notification.
  EXPECT_FALSE(q_.PublishUsed());
  EXPECT_EQ(used_->idx, 2);
}

TEST_F(VirtqueueTest, UsedRingWrapsAround) {
  Start(false, false, 65534, 65534);
  for (uint16_t id = 0; id < 4; ++id) q_.PushUsed(id, 1000 + id);
  q_.PublishUsed();
  EXPECT_EQ(used_->idx, 2);
  EXPECT_EQ(q_.used_idx(), 2);
  // 65534 & 15 = 14, 65535 & 15 = 15, then 0 and 1.
  EXPECT_EQ(used_->ring[14].id, 0u);
  EXPECT_EQ(used_->ring[15].id, 1u);
  EXPECT_EQ(used_->ring[0].id, 2u);
  EXPECT_EQ(used_->ring[1].id, 3u);
  EXPECT_EQ(used_->ring[1].len, 1003u);
}

TEST_F(VirtqueueTest, UsedRingReusesSlotsModuloSize) {
  Start();
  for (uint32_t i = 0; i < kN + 3; ++i) {
    q_.PushUsed(static_cast<uint16_t>(i % kN), i);
    q_.PublishUsed();
  }
  EXPECT_EQ(used_->idx, kN + 3);
  EXPECT_EQ(used_->ring[2].len, kN + 2);
  EXPECT_EQ(used_->ring[3].len, 3u);
}

TEST_F(VirtqueueTest, NotifyWithoutEventIdxFollowsNoInterruptFlag) {
  Start(/*event_idx=*/false);
  avail_->flags = 0;
  q_.PushUsed(0, 1);
  EXPECT_TRUE(q_.PublishUsed());
  avail_->flags = kAvailFlagNoInterrupt;
  q_.PushUsed(1, 1);
  EXPECT_FALSE(q_.PublishUsed());
  EXPECT_EQ(used_->idx, 2);  // still published
  avail_->flags = 0;
  EXPECT_FALSE(q_.PublishUsed());  // nothing new to publish
  q_.PushUsed(2, 1);
  EXPECT_TRUE(q_.PublishUsed());
}

TEST_F(VirtqueueTest, NotifyWithEventIdxFollowsUsedEvent) {
  Start(/*event_idx=*/true);
  avail_->flags = kAvailFlagNoInterrupt;  // must be ignored with EVENT_IDX
  UsedEvent() = 0;
  q_.PushUsed(0, 1);
  EXPECT_TRUE(q_.PublishUsed());  // 0 -> 1 crosses 0

  UsedEvent() = 5;
  q_.PushUsed(1, 1);
  q_.PushUsed(2, 1);
  EXPECT_FALSE(q_.PublishUsed());  // 1 -> 3
  q_.PushUsed(3, 1);
  q_.PushUsed(4, 1);
  q_.PushUsed(5, 1);
  q_.PushUsed(6, 1);
  EXPECT_TRUE(q_.PublishUsed());  // 3 -> 7 covers 5
  q_.PushUsed(7, 1);
  EXPECT_FALSE(q_.PublishUsed());  // 7 -> 8, event 5 already passed
  UsedEvent() = 8;
  q_.PushUsed(8, 1);
  EXPECT_TRUE(q_.PublishUsed());  // 8 -> 9 covers 8 exactly
  EXPECT_EQ(used_->idx, 9);
}

TEST_F(VirtqueueTest, NotifyWithEventIdxIgnoresFlagsWhenEventNotReached) {
  Start(true);
  avail_->flags = 0;  // would notify without EVENT_IDX
  UsedEvent() = 100;
  q_.PushUsed(0, 1);
  EXPECT_FALSE(q_.PublishUsed());
}

TEST_F(VirtqueueTest, NotifyWithEventIdxAcrossWrap) {
  Start(true, false, 65534, 65534);
  UsedEvent() = 0;
  for (uint16_t i = 0; i < 3; ++i) q_.PushUsed(i, 1);
  EXPECT_TRUE(q_.PublishUsed());  // 65534 -> 1 covers 0
  EXPECT_EQ(used_->idx, 1);

  Start(true, false, 65534, 65534);
  UsedEvent() = 1;
  for (uint16_t i = 0; i < 3; ++i) q_.PushUsed(i, 1);
  EXPECT_FALSE(q_.PublishUsed());  // 65534 -> 1 does not cover 1

  Start(true, false, 65534, 65534);
  UsedEvent() = 65535;
  for (uint16_t i = 0; i < 3; ++i) q_.PushUsed(i, 1);
  EXPECT_TRUE(q_.PublishUsed());

  Start(true, false, 65534, 65534);
  UsedEvent() = 65533;  // just behind old: already passed
  for (uint16_t i = 0; i < 3; ++i) q_.PushUsed(i, 1);
  EXPECT_FALSE(q_.PublishUsed());
}

// ---------------------------------------------------------------------------
// Kick suppression

TEST_F(VirtqueueTest, KickSuppressionWithoutEventIdx) {
  Start(false);
  q_.DisableKicks();
  EXPECT_EQ(used_->flags, kUsedFlagNoNotify);
  EXPECT_FALSE(q_.EnableKicks());
  EXPECT_EQ(used_->flags, 0);
  EXPECT_EQ(AvailEvent(), 0);

  q_.DisableKicks();
  EXPECT_EQ(used_->flags, kUsedFlagNoNotify);
  SetDesc(0, kBuf, 1, kDescFlagWrite);
  Publish(0);  // races in while kicks are off
  EXPECT_TRUE(q_.EnableKicks());
  EXPECT_EQ(used_->flags, 0);
  q_.PopHead();
  EXPECT_FALSE(q_.EnableKicks());
}

TEST_F(VirtqueueTest, KickSuppressionWithEventIdx) {
  Start(true);
  AvailEvent() = 0x1234;
  q_.DisableKicks();
  EXPECT_EQ(used_->flags, 0);       // flags are not used with EVENT_IDX
  EXPECT_EQ(AvailEvent(), 0x1234);  // left stale

  for (uint16_t h = 0; h < 3; ++h) {
    SetDesc(h, kBuf, 1, kDescFlagWrite);
    Publish(h);
  }
  ASSERT_EQ(q_.Available(), 3);
  q_.PopHead();
  q_.PopHead();
  // Two popped, one still pending: raced in.
  EXPECT_TRUE(q_.EnableKicks());
  EXPECT_EQ(AvailEvent(), 2);
  EXPECT_EQ(used_->flags, 0);
  q_.PopHead();
  EXPECT_FALSE(q_.EnableKicks());
  EXPECT_EQ(AvailEvent(), 3);
  // A driver following the rule now kicks on its next publish.
  EXPECT_TRUE(NeedEvent(AvailEvent(), static_cast<uint16_t>(avail_->idx + 1), avail_->idx));
}

TEST_F(VirtqueueTest, EnableKicksWithEventIdxAcrossWrap) {
  avail_->idx = 65535;
  Start(true, false, 65535);
  SetDesc(0, kBuf, 1, kDescFlagWrite);
  Publish(0);
  EXPECT_EQ(avail_->idx, 0);
  EXPECT_TRUE(q_.EnableKicks());
  EXPECT_EQ(AvailEvent(), 65535);
  q_.PopHead();
  EXPECT_FALSE(q_.EnableKicks());
  EXPECT_EQ(AvailEvent(), 0);
}

TEST_F(VirtqueueTest, EnableKicksReportsBrokenRing) {
  Start(false);
  avail_->idx = kN + 5;  // broken driver: caller must keep polling and notice
  EXPECT_TRUE(q_.EnableKicks());
}

}  // namespace
}  // namespace nestor::virtio
