// Unit tests for DecodeBlkRequest. Each request is laid out in a fake guest
// memory as a real descriptor chain, popped and walked by a SplitQueue and
// then decoded, so the iovecs are exactly what the device would see.
#include "virtio/blk_request.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "virtio/blk_defs.h"
#include "virtio/guest_memory.h"
#include "virtio/ring_layout.h"
#include "virtio/virtqueue.h"

namespace nestor::virtio {
namespace {

constexpr uint32_t kN = 16;

// Region 0 [0x10000, 0x30000): rings and most buffers. Region 1
// [0x400000, 0x402000) and region 2 [0x402000, 0x404000) are gpa-adjacent
// but separate host buffers, so a buffer crossing 0x402000 is split.
constexpr uint64_t kR0 = 0x10000;
constexpr uint64_t kR0Size = 0x20000;
constexpr uint64_t kR1 = 0x400000;
constexpr uint64_t kR1Size = 0x2000;
constexpr uint64_t kR2 = kR1 + kR1Size;
constexpr uint64_t kR2Size = 0x2000;

constexpr uint64_t kDescGpa = kR0;
constexpr uint64_t kAvailGpa = kR0 + 0x1000;
constexpr uint64_t kUsedGpa = kR0 + 0x2000;
constexpr uint64_t kHdr = kR0 + 0x3000;     // request header
constexpr uint64_t kHdr2 = kR0 + 0x3100;    // second half of a split header
constexpr uint64_t kSeg = kR0 + 0x3200;     // discard / write-zeroes segments
constexpr uint64_t kStatus = kR0 + 0x3300;  // status byte
constexpr uint64_t kData = kR0 + 0x4000;    // data, up to 0x1c000 bytes

constexpr int kMaxIov = 32;
constexpr uint64_t kCapacity = 2048;  // sectors (1 MiB)

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using HostBuf = std::unique_ptr<uint8_t, FreeDeleter>;

HostBuf Alloc(size_t n) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(4096, n));
  std::memset(p, 0, n);
  return HostBuf(p);
}

struct Seg {
  uint64_t gpa;
  uint32_t len;
  bool writable;
};
Seg R(uint64_t gpa, uint32_t len) { return Seg{gpa, len, false}; }
Seg W(uint64_t gpa, uint32_t len) { return Seg{gpa, len, true}; }

class BlkRequestTest : public ::testing::Test {
 protected:
  BlkRequestTest()
      : r0_(Alloc(kR0Size)),
        r1_(Alloc(kR1Size)),
        r2_(Alloc(kR2Size)),
        mem_({GuestRegion{kR0, kR0Size, 0x7f0000010000, r0_.get()},
              GuestRegion{kR1, kR1Size, 0x7f0000400000, r1_.get()},
              GuestRegion{kR2, kR2Size, 0x7f0000800000, r2_.get()}}) {
    desc_ = reinterpret_cast<Desc*>(Host(kDescGpa));
    avail_ = reinterpret_cast<AvailRing*>(Host(kAvailGpa));
    VringSetup s;
    s.size = kN;
    s.desc = desc_;
    s.avail = avail_;
    s.used = reinterpret_cast<UsedRing*>(Host(kUsedGpa));
    q_.Init(s, &mem_);
    lim_.capacity_sectors = kCapacity;
    lim_.read_only = false;
    lim_.max_data_bytes = 64 * 1024;
    lim_.max_discard_sectors = 1024;
    lim_.max_write_zeroes_sectors = 512;
    lim_.discard = true;
    lim_.write_zeroes = true;
  }

  uint8_t* Host(uint64_t gpa) {
    if (gpa >= kR0 && gpa < kR0 + kR0Size) return r0_.get() + (gpa - kR0);
    if (gpa >= kR1 && gpa < kR1 + kR1Size) return r1_.get() + (gpa - kR1);
    if (gpa >= kR2 && gpa < kR2 + kR2Size) return r2_.get() + (gpa - kR2);
    ADD_FAILURE() << "test bug: gpa " << gpa << " not in a region";
    return nullptr;
  }

