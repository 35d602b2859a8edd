#include "virtio/blk_request.h"

#include "virtio/iov.h"

namespace nestor::virtio {
namespace {

BlkRequest Fail(BlkRequest r, BlkStatus status) {
  r.op = BlkOp::kFail;
  r.fail_status = status;
  r.used_len = 1;
  return r;
}

// True when [sector, sector + bytes/512) lies inside the device.
bool InRange(uint64_t sector, uint64_t bytes, uint64_t capacity_sectors) {
  uint64_t sectors = bytes >> kSectorShift;
  return sector <= capacity_sectors && sectors <= capacity_sectors - sector;
}

BlkRequest DecodeData(BlkRequest r, const BlkReqHeader& h, const Chain& c, iovec* iov, const BlkLimits& lim) {
  bool is_read = h.type == kBlkIn;
  if (!is_read && lim.read_only) return Fail(r, kBlkIoErr);
  int first = 0;
  int count = 0;
  if (is_read) {
    first = c.n_readable;
    count = IovDropBack(iov + first, c.n_writable, 1);  // the status byte
    r.length = c.writable_bytes - 1;
  } else {
    first = IovDropFront(iov, c.n_readable, sizeof(BlkReqHeader));
    count = c.n_readable - first;
    r.length = c.readable_bytes - sizeof(BlkReqHeader);
  }
  if (r.length % kSectorSize != 0 || r.length > lim.max_data_bytes) return Fail(r, kBlkIoErr);
  if (!InRange(h.sector, r.length, lim.capacity_sectors)) return Fail(r, kBlkIoErr);
  r.op = is_read ? BlkOp::kRead : BlkOp::kWrite;
  r.offset = h.sector << kSectorShift;
  r.data = iov + first;
  r.data_count = count;
  r.used_len = is_read ? static_cast<uint32_t>(r.length) + 1 : 1;
  return r;
}

BlkRequest DecodeRange(BlkRequest r, const BlkReqHeader& h, const Chain& c, iovec* iov, const BlkLimits& lim) {
  bool discard = h.type == kBlkDiscard;
  if (discard ? !lim.discard : !lim.write_zeroes) return Fail(r, kBlkUnsupp);
  if (lim.read_only) return Fail(r, kBlkIoErr);
  int first = IovDropFront(iov, c.n_readable, sizeof(BlkReqHeader));
  uint64_t payload = c.readable_bytes - sizeof(BlkReqHeader);
  // We advertise max_*_seg = 1: exactly one segment.
  if (payload != sizeof(BlkDiscardWriteZeroes)) return Fail(r, kBlkIoErr);
  BlkDiscardWriteZeroes seg{};
  IovCopyOut(iov + first, c.n_readable - first, &seg, sizeof(seg));
  uint32_t allowed_flags = discard ? 0 : kBlkWriteZeroesUnmap;
  if (seg.flags & ~allowed_flags) return Fail(r, kBlkUnsupp);
  uint32_t max = discard ? lim.max_discard_sectors : lim.max_write_zeroes_sectors;
  if (seg.num_sectors > max) return Fail(r, kBlkIoErr);
  uint64_t bytes = static_cast<uint64_t>(seg.num_sectors) << kSectorShift;
  if (!InRange(seg.sector, bytes, lim.capacity_sectors)) return Fail(r, kBlkIoErr);
  r.op = discard ? BlkOp::kDiscard : BlkOp::kWriteZeroes;
  r.offset = seg.sector << kSectorShift;
  r.length = bytes;
  r.unmap = (seg.flags & kBlkWriteZeroesUnmap) != 0;
  r.used_len = 1;
  return r;
}

}  // namespace

BlkRequest DecodeBlkRequest(const Chain& c, iovec* iov, const BlkLimits& lim) {
  BlkRequest r;
  r.status = c.last_writable_byte;
  if (r.status == nullptr) {
    r.no_status = true;
    return r;
  }
  if (c.too_many_segments || c.readable_bytes < sizeof(BlkReqHeader)) return Fail(r, kBlkIoErr);
  BlkReqHeader h{};
  IovCopyOut(iov, c.n_readable, &h, sizeof(h));
  switch (h.type) {
    case kBlkIn:
    case kBlkOut: return DecodeData(r, h, c, iov, lim);
    case kBlkFlush:
      r.op = BlkOp::kFlush;
      r.used_len = 1;
      return r;
    case kBlkGetId:
      if (c.writable_bytes < 1 + kBlkIdBytes) return Fail(r, kBlkIoErr);
      r.op = BlkOp::kGetId;
      r.data = iov + c.n_readable;
      r.data_count = IovDropBack(iov + c.n_readable, c.n_writable, 1);
      r.length = kBlkIdBytes;
      r.used_len = kBlkIdBytes + 1;
      return r;
    case kBlkDiscard:
    case kBlkWriteZeroes: return DecodeRange(r, h, c, iov, lim);
    default: return Fail(r, kBlkUnsupp);
  }
}

}  // namespace nestor::virtio
