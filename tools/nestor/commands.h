// The commands of `nestor`, the offline pool administration tool: each one
// opens the pool at a path, does one thing through volume::Pool (pool.h),
// prints its result on stdout (text, or JSON with --json) and returns the
// process exit code. A pool opened read-write commits when it is closed;
// info, list and check open it read-only and never write: while another
// process (nestord) holds the pool, they read its last commit without the
// lock (volume/committed_view.h), and the commands that write are refused
// (EBUSY) naming the holder and the nestorctl command to use instead.
//
// Thread: the main thread; one command per process. Errors: printed on
// stderr as "nestor: <message>"; the exit code (ExitCode) says which kind,
// mapped from the Status errno.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

#include "base/size.h"

namespace nestor::tool {

// The exit codes of every command (also in `nestor --help`).
enum ExitCode : int {
  kExitOk = 0,
  kExitProblems = 1,      // pool check found problems
  kExitUsage = 2,         // bad command line or invalid argument (EINVAL)
  kExitNotFound = 3,      // no such volume or pool file (ENOENT)
  kExitExists = 4,        // name taken, pool or other signature present (EEXIST)
  kExitNoSpace = 5,       // pool full (ENOSPC)
  kExitBusy = 6,          // volume or device in use (EBUSY)
  kExitWouldDiscard = 7,  // shrinking below written data (ENOTEMPTY)
  kExitCorrupt = 8,       // the pool's metadata is corrupt (EUCLEAN)
  kExitIoError = 9,       // any other error (I/O, permissions, not a pool, ...)
};

// One line per exit code, for --help.
extern const char kExitCodeHelp[];

// Where nestord keeps the pools' process-crash journals (volume/journal.h):
// opening a pool applies what a crashed nestord left there. "" : none.
extern std::string g_journal_dir;

int ExitCodeFor(const Status& st);
// Prints "nestor: <message>" on stderr and returns ExitCodeFor(st).
int Fail(const Status& st);

// size 0: the size of the existing file or block device.
int PoolCreate(const std::string& path, uint64_t size, uint64_t cluster_size, bool force);
int PoolInfo(const std::string& path, bool json);
int PoolCheck(const std::string& path, bool json);
// Saves the metadata area to `backup` (default next to PATH), rebuilds the
// metadata (volume::Pool::Repair), prints what was lost and checks again.
int PoolRepair(const std::string& path, std::string backup);

int VolumeCreate(const std::string& pool, const std::string& name, uint64_t size, bool preallocate);
int VolumeDelete(const std::string& pool, const std::string& name);
int VolumeResize(const std::string& pool, const std::string& name, uint64_t size, bool force);
int VolumeList(const std::string& pool, bool json);

// Snapshots and clones (docs/volumes.md, "Snapshots and clones").
// Rewrites a version 1 pool as version 2 (Pool::Upgrade); a current pool
// is left alone (exit 0, says so).
int PoolUpgrade(const std::string& path);
int SnapshotCreate(const std::string& pool, const std::string& volume, const std::string& name);
// Refuses an image that is not a snapshot (volume delete is for those).
int SnapshotDelete(const std::string& pool, const std::string& name);
int SnapshotList(const std::string& pool, bool json);
int VolumeClone(const std::string& pool, const std::string& snapshot, const std::string& name);
int VolumeInflate(const std::string& pool, const std::string& name);
int VolumeDecouple(const std::string& pool, const std::string& name);

using ::nestor::HumanSize;  // base/size.h

}  // namespace nestor::tool
