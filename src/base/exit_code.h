// Exit codes shared by the command-line tools (nestor, nestorctl), one per
// errno the volume manager and the control plane return (docs/volumes.md,
// docs/rpc.md). Thread: any (pure).
#pragma once

#include <cerrno>

namespace nestor {

// 0 ok, 1 check found problems (nestor pool check), 10 nestord unreachable
// (nestorctl): the others follow the errno.
inline int ExitCodeForErrno(int err) {
  switch (err) {
    case 0: return 0;
    case EINVAL: return 2;     // usage error or invalid argument
    case ENOENT: return 3;     // not found
    case EEXIST: return 4;     // already exists
    case ENOSPC: return 5;     // no space
    case EBUSY: return 6;      // busy (in use, exported, connected)
    case ENOTEMPTY: return 7;  // would discard data
    case EUCLEAN: return 8;    // corrupt pool
    default: return 9;         // any other error
  }
}

}  // namespace nestor
