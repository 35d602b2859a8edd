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
// from any thread, serialized by commit_mu_. Data-path methods (the
// section for ThinChannel, each annotated with its locking) from reactors. Durability: a control method returns
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
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "io/backend.h"
#include "volume/allocator.h"
#include "volume/format.h"
#include "volume/image_store.h"
#include "volume/journal.h"
#include "volume/limits.h"
#include "volume/pool_device.h"
#include "volume/volume.h"

namespace nestor::io {
class IoUring;
}

namespace nestor::volume {

class VolumeMapper;

struct PoolOptions {
  bool read_only = false;
  uint32_t commit_interval_ms = 100;  // StartCommitter's timer
  bool check_mode = false;            // Open collects problems instead of failing
  bool salvage = false;               // check_mode: replay on past a damaged log entry (Repair)
  // read_only: another process writes the pool meanwhile (committed_view.h):
  // a log entry that fails although later commits follow it is read once
  // more before it counts as damaged (it may have been read while written).
  bool live = false;
  // Process-crash journal (see journal.h): where its file lives, on a file
  // system that lasts exactly one boot (tmpfs, like /run). Empty: none
  // (completed writes survive a process crash only once committed).
  std::string journal_dir;
  // This boot's identity (tests); empty: /proc/sys/kernel/random/boot_id.
  std::string boot_id;
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
  uint64_t checkpoints = 0;    // written since open
  uint64_t log_entries = 0;    // written since open
  uint64_t commits = 0;        // since open
  uint64_t allocations = 0;    // clusters allocated by first writes, since open
  uint64_t parked_writes = 0;  // writes that waited for a cluster's first write
  uint64_t enospc = 0;         // writes failed for lack of space
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

// Per-channel in-flight counters for the grace period before freed
// clusters are reused (a write that looked up a mapping before an unmap
// must land before the cluster can belong to someone else).
struct alignas(64) EpochCounters {
  std::atomic<uint64_t> active[2] = {0, 0};
};

// The record that stores an export's settings.
Record ExportRecord(uint32_t id, const ExportSettings& s);

class Pool final : public ImageStore {
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

  Result<VolumeInfo> CreateVolume(const std::string& name, uint64_t size, bool preallocate) override;
  // Deletes a volume, clone or snapshot and frees the clusters it holds.
  // Refused (EBUSY) while it is open, and for a snapshot while it has
  // clones (the message names them: delete, inflate or decouple them).
  Status DeleteVolume(const std::string& name) override;

