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

inline int SyncIo(io::IoChannel* ch, io::IoOp op, uint64_t off, void* buf, uint64_t len,
                  bool unmap = false) {
  SyncRequest r;
  iovec v{buf, len};
  r.op = op;
  r.offset = off;
  r.length = len;
  r.unmap = unmap;
  r.iov = buf ? &v : nullptr;
  r.iovcnt = buf ? 1 : 0;
  r.done = [](io::IoRequest* q, int res) { static_cast<SyncRequest*>(q)->result = res; };
  ch->Submit(&r);
  return r.result;  // INT_MIN: did not complete inline
}

}  // namespace nestor::volume::testing
