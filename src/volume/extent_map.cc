#include "volume/extent_map.h"

#include <cassert>

namespace nestor::volume {

bool ExtentMap::Lookup(uint64_t v, uint64_t* p, uint64_t* run) const {
  auto it = map_.upper_bound(v);  // first extent starting after v
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (v < prev->first + prev->second.n) {
      *p = prev->second.p + (v - prev->first);
      *run = prev->first + prev->second.n - v;
      return true;
    }
  }
  *run = it == map_.end() ? UINT64_MAX : it->first - v;
  return false;
}

void ExtentMap::DoMap(uint64_t v, uint64_t p, uint64_t n) {
  if (n == 0) return;
  mapped_ += n;
  // Past the last extent (a checkpoint loads each map in order; sequential
  // first writes): no search, merge with the last or append at the end.
  if (map_.empty() || v >= map_.rbegin()->first + map_.rbegin()->second.n) {
    if (!map_.empty()) {
      auto& [lv, last] = *map_.rbegin();
      if (lv + last.n == v && last.p + last.n == p) {
        last.n += n;
        return;
      }
    }
    map_.emplace_hint(map_.end(), v, Run{p, n});
    return;
  }
  auto next = map_.lower_bound(v);
  // Merge with the previous extent if it ends exactly here in both spaces.
  if (next != map_.begin()) {
    auto prev = std::prev(next);
    assert(prev->first + prev->second.n <= v);
    if (prev->first + prev->second.n == v && prev->second.p + prev->second.n == p) {
      prev->second.n += n;
      if (next != map_.end() && next->first == v + n && next->second.p == p + n) {
        prev->second.n += next->second.n;
        map_.erase(next);
      }
      return;
    }
  }
  assert(next == map_.end() || next->first >= v + n);
  if (next != map_.end() && next->first == v + n && next->second.p == p + n) {
    Run merged{p, n + next->second.n};
    map_.erase(next);
    map_.emplace(v, merged);
    return;
  }
  map_.emplace(v, Run{p, n});
}

void ExtentMap::DoUnmap(uint64_t v, uint64_t n, std::vector<Extent>* freed) {
  if (n == 0) return;
  uint64_t end = v + n < v ? UINT64_MAX : v + n;
  uint64_t cursor = v;
  // B-tree inserts and erases invalidate iterators: find afresh each round.
  while (cursor < end) {
    auto it = map_.upper_bound(cursor);
    if (it != map_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second.n > cursor) it = prev;
    }
    if (it == map_.end() || it->first >= end) return;
    uint64_t ev = it->first;
    Run r = it->second;
    uint64_t eend = ev + r.n;
    uint64_t cut_lo = std::max(ev, cursor);
    uint64_t cut_hi = std::min(eend, end);
    freed->push_back(Extent{cut_lo, r.p + (cut_lo - ev), cut_hi - cut_lo});
    mapped_ -= cut_hi - cut_lo;
    map_.erase(it);
    if (ev < cut_lo) map_.emplace(ev, Run{r.p, cut_lo - ev});
    if (cut_hi < eend) map_.emplace(cut_hi, Run{r.p + (cut_hi - ev), eend - cut_hi});
    cursor = cut_hi;
  }
}

uint64_t ExtentMap::mapped_end() const {
  if (map_.empty()) return 0;
  auto last = std::prev(map_.end());
  return last->first + last->second.n;
}

}  // namespace nestor::volume
