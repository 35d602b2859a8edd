// UnixListener: a listening unix stream socket bound at a file-system
// path, and the ownership of that path. nestord replaces a path only when
// it is a stale socket (nobody accepts on it: connect() is refused); a
// live socket is left to its owner and a file that is not a socket is
// never touched. On Close the path is removed only if it is still the
// socket this listener bound (same device and inode), so a file that took
// its place meanwhile survives.
//
// Thread: Listen and Close on the owner's thread (control paths only);
// fd() may be polled and accepted on by another thread while the owner
// keeps the listener open. Errors: Status naming the path: EBUSY when
// another process listens on it, EEXIST when it is not a socket, EINVAL
// when too long, else the failing call's errno.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/fd.h"
#include "base/status.h"

namespace nestor {

// Makes path free for a new socket: absent is fine; a stale socket is
// removed; a socket somebody accepts on is EBUSY ("already in use"); any
// other file is EEXIST (and stays).
[[nodiscard]] Status ClaimSocketPath(const std::string& path);

// Who owns the socket file and who may connect to it. Unset fields keep
// what bind gives: the process's uid and gid, mode 0777 & ~umask.
struct SocketPerms {
  static constexpr uint32_t kUnset = UINT32_MAX;
  uint32_t owner = kUnset;  // uid
  uint32_t group = kUnset;  // gid
  uint32_t mode = kUnset;   // permission bits, 0..0777
};

class UnixListener {
 public:
  UnixListener() = default;
  ~UnixListener() { Close(); }
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // ClaimSocketPath, bind, listen. mode != 0: the socket file gets these
  // permission bits from the moment it exists (umask during bind; the
  // umask is process-wide, so call this before other threads create files).
  [[nodiscard]] Status Listen(const std::string& path, int backlog, mode_t mode = 0);
  // The same with an owner, group and mode. The socket is bound with at
  // most its owner's bits of the mode (fchmod before bind, no umask
  // change), then chowned and given its full mode, all before listen():
  // until then connect() is refused, and the file is never more open than
  // configured. Errors name the path and the failing call.
  [[nodiscard]] Status Listen(const std::string& path, int backlog, const SocketPerms& perms);
  int fd() const { return fd_.get(); }
  bool listening() const { return fd_.valid(); }
  const std::string& path() const { return path_; }
  // Stops listening; removes the socket file if it is still ours.
  void Close();

 private:
  std::string path_;
  UniqueFd fd_;
  bool bound_ = false;  // path_ is the socket we bound (dev_, ino_)
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace nestor