  // ---- snapshots and clones (docs/volumes.md, "Snapshots and clones") ----
  // Snapshot `name` of volume or clone `source`, open or not: a read-only
  // image of its content at one instant, holding every write completed
  // before the call and none submitted after it returns. The snapshot takes
  // over the source's clusters (no data is copied); the source becomes a
  // clone of the snapshot. On an open source, new writes wait (reads go
  // on) while those in flight drain (EBUSY after drain_timeout_ms) and the
  // snapshot commits: milliseconds. A version 1 pool refuses (ENOTSUP:
  // `nestor pool upgrade`); a preallocated source needs room to stay
  // preallocated (ENOSPC).
  Result<VolumeInfo> CreateSnapshot(const std::string& source, const std::string& name, uint32_t drain_timeout_ms);
  Result<VolumeInfo> CreateSnapshot(const std::string& source, const std::string& name) override {
    return CreateSnapshot(source, name, 10000);
  }
  // A writable clone `name` of snapshot `snap`: same size, empty map, its
  // holes read through to the snapshot. Instant (one record).
  Result<VolumeInfo> CloneVolume(const std::string& snap, const std::string& name) override;
  // Inflate: copies into clone `name` every cluster it reads from its
  // ancestors, then drops its parent (it becomes a plain volume).
  // Decouple: copies only the clusters its parent holds itself, then takes
  // the parent's parent as its own (one level less). Both work on an open
  // clone under I/O (each copy is a copy-on-write the data path waits
  // for), need the space they copy (ENOSPC, nothing lost: what was copied
  // stays), and commit before returning.
  Status InflateVolume(const std::string& name) override;
  Status DecoupleVolume(const std::string& name) override;
  // Rewrites a version 1 pool as version 2 (the superblock and a fresh
  // checkpoint); a version 2 pool is left alone. Older nestor refuses a
  // version 2 pool (ENOTSUP), so this is explicit (`nestor pool upgrade`).
  Status Upgrade() ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  Status ResizeVolume(const std::string& name, uint64_t size, bool force) override;
  // Records that the volume is exported with `s` (create or update) / not
  // exported; committed before returning. nestord re-exports at start.
  Status SetExport(const std::string& name, const ExportSettings& s) override;
  Status ClearExport(const std::string& name) override;
  // with_space: fill the space fields too (walks the maps of every image
  // and its ancestors: O(extents) per image).
  std::vector<VolumeInfo> ListVolumes(bool with_space = false) const override ABSL_LOCKS_EXCLUDED(mu_);
  Result<VolumeInfo> GetVolume(const std::string& name) const override ABSL_LOCKS_EXCLUDED(mu_);
  PoolInfo Info() const ABSL_LOCKS_EXCLUDED(mu_);
  // Cross-checks the loaded state: every extent inside the pool and its
  // volume, no cluster owned twice, free space consistent; plus what Open
  // found (in check_mode). It reads the volumes' maps without their locks:
  // on a quiet pool only (the tool, tests), no data path running.
  CheckReport Check() const ABSL_LOCKS_EXCLUDED(mu_);
  // Rebuilds damaged metadata from everything consistent in it: loads as
  // check_mode does, also past a damaged log entry (and applies the
  // journal), then writes that state as the newest checkpoint and, if it
  // was damaged, the superblock from its copy. What could not be kept is in
  // the report's problems. The caller saves the metadata area first (the
  // `nestor pool repair` command does). The device is left closed.
  static Result<CheckReport> Repair(std::unique_ptr<PoolDevice> dev, PoolOptions opts);
  // Makes every completed write and its mapping durable.
  Status Commit() ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // Background thread: commits for FLUSHes (group commit) and every
  // commit_interval_ms while mappings are pending.
  void StartCommitter();

  // The data path of a volume (see thin_volume.h). The volume cannot be
  // deleted while the backend lives.
  Result<std::shared_ptr<io::BlockBackend>> OpenVolume(const std::string& name) override ABSL_LOCKS_EXCLUDED(mu_);

  const Superblock& superblock() const { return sb_; }
  PoolDevice* device() { return dev_.get(); }

  // ---- data path: for ThinBackend and ThinChannel (thin_volume.cc) ----
  // Reactors call these. Each names the locks it needs (vol->lock held on
  // entry) or takes (the mutexes of the pool, never held on entry).
  //
  // A free cluster for `vol` (ENOSPC if none it may use).
  Status AllocateCluster(Volume* vol, uint64_t hint, uint64_t* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vol->lock)
      ABSL_LOCKS_EXCLUDED(mu_);
  // A cluster allocated but never mapped goes straight back.
  void ReleaseCluster(Volume* vol, uint64_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vol->lock) ABSL_LOCKS_EXCLUDED(mu_);
  // Records a mapping whose data is written, as a note (journal.h; see
  // recorded_notes()).
  void NoteMapped(Volume* vol, uint64_t v, uint64_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vol->lock)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Records an unmap of the runs the map freed (notes too).
  void NoteUnmapped(Volume* vol, const std::vector<Extent>& freed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(vol->lock)
      ABSL_LOCKS_EXCLUDED(mu_);
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
  Status WriteJournal() ABSL_LOCKS_EXCLUDED(commit_mu_, journal_mu_, mu_);
  // FLUSH: commit, then complete w on its ring (needs the committer).
  void RequestFlush(const FlushWaiter& w) ABSL_LOCKS_EXCLUDED(mu_);
  // FLUSH without the committer: commits inline; 0 or -errno.
  int FlushInline() ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // Freed clusters wait for a commit: an allocation that failed may retry.
  bool FreesPending() const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock g(&mu_);
    return !pending_frees_.empty();
  }
  void CountParkedWrite() { parked_.fetch_add(1, std::memory_order_relaxed); }
  // A channel's in-flight counters, for the grace period.
  EpochCounters* RegisterChannel() ABSL_LOCKS_EXCLUDED(mu_);
  void UnregisterChannel(EpochCounters* c) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t epoch_bucket() const { return epoch_.load(std::memory_order_seq_cst) & 1; }
  const uint8_t* zeros() const { return zeros_; }
  size_t zeros_bytes() const { return zeros_bytes_; }
  bool committer_running() const { return committer_.joinable(); }

