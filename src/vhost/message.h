// vhost-user message framing on a unix stream socket: receive a header with
// its SCM_RIGHTS fds, then the payload; send replies (optionally with one fd).
//
// Thread: the session's control thread. Errors: ReadMessage returns a
// Status for a malformed frame (bad version, oversize payload, truncated
// control data) and Status with ECONNRESET on orderly EOF; either ends the
// session. Received fds are owned by the Message and closed unless a
// handler takes them.
#pragma once

#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "base/status.h"
#include "vhost/wire.h"

namespace nestor::vhost {

struct Message {
  MsgHeader hdr{};
  alignas(8) uint8_t payload[kMaxPayload] = {};
  std::vector<UniqueFd> fds;

  bool need_reply() const { return (hdr.flags & kFlagNeedReply) != 0; }
  template <typename T>
  bool PayloadIs() const {
    return hdr.size == sizeof(T);
  }
  template <typename T>
  T As() const {
    T v;
    __builtin_memcpy(&v, payload, sizeof(T));
    return v;
  }
};

Status ReadMessage(int sock, Message* msg);
Status SendReply(int sock, uint32_t request, const void* payload, uint32_t size, int fd = -1);
Status SendU64Reply(int sock, uint32_t request, uint64_t value);

}  // namespace nestor::vhost
