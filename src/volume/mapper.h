// VolumeMapper: the one interface between a volume's data path
// (ThinChannel, thin_volume.cc) and the pool: where a virtual cluster's
// bytes are (lookup through the chain of snapshots), a new cluster for a
// first write and what to copy into it (allocate, copy on write), the end
// of that write (map and record it, or give the cluster back), unmaps, the
// write gate of snapshots, the commit and journal, and the grace-period
// epoch. ThinChannel touches nothing of Pool or Volume except through it.
//
// Thread: one mapper per channel, used by that channel's reactor (or one
// thread, for channels without a ring); each method takes the locks it
// needs (the volume's sharded lock, the pool's mutex) and never holds one
// on return. Nothing here touches guest memory. Errors: -errno in
// FirstWrite::err, Status from the commit methods.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "volume/pool.h"

namespace nestor::volume {

class VolumeMapper {
 public:
  VolumeMapper(Pool* pool, std::shared_ptr<Volume> vol);
  ~VolumeMapper();
  VolumeMapper(const VolumeMapper&) = delete;
  VolumeMapper& operator=(const VolumeMapper&) = delete;

  // ---- geometry ----
  uint64_t cluster_size() const { return cs_; }
  // Byte offset on the pool device of byte `within` of physical cluster p.
  uint64_t Phys(uint64_t p, uint64_t within) const { return data_offset_ + p * cs_ + within; }
  uint64_t size_bytes() const { return vol_->size.load(std::memory_order_relaxed); }
  bool read_only() const { return vol_->snapshot; }
  const std::string& name() const { return vol_->name; }
  const uint8_t* zeros() const { return pool_->zeros(); }
  size_t zeros_bytes() const { return pool_->zeros_bytes(); }

  // ---- lookup ----
  // data: the cluster's bytes are at physical cluster p; else zeros. run:
  // clusters from vcl for which the same answer holds (p advancing),
  // UINT64_MAX for "to the end".
  struct Where {
    bool data = false;
    uint64_t p = 0;
    uint64_t run = 0;
  };
  // The volume's own map (where a write lands in place).
  Where Own(uint64_t vcl);
  // What a read sees: the own map, then the snapshots above it.
  Where Chain(uint64_t vcl);
  // Both at once (write-zeroes and discard decide by what lies below).
  struct Layers {
    Where own, below;
  };
  Layers OwnAndBelow(uint64_t vcl);

  // ---- first writes (allocate, copy on write) ----
  struct FirstWrite {
    enum Kind {
      kMapped,   // mapped meanwhile: write in place (look it up again)
      kParked,   // another first write is filling it: `waiter` resumes after
      kStarted,  // p is the new cluster; copy: fill it from src first
      kFailed,   // status (ENOSPC, EIO)
    } kind = kFailed;
    uint64_t p = 0;
    bool copy = false;
    uint64_t src = 0;
    Status status;
  };
  // whole: the write covers the cluster (nothing to copy). waiter null:
  // kParked only reports that another first write is filling it.
  FirstWrite BeginFirstWrite(uint64_t vcl, bool whole, ParkedOp* waiter);
  // The write of a started cluster ended: written, it is mapped and
  // recorded (a note); else the cluster goes back. Returns the requests
  // parked on it, to resume on their reactors.
  std::vector<ParkedOp*> EndFirstWrite(uint64_t vcl, uint64_t p, bool written);
  // Unmaps whole clusters [vcl, vcl+n) of the own map (the caller checked
  // that nothing below shows data there) and records what that freed.
  void Unmap(uint64_t vcl, uint64_t n);

  // ---- the write gate (a snapshot being taken, pool.h) ----
  // Counts a modifying request as in flight unless the gate is closed
  // (false: not counted). LeaveWrite undoes a counted one.
  bool EnterWrite();
  void LeaveWrite();
  bool gate_closed() const { return vol_->gate_closed.load(std::memory_order_seq_cst) != 0; }
  // Queues w to be posted when the gate opens; false if it opened meanwhile.
  bool ParkAtGate(const FlushWaiter& w);

  // ---- commit and journal ----
  bool committer_running() const { return pool_->committer_running(); }
  void RequestFlush(const FlushWaiter& w) { pool_->RequestFlush(w); }
  int FlushInline() { return pool_->FlushInline(); }
  bool FreesPending() const { return pool_->FreesPending(); }
  bool journaling() const { return pool_->journaling(); }
  uint64_t recorded_notes() const { return pool_->recorded_notes(); }
  uint64_t safe_notes() const { return pool_->safe_notes(); }
  Status WriteJournal() { return pool_->WriteJournal(); }
  void CountParkedWrite() { pool_->CountParkedWrite(); }

  // ---- epoch (grace period before freed clusters are reused) ----
  // A request counts itself in the current bucket while it may use a
  // mapping it looked up; returns the bucket to leave.
  unsigned EnterEpoch() {
    auto b = static_cast<unsigned>(pool_->epoch_bucket());
    epoch_->active[b].fetch_add(1, std::memory_order_seq_cst);
    return b;
  }
  void LeaveEpoch(unsigned bucket) { epoch_->active[bucket].fetch_sub(1, std::memory_order_release); }

 private:
  // Where a first write of vcl should go (exclusive lock held).
  uint64_t AllocationHint(uint64_t vcl) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(vol_->lock);

  Pool* pool_;
  std::shared_ptr<Volume> vol_;
  EpochCounters* epoch_;
  unsigned slot_;  // this channel's shard of the volume's lock and counters
  uint64_t cs_;
  uint64_t data_offset_;
};

}  // namespace nestor::volume