  void Put(uint64_t gpa, const void* src, size_t len) {
    // Byte-wise so that objects may straddle the region 1/2 boundary.
    for (size_t i = 0; i < len; ++i) *Host(gpa + i) = static_cast<const uint8_t*>(src)[i];
  }
  void PutHeader(uint64_t gpa, uint32_t type, uint64_t sector) {
    BlkReqHeader h{type, 0, sector};
    Put(gpa, &h, sizeof(h));
  }
  void PutSeg(uint64_t gpa, uint64_t sector, uint32_t num, uint32_t flags) {
    BlkDiscardWriteZeroes s{sector, num, flags};
    Put(gpa, &s, sizeof(s));
  }

  // Acts as the driver (descriptors 0..n-1, one head), then as the device.
  BlkRequest Decode(const std::vector<Seg>& segs, int max_iov = kMaxIov) {
    for (size_t i = 0; i < segs.size(); ++i) {
      bool last = i + 1 == segs.size();
      desc_[i] = Desc{segs[i].gpa, segs[i].len,
                      static_cast<uint16_t>((segs[i].writable ? kDescFlagWrite : 0) | (last ? 0 : kDescFlagNext)),
                      static_cast<uint16_t>(last ? 0 : i + 1)};
    }
    avail_->ring[avail_->idx & (kN - 1)] = 0;
    ++avail_->idx;
    EXPECT_EQ(q_.Available(), 1);
    uint16_t head = q_.PopHead();
    Status st = q_.WalkChain(head, iov_, max_iov, &chain_);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return DecodeBlkRequest(chain_, iov_, lim_);
  }

  // Header (16 B readable) + `data` + 1 status byte, for the common shapes.
  BlkRequest DecodeRead(uint64_t sector, uint32_t data_len) {
    PutHeader(kHdr, kBlkIn, sector);
    if (data_len == 0) return Decode({R(kHdr, 16), W(kStatus, 1)});
    return Decode({R(kHdr, 16), W(kData, data_len), W(kStatus, 1)});
  }
  BlkRequest DecodeWrite(uint64_t sector, uint32_t data_len) {
    PutHeader(kHdr, kBlkOut, sector);
    if (data_len == 0) return Decode({R(kHdr, 16), W(kStatus, 1)});
    return Decode({R(kHdr, 16), R(kData, data_len), W(kStatus, 1)});
  }
  BlkRequest DecodeRange(uint32_t type, uint64_t sector, uint32_t num, uint32_t flags) {
    PutHeader(kHdr, type, 0);
    PutSeg(kSeg, sector, num, flags);
    return Decode({R(kHdr, 16), R(kSeg, 16), W(kStatus, 1)});
  }

  void ExpectFail(const BlkRequest& r, BlkStatus status) {
    EXPECT_EQ(r.op, BlkOp::kFail);
    EXPECT_EQ(r.fail_status, status);
    EXPECT_FALSE(r.no_status);
    EXPECT_EQ(r.used_len, 1u);
    EXPECT_EQ(r.status, chain_.last_writable_byte);
    EXPECT_NE(r.status, nullptr);
  }

  HostBuf r0_, r1_, r2_;
  GuestMemoryMap mem_;
  Desc* desc_ = nullptr;
  AvailRing* avail_ = nullptr;
  SplitQueue q_;
  BlkLimits lim_;
  Chain chain_;
  iovec iov_[kMaxIov];
};

// ---------------------------------------------------------------------------
// IN (read)

TEST_F(BlkRequestTest, Read) {
  BlkRequest r = DecodeRead(8, 1024);
  ASSERT_EQ(r.op, BlkOp::kRead);
  EXPECT_FALSE(r.no_status);
  EXPECT_EQ(r.offset, 8u * 512);
  EXPECT_EQ(r.length, 1024u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData)));
  EXPECT_EQ(r.data[0].iov_len, 1024u);
  EXPECT_EQ(r.status, Host(kStatus));
  EXPECT_EQ(r.used_len, 1025u);
}

TEST_F(BlkRequestTest, ReadWithStatusInDataDescriptor) {
  PutHeader(kHdr, kBlkIn, 0);
  BlkRequest r = Decode({R(kHdr, 16), W(kData, 4096 + 1)});
  ASSERT_EQ(r.op, BlkOp::kRead);
  EXPECT_EQ(r.length, 4096u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData)));
  EXPECT_EQ(r.data[0].iov_len, 4096u);
  EXPECT_EQ(r.status, Host(kData + 4096));
  EXPECT_EQ(r.used_len, 4097u);
}

