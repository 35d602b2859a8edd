// Decoding of one virtio-blk request from a walked descriptor chain:
// header, data iovecs, status byte; validation of type, range, direction
// and limits against the device's geometry.
//
// Thread: the reactor owning the queue. Pure function over the chain's
// iovecs (which point into guest memory; the header and discard segments
// are copied out once before use). Errors: the decoded status says how to
// complete a request that cannot be executed (IOERR / UNSUPP); a chain with
// no writable byte cannot even carry a status and is flagged no_status.
#pragma once

#include <sys/uio.h>

#include <cstdint>

#include "virtio/blk_defs.h"
#include "virtio/virtqueue.h"

namespace nestor::virtio {

struct BlkLimits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  uint32_t max_data_bytes = 0;  // per request (seg_max * size_max bound)
  uint32_t max_discard_sectors = 0;
  uint32_t max_write_zeroes_sectors = 0;
  bool discard = true;
  bool write_zeroes = true;
};

enum class BlkOp { kRead, kWrite, kFlush, kGetId, kDiscard, kWriteZeroes, kFail };

struct BlkRequest {
  BlkOp op = BlkOp::kFail;
  BlkStatus fail_status = kBlkIoErr;  // when op == kFail
  bool no_status = false;             // chain has no writable byte at all
  uint64_t offset = 0;                // bytes
  uint64_t length = 0;                // bytes (data or range)
  bool unmap = false;                 // write-zeroes may unmap
  iovec* data = nullptr;              // into the caller's iovec array
  int data_count = 0;
  uint8_t* status = nullptr;  // last writable byte of the chain
  uint32_t used_len = 0;      // bytes written into the chain on success
};

// Decodes chain (whose iovecs are iov[0..n_readable+n_writable)); may
// trim iov entries in place. Never reads guest memory more than once.
BlkRequest DecodeBlkRequest(const Chain& chain, iovec* iov, const BlkLimits& limits);

}  // namespace nestor::virtio
