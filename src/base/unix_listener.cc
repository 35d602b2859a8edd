#include "base/unix_listener.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
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

// The process's umask, read without changing it (umask(2) can only set
// it, and the umask is shared by every thread). 022 if /proc is missing.
mode_t CurrentUmask() {
  FILE* f = fopen("/proc/self/status", "re");
  if (f == nullptr) return 022;
  char line[256];
  unsigned mask = 022;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (sscanf(line, "Umask: %o", &mask) == 1) break;
  }
  fclose(f);
  return static_cast<mode_t>(mask & 0777);
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
  SocketPerms perms;
  if (mode != 0) perms.mode = mode & 0777;
  return Listen(path, backlog, perms);
}

Status UnixListener::Listen(const std::string& path, int backlog, const SocketPerms& perms) {
  Close();
  sockaddr_un addr;
  if (!Address(path, &addr)) return Status::Invalid("socket path empty or too long: " + path);
  if (perms.mode != SocketPerms::kUnset && perms.mode > 0777) {
    return Status::Invalid("socket mode must be 0 to 0777: " + path);
  }
  NESTOR_RETURN_IF_ERROR(ClaimSocketPath(path));
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket");
  // bind creates the file with the socket inode's mode & ~umask: owner
  // bits only until it has its owner and group (the process-wide umask
  // stays untouched, so other threads creating files are not affected).
  bool restrict =
      perms.mode != SocketPerms::kUnset || perms.owner != SocketPerms::kUnset || perms.group != SocketPerms::kUnset;
  mode_t initial = perms.mode != SocketPerms::kUnset ? (perms.mode & 0700) : 0700;
  if (restrict && fchmod(fd.get(), initial) != 0) return Status::FromErrno("fchmod socket for " + path);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
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
  auto fail = [&](const std::string& what) {
    Status err = Status::FromErrno(what + " " + path);
    Close();
    return err;
  };
  if ((perms.owner != SocketPerms::kUnset || perms.group != SocketPerms::kUnset) &&
      lchown(path.c_str(), perms.owner, perms.group) != 0) {  // kUnset is chown's "leave it"
    return fail("chown");
  }
  mode_t final_mode = perms.mode;
  if (perms.mode == SocketPerms::kUnset&& restrict) {
    final_mode = 0777 & ~CurrentUmask();
  }
  // Never through a symlink someone put in the socket's place meanwhile.
  if (restrict && fchmodat(AT_FDCWD, path.c_str(), final_mode, AT_SYMLINK_NOFOLLOW) != 0) return fail("chmod");
  if (listen(fd_.get(), backlog) != 0) return fail("listen");
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
