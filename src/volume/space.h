// Space accounting of a pool's images (VolumeInfo's space fields, pool.h):
// of each image's clusters, which it shares with its relatives, and what
// deleting it would free. A pure function over the images' extent lists and
// parent links; Pool::FillSpace (pool_space.cc) feeds it the maps.
//
// Model (volume.h): every physical cluster belongs to exactly one image's
// map; a hole reads through to the parent (a snapshot), and so on up the
// chain. In clusters:
//  - a snapshot's `shared`: of its own clusters, those at least one direct
//    child still reads (the child's map has a hole there, inside the
//    child's size; a child that is a snapshot counts the same way);
//  - a writable image's (clone's) `shared`: the virtual clusters inside its
//    size where its map has a hole and some ancestor maps the cluster (what
//    it reads from its ancestors);
//  - `delete_frees`: the clusters it holds if it has no children, else 0
//    (deleting a snapshot with children is refused).
//
// Cost: every map is walked once, as sorted runs merged with the parent's
// (interval merging, never per cluster); a snapshot's visible set (its map
// and its ancestors') is built once and reused by all its children. Memory:
// the snapshots' sets with children still to come, and one image's extents.
//
// Thread: any; `extents` is called from the calling thread, once per image.
// Errors: none (a parent index out of range or a cycle counts as no parent).
#pragma once

#include <absl/functional/function_ref.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "volume/extent_map.h"

namespace nestor::volume {

struct SpaceImage {
  int64_t parent = -1;        // index of the image holes read through to; -1: none
  bool snapshot = false;      // read-only image (its shared: of its own clusters)
  bool has_children = false;  // deleting it is refused (frees nothing)
  uint64_t size = 0;          // virtual clusters (the size rounded up)
  uint64_t allocated = 0;     // clusters it holds (mapped or being written)
};

struct ImageSpace {
  uint64_t shared = 0;        // clusters
  uint64_t delete_frees = 0;  // clusters
};

// Appends image i's extents to *out, ideally in order of virtual start
// (ExtentMap::ForEach's order; other orders are sorted, at a cost).
using SpaceExtentSource = absl::FunctionRef<void(size_t image, std::vector<Extent>* out)>;

// One result per image, in the order of `images`. Parents are visited
// before their children; `extents` is called exactly once per image.
std::vector<ImageSpace> ComputeSpace(const std::vector<SpaceImage>& images, SpaceExtentSource extents);

}  // namespace nestor::volume
