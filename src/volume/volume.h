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

#include <absl/container/flat_hash_map.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "volume/export_access.h"
#include "volume/extent_map.h"

namespace nestor::volume {

class ShardedRwLock {
 public:
  static constexpr int kShards = 8;
  void LockShared(unsigned slot) { shards_[slot % kShards].mu.lock(); }
  void UnlockShared(unsigned slot) { shards_[slot % kShards].mu.unlock(); }
  void Lock() {
    for (auto& s : shards_) s.mu.lock();
  }
  void Unlock() {
    for (auto& s : shards_) s.mu.unlock();
  }

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
  uint64_t p = 0;                 // physical cluster being initialized
  std::vector<ParkedOp*> waiters;
};

// How a volume is exported (stored in the pool, so exports survive
// restarts). Plain numbers: the volume layer knows nothing of virtio.
struct ExportSettings {
  uint16_t queues = 1;
  bool read_only = false;
  uint64_t read_iops = 0, write_iops = 0, read_bps = 0, write_bps = 0;  // 0: unlimited
  ExportAccess access{};  // socket owner/group/mode, admitted peers
  bool operator==(const ExportSettings&) const = default;
};

struct Volume {
  uint32_t id = 0;
  std::string name;
  std::atomic<uint64_t> size{0};  // bytes (changed under Pool::mu_; only grows while open)
  uint64_t reserved = 0;  // clusters guaranteed to it (preallocation)
  uint64_t allocated = 0; // clusters it holds, mapped or initializing (Pool::mu_)
  std::atomic<int> open_count{0};  // data-path backends alive
  bool exported = false;           // Pool::mu_
  ExportSettings export_settings;  // Pool::mu_

  ShardedRwLock lock;
  ExtentMap map;                                        // guarded by lock
  absl::flat_hash_map<uint64_t, InitEntry> initializing;  // by vcluster; lock
  uint64_t alloc_hint = 0;                              // lock (exclusive)
};

}  // namespace nestor::volume
