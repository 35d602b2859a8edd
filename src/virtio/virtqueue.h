// SplitQueue: the device side of one split virtqueue (VIRTIO 1.x 2.7).
// Pops available heads, walks and validates descriptor chains into host
// iovecs, publishes used elements and decides on notifications (EVENT_IDX
// or flags) in both directions.
//
// Thread: owned by exactly one reactor once started; the control thread
// only builds it (Init) and reads last_avail() after the reactor stopped it.
// Errors: WalkChain returns a Status for a malformed chain (the request
// fails); Available() < 0 means the driver broke the ring (the queue must
// stop). Nothing here trusts guest memory: every descriptor is copied once
// and validated as a copy.
#pragma once

#include <sys/uio.h>

#include <cstdint>

#include "base/status.h"
#include "virtio/guest_memory.h"
#include "virtio/ring_layout.h"

namespace nestor::virtio {

struct VringSetup {
  uint32_t size = 0;     // power of two, <= kMaxQueueSize
  Desc* desc = nullptr;  // host pointers, already validated in range
  AvailRing* avail = nullptr;
  UsedRing* used = nullptr;
  uint16_t last_avail = 0;  // from SET_VRING_BASE
  uint16_t used_idx = 0;    // initial used index (normally == last_avail)
  bool event_idx = false;
  bool indirect = false;
};

// A walked chain: readable iovecs first, then writable ones.
struct Chain {
  uint16_t head = 0;
  int n_readable = 0;
  int n_writable = 0;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
  bool too_many_segments = false;         // iovecs did not fit: data not usable
  bool seen_writable = false;             // a writable descriptor (even empty) was walked
  uint8_t* last_writable_byte = nullptr;  // where a status byte would go
};

class SplitQueue {
 public:
  void Init(const VringSetup& setup, const GuestMemoryMap* mem);

  // New heads the driver made available, or -1 if avail.idx moved more
  // than the queue size (a broken driver).
  int Available() const;
  // Takes the next available head index (not yet validated). REQUIRES
  // Available() > 0.
  uint16_t PopHead();

  // Walks the chain starting at head into iov[0..max_iov). Validates head
  // and next indices, loops, indirect tables, flag order and translation.
  Status WalkChain(uint16_t head, iovec* iov, int max_iov, Chain* chain) const;

  // Records a completed chain; visible to the driver after PublishUsed().
  void PushUsed(uint16_t id, uint32_t len);
  // Publishes pushed elements (release). Returns true if the driver wants
  // a notification for them (EVENT_IDX rule or no NO_INTERRUPT flag).
  bool PublishUsed();
  bool HasUnpublished() const { return used_shadow_ != used_published_; }
  // Makes pushed elements visible at once (release store of used.idx)
  // without deciding on a notification: inflight tracking needs each
  // completion visible before it forgets the head. PublishUsed() still
  // decides the notification for everything since the last decision.
  void ExposeUsed();

  // Restart after a backend crash (inflight recovery), reactor thread:
  // the used index the driver last saw, and where popping resumes.
  uint16_t ReadUsedIdx() const;
  void ResumeAt(uint16_t used_idx, uint16_t last_avail);

  // Kick suppression: Disable while polling; Enable before sleeping. Enable
  // returns true if new heads raced in (caller must keep polling).
  void DisableKicks();
  bool EnableKicks();

  uint16_t last_avail() const { return last_avail_; }
  uint16_t used_idx() const { return used_shadow_; }
  uint32_t size() const { return size_; }

 private:
  Status WalkIndirect(const Desc& d, iovec* iov, int max_iov, Chain* chain) const;
  Status AddDescriptor(const Desc& d, iovec* iov, int max_iov, Chain* chain) const;

  const GuestMemoryMap* mem_ = nullptr;
  uint32_t size_ = 0;
  Desc* desc_ = nullptr;
  AvailRing* avail_ = nullptr;
  UsedRing* used_ = nullptr;
  bool event_idx_ = false;
  bool indirect_ = false;
  uint16_t last_avail_ = 0;
  uint16_t used_shadow_ = 0;     // next used slot we fill
  uint16_t used_published_ = 0;  // last value stored to used->idx
};

}  // namespace nestor::virtio
