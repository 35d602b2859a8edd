// Volume: the in-memory state of one thin volume: its extent map, the
// clusters being initialized by a first write, and the lock that lets
// reactors serving queues of the same volume look up mappings without
// contending.
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

namespace nestor::volume {

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
  uint64_t read_iops = 0, write_iops = 0, read_bps = 0, write_bps = 0;  // 0: unlimited
  ExportAccess access{};                                                // socket owner/group/mode, admitted peers
  bool operator==(const ExportSettings&) const = default;
};

struct Volume {
  uint32_t id = 0;
  std::string name;
  std::atomic<uint64_t> size{0};   // bytes (changed under Pool::mu_; only grows while open)
  uint64_t reserved = 0;           // clusters guaranteed to it (preallocation)
  uint64_t allocated = 0;          // clusters it holds, mapped or initializing (Pool::mu_)
  std::atomic<int> open_count{0};  // data-path backends alive
  bool exported = false;           // Pool::mu_
  ExportSettings export_settings;  // Pool::mu_

  ShardedRwLock lock;  // after Pool::commit_mu_, before Pool::mu_ (pool.h)
  ExtentMap map ABSL_GUARDED_BY(lock);
  absl::flat_hash_map<uint64_t, InitEntry> initializing ABSL_GUARDED_BY(lock);  // by vcluster
  uint64_t alloc_hint ABSL_GUARDED_BY(lock) = 0;                                // written exclusive

  // Without the lock (an atomic inside the map).
  size_t extent_count() const { return ABSL_TS_UNCHECKED_READ(map).extent_count(); }
};

}  // namespace nestor::volume
