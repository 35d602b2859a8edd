#include "client/vring.h"

#include <atomic>
#include <cerrno>
#include <cstring>

namespace nestor::client {

using virtio::Desc;

namespace {

constexpr size_t Align64(size_t n) { return (n + 63) & ~size_t{63}; }

template <typename T>
std::atomic_ref<T> Ref(T& v) {
  return std::atomic_ref<T>(v);
}

}  // namespace

size_t DriverVring::Bytes(uint32_t size) {
  return Align64(virtio::DescTableBytes(size)) + Align64(virtio::AvailRingBytes(size)) +
         Align64(virtio::UsedRingBytes(size));
}

void DriverVring::Init(uint8_t* mem, uint32_t size, bool event_idx) {
  std::memset(mem, 0, Bytes(size));
  size_ = size;
  event_idx_ = event_idx;
  desc_ = reinterpret_cast<Desc*>(mem);
  avail_ = reinterpret_cast<virtio::AvailRing*>(mem + Align64(virtio::DescTableBytes(size)));
  used_ =
      reinterpret_cast<virtio::UsedRing*>(reinterpret_cast<uint8_t*>(avail_) + Align64(virtio::AvailRingBytes(size)));
  avail_idx_ = kicked_idx_ = last_used_ = 0;
  next_.assign(size, 0);
  chain_len_.assign(size, 0);
  for (uint32_t i = 0; i < size; ++i) next_[i] = static_cast<uint16_t>(i + 1);
  free_head_ = 0;
  num_free_ = size;
  inflight_ = 0;
}

int DriverVring::AddChain(const Segment* segs, uint32_t n) {
  if (n == 0) return -EINVAL;
  if (n > num_free_) return -EAGAIN;
  const uint32_t head = free_head_;
  uint32_t i = head;
  for (uint32_t k = 0; k < n; ++k) {
    Desc& d = desc_[i];
    d.addr = segs[k].addr;
    d.len = segs[k].len;
    uint16_t flags = segs[k].device_writes ? virtio::kDescFlagWrite : 0;
    if (k + 1 < n) {
      flags |= virtio::kDescFlagNext;
      d.next = next_[i];
    } else {
      d.next = 0;
    }
    d.flags = flags;
    if (k + 1 < n) i = next_[i];
  }
  free_head_ = next_[i];  // i is the tail: the free list continues after it
  PutAvail(head, n);
  return static_cast<int>(head);
}

int DriverVring::AddIndirect(Desc* table, const Segment* segs, uint32_t n) {
  if (n == 0) return -EINVAL;
  if (num_free_ == 0) return -EAGAIN;
  for (uint32_t k = 0; k < n; ++k) {
    uint16_t flags = segs[k].device_writes ? virtio::kDescFlagWrite : 0;
    if (k + 1 < n) flags |= virtio::kDescFlagNext;
    table[k] = Desc{segs[k].addr, segs[k].len, flags, static_cast<uint16_t>(k + 1 < n ? k + 1 : 0)};
  }
  const uint32_t head = free_head_;
  desc_[head] =
      Desc{reinterpret_cast<uint64_t>(table), static_cast<uint32_t>(n * sizeof(Desc)), virtio::kDescFlagIndirect, 0};
  free_head_ = next_[head];
  PutAvail(head, 1);
  return static_cast<int>(head);
}

void DriverVring::PutAvail(uint32_t head, uint32_t ndesc) {
  num_free_ -= ndesc;
  chain_len_[head] = static_cast<uint16_t>(ndesc);
  ++inflight_;
  avail_->ring[avail_idx_ & (size_ - 1)] = static_cast<uint16_t>(head);
  ++avail_idx_;
}

void DriverVring::Publish() { Ref(avail_->idx).store(avail_idx_, std::memory_order_release); }

bool DriverVring::KickNeeded() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t old = kicked_idx_;
  const uint16_t now = avail_idx_;
  kicked_idx_ = now;
  if (old == now) return false;
  if (event_idx_) {
    uint16_t ev = Ref(*virtio::AvailEventPtr(used_, size_)).load(std::memory_order_relaxed);
    return virtio::NeedEvent(ev, now, old);
  }
  return !(Ref(used_->flags).load(std::memory_order_relaxed) & virtio::kUsedFlagNoNotify);
}

bool DriverVring::HasUsed() const { return Ref(used_->idx).load(std::memory_order_acquire) != last_used_; }

int DriverVring::PopUsed(virtio::UsedElem* elem) {
  const uint16_t idx = Ref(used_->idx).load(std::memory_order_acquire);
  if (idx == last_used_) return 0;
  if (static_cast<uint16_t>(idx - last_used_) > inflight_) return -EPROTO;
  const virtio::UsedElem& e = used_->ring[last_used_ & (size_ - 1)];
  elem->id = Ref(const_cast<uint32_t&>(e.id)).load(std::memory_order_relaxed);
  elem->len = Ref(const_cast<uint32_t&>(e.len)).load(std::memory_order_relaxed);
  if (!in_flight(elem->id)) return -EPROTO;
  ++last_used_;
  return 1;
}

void DriverVring::FreeChain(uint32_t head) {
  if (!in_flight(head)) return;
  uint32_t n = chain_len_[head];
  uint32_t tail = head;
  for (uint32_t k = 1; k < n; ++k) tail = next_[tail];
  next_[tail] = static_cast<uint16_t>(free_head_);
  free_head_ = head;
  num_free_ += n;
  chain_len_[head] = 0;
  --inflight_;
}

void DriverVring::SuppressInterrupts() {
  Ref(avail_->flags).store(virtio::kAvailFlagNoInterrupt, std::memory_order_relaxed);
  if (event_idx_)
    Ref(*virtio::UsedEventPtr(avail_, size_)).store(static_cast<uint16_t>(last_used_ - 1), std::memory_order_relaxed);
}

void DriverVring::EnableInterrupts() {
  if (event_idx_)
    Ref(*virtio::UsedEventPtr(avail_, size_)).store(last_used_, std::memory_order_relaxed);
  else
    Ref(avail_->flags).store(0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace nestor::client
