#include "vhost/message.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

#include "base/scm_rights.h"

namespace nestor::vhost {
namespace {

// Reads exactly len bytes (payload after the header).
Status ReadFull(int sock, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = recv(sock, p, len, 0);
    if (n == 0) return Status::Error(ECONNRESET, "peer closed mid-message");
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("recv payload");
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status ReadMessage(int sock, Message* msg) {
  msg->fds.clear();
  // Room for more fds than any message may carry, so an fd flood is seen
  // (and closed) rather than silently truncated.
  bool truncated = false;
  auto got = RecvWithFds(sock, &msg->hdr, sizeof(msg->hdr), MSG_WAITALL, 64, &msg->fds, &truncated);
  if (!got.ok()) return got.status();
  size_t n = *got;
  if (n == 0) return Status::Error(ECONNRESET, "peer closed the connection");
  if (n != sizeof(msg->hdr)) return Status::Invalid("short message header");
  if (truncated) return Status::Invalid("too many fds (control data truncated)");
  if (msg->fds.size() > kMaxFds) return Status::Invalid("more than 8 fds in one message");
  if ((msg->hdr.flags & kVersionMask) != kVersion) return Status::Invalid("bad vhost-user version");
  if (msg->hdr.size > kMaxPayload) {
    return Status::Invalid("payload of " + std::to_string(msg->hdr.size) + " bytes is too large");
  }
  return ReadFull(sock, msg->payload, msg->hdr.size);
}

Status SendReply(int sock, uint32_t request, const void* payload, uint32_t size, int fd) {
  MsgHeader hdr{request, kVersion | kFlagReply, size};
  iovec iov[2] = {{&hdr, sizeof(hdr)}, {const_cast<void*>(payload), size}};
  return SendWithFds(sock, iov, size > 0 ? 2 : 1, fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>());
}

Status SendU64Reply(int sock, uint32_t request, uint64_t value) {
  return SendReply(sock, request, &value, sizeof(value));
}

}  // namespace nestor::vhost
