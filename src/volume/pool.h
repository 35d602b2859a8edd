// Pool: thin-provisioned volumes on one physical store (NeSC's virtual
// devices in software). The pool owns the store; each volume is a virtual
// device whose clusters it maps (volume.h, extent_map.h); metadata is a
// checksummed log plus ping-pong checkpoints in the store itself
// (format.h, docs/on-disk-format.md).
//
// This is the volume manager's API: the offline tool (`nestor`), nestord
// and the online control plane all call it.
//
// Thread: control methods (Create/Delete/Resize/List/Info/Check/Commit)
// from any thread, serialized by commit_mu_. Data-path methods (private,
// for ThinChannel) from reactors. Durability: a control method returns
// after its change is committed; data-path mappings are committed in
// batches, at FLUSH and on a timer (StartCommitter), never one per write.
// Errors: Status/Result with errno codes: EINVAL a name or size outside
// the limits (limits.h; the message names the value and the limit), ENOENT
// unknown volume, EEXIST name taken, ENOSPC pool full, EBUSY volume open,
// ENOTEMPTY shrinking below written data, EUCLEAN corruption (also:
// opening a volume whose stored size is outside the limits).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "io/backend.h"
#include "volume/allocator.h"
#include "volume/format.h"
#include "volume/journal.h"
#include "volume/limits.h"
#include "volume/pool_device.h"
#include "volume/volume.h"

namespace nestor::io {
class IoUring;
}

namespace nestor::volume {

struct PoolOptions {
  bool read_only = false;
  uint32_t commit_interval_ms = 100;  // StartCommitter's timer
  bool check_mode = false;            // Open collects problems instead of failing
  bool salvage = false;               // check_mode: replay on past a damaged log entry (Repair)
  // Process-crash journal (see journal.h): where its file lives, on a file
  // system that lasts exactly one boot (tmpfs, like /run). Empty: none
  // (completed writes survive a process crash only once committed).
  std::string journal_dir;
  // This boot's identity (tests); empty: /proc/sys/kernel/random/boot_id.
  std::string boot_id;
};

struct VolumeInfo {
  uint32_t id = 0;
  std::string name;
  uint64_t size = 0;             // bytes
  uint64_t allocated_bytes = 0;  // mapped or being written
  uint64_t reserved_bytes = 0;   // guaranteed (preallocated) space
  uint64_t extents = 0;
  bool open = false;
  bool exported = false;
  ExportSettings export_settings;
};

struct PoolInfo {
  Superblock sb;
  std::string device;
  uint64_t volumes = 0;
  uint64_t used_clusters = 0;
  uint64_t free_clusters = 0;
  uint64_t reserved_unused_clusters = 0;  // promised to volumes, not yet written
  uint64_t extents = 0;
  uint64_t commit_seq = 0;
  uint64_t log_used_bytes = 0;
  uint64_t checkpoints = 0;  // written since open
  uint64_t log_entries = 0;  // written since open
  uint64_t commits = 0;      // since open
  uint64_t allocations = 0;  // clusters allocated by first writes, since open
  uint64_t parked_writes = 0;  // writes that waited for a cluster's first write
  uint64_t enospc = 0;       // writes failed for lack of space
};
std::string PoolStatsString(const PoolInfo& i);

struct CheckReport {
  std::vector<std::string> problems;
  std::vector<std::string> notices;  // normal after a crash, not damage
  uint64_t volumes = 0;
  uint64_t extents = 0;
  uint64_t used_clusters = 0;
  uint64_t free_clusters = 0;
  bool clean() const { return problems.empty(); }
};

// One FLUSH waiting for a commit: completed on its reactor's ring.
struct FlushWaiter {
  io::IoRequest* token = nullptr;
  io::IoUring* ring = nullptr;
};

// Per-channel in-flight counters for the grace period before freed
// clusters are reused (a write that looked up a mapping before an unmap
// must land before the cluster can belong to someone else).
struct alignas(64) EpochCounters {
  std::atomic<uint64_t> active[2] = {0, 0};
};

// The record that stores an export's settings.
Record ExportRecord(uint32_t id, const ExportSettings& s);

class Pool {
 public:
  // Writes a fresh superblock and an empty checkpoint. Refuses a device
  // already holding a nestor pool unless force (file-system and partition
  // signatures are the caller's to check: tools/nestor uses libblkid).
  static Status Format(PoolDevice* dev, uint32_t cluster_size, bool force);
  static Result<std::unique_ptr<Pool>> Open(std::unique_ptr<PoolDevice> dev, PoolOptions opts = {});
  // The superblock, or, if it is damaged, its copy in checkpoint slot 0
  // (then *damage says so, and it is logged). Open reads it this way.
  static Result<Superblock> ReadSuperblock(PoolDevice* dev, std::string* damage);
  // Stops the committer and commits what is pending.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  Result<VolumeInfo> CreateVolume(const std::string& name, uint64_t size, bool preallocate);
  Status DeleteVolume(const std::string& name);
  Status ResizeVolume(const std::string& name, uint64_t size, bool force);
  // Records that the volume is exported with `s` (create or update) / not
  // exported; committed before returning. nestord re-exports at start.
  Status SetExport(const std::string& name, const ExportSettings& s);
  Status ClearExport(const std::string& name);
  std::vector<VolumeInfo> ListVolumes() const;
  Result<VolumeInfo> GetVolume(const std::string& name) const;
  PoolInfo Info() const;
  // Cross-checks the loaded state: every extent inside the pool and its
  // volume, no cluster owned twice, free space consistent; plus what Open
  // found (in check_mode).
  CheckReport Check() const;
  // Rebuilds damaged metadata from everything consistent in it: loads as
  // check_mode does, also past a damaged log entry (and applies the
  // journal), then writes that state as the newest checkpoint and, if it
  // was damaged, the superblock from its copy. What could not be kept is in
  // the report's problems. The caller saves the metadata area first (the
  // `nestor pool repair` command does). The device is left closed.
  static Result<CheckReport> Repair(std::unique_ptr<PoolDevice> dev, PoolOptions opts);
  // Makes every completed write and its mapping durable.
  Status Commit();
  // Background thread: commits for FLUSHes (group commit) and every
  // commit_interval_ms while mappings are pending.
  void StartCommitter();

