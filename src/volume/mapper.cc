#include "volume/mapper.h"

namespace nestor::volume {

namespace {
std::atomic<unsigned> g_next_slot{0};
}

VolumeMapper::VolumeMapper(Pool* pool, std::shared_ptr<Volume> vol)
    : pool_(pool),
      vol_(std::move(vol)),
      epoch_(pool->RegisterChannel()),
      slot_(g_next_slot.fetch_add(1) % ShardedRwLock::kShards),
      cs_(pool->superblock().cluster_size),
      data_offset_(pool->superblock().data_offset) {}

VolumeMapper::~VolumeMapper() { pool_->UnregisterChannel(epoch_); }

VolumeMapper::Where VolumeMapper::Own(uint64_t vcl) {
  Where w;
  vol_->lock.LockShared(slot_);
  w.data = vol_->map.Lookup(vcl, &w.p, &w.run);
  vol_->lock.UnlockShared(slot_);
  return w;
}

VolumeMapper::Layers VolumeMapper::OwnAndBelow(uint64_t vcl) {
  Layers l;
  vol_->lock.LockShared(slot_);
  l.own.data = vol_->map.Lookup(vcl, &l.own.p, &l.own.run);
  // The parent may change once the lock is released (inflate, decouple):
  // the one read here stays alive until this request ends (Pool retires
  // images after a grace period), and its map never changes.
  const Volume* parent = vol_->parent.get();
  vol_->lock.UnlockShared(slot_);
  l.below.run = UINT64_MAX;
  l.below.data = parent != nullptr && ResolveInAncestors(parent, vcl, &l.below.p, &l.below.run);
  return l;
}

VolumeMapper::Where VolumeMapper::Chain(uint64_t vcl) {
  const Volume* parent = nullptr;
  Where w;
  vol_->lock.LockShared(slot_);
  w.data = vol_->map.Lookup(vcl, &w.p, &w.run);
  if (!w.data) parent = vol_->parent.get();  // (see OwnAndBelow)
  vol_->lock.UnlockShared(slot_);
  if (parent != nullptr) w.data = ResolveInAncestors(parent, vcl, &w.p, &w.run);
  return w;
}

VolumeMapper::FirstWrite VolumeMapper::BeginFirstWrite(uint64_t vcl, bool whole, ParkedOp* waiter) {
  FirstWrite f;
  uint64_t run = 0;
  vol_->lock.Lock();
  if (vol_->map.Lookup(vcl, &f.p, &run)) {
    vol_->lock.Unlock();
    f.kind = FirstWrite::kMapped;
    return f;
  }
  auto it = vol_->initializing.find(vcl);
  if (it != vol_->initializing.end()) {
    // Another write is filling this cluster (zeros or a copy): wait for it,
    // else its fill could land over our bytes. This is also how two
    // reactors racing on a shared cluster copy it once.
    if (waiter != nullptr) it->second.waiters.push_back(waiter);
    vol_->lock.Unlock();
    if (waiter != nullptr) pool_->CountParkedWrite();
    f.kind = FirstWrite::kParked;
    return f;
  }
  // What the cluster holds now, seen through the chain: the write goes
  // over a copy of it (copy on write), or over zeros.
  uint64_t src_run = UINT64_MAX;
  f.copy = !whole && vol_->parent != nullptr && ResolveInAncestors(vol_->parent.get(), vcl, &f.src, &src_run);
  Status st = pool_->AllocateCluster(vol_.get(), AllocationHint(vcl), &f.p);
  if (!st.ok()) {
    vol_->lock.Unlock();
    f.kind = FirstWrite::kFailed;
    f.status = st;
    return f;
  }
  vol_->initializing.emplace(vcl, InitEntry{f.p, {}});
  vol_->alloc_hint = f.p + 1;
  vol_->lock.Unlock();
  f.kind = FirstWrite::kStarted;
  return f;
}

std::vector<ParkedOp*> VolumeMapper::EndFirstWrite(uint64_t vcl, uint64_t p, bool written) {
  std::vector<ParkedOp*> waiters;
  vol_->lock.Lock();
  if (written) {
    vol_->map.Map(vcl, p, 1);
    pool_->NoteMapped(vol_.get(), vcl, p);
  } else {
    pool_->ReleaseCluster(vol_.get(), p);
  }
  auto it = vol_->initializing.find(vcl);
  if (it != vol_->initializing.end()) {
    waiters.swap(it->second.waiters);
    vol_->initializing.erase(it);
  }
  vol_->lock.Unlock();
  return waiters;
}

void VolumeMapper::Unmap(uint64_t vcl, uint64_t n) {
  std::vector<Extent> freed;
  vol_->lock.Lock();
  vol_->map.Unmap(vcl, n, &freed);
  if (!freed.empty()) pool_->NoteUnmapped(vol_.get(), freed);
  vol_->lock.Unlock();
}

uint64_t VolumeMapper::AllocationHint(uint64_t vcl) const {
  // Right after the physical cluster of the virtual neighbour, so that
  // extents stay contiguous even when streams interleave their first
  // writes; a stream that starts somewhere new begins a gap after the
  // volume's last allocation, leaving room for that one to go on
  // contiguously.
  if (vcl > 0) {
    uint64_t p = 0, run = 0;
    if (vol_->map.Lookup(vcl - 1, &p, &run)) return p + 1;
    auto it = vol_->initializing.find(vcl - 1);
    if (it != vol_->initializing.end()) return it->second.p + 1;
  }
  constexpr uint64_t kStreamGap = 64;
  return vol_->alloc_hint + kStreamGap;
}

bool VolumeMapper::EnterWrite() {
  // Dekker with Pool::CreateSnapshot: count, then look at the gate; it
  // closes the gate, then waits for the counts to drain.
  auto& count = vol_->writes[slot_].n;
  count.fetch_add(1, std::memory_order_seq_cst);
  if (!gate_closed()) return true;
  count.fetch_sub(1, std::memory_order_seq_cst);
  return false;
}

void VolumeMapper::LeaveWrite() { vol_->writes[slot_].n.fetch_sub(1, std::memory_order_seq_cst); }

bool VolumeMapper::ParkAtGate(const FlushWaiter& w) {
  vol_->lock.Lock();
  if (!gate_closed()) {
    vol_->lock.Unlock();
    return false;
  }
  vol_->gate_waiters.push_back(w);
  vol_->lock.Unlock();
  return true;
}

}  // namespace nestor::volume
