// Advisory whole-file locks (flock) that say who holds them: the one lock
// every opener of a pool, a backing file or a socket directory takes, so
// nestord instances and the offline `nestor` tool exclude each other.
//
// Thread: any (blocking syscalls and a read of /proc/locks; control paths
// only, never a reactor). Errors: Status with errno; EBUSY when another
// open file holds a conflicting lock, the message naming `what` and, when
// /proc/locks tells, the holder's pid and command.
#pragma once

#include <string>

#include "base/status.h"

namespace nestor {

// Locks fd without waiting: exclusive, or shared when `shared`. The lock
// lasts until every descriptor of this open file is closed. `what` names
// the file in messages ("/var/lib/nestor/pool0.img").
[[nodiscard]] Status LockFile(int fd, bool shared, const std::string& what);

// "pid 1234 (nestord)" for the process holding a flock on fd's file; ""
// if unknown (no /proc, another pid namespace, or the holder already left).
std::string LockHolder(int fd);

}  // namespace nestor
