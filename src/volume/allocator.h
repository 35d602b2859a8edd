// Allocator: which data clusters of the pool are in use, as a bitmap kept
// only in memory (rebuilt from the extent maps when the pool opens, so it
// can never disagree with them on disk).
//
// Thread: not synchronized; the Pool guards it with its mutex. Errors:
// Allocate returns false when the pool is full; MarkUsed returns false if a
// cluster is already in use (a doubly owned cluster: corruption).
#pragma once

#include <cstdint>
#include <vector>

namespace nestor::volume {

class Allocator {
 public:
  explicit Allocator(uint64_t clusters);

  bool MarkUsed(uint64_t p, uint64_t n);
  void Free(uint64_t p, uint64_t n);
  // One free cluster, the one at `hint` if free, else the next free one
  // after it (wrapping), so sequential writers get contiguous runs.
  bool Allocate(uint64_t hint, uint64_t* p);
  bool IsUsed(uint64_t p) const { return (bits_[p / 64] >> (p % 64)) & 1; }

  uint64_t clusters() const { return clusters_; }
  uint64_t free_clusters() const { return free_; }

 private:
  std::vector<uint64_t> bits_;
  uint64_t clusters_;
  uint64_t free_;
};

}  // namespace nestor::volume
