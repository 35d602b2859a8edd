// GuestMemoryMap: translation of guest-physical addresses (as found in
// descriptors) to host pointers, over the few regions a frontend shares.
//
// Thread: immutable once built; any number of reactors may translate
// concurrently. The owner of the mappings (src/vhost/mem_table.*) guarantees
// they outlive every user of the map (it quiesces queues before unmapping).
// Errors: Translate returns false for an address range not fully covered.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <vector>

namespace nestor::virtio {

struct GuestRegion {
  uint64_t gpa;   // guest physical start
  uint64_t size;  // bytes
  uint64_t uva;   // frontend virtual start (for ring addresses)
  uint8_t* host;  // where the region starts in our address space
};

class GuestMemoryMap {
 public:
  GuestMemoryMap() = default;
  explicit GuestMemoryMap(std::vector<GuestRegion> regions);

  static constexpr int kUnmapped = -1;  // range not fully mapped / overflows
  static constexpr int kNoRoom = -2;    // mapped, but needs more than max_iov

  // Writes iovecs covering [gpa, gpa+len) to iov (at most max_iov entries,
  // splitting at region boundaries). Returns the number written, kUnmapped
  // or kNoRoom (the whole range is still validated).
  int Translate(uint64_t gpa, uint64_t len, iovec* iov, int max_iov) const;

  // Pointer to [gpa, gpa+len) if it lies within one region, else nullptr.
  void* TranslateContiguous(uint64_t gpa, uint64_t len) const;

  // Same for a frontend virtual address (SET_VRING_ADDR).
  void* TranslateUserAddr(uint64_t uva, uint64_t len) const;

  const std::vector<GuestRegion>& regions() const { return regions_; }

 private:
  std::vector<GuestRegion> regions_;  // sorted by gpa, non-overlapping
};

}  // namespace nestor::virtio