TEST_F(BlkRequestTest, ReadScatteredAcrossRegions) {
  PutHeader(kHdr, kBlkIn, 100);
  // 512 in region 1 + 512 in region 2, then 2048 in region 0, then status.
  BlkRequest r = Decode({R(kHdr, 16), W(kR2 - 512, 1024), W(kData, 2048), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kRead);
  EXPECT_EQ(r.offset, 100u * 512);
  EXPECT_EQ(r.length, 3072u);
  ASSERT_EQ(r.data_count, 3);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kR2 - 512)));
  EXPECT_EQ(r.data[0].iov_len, 512u);
  EXPECT_EQ(r.data[1].iov_base, static_cast<void*>(Host(kR2)));
  EXPECT_EQ(r.data[1].iov_len, 512u);
  EXPECT_EQ(r.data[2].iov_len, 2048u);
  EXPECT_EQ(r.used_len, 3073u);
}

TEST_F(BlkRequestTest, ReadWithoutDataIsAnEmptyRead) {
  BlkRequest r = DecodeRead(0, 0);
  ASSERT_EQ(r.op, BlkOp::kRead);
  EXPECT_EQ(r.length, 0u);
  EXPECT_EQ(r.data_count, 0);
  EXPECT_EQ(r.used_len, 1u);
}

TEST_F(BlkRequestTest, ReadUpToTheLastSector) {
  BlkRequest r = DecodeRead(kCapacity - 2, 1024);
  EXPECT_EQ(r.op, BlkOp::kRead);
  r = DecodeRead(kCapacity - 1, 1024);
  ExpectFail(r, kBlkIoErr);
  r = DecodeRead(kCapacity, 512);
  ExpectFail(r, kBlkIoErr);
}

TEST_F(BlkRequestTest, ReadSectorNearUint64MaxIsIoErr) {
  for (uint64_t sector : {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 7, UINT64_MAX >> 9, (UINT64_MAX >> 9) + 1,
                          uint64_t{1} << 55, uint64_t{1} << 63}) {
    SCOPED_TRACE(sector);
    ExpectFail(DecodeRead(sector, 4096), kBlkIoErr);
  }
}

TEST_F(BlkRequestTest, ReadLengthNotMultipleOfSectorIsIoErr) {
  ExpectFail(DecodeRead(0, 100), kBlkIoErr);
  ExpectFail(DecodeRead(0, 513), kBlkIoErr);
  ExpectFail(DecodeRead(0, 511), kBlkIoErr);
}

TEST_F(BlkRequestTest, ReadLongerThanMaxDataBytesIsIoErr) {
  lim_.max_data_bytes = 4096;
  EXPECT_EQ(DecodeRead(0, 4096).op, BlkOp::kRead);
  ExpectFail(DecodeRead(0, 4096 + 512), kBlkIoErr);
}

// ---------------------------------------------------------------------------
// OUT (write)

TEST_F(BlkRequestTest, Write) {
  BlkRequest r = DecodeWrite(16, 2048);
  ASSERT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.offset, 16u * 512);
  EXPECT_EQ(r.length, 2048u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData)));
  EXPECT_EQ(r.data[0].iov_len, 2048u);
  EXPECT_EQ(r.status, Host(kStatus));
  EXPECT_EQ(r.used_len, 1u);  // only the status byte is written
}

TEST_F(BlkRequestTest, WriteHeaderSplitAcrossTwoDescriptors) {
  BlkReqHeader h{kBlkOut, 0, 42};
  Put(kHdr, &h, 8);
  Put(kHdr2, reinterpret_cast<uint8_t*>(&h) + 8, 8);
  BlkRequest r = Decode({R(kHdr, 8), R(kHdr2, 8), R(kData, 512), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.offset, 42u * 512);
  EXPECT_EQ(r.length, 512u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData)));
  EXPECT_EQ(r.data[0].iov_len, 512u);
  EXPECT_EQ(r.used_len, 1u);
}

