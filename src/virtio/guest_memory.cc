#include "virtio/guest_memory.h"

#include <algorithm>

namespace nestor::virtio {

GuestMemoryMap::GuestMemoryMap(std::vector<GuestRegion> regions) : regions_(std::move(regions)) {
  std::sort(regions_.begin(), regions_.end(), [](const GuestRegion& a, const GuestRegion& b) { return a.gpa < b.gpa; });
}

int GuestMemoryMap::Translate(uint64_t gpa, uint64_t len, iovec* iov, int max_iov) const {
  if (gpa + len < gpa) return kUnmapped;
  int n = 0;
  while (len > 0) {
    const GuestRegion* hit = nullptr;
    for (const GuestRegion& r : regions_) {
      if (gpa >= r.gpa && gpa - r.gpa < r.size) {
        hit = &r;
        break;
      }
    }
    if (hit == nullptr) return kUnmapped;
    uint64_t off = gpa - hit->gpa;
    uint64_t chunk = std::min(len, hit->size - off);
    if (n < max_iov) {
      iov[n].iov_base = hit->host + off;
      iov[n].iov_len = chunk;
    }
    ++n;
    gpa += chunk;
    len -= chunk;
  }
  return n > max_iov ? kNoRoom : n;
}

void* GuestMemoryMap::TranslateContiguous(uint64_t gpa, uint64_t len) const {
  if (gpa + len < gpa) return nullptr;
  for (const GuestRegion& r : regions_) {
    if (gpa >= r.gpa && gpa - r.gpa < r.size) {
      return len <= r.size - (gpa - r.gpa) ? r.host + (gpa - r.gpa) : nullptr;
    }
  }
  return nullptr;
}

void* GuestMemoryMap::TranslateUserAddr(uint64_t uva, uint64_t len) const {
  if (uva + len < uva) return nullptr;
  for (const GuestRegion& r : regions_) {
    if (uva >= r.uva && uva - r.uva < r.size) {
      return len <= r.size - (uva - r.uva) ? r.host + (uva - r.uva) : nullptr;
    }
  }
  return nullptr;
}

}  // namespace nestor::virtio
