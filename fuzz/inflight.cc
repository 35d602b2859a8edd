// Fuzz target inflight: recovery of a queue from a fuzzed INFLIGHT_SHMFD
// region (BlkQueue::RecoverInflight, virtio/inflight.h: fresh or resized
// regions, a half-finished last completion, flagged heads resubmitted in
// counter order, garbage counters and flags), then the queue running with
// tracking on, then a second restart on what the first run left (a broken
// first run leaves heads flagged, as a crash would).
//
// Input: the 16-byte ring header of fake_guest.h, then the queue's inflight
// region (InflightQueueBytes(queue size) bytes: header then one 16-byte
// entry per head; zero-padded if the input is shorter), then the guest
// memory image. Seeds: fuzz/seeds/virtio_seeds.py.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "base/log.h"
#include "fake_guest.h"
#include "virtio/inflight.h"

using namespace nestor;

namespace {

struct Free {
  void operator()(void* p) const { std::free(p); }
};

// After a run that did not break, every head it popped or resubmitted was
// completed, so none may still be flagged.
void CheckSettled(const virtio::InflightQueue* q, uint32_t n) {
  if (q->version != 1 || q->desc_num != n) __builtin_trap();
  for (uint32_t i = 0; i < n; ++i) {
    if (q->desc[i].inflight == 1) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (std::getenv("NESTOR_LOG") == nullptr) SetLogLevel(static_cast<LogLevel>(4));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::ByteReader in(data, size);
  auto h = in.Get<fuzz::RingHeader>();
  uint32_t n = 1u << (h.size_log2 % 9);
  uint64_t bytes = virtio::InflightQueueBytes(n);  // a multiple of 64
  std::unique_ptr<uint8_t, Free> region(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
  in.Read(region.get(), bytes);
  auto* q = reinterpret_cast<virtio::InflightQueue*>(region.get());
  fuzz::FakeGuest guest(h, in.pos(), in.left());
  virtio::BlkQueueConfig cfg = fuzz::QueueConfig(guest, h);
  cfg.inflight = q;
  fuzz::QueueRun first = fuzz::DriveQueue(cfg, h);
  if (!first.broken) CheckSettled(q, n);
  // The frontend reconnects a new backend: SET_VRING_BASE gives it the
  // index the stop reported (a broken queue's stop reports where it was).
  cfg.vring.last_avail = cfg.vring.used_idx = first.next;
  fuzz::QueueRun second = fuzz::DriveQueue(cfg, h);
  if (!second.broken) CheckSettled(q, n);
  return 0;
}