TEST_F(BlkRequestTest, WriteHeaderTailSharesDescriptorWithData) {
  BlkReqHeader h{kBlkOut, 0, 3};
  Put(kHdr, &h, 4);
  Put(kData, reinterpret_cast<uint8_t*>(&h) + 4, 12);
  BlkRequest r = Decode({R(kHdr, 4), R(kData, 12 + 1024), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.offset, 3u * 512);
  EXPECT_EQ(r.length, 1024u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData + 12)));
  EXPECT_EQ(r.data[0].iov_len, 1024u);
}

TEST_F(BlkRequestTest, WriteHeaderAndDataInOneDescriptor) {
  PutHeader(kData, kBlkOut, 7);
  BlkRequest r = Decode({R(kData, 16 + 512), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.offset, 7u * 512);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData + 16)));
  EXPECT_EQ(r.data[0].iov_len, 512u);
}

TEST_F(BlkRequestTest, WriteHeaderStraddlingRegionBoundary) {
  PutHeader(kR2 - 10, kBlkOut, 9);
  BlkRequest r = Decode({R(kR2 - 10, 16 + 512), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.offset, 9u * 512);
  EXPECT_EQ(r.length, 512u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kR2 + 6)));
}

TEST_F(BlkRequestTest, WriteExtraWritableBytesOnlyStatusUsed) {
  PutHeader(kHdr, kBlkOut, 0);
  BlkRequest r = Decode({R(kHdr, 16), R(kData, 512), W(kStatus, 8)});
  ASSERT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.status, Host(kStatus + 7));
  EXPECT_EQ(r.used_len, 1u);
}

TEST_F(BlkRequestTest, WriteOutOfRangeIsIoErr) {
  EXPECT_EQ(DecodeWrite(kCapacity - 1, 512).op, BlkOp::kWrite);
  ExpectFail(DecodeWrite(kCapacity - 1, 1024), kBlkIoErr);
  ExpectFail(DecodeWrite(UINT64_MAX, 512), kBlkIoErr);
  ExpectFail(DecodeWrite(UINT64_MAX - 1, 1024), kBlkIoErr);
  ExpectFail(DecodeWrite(uint64_t{1} << 55, 512), kBlkIoErr);
}

TEST_F(BlkRequestTest, WriteLengthNotMultipleOfSectorIsIoErr) {
  ExpectFail(DecodeWrite(0, 100), kBlkIoErr);
  ExpectFail(DecodeWrite(0, 512 + 4), kBlkIoErr);
}

TEST_F(BlkRequestTest, WriteLongerThanMaxDataBytesIsIoErr) {
  lim_.max_data_bytes = 8192;
  EXPECT_EQ(DecodeWrite(0, 8192).op, BlkOp::kWrite);
  ExpectFail(DecodeWrite(0, 8192 + 512), kBlkIoErr);
}

// ---------------------------------------------------------------------------
// FLUSH, GET_ID

TEST_F(BlkRequestTest, Flush) {
  PutHeader(kHdr, kBlkFlush, 0);
  BlkRequest r = Decode({R(kHdr, 16), W(kStatus, 1)});
  EXPECT_EQ(r.op, BlkOp::kFlush);
  EXPECT_EQ(r.status, Host(kStatus));
  EXPECT_EQ(r.used_len, 1u);
}

TEST_F(BlkRequestTest, GetId) {
  PutHeader(kHdr, kBlkGetId, 0);
  BlkRequest r = Decode({R(kHdr, 16), W(kData, kBlkIdBytes), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kGetId);
  EXPECT_EQ(r.length, kBlkIdBytes);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(Host(kData)));
  EXPECT_EQ(r.data[0].iov_len, kBlkIdBytes);
  EXPECT_EQ(r.status, Host(kStatus));
  EXPECT_EQ(r.used_len, kBlkIdBytes + 1);
}

TEST_F(BlkRequestTest, GetIdWithStatusInSameDescriptor) {
  PutHeader(kHdr, kBlkGetId, 0);
  BlkRequest r = Decode({R(kHdr, 16), W(kData, kBlkIdBytes + 1)});
  ASSERT_EQ(r.op, BlkOp::kGetId);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_len, kBlkIdBytes);
  EXPECT_EQ(r.status, Host(kData + kBlkIdBytes));
  EXPECT_EQ(r.used_len, kBlkIdBytes + 1);
}

