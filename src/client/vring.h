// DriverVring: the driver (frontend) half of a split virtqueue over shared
// memory. Allocates descriptor chains from a private free list, publishes
// avail entries, decides whether to kick (NO_NOTIFY / EVENT_IDX), pops and
// validates used entries, and controls backend interrupts (NO_INTERRUPT /
// used_event).
//
// Thread: one thread at a time (the queue's). Performs no syscalls and
// allocates only in Init, so tests can drive it against an in-process
// device loop. Errors: -errno ints (hot path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "virtio/ring_layout.h"

namespace nestor::client {

struct Segment {
  uint64_t addr;
  uint32_t len;
  bool device_writes;  // kDescFlagWrite
};

class DriverVring {
 public:
  // Bytes of shared memory Init needs for a ring of `size` entries
  // (descriptor table, avail ring, used ring, each 64-byte aligned).
  static size_t Bytes(uint32_t size);
  static bool ValidSize(uint32_t size) {
    return size >= 2 && size <= virtio::kMaxQueueSize && (size & (size - 1)) == 0;
  }

  // mem: Bytes(size) bytes, 64-byte aligned, shared with the device.
  void Init(uint8_t* mem, uint32_t size, bool event_idx);

  virtio::Desc* desc() const { return desc_; }
  virtio::AvailRing* avail() const { return avail_; }
  virtio::UsedRing* used() const { return used_; }
  uint32_t size() const { return size_; }
  uint32_t free_descs() const { return num_free_; }
  uint32_t inflight_chains() const { return inflight_; }
  bool in_flight(uint32_t head) const { return head < size_ && chain_len_[head] != 0; }
  // Head index the next AddChain will use. REQUIRES: free_descs() > 0.
  uint32_t next_head() const { return free_head_; }

  // Adds one chain (not yet visible to the device). Returns the head index,
  // or -EAGAIN if fewer than n descriptors are free, -EINVAL if n == 0.
  int AddChain(const Segment* segs, uint32_t n);
  // Adds one request as a single ring descriptor pointing at `table` (n
  // entries, in shared memory, owned by the caller until FreeChain). Only
  // when VIRTIO_RING_F_INDIRECT_DESC was negotiated. Same returns.
  int AddIndirect(virtio::Desc* table, const Segment* segs, uint32_t n);
  // Makes every added chain visible (release store of avail.idx).
  void Publish();
  // After Publish: full fence, then true if the device wants a kick.
  bool KickNeeded();

  // Pops the next used element. Returns 1 (elem filled, head is in flight),
  // 0 (nothing new), -EPROTO (device broke the protocol: index jumped by
  // more than the ring size, or head not in flight; the ring is then
  // unusable). The chain stays allocated until FreeChain(head).
  int PopUsed(virtio::UsedElem* elem);
  void FreeChain(uint32_t head);
  // True if the device published used entries not yet popped (acquire).
  bool HasUsed() const;

  // Interrupt (call) control. Suppress: NO_INTERRUPT and, with EVENT_IDX,
  // keep used_event behind everything the device can publish (call after
  // each reap batch). Enable: ask for a call at the next used entry, then a
  // full fence; the caller must re-check HasUsed() before sleeping.
  void SuppressInterrupts();
  void EnableInterrupts();

 private:
  virtio::Desc* desc_ = nullptr;
  virtio::AvailRing* avail_ = nullptr;
  virtio::UsedRing* used_ = nullptr;
  uint32_t size_ = 0;
  bool event_idx_ = false;
  void PutAvail(uint32_t head, uint32_t ndesc);

  uint16_t avail_idx_ = 0;   // next avail slot (private copy)
  uint16_t kicked_idx_ = 0;  // avail idx at the last kick decision
  uint16_t last_used_ = 0;   // next used slot to pop
  uint32_t free_head_ = 0;
  uint32_t num_free_ = 0;
  uint32_t inflight_ = 0;
  std::vector<uint16_t> next_;       // private shadow of desc.next (free list and chains)
  std::vector<uint16_t> chain_len_;  // by head; 0 = not in flight
};

}  // namespace nestor::client
