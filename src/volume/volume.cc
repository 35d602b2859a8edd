#include "volume/volume.h"

#include <algorithm>

namespace nestor::volume {

bool ResolveInAncestors(const Volume* first, uint64_t v, uint64_t* p, uint64_t* run) {
  for (const Volume* a = first; a != nullptr; a = a->frozen_parent()) {
    uint64_t q = 0, r = 0;
    bool mapped = a->frozen_map().Lookup(v, &q, &r);
    *run = std::min(*run, r);
    if (mapped) {
      *p = q;
      return true;
    }
  }
  return false;
}

}  // namespace nestor::volume