TEST_F(BlkRequestTest, GetIdBufferTooSmallIsIoErr) {
  PutHeader(kHdr, kBlkGetId, 0);
  ExpectFail(Decode({R(kHdr, 16), W(kData, kBlkIdBytes - 1), W(kStatus, 1)}), kBlkIoErr);
  ExpectFail(Decode({R(kHdr, 16), W(kStatus, 1)}), kBlkIoErr);
}

// ---------------------------------------------------------------------------
// DISCARD, WRITE_ZEROES

TEST_F(BlkRequestTest, Discard) {
  BlkRequest r = DecodeRange(kBlkDiscard, 100, 8, 0);
  ASSERT_EQ(r.op, BlkOp::kDiscard);
  EXPECT_EQ(r.offset, 100u * 512);
  EXPECT_EQ(r.length, 8u * 512);
  EXPECT_FALSE(r.unmap);
  EXPECT_EQ(r.status, Host(kStatus));
  EXPECT_EQ(r.used_len, 1u);
}

TEST_F(BlkRequestTest, WriteZeroes) {
  BlkRequest r = DecodeRange(kBlkWriteZeroes, 64, 16, 0);
  ASSERT_EQ(r.op, BlkOp::kWriteZeroes);
  EXPECT_EQ(r.offset, 64u * 512);
  EXPECT_EQ(r.length, 16u * 512);
  EXPECT_FALSE(r.unmap);
  EXPECT_EQ(r.used_len, 1u);
}

TEST_F(BlkRequestTest, WriteZeroesWithUnmap) {
  BlkRequest r = DecodeRange(kBlkWriteZeroes, 64, 16, kBlkWriteZeroesUnmap);
  ASSERT_EQ(r.op, BlkOp::kWriteZeroes);
  EXPECT_TRUE(r.unmap);
  EXPECT_EQ(r.length, 16u * 512);
}

TEST_F(BlkRequestTest, DiscardWithUnmapFlagIsUnsupp) {
  ExpectFail(DecodeRange(kBlkDiscard, 0, 8, kBlkWriteZeroesUnmap), kBlkUnsupp);
}

TEST_F(BlkRequestTest, UnknownSegmentFlagsAreUnsupp) {
  for (uint32_t flags : {2u, 4u, 0x80000000u, 3u}) {
    SCOPED_TRACE(flags);
    ExpectFail(DecodeRange(kBlkWriteZeroes, 0, 8, flags), kBlkUnsupp);
    ExpectFail(DecodeRange(kBlkDiscard, 0, 8, flags), kBlkUnsupp);
  }
}

TEST_F(BlkRequestTest, RangeOverSectorLimitIsIoErr) {
  EXPECT_EQ(DecodeRange(kBlkDiscard, 0, 1024, 0).op, BlkOp::kDiscard);
  ExpectFail(DecodeRange(kBlkDiscard, 0, 1025, 0), kBlkIoErr);
  EXPECT_EQ(DecodeRange(kBlkWriteZeroes, 0, 512, 0).op, BlkOp::kWriteZeroes);
  ExpectFail(DecodeRange(kBlkWriteZeroes, 0, 513, 0), kBlkIoErr);
  ExpectFail(DecodeRange(kBlkWriteZeroes, 0, UINT32_MAX, 0), kBlkIoErr);
}

TEST_F(BlkRequestTest, RangeOutOfCapacityIsIoErr) {
  EXPECT_EQ(DecodeRange(kBlkDiscard, kCapacity - 8, 8, 0).op, BlkOp::kDiscard);
  ExpectFail(DecodeRange(kBlkDiscard, kCapacity - 8, 9, 0), kBlkIoErr);
  ExpectFail(DecodeRange(kBlkWriteZeroes, kCapacity, 1, 0), kBlkIoErr);
  for (uint64_t sector : {UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 511, uint64_t{1} << 55}) {
    SCOPED_TRACE(sector);
    ExpectFail(DecodeRange(kBlkDiscard, sector, 8, 0), kBlkIoErr);
    ExpectFail(DecodeRange(kBlkWriteZeroes, sector, 512, 0), kBlkIoErr);
  }
}

