// Space accounting (space.h): ComputeSpace, and Pool::FillSpace, which
// feeds it the images' maps for ListVolumes(with_space).
#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <limits>
#include <string_view>

#include "volume/pool.h"
#include "volume/space.h"

namespace nestor::volume {
namespace {

constexpr uint64_t kEnd = std::numeric_limits<uint64_t>::max();

// A set of virtual clusters: sorted, disjoint runs [v, v+n) (p unused),
// none empty, none past kEnd. An image's own map is one as it comes
// (ExtentMap's runs may touch: that is fine everywhere below).
using Ranges = std::vector<Extent>;

inline uint64_t End(const Extent& x) { return x.v + x.n; }

// Appends [b, e) to a set whose runs all start at or before b.
inline void Append(Ranges* r, uint64_t b, uint64_t e) {
  if (b >= e) return;
  if (!r->empty() && End(r->back()) >= b) {
    Extent& last = r->back();
    last.n = std::max(End(last), e) - last.v;
    return;
  }
  r->push_back(Extent{b, 0, e - b});
}

// Makes an image's extents a set clipped to [0, size): as ExtentMap yields
// them, only checked; anything else (unsorted, overlapping, empty or
// wrapping runs: a damaged map, a test) is sorted and merged.
void Normalize(Ranges* x, uint64_t size) {
  uint64_t prev_end = 0;
  bool clean = true;
  for (const Extent& e : *x) {
    if (e.n == 0 || e.v < prev_end || e.n > kEnd - e.v) {
      clean = false;
      break;
    }
    prev_end = End(e);
  }
  if (!clean) {
    std::sort(x->begin(), x->end(), [](const Extent& a, const Extent& b) { return a.v < b.v; });
    Ranges merged;
    merged.reserve(x->size());
    for (const Extent& e : *x) Append(&merged, e.v, e.n > kEnd - e.v ? kEnd : e.v + e.n);
    x->swap(merged);
  }
  if (prev_end > size || !clean) {
    while (!x->empty() && x->back().v >= size) x->pop_back();
    if (!x->empty() && End(x->back()) > size) x->back().n = size - x->back().v;
  }
}

uint64_t Count(const Ranges& r) {
  uint64_t n = 0;
  for (const Extent& x : r) n += x.n;
  return n;
}

// |r ∩ [0, size)|.
uint64_t CountBelow(const Ranges& r, uint64_t size) {
  uint64_t n = 0;
  for (const Extent& x : r) {
    if (x.v >= size) break;
    n += std::min(End(x), size) - x.v;
  }
  return n;
}

// a ∪ b.
Ranges Union(const Ranges& a, const Ranges& b) {
  Ranges out;
  out.reserve(a.size() + b.size());
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const Extent& x = (j == b.size() || (i < a.size() && a[i].v <= b[j].v)) ? a[i++] : b[j++];
    Append(&out, x.v, End(x));
  }
  return out;
}

// |a ∩ b|: one merge pass, without branches in the loop (the runs of two
// unrelated maps interleave at random).
uint64_t CountIntersection(const Ranges& a, const Ranges& b) {
  uint64_t n = 0;
  const Extent *x = a.data(), *x_end = x + a.size();
  const Extent *y = b.data(), *y_end = y + b.size();
  while (x < x_end && y < y_end) {
    uint64_t xe = End(*x), ye = End(*y);
    uint64_t lo = std::max(x->v, y->v), hi = std::min(xe, ye);
    n += lo < hi ? hi - lo : 0;
    bool x_first = xe < ye;
    x += x_first;
    y += !x_first;
  }
  return n;
}

// a ∩ (b ∪ [from, ∞)): what of `a` is still unread after a child whose map
// is b and whose size is `from` clusters (it reads nothing past its end).
void IntersectCover(const Ranges& a, const Ranges& b, uint64_t from, Ranges* out) {
  out->clear();
  size_t j = 0;
  for (const Extent& x : a) {
    uint64_t xe = End(x);
    // Below `from`: the parts b maps.
    uint64_t below = std::min(xe, from);
    while (j < b.size() && End(b[j]) <= x.v) ++j;
    for (size_t k = j; k < b.size() && b[k].v < below; ++k) {
      Append(out, std::max(x.v, b[k].v), std::min(below, End(b[k])));
    }
    // At or past `from`: all of it.
    Append(out, std::max(x.v, from), xe);
  }
}

}  // namespace

