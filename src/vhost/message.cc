#include "vhost/message.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

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
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64)];
  iovec iov{&msg->hdr, sizeof(msg->hdr)};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return Status::Error(ECONNRESET, "peer closed the connection");
  if (n < 0) return Status::FromErrno("recvmsg");
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      msg->fds.emplace_back(fd);
    }
  }
  if (static_cast<size_t>(n) != sizeof(msg->hdr)) return Status::Invalid("short message header");
  if (mh.msg_flags & MSG_CTRUNC) return Status::Invalid("too many fds (control data truncated)");
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
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = size > 0 ? 2 : 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  size_t want = sizeof(hdr) + size;
  ssize_t n;
  do {
    n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("sendmsg reply");
  if (static_cast<size_t>(n) != want) return Status::IoError("short reply write");
  return Status::Ok();
}

Status SendU64Reply(int sock, uint32_t request, uint64_t value) {
  return SendReply(sock, request, &value, sizeof(value));
}

}  // namespace nestor::vhost
