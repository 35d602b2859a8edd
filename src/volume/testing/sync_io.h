// Synchronous I/O through an io::IoChannel whose completions run inline
// (the VolatileCacheDevice's channels), for volume tests.
// Thread: the calling test thread. Errors: the completion result (-errno).
#pragma once

#include <sys/uio.h>

#include <climits>
#include <cstdint>

#include "io/backend.h"

namespace nestor::volume::testing {

struct SyncRequest : io::IoRequest {
  int result = INT_MIN;
};

// Fills *r and *v and submits; r->result stays INT_MIN until the request
// completes. r and v must live until then (a request may wait for its
// reactor's end of batch: ThinChannel::EndOfBatch).
inline void StartIo(io::IoChannel* ch, SyncRequest* r, iovec* v, io::IoOp op, uint64_t off, void* buf, uint64_t len,
                    bool unmap = false) {
  *v = iovec{buf, len};
  r->op = op;
  r->offset = off;
  r->length = len;
  r->unmap = unmap;
  r->iov = buf ? v : nullptr;
  r->iovcnt = buf ? 1 : 0;
  r->done = [](io::IoRequest* q, int res) { static_cast<SyncRequest*>(q)->result = res; };
  ch->Submit(r);
}

// For requests that complete inline: the result, or INT_MIN if it did not
// complete (then the request is gone with this frame: the channel must be
// abandoned, never completed; use StartIo where it may complete later).
inline int SyncIo(io::IoChannel* ch, io::IoOp op, uint64_t off, void* buf, uint64_t len, bool unmap = false) {
  SyncRequest r;
  iovec v;
  StartIo(ch, &r, &v, op, off, buf, len, unmap);
  return r.result;
}

}  // namespace nestor::volume::testing
