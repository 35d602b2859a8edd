#include "client/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/scm_rights.h"
#include "vhost/wire.h"

namespace nestor::client {

namespace {

Status SockError(const char* what) {
  int e = errno;
  if (e == EAGAIN || e == EWOULDBLOCK) return Status::Error(ETIMEDOUT, fmt::format("vhost-user {}: timed out", what));
  if (e == EPIPE || e == ECONNRESET)
    return Status::Error(ENOTCONN, fmt::format("vhost-user {}: backend disconnected", what));
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
  Status st = SendWithFds(fd_.get(), iov, size ? 2 : 1, fds);
  if (st.ok()) return st;
  errno = st.err();
  return SockError("send");
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
  // We never expect fds in replies: any that arrive close with `fds`.
  std::vector<UniqueFd> fds;
  bool truncated = false;
  auto got = RecvWithFds(fd_.get(), &hdr, sizeof(hdr), 0, vhost::kMaxFds, &fds, &truncated);
  if (!got.ok()) {
    errno = got.status().err();
    return SockError("recv");
  }
  size_t n = *got;
  if (n == 0) return Status::Error(ENOTCONN, "vhost-user backend closed the connection");
  if (static_cast<size_t>(n) < sizeof(hdr))
    NESTOR_RETURN_IF_ERROR(ReadFull(reinterpret_cast<uint8_t*>(&hdr) + n, sizeof(hdr) - n));
  if ((hdr.flags & vhost::kVersionMask) != vhost::kVersion || !(hdr.flags & vhost::kFlagReply))
    return Status::Error(EPROTO, fmt::format("vhost-user reply to {} has bad flags {:#x}", request, hdr.flags));
  if (hdr.request != request)
    return Status::Error(EPROTO, fmt::format("vhost-user reply code {} for request {}", hdr.request, request));
  if (hdr.size > vhost::kMaxPayload)
    return Status::Error(EPROTO, fmt::format("vhost-user reply to {} too large ({} bytes)", request, hdr.size));
  uint8_t buf[vhost::kMaxPayload];
  NESTOR_RETURN_IF_ERROR(ReadFull(buf, hdr.size));
  if (hdr.size != reply_size)
    return Status::Error(EPROTO,
                         fmt::format("vhost-user reply to {}: {} bytes, expected {}", request, hdr.size, reply_size));
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
