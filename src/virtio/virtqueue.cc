#include "virtio/virtqueue.h"

#include <cstring>

namespace nestor::virtio {
namespace {

uint16_t LoadAcquire(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
uint16_t LoadRelaxed(const uint16_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
void StoreRelease(uint16_t* p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
void StoreRelaxed(uint16_t* p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
void FullFence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

Desc CopyDesc(const Desc* table, uint32_t i) {
  Desc d;
  std::memcpy(&d, &table[i], sizeof(d));  // one copy; validate the copy only
  return d;
}

}  // namespace

void SplitQueue::Init(const VringSetup& s, const GuestMemoryMap* mem) {
  mem_ = mem;
  size_ = s.size;
  desc_ = s.desc;
  avail_ = s.avail;
  used_ = s.used;
  event_idx_ = s.event_idx;
  indirect_ = s.indirect;
  last_avail_ = s.last_avail;
  used_shadow_ = s.used_idx;
  used_published_ = s.used_idx;
}

int SplitQueue::Available() const {
  uint16_t n = static_cast<uint16_t>(LoadAcquire(&avail_->idx) - last_avail_);
  return n > size_ ? -1 : n;
}

uint16_t SplitQueue::PopHead() {
  uint16_t head = LoadRelaxed(&avail_->ring[last_avail_ & (size_ - 1)]);
  ++last_avail_;
  return head;
}

Status SplitQueue::AddDescriptor(const Desc& d, iovec* iov, int max_iov, Chain* c) const {
  bool writable = (d.flags & kDescFlagWrite) != 0;
  if (!writable && c->seen_writable) {
    return Status::Invalid("readable descriptor after a writable one");
  }
  c->seen_writable |= writable;
  if (d.len == 0) return Status::Ok();
  int used = c->n_readable + c->n_writable;
  int room = c->too_many_segments ? 0 : max_iov - used;
  int n = mem_->Translate(d.addr, d.len, iov + used, room);
  if (n == GuestMemoryMap::kUnmapped) return Status::Invalid("descriptor not in guest memory");
  if (n == GuestMemoryMap::kNoRoom) {
    c->too_many_segments = true;
    n = 0;
  }
  if (writable) {
    c->n_writable += n;
    c->writable_bytes += d.len;
    c->last_writable_byte = static_cast<uint8_t*>(mem_->TranslateContiguous(d.addr + d.len - 1, 1));
  } else {
    c->n_readable += n;
    c->readable_bytes += d.len;
  }
  return Status::Ok();
}

Status SplitQueue::WalkIndirect(const Desc& d, iovec* iov, int max_iov, Chain* c) const {
  if (!indirect_) return Status::Invalid("indirect descriptor without INDIRECT_DESC");
  if (d.len == 0 || d.len % sizeof(Desc) != 0) return Status::Invalid("bad indirect table length");
  uint32_t count = d.len / sizeof(Desc);
  if (count > kMaxQueueSize) return Status::Invalid("indirect table too long");
  const Desc* table = static_cast<const Desc*>(mem_->TranslateContiguous(d.addr, d.len));
  if (table == nullptr) return Status::Invalid("indirect table not in guest memory");
  uint32_t i = 0;
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= count) return Status::Invalid("indirect chain loops");
    Desc e = CopyDesc(table, i);
    if (e.flags & kDescFlagIndirect) return Status::Invalid("nested indirect descriptor");
    NESTOR_RETURN_IF_ERROR(AddDescriptor(e, iov, max_iov, c));
    if (!(e.flags & kDescFlagNext)) return Status::Ok();
    if (e.next >= count) return Status::Invalid("indirect next index out of range");
    i = e.next;
  }
}

Status SplitQueue::WalkChain(uint16_t head, iovec* iov, int max_iov, Chain* c) const {
  *c = Chain{};
  c->head = head;
  if (head >= size_) return Status::Invalid("head index out of range");
  uint32_t i = head;
  for (uint32_t steps = 0;; ++steps) {
    if (steps >= size_) return Status::Invalid("descriptor chain loops");
    Desc d = CopyDesc(desc_, i);
    if (d.flags & kDescFlagIndirect) {
      if (steps != 0 || (d.flags & kDescFlagNext)) {
        return Status::Invalid("indirect descriptor not alone in its chain");
      }
      return WalkIndirect(d, iov, max_iov, c);
    }
    NESTOR_RETURN_IF_ERROR(AddDescriptor(d, iov, max_iov, c));
    if (!(d.flags & kDescFlagNext)) return Status::Ok();
    if (d.next >= size_) return Status::Invalid("next index out of range");
    i = d.next;
  }
}

void SplitQueue::PushUsed(uint16_t id, uint32_t len) {
  UsedElem* e = &used_->ring[used_shadow_ & (size_ - 1)];
  __atomic_store_n(&e->id, id, __ATOMIC_RELAXED);
  __atomic_store_n(&e->len, len, __ATOMIC_RELAXED);
  ++used_shadow_;
}

void SplitQueue::ExposeUsed() { StoreRelease(&used_->idx, used_shadow_); }

uint16_t SplitQueue::ReadUsedIdx() const { return LoadAcquire(&used_->idx); }

void SplitQueue::ResumeAt(uint16_t used_idx, uint16_t last_avail) {
  used_shadow_ = used_idx;
  used_published_ = used_idx;
  last_avail_ = last_avail;
}

bool SplitQueue::PublishUsed() {
  uint16_t old_idx = used_published_;
  uint16_t new_idx = used_shadow_;
  if (old_idx == new_idx) return false;
  StoreRelease(&used_->idx, new_idx);
  used_published_ = new_idx;
  FullFence();  // the used index must be visible before we read the driver's wish
  if (event_idx_) {
    return NeedEvent(LoadRelaxed(UsedEventPtr(avail_, size_)), new_idx, old_idx);
  }
  return (LoadRelaxed(&avail_->flags) & kAvailFlagNoInterrupt) == 0;
}

void SplitQueue::DisableKicks() {
  // With EVENT_IDX we simply stop advancing avail_event: the driver kicks
  // only when its index crosses the stale value (once per 64K requests).
  if (!event_idx_) StoreRelaxed(&used_->flags, kUsedFlagNoNotify);
}

bool SplitQueue::EnableKicks() {
  if (event_idx_) {
    StoreRelaxed(AvailEventPtr(used_, size_), last_avail_);
  } else {
    StoreRelaxed(&used_->flags, 0);
  }
  FullFence();  // publish the wish before re-reading avail.idx
  return Available() != 0;
}

}  // namespace nestor::virtio
