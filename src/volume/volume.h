// Volume: the in-memory state of one image of a pool (a thin volume, a
// snapshot or a clone): its extent map, the clusters being initialized by a
// first write, its parent, and the lock that lets reactors serving queues
// of the same volume look up mappings without contending.
//
// Snapshots and clones (docs/volumes.md): every physical cluster belongs
// to exactly one image's map. Where an image's map has a hole, it reads
// through to its parent (a snapshot), and so on up the chain; a hole in
// every level reads zeros. A snapshot's map and parent never change, so
// readers walk the chain above their own volume without any lock; a
// writable image's own map is guarded by `lock`. A first write to a
// cluster the image does not hold copies the cluster the chain shows (copy
// on write) into a new cluster of its own.
//
// Thread: the map is read by reactors (data path) and changed by reactors
// (allocation, unmap) and the control/commit threads. `lock` is a sharded
// reader-writer lock: a reader (one lookup) takes only the shard of its
// channel, which nobody else takes except a writer, so lookups on different
// reactors never share a cache line; a writer (allocation completing,
// unmap, checkpoint) takes every shard. Nobody touches guest memory while
// holding it (a fault would leave it locked). Errors: none here.
#pragma once

#include <absl/base/thread_annotations.h>
#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "volume/export_access.h"
#include "volume/extent_map.h"

namespace nestor::io {
struct IoRequest;
class IoUring;
}  // namespace nestor::io

namespace nestor::volume {

// A request waiting on another thread's event, completed on its reactor's
// ring (io::IoUring::PostTo) with a result: a FLUSH waiting for a commit,
// a write waiting for a snapshot's write gate to open.
struct FlushWaiter {
  io::IoRequest* token = nullptr;
  io::IoUring* ring = nullptr;
};

// One capability for the thread-safety analysis (base/mutex.h): LockShared
// holds it shared, Lock exclusive; the shards are std::mutex underneath, so
// TSan sees every acquire and release.
class ABSL_LOCKABLE ShardedRwLock {
 public:
  static constexpr int kShards = 8;
  void LockShared(unsigned slot) ABSL_SHARED_LOCK_FUNCTION() { shards_[slot % kShards].mu.lock(); }
  void UnlockShared(unsigned slot) ABSL_UNLOCK_FUNCTION() { shards_[slot % kShards].mu.unlock(); }
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    for (auto& s : shards_) s.mu.lock();
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    for (auto& s : shards_) s.mu.unlock();
  }
  // For the analysis only (no check at run time): the caller holds every
  // shard by a path it cannot follow (the checkpoint locks each volume in a
  // loop), or no other thread can reach the volume's map: it is being
  // loaded, or it is not open (no backend: Pool::mu_ and commit_mu_ held).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  struct alignas(64) Shard {
    std::mutex mu;
  };
  Shard shards_[kShards];
};

// A parked request: a write that found its cluster being initialized by
// another write; resumed (on its own reactor) when initialization ends.
struct ParkedOp;

struct InitEntry {
  uint64_t p = 0;  // physical cluster being initialized
  std::vector<ParkedOp*> waiters;
};

// How a volume is exported (stored in the pool, so exports survive
// restarts). Plain numbers: the volume layer knows nothing of virtio.
struct ExportSettings {
  uint16_t queues = 1;
  bool read_only = false;
  // Frontends attached at once (1..kMaxFrontends). More than one only
  // read-only, or with shared_writers: the operator's word that the guests
  // coordinate their writes (a cluster file system), as on a shared disk.
  uint16_t frontends = 1;
  bool shared_writers = false;
  uint64_t read_iops = 0, write_iops = 0, read_bps = 0, write_bps = 0;  // 0: unlimited
  ExportAccess access{};                                                // socket owner/group/mode, admitted peers
  bool operator==(const ExportSettings&) const = default;
};

struct Volume {
  uint32_t id = 0;
  std::string name;
  // Read-only, point-in-time image: its map and parent never change once
  // it exists (set before anyone can reach it).
  bool snapshot = false;
  uint32_t parent_id = 0;          // Pool::mu_ (and `lock`, when it changes): 0 = no parent
  uint32_t children = 0;           // Pool::mu_: images whose parent this is
  std::atomic<uint64_t> size{0};   // bytes (changed under Pool::mu_; only grows while open)
  uint64_t reserved = 0;           // clusters guaranteed to it (preallocation)
  uint64_t allocated = 0;          // clusters it holds, mapped or initializing (Pool::mu_)
  std::atomic<int> open_count{0};  // data-path backends alive
  bool exported = false;           // Pool::mu_
  ExportSettings export_settings;  // Pool::mu_

  ShardedRwLock lock;  // after Pool::commit_mu_, before Pool::mu_ (pool.h)
  ExtentMap map ABSL_GUARDED_BY(lock);
  // The image holes read through to (a snapshot), or null. Changes (a
  // snapshot of this volume, inflate, decouple) hold `lock` exclusive; a
  // reader reads it under its shard and may then use the parent, and its
  // parents, without locks until its request ends: an image stays alive
  // until the grace period after it left the chain (Pool retires it).
  std::shared_ptr<Volume> parent ABSL_GUARDED_BY(lock);
  absl::flat_hash_map<uint64_t, InitEntry> initializing ABSL_GUARDED_BY(lock);  // by vcluster
  uint64_t alloc_hint ABSL_GUARDED_BY(lock) = 0;                                // written exclusive

  // Write gate (snapshot creation): while closed, new modifying requests
  // wait in gate_waiters until it opens; writes[] counts the modifying
  // requests in flight, per channel slot (ShardedRwLock's), so that the
  // snapshot can wait for them to drain.
  std::atomic<int> gate_closed{0};  // closers (snapshots in progress); 0: open
  struct alignas(64) WriteCount {
    std::atomic<int64_t> n{0};
  };
  WriteCount writes[ShardedRwLock::kShards];
  std::vector<FlushWaiter> gate_waiters ABSL_GUARDED_BY(lock);
  int64_t writes_in_flight() const {
    int64_t n = 0;
    for (const auto& w : writes) n += w.n.load(std::memory_order_seq_cst);
    return n;
  }

  // Without the lock (an atomic inside the map).
  size_t extent_count() const { return ABSL_TS_UNCHECKED_READ(map).extent_count(); }
  // A snapshot's map, which never changes: readable without the lock.
  const ExtentMap& frozen_map() const { return ABSL_TS_UNCHECKED_READ(map); }
  // The parent of a snapshot, which never changes: readable without the lock.
  const Volume* frozen_parent() const { return ABSL_TS_UNCHECKED_READ(parent).get(); }
};

// Where the chain of `first` (whose own map was looked up: a hole there,
// `run` clusters long) shows virtual cluster v: in an ancestor's cluster
// *p (true) or nowhere (false: zeros). *run is narrowed to the clusters
// from v for which the answer holds. `first` is the image's parent, read
// under the image's lock; the ancestors are snapshots (no locks needed).
bool ResolveInAncestors(const Volume* first, uint64_t v, uint64_t* p, uint64_t* run);

}  // namespace nestor::volume