TEST_F(BlkRequestTest, RangeWithMoreThanOneSegmentIsIoErr) {
  PutHeader(kHdr, kBlkDiscard, 0);
  PutSeg(kSeg, 0, 8, 0);
  PutSeg(kSeg + 16, 8, 8, 0);
  ExpectFail(Decode({R(kHdr, 16), R(kSeg, 32), W(kStatus, 1)}), kBlkIoErr);
  PutHeader(kHdr, kBlkWriteZeroes, 0);
  ExpectFail(Decode({R(kHdr, 16), R(kSeg, 16), R(kSeg + 16, 16), W(kStatus, 1)}), kBlkIoErr);
}

TEST_F(BlkRequestTest, RangeWithTruncatedOrMissingSegmentIsIoErr) {
  PutHeader(kHdr, kBlkDiscard, 0);
  PutSeg(kSeg, 0, 8, 0);
  ExpectFail(Decode({R(kHdr, 16), R(kSeg, 8), W(kStatus, 1)}), kBlkIoErr);
  ExpectFail(Decode({R(kHdr, 16), W(kStatus, 1)}), kBlkIoErr);
  PutHeader(kHdr, kBlkWriteZeroes, 0);
  ExpectFail(Decode({R(kHdr, 16), R(kSeg, 17), W(kStatus, 1)}), kBlkIoErr);
}

TEST_F(BlkRequestTest, RangeSegmentSplitAcrossDescriptors) {
  PutHeader(kHdr, kBlkWriteZeroes, 0);
  BlkDiscardWriteZeroes s{10, 4, kBlkWriteZeroesUnmap};
  Put(kHdr + 16, &s, 6);  // header and first 6 bytes of the segment together
  Put(kSeg, reinterpret_cast<uint8_t*>(&s) + 6, 10);
  BlkRequest r = Decode({R(kHdr, 22), R(kSeg, 10), W(kStatus, 1)});
  ASSERT_EQ(r.op, BlkOp::kWriteZeroes);
  EXPECT_EQ(r.offset, 10u * 512);
  EXPECT_EQ(r.length, 4u * 512);
  EXPECT_TRUE(r.unmap);
}

TEST_F(BlkRequestTest, RangeNotOfferedIsUnsupp) {
  lim_.discard = false;
  ExpectFail(DecodeRange(kBlkDiscard, 0, 8, 0), kBlkUnsupp);
  EXPECT_EQ(DecodeRange(kBlkWriteZeroes, 0, 8, 0).op, BlkOp::kWriteZeroes);
  lim_.discard = true;
  lim_.write_zeroes = false;
  ExpectFail(DecodeRange(kBlkWriteZeroes, 0, 8, 0), kBlkUnsupp);
  EXPECT_EQ(DecodeRange(kBlkDiscard, 0, 8, 0).op, BlkOp::kDiscard);
}

// ---------------------------------------------------------------------------
// Unknown types, read-only volumes, malformed requests

TEST_F(BlkRequestTest, UnknownTypeIsUnsupp) {
  for (uint32_t type : {2u, 3u, 5u, 7u, static_cast<uint32_t>(kBlkGetLifetime), static_cast<uint32_t>(kBlkSecureErase),
                        12u, 15u, 0xffffffffu}) {
    SCOPED_TRACE(type);
    PutHeader(kHdr, type, 0);
    ExpectFail(Decode({R(kHdr, 16), R(kSeg, 16), W(kData, 512), W(kStatus, 1)}), kBlkUnsupp);
  }
}

TEST_F(BlkRequestTest, ReadOnlyRejectsWrites) {
  lim_.read_only = true;
  ExpectFail(DecodeWrite(0, 512), kBlkIoErr);
  ExpectFail(DecodeRange(kBlkDiscard, 0, 8, 0), kBlkIoErr);
  ExpectFail(DecodeRange(kBlkWriteZeroes, 0, 8, 0), kBlkIoErr);
  ExpectFail(DecodeRange(kBlkWriteZeroes, 0, 8, kBlkWriteZeroesUnmap), kBlkIoErr);
}