  // The data path of a volume (see thin_volume.h). The volume cannot be
  // deleted while the backend lives.
  Result<std::shared_ptr<io::BlockBackend>> OpenVolume(const std::string& name);

  const Superblock& superblock() const { return sb_; }
  PoolDevice* device() { return dev_.get(); }

 private:
  friend class ThinChannel;
  friend class ThinBackend;
  Pool(std::unique_ptr<PoolDevice> dev, const Superblock& sb, PoolOptions opts);

  // ---- loading (pool_load.cc) ----
  Status Load();
  // Applies what the journal holds after the loaded state and commits it.
  Status RecoverJournal();
  Status LoadCheckpoint(int slot, CheckpointHeader* h, std::vector<uint8_t>* block);
  // Repair: the highest seq of any intact entry in the log ring.
  Result<uint64_t> HighestLogSeq();
  std::string sb_problem_;  // the superblock was damaged (its copy was used)
  bool log_damaged_ = false;  // check_mode: CheckLogEnd reported damage
  // The clean-shutdown seal (format.h): written at a clean close, cleared
  // before the first commit of a read-write open.
  Status WriteSeal(bool sealed);
  Status ReplayLog(const CheckpointHeader& h);
  // The log ended at `pos`, where entry `want` did not validate. A crash
  // leaves a torn tail (fine); intact entries of later commits behind it
  // mean a committed entry was damaged: EUCLEAN (check_mode: a problem).
  struct LaterEntries {
    uint64_t damaged_seq = 0;
    uint64_t count = 0, first_seq = 0, last_seq = 0;
    uint64_t first_pos = 0;  // log offset of the entry first_seq
    bool later_commit = false;
  };
  // Salvage: *resume is set to where replay goes on (0 seq: it ends).
  struct Resume {
    uint64_t pos = 0, seq = 0;
  };
  Status CheckLogEnd(uint64_t pos, uint64_t want, Resume* resume);
  Status CheckSeal();  // after replay: a sealed pool's log must reach the seal
  Result<LaterEntries> FindLaterEntries(uint64_t pos, uint64_t want);
  Status FollowChain(uint64_t pos, uint64_t seq, LaterEntries* out);
  Status Apply(const Record& r);
  void Problem(const std::string& what);

