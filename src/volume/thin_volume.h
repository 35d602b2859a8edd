// ThinBackend / ThinChannel: a pool volume as an io::BlockBackend, so the
// virtio-blk queue serves it exactly like a file or memory backend (the
// volume layer knows nothing of vhost).
//
// A request is cut at extent boundaries into pieces:
//   read of a mapped run        -> one read of the pool's data channel
//   read of a hole              -> zeros copied into the request's buffers
//   write of a mapped run       -> one write, in place
//   write into an unmapped one  -> a cluster is allocated and written whole
//                                  (the request's bytes plus zeros around
//                                  them, one vectored write), then mapped;
//                                  until then reads see a hole, and other
//                                  writes to that cluster wait (parked) so
//                                  the zero fill cannot overwrite them
//   discard / write-zeroes+unmap of whole clusters -> unmapped, freed after
//                                  the unmap commits and no I/O that looked
//                                  it up before is in flight
//   partial clusters / plain write-zeroes -> zeros written in place
//   flush                       -> a metadata commit (group commit on the
//                                  pool's committer thread)
//
// Thread: a ThinChannel belongs to one reactor (or, without a ring, to one
// thread, completing inline). Parked writes and flushes are resumed on
// their own reactor through its io_uring (IoUring::PostTo). Errors: -errno
// completions: -ENOSPC pool full (that request only), -EINVAL out of range,
// the data channel's errors as they come.
#pragma once

#include <memory>
#include <string>

#include "io/backend.h"
#include "volume/pool.h"

namespace nestor::volume {

// For a thread without a ring that ends a cluster's initialization (the
// pool's copy-up): what to post to resume a parked request on its reactor
// (ring null: it had none, and was resumed inline already).
FlushWaiter ResumeToken(ParkedOp* op);

class ThinBackend final : public io::BlockBackend {
 public:
  ThinBackend(Pool* pool, std::shared_ptr<Volume> vol);
  ~ThinBackend() override;
  uint64_t size_bytes() const override;
  std::string Describe() const override;
  uint32_t block_size() const override;
  Result<std::unique_ptr<io::IoChannel>> OpenChannel(io::IoUring* ring) override;

 private:
  Pool* pool_;
  std::shared_ptr<Volume> vol_;
};

}  // namespace nestor::volume