 private:
  Pool(std::unique_ptr<PoolDevice> dev, const Superblock& sb, PoolOptions opts);

  // ---- loading (pool_load.cc) ----
  // Open holds commit_mu_ and mu_ while it loads (nobody else can reach the
  // pool yet; the locks are for the analysis, uncontended).
  Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_, mu_);
  // Applies what the journal holds after the loaded state and commits it.
  Status RecoverJournal() ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  Status LoadCheckpoint(int slot, CheckpointHeader* h, std::vector<uint8_t>* block);
  // Repair: the highest seq of any intact entry in the log ring.
  Result<uint64_t> HighestLogSeq();
  std::string sb_problem_;        // the superblock was damaged (its copy was used)
  bool log_damaged_ = false;      // check_mode: CheckLogEnd reported damage
  uint64_t live_reread_seq_ = 0;  // opts_.live: the entry CheckLogEnd had read once more
  // The clean-shutdown seal (format.h): written at a clean close, cleared
  // before the first commit of a read-write open.
  Status WriteSeal(bool sealed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  Status ReplayLog(const CheckpointHeader& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_, mu_);
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
  Status CheckLogEnd(uint64_t pos, uint64_t want, Resume* resume) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After replay: a sealed pool's log must reach the seal.
  Status CheckSeal() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_, mu_);
  Result<LaterEntries> FindLaterEntries(uint64_t pos, uint64_t want);
  Status FollowChain(uint64_t pos, uint64_t seq, LaterEntries* out);
  Status Apply(const Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Problem(const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- commit (pool_commit.cc) ----
  Status CommitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  Status WriteCheckpoint(const std::string& payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  Status AppendLog(const std::vector<std::string>& chunks, const std::vector<uint32_t>& counts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  void WaitForGracePeriod() ABSL_LOCKS_EXCLUDED(mu_);
  void CommitterLoop() ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  void AppendPendingLocked(const Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The whole state as records, ending with its kNoteMark. Every volume's
  // map must not change meanwhile (its lock held, or the pool quiet).
  void SerializeState(std::string* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteLocked(const Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void LockVolumes(const std::vector<std::shared_ptr<Volume>>& vols);
  static void UnlockVolumes(const std::vector<std::shared_ptr<Volume>>& vols);

  // ---- snapshots and clones (pool_images.cc) ----
  // ENOTSUP unless the pool's format has images (version 2).
  Status NeedImagesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The snapshot `s` (new, unreachable) takes over src's map and parent;
  // src becomes its child. Loading and CreateSnapshot.
  void TakeSnapshotLocked(Volume& src, const std::shared_ptr<Volume>& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, src.lock);
  // Sets v's parent (null: none), keeping the child counts.
  void LinkLocked(Volume& v, std::shared_ptr<Volume> parent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, v.lock);
  // Loading: the records of the image tree.
  Status ApplyImageRecord(const Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The kImageLink records of every image with a parent or a flag, parents
  // before children. Every volume's lock held (SerializeState).
  void SerializeLinks(std::string* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The image tree's invariants, for Check.
  void CheckTree(CheckReport* rep) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Write gate of a volume (volume.h): closed, new modifying requests wait.
  // Closing is counted (several snapshots may close it); opening posts the
  // waiters back to their reactors (PostLater).
  void CloseGate(Volume& v) ABSL_LOCKS_EXCLUDED(mu_);
  void OpenGate(Volume& v) ABSL_LOCKS_EXCLUDED(mu_);
  // Copies into clone v every cluster that `levels` ancestors (1: the
  // parent only; 0: all) show and v does not hold.
  Status CopyUp(const std::shared_ptr<Volume>& v, int levels) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // One cluster through the data path's first-write protocol (mapper.h):
  // skipped if the clone holds it or a write is filling it.
  Status CopyCluster(VolumeMapper& m, uint64_t vcl, uint64_t src) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // Inflate (levels 0) and decouple (1): CopyUp, commit, then the new link.
  Status CopyUpAndRelink(const std::string& name, int levels) ABSL_LOCKS_EXCLUDED(admin_mu_, commit_mu_, mu_);
  // ENOSPC naming the limit when the checkpoint has no room for one more image.
  Status RoomForImageLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Completes parked requests on their rings from a thread without one (a
  // ring of the calling thread's, made on first use; not the committer's,
  // which may be waiting for those very requests).
  void PostLater(const std::vector<FlushWaiter>& w) ABSL_LOCKS_EXCLUDED(mu_);
  // The names of the images whose parent v is.
  std::vector<std::string> ChildrenOfLocked(const Volume& v) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Shrink: unmaps past `size` and zeroes the rest of the last cluster
  // (the volume is not open).
  Status DiscardBeyondLocked(Volume& v, uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the unmap of the runs `freed` (in u32-count pieces) and queues
  // their clusters for reuse after the commit.
  void FreeUnmappedLocked(Volume& v, const std::vector<Extent>& freed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `clusters` more can be promised to a volume.
  bool RoomToReserveLocked(uint64_t clusters) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // EUCLEAN naming the volume if its size is outside the limits
  // (limits.h): only a pool written before the limits can hold one; it
  // loads, and can be listed, resized and deleted, but not opened.
  static Status UsableSize(const Volume& v);
  // Volume bookkeeping.
  std::shared_ptr<Volume> FindLocked(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The image table: by id (volumes_) and by name (names_), kept together.
  void AddImageLocked(std::shared_ptr<Volume> v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseImageLocked(uint32_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t UnusedReservation(const Volume& v) const { return v.reserved > v.allocated ? v.reserved - v.allocated : 0; }
  VolumeInfo InfoOf(const Volume& v) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdjustAllocated(Volume& v, int64_t delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t ClustersFor(uint64_t bytes) const { return ClustersForBytes(bytes, sb_.cluster_size); }
  // ListVolumes(with_space) (pool_space.cc, space.h): fills the space
  // fields of `infos` (as InfoOf made them, under mu_) from the maps of
  // `images` (the same images, same order), after mu_ is released: it
  // takes each writable image's lock (shared, shard 0) while it copies that
  // map, and reads snapshots' maps without locks. admin_mu_, held from
  // before the images are collected, keeps delete and shrink (which unmap
  // without the image's lock) away from the maps meanwhile.
  void FillSpace(std::vector<VolumeInfo>* infos, const std::vector<std::shared_ptr<Volume>>& images) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_) ABSL_LOCKS_EXCLUDED(mu_);

  std::unique_ptr<PoolDevice> dev_;
  Superblock sb_;
  PoolOptions opts_;
  uint64_t pool_id_ = 0;  // first 8 bytes of the uuid, stamped in every header
  uint8_t* zeros_ = nullptr;
  size_t zeros_bytes_ = 0;

  // Lock order: admin_mu_, commit_mu_, a volume's lock (Volume::lock), mu_;
  // and commit_mu_, journal_mu_, mu_. The data path holds a volume's lock when
  // it takes mu_; only the checkpoint holds commit_mu_ when it takes
  // volume locks.
  mutable Mutex mu_ ABSL_ACQUIRED_AFTER(journal_mu_);
  // The fields of Volume that Pool keeps (allocated, reserved, exported,
  // export_settings, size changes) are mu_'s too; Volume cannot name it.
  std::map<uint32_t, std::shared_ptr<Volume>> volumes_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Volume>> names_ ABSL_GUARDED_BY(mu_);  // the same, by name
  Volume* last_applied_ ABSL_GUARDED_BY(mu_) = nullptr;  // Apply's last image (records come grouped)
  Allocator alloc_ ABSL_GUARDED_BY(mu_);
  uint64_t reserved_unused_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> pending_ ABSL_GUARDED_BY(mu_);  // record chunks, each one log entry
  std::vector<uint32_t> pending_counts_ ABSL_GUARDED_BY(mu_);
  struct LastMap {
    uint32_t volume = 0;
    uint64_t v_end = 0, p_end = 0;
    size_t count_at = SIZE_MAX;  // byte offset of the count in the last chunk
  } last_map_ ABSL_GUARDED_BY(mu_);
  std::vector<Extent> pending_frees_ ABSL_GUARDED_BY(mu_);  // freed, reusable after commit + grace
  std::vector<FlushWaiter> flush_waiters_ ABSL_GUARDED_BY(mu_);
  // Images that left the pool or a chain: kept alive until the grace period
  // after the next commit (a reader may still walk their maps).
  std::vector<std::shared_ptr<Volume>> retired_ ABSL_GUARDED_BY(mu_);
  std::vector<EpochCounters*> channels_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  CondVar cv_;                                              // with mu_: stop_ or flush_waiters_ changed
  std::vector<std::string> problems_ ABSL_GUARDED_BY(mu_);  // found while loading (all of it in check_mode)
  std::vector<std::string> notices_ ABSL_GUARDED_BY(mu_);   // normal events worth telling (a fallback after a crash)

  // Process-crash journal (journal.h); null: none. Set by Open.
  std::unique_ptr<Journal> journal_;
  Mutex journal_mu_ ABSL_ACQUIRED_AFTER(commit_mu_);       // journal_ writes, one at a time
  uint64_t journal_gap_ ABSL_GUARDED_BY(journal_mu_) = 0;  // notes through this missed the journal
  uint64_t notes_ ABSL_GUARDED_BY(mu_) = 0;                // data-path changes recorded so far
  std::string journal_buf_ ABSL_GUARDED_BY(mu_);           // their records not yet in the journal
  uint64_t journal_buf_first_ ABSL_GUARDED_BY(mu_) = 1;
  uint32_t journal_buf_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> journaled_{0};           // notes in the journal
  std::atomic<uint64_t> recorded_notes_{0};      // notes_, readable without mu_
  std::atomic<uint64_t> hardened_{0};            // notes included in a commit
  std::atomic<uint64_t> committed_seq_{0};       // seq_, readable without commit_mu_
  std::atomic<uint64_t> committed_log_used_{0};  // log_used_, readable without commit_mu_
  uint64_t load_hardened_ = 0;                   // the last kNoteMark seen while loading

  // One change of the image tree at a time (create/delete/resize, snapshot,
  // clone, inflate, decouple); before commit_mu_. Inflate holds it while it
  // copies. ListVolumes(with_space) holds it too (FillSpace): mutable.
  mutable Mutex admin_mu_ ABSL_ACQUIRED_BEFORE(commit_mu_);
  Mutex commit_mu_;                               // one commit (or control change) at a time
  uint64_t seq_ ABSL_GUARDED_BY(commit_mu_) = 0;  // last committed sequence
  int active_slot_ ABSL_GUARDED_BY(commit_mu_) = 0;
  std::vector<uint8_t> active_block_ ABSL_GUARDED_BY(commit_mu_);  // the active slot's header block as on disk
  uint64_t log_tail_ ABSL_GUARDED_BY(commit_mu_) = 0;              // where the active checkpoint's replay starts
  uint64_t log_head_ ABSL_GUARDED_BY(commit_mu_) = 0;              // where the next entry goes
  uint64_t log_used_ ABSL_GUARDED_BY(commit_mu_) = 0;              // bytes from tail to head (with wrap waste)
  bool force_checkpoint_ ABSL_GUARDED_BY(commit_mu_) = false;      // Upgrade: the next commit writes one
  std::atomic<uint64_t> checkpoints_{0}, log_entries_{0}, commits_{0};
  std::atomic<uint64_t> allocations_{0}, parked_{0}, enospc_{0};
  std::atomic<bool> failed_{false};  // a metadata write failed: no more commits (nor allocations)
  std::atomic<uint64_t> epoch_{0};
  std::thread committer_;
};

}  // namespace nestor::volume
