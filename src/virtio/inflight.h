// Inflight I/O tracking for split virtqueues (vhost-user INFLIGHT_SHMFD,
// the layout libvhost-user and QEMU use). The region lives in a memfd the
// frontend keeps across backend restarts; after a crash the new backend
// finds the requests the old one had popped but not completed and
// resubmits them, so the guest sees a stall, never a lost request.
//
// Thread: a queue's part is touched only by the reactor that owns the
// queue (it is frontend-shared memory: guest_fault.h rules apply).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nestor::virtio {

struct InflightDesc {
  uint8_t inflight;  // 1 while the head is popped and not yet completed
  uint8_t padding[5];
  uint16_t next;     // unused for split rings without batching
  uint64_t counter;  // pop order, to resubmit in the original order
};
static_assert(sizeof(InflightDesc) == 16);

struct InflightQueue {
  uint64_t features;         // 0
  uint16_t version;          // 0: fresh region, 1: initialised
  uint16_t desc_num;         // queue size
  uint16_t last_batch_head;  // head of the last used element published
  uint16_t used_idx;         // used.idx once last_batch_head was cleared
  InflightDesc desc[];       // NOLINT: flexible array of desc_num entries
};
static_assert(sizeof(InflightQueue) == 16);

// Bytes one queue of `queue_size` entries takes in the region (64-byte
// aligned, as libvhost-user lays it out).
constexpr uint64_t InflightQueueBytes(uint32_t queue_size) {
  return (sizeof(InflightQueue) + sizeof(InflightDesc) * static_cast<uint64_t>(queue_size) + 63) & ~63ull;
}

}  // namespace nestor::virtio
