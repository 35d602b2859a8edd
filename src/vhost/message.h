// vhost-user message framing on a unix stream socket: receive a header with
// its SCM_RIGHTS fds, then the payload; send replies (optionally with one fd);
// send a request on the backend channel and take the frontend's replies
// there without ever blocking.
//
// Thread: the session's control thread. Errors: ReadMessage returns a
// Status for a malformed frame (bad version, oversize payload, truncated
// control data) and Status with ECONNRESET on orderly EOF; either ends the
// session. Received fds are owned by the Message and closed unless a
// handler takes them. The backend-channel functions return EAGAIN instead
// of waiting.
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

// Backend channel (BACKEND_REQ): sends `request` (a BackendRequest) with no
// payload, NEED_REPLY set if need_reply, in one non-blocking send. EAGAIN:
// the socket buffer is full (the frontend is not reading), nothing was
// sent; EPIPE/ECONNRESET: the frontend closed it. A partial send (the
// channel is then out of step) is EPROTO.
[[nodiscard]] Status SendBackendRequest(int sock, uint32_t request, bool need_reply);

// One frontend reply on the backend channel: a header and a u64 payload.
struct BackendReply {
  uint32_t request = 0;
  uint64_t value = 0;
};

// Accumulates bytes read from the backend channel (non-blocking) into
// replies. Feed it whatever recv returned; Next yields complete replies.
class BackendReplyReader {
 public:
  // Reads what is available now (MSG_DONTWAIT). Ok with nothing new is
  // fine; ECONNRESET: the frontend closed the channel; EPROTO: a frame that
  // is not a reply (wrong flags, payload other than 0 or 8 bytes).
  [[nodiscard]] Status ReadAvailable(int sock);
  // Pops the next complete reply, if any.
  bool Next(BackendReply* out);

 private:
  uint8_t buf_[64] = {};
  size_t len_ = 0;
};

}  // namespace nestor::vhost
