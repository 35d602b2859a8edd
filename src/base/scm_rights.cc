#include "base/scm_rights.h"

#include <sys/socket.h>

#include <cstring>

namespace nestor {

Status SendWithFds(int sock, const iovec* iov, int iovcnt, std::span<const int> fds) {
  std::vector<char> control(fds.empty() ? 0 : CMSG_SPACE(sizeof(int) * fds.size()), 0);
  msghdr mh{};
  mh.msg_iov = const_cast<iovec*>(iov);
  mh.msg_iovlen = static_cast<size_t>(iovcnt);
  if (!fds.empty()) {
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("sendmsg");
  // A short send: skip what went, then plain sends of the rest.
  size_t skip = static_cast<size_t>(n);
  for (int i = 0; i < iovcnt; ++i) {
    size_t len = iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    const auto* p = static_cast<const char*>(iov[i].iov_base);
    for (size_t off = skip; off < len;) {
      ssize_t m = send(sock, p + off, len - off, MSG_NOSIGNAL);
      if (m < 0 && errno == EINTR) continue;
      if (m < 0) return Status::FromErrno("send");
      off += static_cast<size_t>(m);
    }
    skip = 0;
  }
  return Status::Ok();
}

Result<size_t> RecvWithFds(int sock, void* buf, size_t len, int flags, size_t max_fds, std::vector<UniqueFd>* fds,
                           bool* truncated) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * max_fds), 0);
  iovec iov{buf, len};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("recvmsg");
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds->emplace_back(fd);
    }
  }
  *truncated = (mh.msg_flags & MSG_CTRUNC) != 0;
  return static_cast<size_t>(n);
}

}  // namespace nestor
