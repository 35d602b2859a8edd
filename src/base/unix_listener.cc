#include "base/unix_listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"

namespace nestor {
namespace {

bool Address(const std::string& path, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr->sun_path)) return false;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

}  // namespace

Status ClaimSocketPath(const std::string& path) {
  sockaddr_un addr;
  if (!Address(path, &addr)) return Status::Invalid("socket path empty or too long: " + path);
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno("lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::Error(EEXIST, path + " exists and is not a socket; not replacing it (move it away)");
  }
  UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe.valid()) return Status::FromErrno("socket");
  if (connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 || errno == EAGAIN) {
    // EAGAIN: a listener whose backlog is full, alive all the same.
    return Status::Error(EBUSY, path + " is already in use: another process listens on it");
  }
  if (errno != ECONNREFUSED) return Status::FromErrno("connect " + path);
  // Nobody listens: a socket left by a process that went away.
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Status::FromErrno("unlink stale socket " + path);
  NLOG_INFO("replaced stale socket {}", path);
  return Status::Ok();
}

Status UnixListener::Listen(const std::string& path, int backlog, mode_t mode) {
  Close();
  sockaddr_un addr;
  if (!Address(path, &addr)) return Status::Invalid("socket path empty or too long: " + path);
  NESTOR_RETURN_IF_ERROR(ClaimSocketPath(path));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket");
  mode_t old = mode != 0 ? umask(~mode & 0777) : 0;
  int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  if (mode != 0) umask(old);
  if (rc != 0) {
    errno = bind_errno;
    return Status::FromErrno("bind " + path);  // EADDRINUSE: somebody else won the path meanwhile
  }
  path_ = path;
  fd_ = std::move(fd);
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    bound_ = true;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  if (mode != 0 && chmod(path.c_str(), mode) != 0) {
    Status err = Status::FromErrno("chmod " + path);
    Close();
    return err;
  }
  if (listen(fd_.get(), backlog) != 0) {
    Status err = Status::FromErrno("listen " + path);
    Close();
    return err;
  }
  return Status::Ok();
}

void UnixListener::Close() {
  if (bound_) {
    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0) {
      if (S_ISSOCK(st.st_mode) && st.st_dev == dev_ && st.st_ino == ino_) {
        unlink(path_.c_str());
      } else {
        NLOG_WARN("{} is no longer the socket this process bound; leaving it", path_);
      }
    }
    bound_ = false;
  }
  fd_.Reset();
}

}  // namespace nestor