TEST_F(BlkRequestTest, ReadOnlyAllowsReadFlushGetId) {
  lim_.read_only = true;
  EXPECT_EQ(DecodeRead(0, 512).op, BlkOp::kRead);
  PutHeader(kHdr, kBlkFlush, 0);
  EXPECT_EQ(Decode({R(kHdr, 16), W(kStatus, 1)}).op, BlkOp::kFlush);
  PutHeader(kHdr, kBlkGetId, 0);
  EXPECT_EQ(Decode({R(kHdr, 16), W(kData, kBlkIdBytes), W(kStatus, 1)}).op, BlkOp::kGetId);
}

TEST_F(BlkRequestTest, NoWritableByteMeansNoStatus) {
  PutHeader(kHdr, kBlkOut, 0);
  BlkRequest r = Decode({R(kHdr, 16), R(kData, 512)});
  EXPECT_TRUE(r.no_status);
  EXPECT_EQ(r.status, nullptr);
  EXPECT_EQ(r.op, BlkOp::kFail);
  // A zero-length writable descriptor does not carry a status byte either.
  PutHeader(kHdr, kBlkIn, 0);
  r = Decode({R(kHdr, 16), W(kStatus, 0)});
  EXPECT_TRUE(r.no_status);
  EXPECT_EQ(r.status, nullptr);
}

TEST_F(BlkRequestTest, HeaderShorterThan16BytesIsIoErr) {
  PutHeader(kHdr, kBlkIn, 0);
  ExpectFail(Decode({R(kHdr, 8), W(kData, 512), W(kStatus, 1)}), kBlkIoErr);
  ExpectFail(Decode({R(kHdr, 15), W(kStatus, 1)}), kBlkIoErr);
  ExpectFail(Decode({R(kHdr, 4), R(kHdr2, 4), W(kStatus, 1)}), kBlkIoErr);
  // No readable descriptor at all.
  ExpectFail(Decode({W(kData, 513)}), kBlkIoErr);
}

TEST_F(BlkRequestTest, TooManySegmentsIsIoErr) {
  PutHeader(kHdr, kBlkIn, 0);
  BlkRequest r = Decode({R(kHdr, 16), W(kData, 512), W(kData + 0x1000, 512), W(kData + 0x2000, 512), W(kStatus, 1)},
                        /*max_iov=*/3);
  ASSERT_TRUE(chain_.too_many_segments);
  ExpectFail(r, kBlkIoErr);
  EXPECT_EQ(r.status, Host(kStatus));
}

TEST_F(BlkRequestTest, HeaderIsReadOnlyOnce) {
  // Decoding must work on a copy: changing guest memory after decoding
  // does not affect the result.
  BlkRequest r = DecodeWrite(5, 512);
  PutHeader(kHdr, kBlkIn, 999);
  EXPECT_EQ(r.op, BlkOp::kWrite);
  EXPECT_EQ(r.offset, 5u * 512);
}

// Direct use with a hand-built chain (no queue), as a caller may do.
TEST(BlkRequestDirectTest, HandBuiltChain) {
  alignas(8) uint8_t hdr[16];
  BlkReqHeader h{kBlkIn, 0, 1};
  std::memcpy(hdr, &h, sizeof(h));
  uint8_t data[1024 + 1] = {};
  iovec iov[2] = {{hdr, sizeof(hdr)}, {data, sizeof(data)}};
  Chain c;
  c.n_readable = 1;
  c.n_writable = 1;
  c.readable_bytes = 16;
  c.writable_bytes = sizeof(data);
  c.last_writable_byte = &data[1024];
  BlkLimits lim;
  lim.capacity_sectors = 16;
  lim.max_data_bytes = 1 << 20;
  BlkRequest r = DecodeBlkRequest(c, iov, lim);
  ASSERT_EQ(r.op, BlkOp::kRead);
  EXPECT_EQ(r.offset, 512u);
  EXPECT_EQ(r.length, 1024u);
  ASSERT_EQ(r.data_count, 1);
  EXPECT_EQ(r.data[0].iov_base, static_cast<void*>(data));
  EXPECT_EQ(r.data[0].iov_len, 1024u);
  EXPECT_EQ(r.status, &data[1024]);
  EXPECT_EQ(r.used_len, 1025u);
}

}  // namespace
}  // namespace nestor::virtio
