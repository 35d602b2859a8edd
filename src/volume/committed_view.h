// Reading a pool that another process serves (nestord holds its lock):
// the state of its last commit, loaded without the lock and never written
// (docs/on-disk-format.md, "Reading a served pool"). The offline tool's
// read-only commands use it (`nestor pool info|check`, `volume list`,
// `snapshot list` while nestord runs).
//
// Why a load can be trusted although the holder writes meanwhile: it
// appends log entries behind the active checkpoint's log head, and a log
// entry there is overwritten only after the holder has written another
// checkpoint, which rewrites a checkpoint header. So if both checkpoint
// headers read the same before and after a load, that load read one
// checkpoint and an unbroken run of the log entries after it: a state the
// pool was in at a commit (or, for a commit of several entries, one a
// crash could have left). Its end may be an entry the holder was still
// writing, read torn; that is simply where the log ends, unless the holder
// had already appended a later commit behind it, which looks like damage.
// So a load that reports anything (an error, a check problem or notice) is
// believed only when the next undisturbed load reports exactly the same:
// an entry the holder finished writing never fails again, so a race does
// not repeat itself, while real damage does.
//
// What it shows is the last commit: mappings of writes not yet committed
// (nestord commits every --commit-ms, default 100 ms, and at each FLUSH)
// are missing, and the process-crash journal (the holder's own) is not
// applied.
//
// Thread: any thread that may block (synchronous reads). Errors:
// Status/Result with errno, as Pool::Open's; EAGAIN when no load was
// undisturbed (or none repeated) within max_loads.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "volume/pool.h"

namespace nestor::volume {

struct CommittedView {
  std::unique_ptr<Pool> pool;  // opened read-only, on a device without the lock
  CheckReport report;          // check: pool->Check() of this state (else empty)
  int loads = 0;               // how many loads it took
};

// Loads the last commit of the pool at `path` without taking its lock.
// check: loads as `pool check` does (PoolOptions::check_mode) and runs
// Pool::Check; its problems and notices are part of what must repeat.
// Sleeps a little between loads (at most 50 ms).
Result<CommittedView> LoadCommittedView(const std::string& path, bool check, int max_loads = 20);

}  // namespace nestor::volume
