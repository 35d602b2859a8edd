// ExtentMap: one volume's map from virtual to physical clusters, kept as
// runs (an extent maps `n` contiguous virtual clusters to `n` contiguous
// physical ones) in a B-tree ordered by virtual start. Adjacent runs that
// are contiguous in both spaces merge, so sequential allocation stays one
// extent. Unmapped virtual clusters are holes (they read as zeros).
//
// Thread: not synchronized; the owning Volume guards it (see volume.h).
// Errors: none; callers check ranges before mapping.
#pragma once

#include <absl/container/btree_map.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace nestor::volume {

struct Extent {
  uint64_t v = 0;  // first virtual cluster
  uint64_t p = 0;  // first physical cluster
  uint64_t n = 0;  // clusters
};

class ExtentMap {
 public:
  // Mapped: returns true, *p = physical cluster of v, *run = clusters left
  // in the extent from v. Hole: false, *run = clusters to the next extent
  // (UINT64_MAX if none).
  bool Lookup(uint64_t v, uint64_t* p, uint64_t* run) const;
  // Maps [v, v+n) to [p, p+n); the virtual range must be a hole.
  void Map(uint64_t v, uint64_t p, uint64_t n) {
    DoMap(v, p, n);
    extents_.store(map_.size(), std::memory_order_relaxed);
  }
  // Unmaps whatever is mapped in [v, v+n), appending the physical runs it
  // released to *freed.
  void Unmap(uint64_t v, uint64_t n, std::vector<Extent>* freed) {
    DoUnmap(v, n, freed);
    extents_.store(map_.size(), std::memory_order_relaxed);
  }

  // Moves every extent of `other` into this (empty) map; `other` ends empty.
  void TakeFrom(ExtentMap& other) {
    map_.swap(other.map_);
    std::swap(mapped_, other.mapped_);
    extents_.store(map_.size(), std::memory_order_relaxed);
    other.extents_.store(other.map_.size(), std::memory_order_relaxed);
  }

  // Unlike the rest, safe to call while another thread changes the map
  // (volume_list and stats read it without the volume's lock).
  size_t extent_count() const { return extents_.load(std::memory_order_relaxed); }
  uint64_t mapped_clusters() const { return mapped_; }
  // One past the highest mapped virtual cluster (0 if empty).
  uint64_t mapped_end() const;
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [v, e] : map_) f(Extent{v, e.p, e.n});
  }

 private:
  struct Run {
    uint64_t p;
    uint64_t n;
  };
  void DoMap(uint64_t v, uint64_t p, uint64_t n);
  void DoUnmap(uint64_t v, uint64_t n, std::vector<Extent>* freed);

  absl::btree_map<uint64_t, Run> map_;
  uint64_t mapped_ = 0;
  std::atomic<size_t> extents_{0};  // map_.size()
};

}  // namespace nestor::volume
