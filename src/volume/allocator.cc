#include "volume/allocator.h"

#include <cstddef>

namespace nestor::volume {

Allocator::Allocator(uint64_t clusters) : bits_((clusters + 63) / 64, 0), clusters_(clusters), free_(clusters) {
  // Bits past the end are permanently "used" so searches never return them.
  for (uint64_t p = clusters; p < bits_.size() * 64; ++p) bits_[p / 64] |= 1ull << (p % 64);
}

bool Allocator::MarkUsed(uint64_t p, uint64_t n) {
  if (p + n > clusters_ || p + n < p) return false;
  bool ok = true;
  for (uint64_t i = p; i < p + n; ++i) {
    uint64_t& w = bits_[i / 64];
    uint64_t bit = 1ull << (i % 64);
    if (w & bit) {
      ok = false;
      continue;
    }
    w |= bit;
    --free_;
  }
  return ok;
}

void Allocator::Free(uint64_t p, uint64_t n) {
  for (uint64_t i = p; i < p + n && i < clusters_; ++i) {
    uint64_t& w = bits_[i / 64];
    uint64_t bit = 1ull << (i % 64);
    if (w & bit) {
      w &= ~bit;
      ++free_;
    }
  }
}

bool Allocator::Allocate(uint64_t hint, uint64_t* p) {
  if (free_ == 0) return false;
  if (hint >= clusters_) hint = 0;
  size_t words = bits_.size();
  size_t w0 = hint / 64;
  // First the hint's own word from the hint on, then whole words, wrapping.
  uint64_t first = ~bits_[w0] & (~0ull << (hint % 64));
  for (size_t k = 0; k <= words; ++k) {
    size_t w = (w0 + k) % words;
    uint64_t avail = k == 0 ? first : ~bits_[w];
    if (avail == 0) continue;
    uint64_t c = w * 64 + static_cast<uint64_t>(__builtin_ctzll(avail));
    bits_[w] |= 1ull << (c % 64);
    --free_;
    *p = c;
    return true;
  }
  return false;
}

}  // namespace nestor::volume
