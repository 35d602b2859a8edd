#include "base/file_lock.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace nestor {

std::string LockHolder(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return "";
  // Lines look like "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
  // (major:minor in hex, then the inode); blocked waiters carry "->".
  std::ifstream locks("/proc/locks");
  std::string line;
  const std::string me = std::to_string(getpid());
  while (std::getline(locks, line)) {
    std::istringstream in(line);
    std::string id, kind, mode, access, pid, where;
    in >> id >> kind;
    if (kind == "->") continue;
    in >> mode >> access >> pid >> where;
    if (kind != "FLOCK") continue;
    unsigned maj = 0, min = 0;
    unsigned long long ino = 0;
    if (sscanf(where.c_str(), "%x:%x:%llu", &maj, &min, &ino) != 3) continue;
    if (maj != major(st.st_dev) || min != minor(st.st_dev) || ino != st.st_ino) continue;
    if (pid == me) return "this process (another open of the same file)";
    std::ifstream comm("/proc/" + pid + "/comm");
    std::string name;
    std::getline(comm, name);
    return "pid " + pid + (name.empty() ? "" : " (" + name + ")");
  }
  return "";
}

Status LockFile(int fd, bool shared, const std::string& what) {
  while (flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) return Status::FromErrno("flock " + what);
    std::string holder = LockHolder(fd);
    return Status::Error(EBUSY, what + " is in use by " + (holder.empty() ? "another process" : holder));
  }
  return Status::Ok();
}

}  // namespace nestor