std::vector<ImageSpace> ComputeSpace(const std::vector<SpaceImage>& images, SpaceExtentSource extents) {
  const size_t n = images.size();
  std::vector<ImageSpace> out(n);
  // Parent links, checked: out of range or self = no parent.
  std::vector<int64_t> parent(n, -1);
  std::vector<std::vector<size_t>> kids(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t p = images[i].parent;
    if (p >= 0 && static_cast<uint64_t>(p) < n && static_cast<size_t>(p) != i) {
      parent[i] = p;
      kids[p].push_back(i);
    }
  }
  // Parents before children: breadth first from the roots; what is left
  // is in (or below) a cycle: cut one link and walk on from there.
  std::vector<size_t> order;
  order.reserve(n);
  std::vector<bool> queued(n, false);
  auto walk_from = [&](size_t root) {
    size_t head = order.size();
    order.push_back(root);
    queued[root] = true;
    for (; head < order.size(); ++head) {
      for (size_t c : kids[order[head]]) {
        if (!queued[c]) {
          queued[c] = true;
          order.push_back(c);
        }
      }
    }
  };
  for (size_t i = 0; i < n; ++i) {
    if (parent[i] < 0) walk_from(i);
  }
  for (size_t i = 0; i < n; ++i) {
    if (queued[i]) continue;
    auto& sib = kids[parent[i]];
    sib.erase(std::find(sib.begin(), sib.end(), i));
    parent[i] = -1;
    walk_from(i);
  }

  // Per image with children still to come: what it shows them (its map
  // and its ancestors'), and, for a snapshot, which of its own clusters no
  // child has read yet (unread) and how many it maps (own).
  struct Pending {
    Ranges visible;
    Ranges unread;
    uint64_t own = 0;
    size_t kids_left = 0;
    uint64_t below_size = kEnd, below = 0;  // |visible ∩ [0, below_size)|, for the last child's size
  };
  std::vector<Pending> pending(n);
  Ranges own, tmp;
  for (size_t i : order) {
    const SpaceImage& img = images[i];
    own.clear();
    extents(i, &own);
    Normalize(&own, img.size);
    out[i].delete_frees = img.has_children ? 0 : img.allocated;
    const int64_t p = parent[i];
    if (!kids[i].empty()) {
      Pending& me = pending[i];
      me.kids_left = kids[i].size();
      if (img.snapshot) {
        me.own = Count(own);
        me.unread = own;
      }
      me.visible = p >= 0 ? Union(own, pending[p].visible) : own;
    }
    if (p >= 0) {
      Pending& pp = pending[p];
      if (!img.snapshot) {
        // Inside its size, what the chain shows where its map has a hole
        // (its map lies inside its size).
        if (pp.below_size != img.size) {
          pp.below_size = img.size;
          pp.below = CountBelow(pp.visible, img.size);
        }
        out[i].shared = pp.below - CountIntersection(pp.visible, own);
      }
      if (images[p].snapshot && !pp.unread.empty()) {
        IntersectCover(pp.unread, own, img.size, &tmp);
        pp.unread.swap(tmp);
      }
      if (--pp.kids_left == 0) {
        if (images[p].snapshot) out[p].shared = pp.own - Count(pp.unread);
        pp = Pending{};  // no child left to serve: free its sets
      }
    }
  }
  return out;
}

void Pool::FillSpace(std::vector<VolumeInfo>* infos, const std::vector<std::shared_ptr<Volume>>& images) const {
  if (infos->size() != images.size()) return;  // not one ListVolumes' pair: nothing known
  const uint64_t cs = sb_.cluster_size;
  absl::flat_hash_map<std::string_view, size_t> by_name;
  by_name.reserve(infos->size());
  for (size_t i = 0; i < infos->size(); ++i) by_name.emplace((*infos)[i].name, i);
  std::vector<SpaceImage> in(infos->size());
  for (size_t i = 0; i < infos->size(); ++i) {
    const VolumeInfo& info = (*infos)[i];
    if (images[i] == nullptr || images[i]->id != info.id) return;
    SpaceImage& s = in[i];
    if (!info.parent.empty()) {
      auto it = by_name.find(info.parent);
      if (it != by_name.end()) s.parent = static_cast<int64_t>(it->second);
    }
    s.snapshot = info.snapshot;
    s.has_children = !info.children.empty();
    s.size = ClustersFor(info.size);
    s.allocated = info.allocated_bytes / cs;
  }
  std::vector<ImageSpace> space = ComputeSpace(in, [&](size_t i, std::vector<Extent>* out) {
    Volume* v = images[i].get();
    out->reserve(v->extent_count());
    auto add = [out](const Extent& e) { out->push_back(e); };
    if (v->snapshot) {
      v->frozen_map().ForEach(add);  // never changes: no lock
      return;
    }
    // A writable image's map changes under its lock: one shard held shared
    // keeps writers out (they take every shard) and stalls only slot 0's
    // lookups, for the copy.
    v->lock.LockShared(0);
    v->map.ForEach(add);
    v->lock.UnlockShared(0);
  });
  for (size_t i = 0; i < infos->size(); ++i) {
    VolumeInfo& info = (*infos)[i];
    info.space_known = true;
    info.shared_bytes = space[i].shared * cs;
    info.delete_frees_bytes = space[i].delete_frees * cs;
  }
}

}  // namespace nestor::volume