  // ---- commit (pool_commit.cc) ----
  Status CommitLocked();
  Status WriteCheckpoint(const std::string& payload);
  Status AppendLog(const std::vector<std::string>& chunks, const std::vector<uint32_t>& counts);
  void WaitForGracePeriod();
  void CommitterLoop();
  void AppendPendingLocked(const Record& r);
  // The whole state as records, ending with its kNoteMark (mu_ held).
  void SerializeState(std::string* out);

  // ---- data path, called by ThinChannel ----
  // A free cluster for `vol` (ENOSPC if none it may use). Pool mutex.
  Status AllocateCluster(Volume* vol, uint64_t hint, uint64_t* p);
  // A cluster allocated but never mapped goes straight back.
  void ReleaseCluster(Volume* vol, uint64_t p);
  // Under vol->lock (exclusive): record a mapping whose data is written,
  // as a note (journal.h; see recorded_notes()).
  void NoteMapped(Volume* vol, uint64_t v, uint64_t p);
  // Under vol->lock (exclusive): record an unmap of the runs the map freed
  // (notes too).
  void NoteUnmapped(Volume* vol, const std::vector<Extent>& freed);
  // Notes that survive a process crash: journaled or committed.
  uint64_t safe_notes() const {
    return std::max(journaled_.load(std::memory_order_acquire), hardened_.load(std::memory_order_acquire));
  }
  bool journaling() const { return journal_ != nullptr; }
  // Notes recorded so far. A request that wrote through a mapping made by
  // another request may be acknowledged only once that mapping is safe:
  // it waits for every note recorded before it finished.
  uint64_t recorded_notes() const { return recorded_notes_.load(std::memory_order_acquire); }
  // Any thread (reactors, at the end of an iteration): hands the notes
  // recorded so far to the journal, one write for all of them. If that
  // fails, commits instead (blocking; logged). Then safe_notes() covers
  // every note recorded before the call, unless the commit failed too.
  Status WriteJournal();
  void NoteLocked(const Record& r);  // mu_ held
  // FLUSH: commit, then complete w (inline when no committer runs).
  void RequestFlush(const FlushWaiter& w);
  int FlushInline();
  bool FreesPending() const {
    std::lock_guard<std::mutex> g(mu_);
    return !pending_frees_.empty();
  }
  EpochCounters* RegisterChannel();
  void UnregisterChannel(EpochCounters* c);
  uint64_t epoch_bucket() const { return epoch_.load(std::memory_order_seq_cst) & 1; }
  const uint8_t* zeros() const { return zeros_; }
  size_t zeros_bytes() const { return zeros_bytes_; }
  bool committer_running() const { return committer_.joinable(); }

