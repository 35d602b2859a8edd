// Journal: makes every data-path change of a pool (a first write's new
// mapping, an unmap by discard or write-zeroes) survive a crash of the
// *process* before it is acknowledged, without a sync per write.
//
// Why it is safe: a completed write to a file or block device lives in the
// kernel's page cache (or the device), which outlives the process. So a
// mapping recorded in a file that also lives as long as the page cache,
// written after its data write completed, can be trusted by the next
// process *of the same boot*. The journal is such a file: it sits on a
// tmpfs (/run/nestor/journal by default) and every file is stamped with the boot
// id (/proc/sys/kernel/random/boot_id); after a reboot (power loss, crash
// of the kernel) it is ignored, so power-loss semantics stay those of the
// pool's own commits (FLUSH is the durability point; docs/volumes.md).
//
// Each data-path change is a *note*, numbered 1, 2, ... in the order the
// pool recorded it (Pool::NoteMapped/NoteUnmapped). The pool's commits
// store how many notes they include (a kNoteMark record); on open, notes
// after that mark are replayed from the journal, in order, up to the first
// gap or damaged entry (a write the crash cut short was never
// acknowledged, and nothing after it was).
//
// Files: DIR/journal-<pool uuid>.0 and .1, used in turns. Each starts with
// a 128-byte header (magic, pool id, generation, boot id, CRC), then
// entries of a 32-byte header (CRC, first note, count, payload bytes, the
// pool's last commit seq) and
// their records (format.h). When the active file passes kFileBytes the
// other one is truncated and becomes active, once the pool's commits cover
// every note it held.
//
// Thread: one at a time (the pool's journal mutex); the notes and entries
// are the pool's to order. Errors: Status; a failed append leaves the
// journal usable only after a commit covers what it missed (Pool handles).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/fd.h"
#include "base/status.h"
#include "volume/format.h"

namespace nestor::volume {

class Journal {
 public:
  static constexpr uint64_t kFileBytes = 16ull << 20;  // per file, before switching

  // Opens (creating, unless read_only) the files of the pool with `uuid`
  // in dir. boot_id empty: this boot's. read_only and no files: nullptr.
  static Result<std::unique_ptr<Journal>> Open(const std::string& dir, const uint8_t uuid[16], uint64_t pool_id,
                                               std::string boot_id, bool read_only);
  ~Journal() = default;

  // Hands fn the records of notes after `hardened`, in order, from files of
  // this boot; stops at the first gap or damaged entry. *last: the last
  // note handed over (hardened if none). EUCLEAN if an entry to replay was
  // written after a commit newer than `loaded_seq` (the pool's last): the
  // pool image is older than the journal.
  Status Replay(uint64_t hardened, uint64_t loaded_seq, const std::function<Status(const Record&)>& fn, uint64_t* last);
  // Starts over: both files emptied, the next entry will hold note `next`.
  Status Reset(uint64_t next);
  // Appends records (`count` notes from `first`). `hardened`: the notes
  // the pool's commits include (a file may be reused only past them);
  // base_seq: the pool's last commit (see Replay). ENOSPC: both files
  // hold notes not yet committed.
  Status Append(uint64_t first, uint32_t count, const std::string& records, uint64_t hardened, uint64_t base_seq);
  // After a clean close (everything committed): the files go, so that
  // pools that come and go leave nothing behind in the directory.
  void Remove();
  const std::string& path(int i) const { return path_[i]; }

 private:
  Journal() = default;
  Status StartFile(int i, uint64_t first_note);

  std::string path_[2];
  UniqueFd fd_[2];
  uint64_t pool_id_ = 0;
  std::string boot_id_;
  uint64_t generation_ = 0;  // of the active file
  int active_ = 0;
  uint64_t offset_ = 0;             // end of the active file's entries
  uint64_t last_note_[2] = {0, 0};  // highest note in each file
};

// This boot's id (/proc/sys/kernel/random/boot_id), or "" if unreadable.
std::string CurrentBootId();

}  // namespace nestor::volume
