#include "client/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <vector>

#include "base/log.h"
#include "vhost/wire.h"

namespace nestor::client {

namespace {

Status SockError(const char* what) {
  int e = errno;
  if (e == EAGAIN || e == EWOULDBLOCK) return Status::Error(ETIMEDOUT, fmt::format("vhost-user {}: timed out", what));
  if (e == EPIPE || e == ECONNRESET) return Status::Error(ENOTCONN, fmt::format("vhost-user {}: backend disconnected", what));
  return Status::FromErrno(fmt::format("vhost-user {}", what));
}

}  // namespace

Result<VhostConnection> VhostConnection::Connect(const std::string& path, int timeout_ms) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return Status::Invalid("bad socket path: " + path);
  VhostConnection c;
  c.fd_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!c.fd_.valid()) return Status::FromErrno("socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    return Status::FromErrno("connect " + path);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(c.fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(c.fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return c;
}

Status VhostConnection::Write(uint32_t request, uint32_t flags, const void* payload, size_t size,
                              std::span<const int> fds) {
  if (!fd_.valid()) return Status::Error(ENOTCONN, "vhost-user connection closed");
  if (fds.size() > vhost::kMaxFds) return Status::Invalid("too many fds");
  vhost::MsgHeader hdr{request, vhost::kVersion | flags, static_cast<uint32_t>(size)};
  iovec iov[2] = {{&hdr, sizeof(hdr)}, {const_cast<void*>(payload), size}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * vhost::kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = size ? 2 : 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  }
  size_t total = sizeof(hdr) + size;
  ssize_t n;
  do {
    n = sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SockError("send");
  if (static_cast<size_t>(n) != total) {
    // The fds went with the first byte; finish the rest with plain writes.
    std::vector<uint8_t> rest(total);
    std::memcpy(rest.data(), &hdr, sizeof(hdr));
    if (size) std::memcpy(rest.data() + sizeof(hdr), payload, size);
    size_t off = static_cast<size_t>(n);
    while (off < total) {
      ssize_t m = send(fd_.get(), rest.data() + off, total - off, MSG_NOSIGNAL);
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) return SockError("send");
      off += static_cast<size_t>(m);
    }
  }
  return Status::Ok();
}

Status VhostConnection::ReadFull(void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = recv(fd_.get(), p, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Status::Error(ENOTCONN, "vhost-user backend closed the connection");
    if (n < 0) return SockError("recv");
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status VhostConnection::ReadReply(uint32_t request, void* reply, size_t reply_size) {
  vhost::MsgHeader hdr{};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * vhost::kMaxFds)] = {};
  iovec iov{&hdr, sizeof(hdr)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n == 0) return Status::Error(ENOTCONN, "vhost-user backend closed the connection");
  if (n < 0) return SockError("recv");
  // We never expect fds in replies: close any that arrive.
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < nfds; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      close(fd);
    }
  }
  if (static_cast<size_t>(n) < sizeof(hdr)) NESTOR_RETURN_IF_ERROR(ReadFull(reinterpret_cast<uint8_t*>(&hdr) + n, sizeof(hdr) - n));
  if ((hdr.flags & vhost::kVersionMask) != vhost::kVersion || !(hdr.flags & vhost::kFlagReply))
    return Status::Error(EPROTO, fmt::format("vhost-user reply to {} has bad flags {:#x}", request, hdr.flags));
  if (hdr.request != request)
    return Status::Error(EPROTO, fmt::format("vhost-user reply code {} for request {}", hdr.request, request));
  if (hdr.size > vhost::kMaxPayload)
    return Status::Error(EPROTO, fmt::format("vhost-user reply to {} too large ({} bytes)", request, hdr.size));
  uint8_t buf[vhost::kMaxPayload];
  NESTOR_RETURN_IF_ERROR(ReadFull(buf, hdr.size));
  if (hdr.size != reply_size)
    return Status::Error(EPROTO, fmt::format("vhost-user reply to {}: {} bytes, expected {}", request, hdr.size, reply_size));
  std::memcpy(reply, buf, reply_size);
  return Status::Ok();
}

Status VhostConnection::Send(uint32_t request, const void* payload, size_t size, std::span<const int> fds) {
  NESTOR_RETURN_IF_ERROR(Write(request, reply_ack_ ? vhost::kFlagNeedReply : 0, payload, size, fds));
  if (!reply_ack_) return Status::Ok();
  uint64_t ack = 0;
  NESTOR_RETURN_IF_ERROR(ReadReply(request, &ack, sizeof(ack)));
  if (ack != 0) return Status::Error(EIO, fmt::format("vhost-user request {} failed (ack {})", request, ack));
  return Status::Ok();
}

Status VhostConnection::Call(uint32_t request, const void* payload, size_t size, void* reply, size_t reply_size) {
  NESTOR_RETURN_IF_ERROR(Write(request, 0, payload, size, {}));
  return ReadReply(request, reply, reply_size);
}

Result<uint64_t> VhostConnection::CallU64(uint32_t request) {
  uint64_t v = 0;
  Status st = Call(request, nullptr, 0, &v, sizeof(v));
  if (!st.ok()) return st;
  return v;
}

bool VhostConnection::IsAlive() const {
  if (!fd_.valid()) return false;
  pollfd p{fd_.get(), POLLIN | POLLRDHUP, 0};
  int n = poll(&p, 1, 0);
  if (n <= 0) return true;
  return !(p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL));
}

}  // namespace nestor::client