  // Shrink: unmaps past `size` and zeroes the rest of the last cluster.
  Status DiscardBeyondLocked(Volume& v, uint64_t size);
  // Records the unmap of the runs `freed` (in u32-count pieces) and queues
  // their clusters for reuse after the commit (mu_ held).
  void FreeUnmappedLocked(Volume& v, const std::vector<Extent>& freed);
  // Whether `clusters` more can be promised to a volume (mu_ held).
  bool RoomToReserveLocked(uint64_t clusters) const;
  // EUCLEAN naming the volume if its size is outside the limits
  // (limits.h): only a pool written before the limits can hold one; it
  // loads, and can be listed, resized and deleted, but not opened.
  static Status UsableSize(const Volume& v);
  // Volume bookkeeping (mu_ held).
  std::shared_ptr<Volume> FindLocked(const std::string& name) const;
  uint64_t UnusedReservation(const Volume& v) const {
    return v.reserved > v.allocated ? v.reserved - v.allocated : 0;
  }
  VolumeInfo InfoOf(const Volume& v) const;
  void AdjustAllocated(Volume& v, int64_t delta);
  uint64_t ClustersFor(uint64_t bytes) const { return ClustersForBytes(bytes, sb_.cluster_size); }

  std::unique_ptr<PoolDevice> dev_;
  Superblock sb_;
  PoolOptions opts_;
  uint64_t pool_id_ = 0;  // first 8 bytes of the uuid, stamped in every header
  uint8_t* zeros_ = nullptr;
  size_t zeros_bytes_ = 0;

  mutable std::mutex mu_;  // the fields below up to commit_mu_
  std::map<uint32_t, std::shared_ptr<Volume>> volumes_;
  Allocator alloc_;
  uint64_t reserved_unused_ = 0;
  std::vector<std::string> pending_;   // record chunks, each one log entry
  std::vector<uint32_t> pending_counts_;
  struct LastMap {
    uint32_t volume = 0;
    uint64_t v_end = 0, p_end = 0;
    size_t count_at = SIZE_MAX;  // byte offset of the count in the last chunk
  } last_map_;
  std::vector<Extent> pending_frees_;  // freed, reusable after commit + grace
  std::vector<FlushWaiter> flush_waiters_;
  std::vector<EpochCounters*> channels_;
  bool stop_ = false;
  std::condition_variable cv_;
  std::vector<std::string> problems_;  // found while loading (all of it in check_mode)
  std::vector<std::string> notices_;   // normal events worth telling (a fallback after a crash)
  std::vector<uint8_t> active_block_;  // the active slot's header block as on disk

  // Process-crash journal (journal.h); null: none. Lock order: commit_mu_,
  // journal_mu_, mu_.
  std::unique_ptr<Journal> journal_;
  std::mutex journal_mu_;        // journal_ writes, one at a time
  uint64_t journal_gap_ = 0;     // journal_mu_: notes through this missed the journal
  uint64_t notes_ = 0;           // mu_: data-path changes recorded so far
  std::string journal_buf_;      // mu_: their records not yet in the journal
  uint64_t journal_buf_first_ = 1;
  uint32_t journal_buf_count_ = 0;
  std::atomic<uint64_t> journaled_{0};  // notes in the journal
  std::atomic<uint64_t> recorded_notes_{0};  // notes_, readable without mu_
  std::atomic<uint64_t> hardened_{0};   // notes included in a commit
  std::atomic<uint64_t> committed_seq_{0};  // seq_, readable without commit_mu_
  uint64_t load_hardened_ = 0;          // the last kNoteMark seen while loading

  std::mutex commit_mu_;  // one commit (or control change) at a time
  uint64_t seq_ = 0;      // last committed sequence
  int active_slot_ = 0;
  uint64_t log_tail_ = 0;  // where the active checkpoint's replay starts
  uint64_t log_head_ = 0;  // where the next entry goes
  uint64_t log_used_ = 0;  // bytes from tail to head (with wrap waste)
  std::atomic<uint64_t> checkpoints_{0}, log_entries_{0}, commits_{0};
  std::atomic<uint64_t> allocations_{0}, parked_{0}, enospc_{0};
  std::atomic<bool> failed_{false};  // a metadata write failed: no more commits (nor allocations)
  std::atomic<uint64_t> epoch_{0};
  std::thread committer_;
};

}  // namespace nestor::volume
