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

Status SendBackendRequest(int sock, uint32_t request, bool need_reply) {
  MsgHeader hdr{request, kVersion | (need_reply ? kFlagNeedReply : 0), 0};
  for (;;) {
    ssize_t n = send(sock, &hdr, sizeof(hdr), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(hdr))) return Status::Ok();
    if (n >= 0) return Status::Error(EPROTO, "backend channel: short send (" + std::to_string(n) + " bytes)");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Status::Error(EAGAIN, "backend channel full: the frontend is not reading it");
    }
    return Status::FromErrno("send on the backend channel");
  }
}

Status BackendReplyReader::ReadAvailable(int sock) {
  // One recv per call (the caller polls again): a flood cannot grow buf_.
  if (len_ == sizeof(buf_)) return Status::Error(EPROTO, "backend channel: unparsed replies pile up");
  ssize_t n;
  do {
    n = recv(sock, buf_ + len_, sizeof(buf_) - len_, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return Status::Error(ECONNRESET, "the frontend closed the backend channel");
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
    return Status::FromErrno("recv on the backend channel");
  }
  len_ += static_cast<size_t>(n);
  // Check every complete header now, so a bad frame is reported at once.
  size_t at = 0;
  while (at + sizeof(MsgHeader) <= len_) {
    MsgHeader h;
    std::memcpy(&h, buf_ + at, sizeof(h));
    if (h.flags != (kVersion | kFlagReply) || (h.size != 0 && h.size != sizeof(uint64_t))) {
      return Status::Error(EPROTO, "backend channel: not a reply (flags " + std::to_string(h.flags) + ", size " +
                                       std::to_string(h.size) + ")");
    }
    at += sizeof(h) + h.size;
  }
  return Status::Ok();
}

bool BackendReplyReader::Next(BackendReply* out) {
  if (len_ < sizeof(MsgHeader)) return false;
  MsgHeader h;
  std::memcpy(&h, buf_, sizeof(h));
  size_t frame = sizeof(h) + h.size;
  if (h.size > sizeof(uint64_t) || len_ < frame) return false;
  out->request = h.request;
  out->value = 0;
  std::memcpy(&out->value, buf_ + sizeof(h), h.size);
  std::memmove(buf_, buf_ + frame, len_ - frame);
  len_ -= frame;
  return true;
}

}  // namespace nestor::vhost
