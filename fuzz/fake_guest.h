// Fuzz harness support for the virtio targets (virtio_chain, inflight):
// a fake guest memory, a split ring laid out from the fuzzer's input, and
// a real virtio::BlkQueue driven by hand on the fuzzer's own thread.
//
// Thread: the fuzzer's only thread, which plays the reactor: the queue is
// started on a Reactor object that is never started (no thread, no
// io_uring), and Poll/Flush/PrepareToSleep/ResumePolling are called
// directly, so every run is deterministic. The backend is a small memory
// volume (inline completions); the call fd an eventfd nobody reads. Errors: a broken harness invariant (a queue
// that does not stop, a popped head that was never completed) traps, so
// libFuzzer reports it as a crash.
//
// Guest memory (every region its own exactly-sized heap block, so ASan
// sees any access past a region):
//   R0  gpa 0x10000               64 KiB   rings, tables, buffers
//   R1  gpa 0x20000 (R0's end)     8 KiB   gpa-adjacent to R0, separate host
//   R2  gpa 0xffff_ffff_ffff_e000  4 KiB   ends one page below 2^64 (a region
//                                          cannot end at 2^64: MemTable refuses it)
// R0, R1 and R2 are filled, in that order, from the image bytes of the input
// (the rest stays zero).
//
// Ring header (16 bytes, little-endian), at the start of every input:
//   u8  size_log2   queue size = 1 << (size_log2 % 9)         (1 .. 256)
//   u8  flags       bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 read-only
//                   volume, bit 3 no DISCARD / WRITE_ZEROES
//   u16 base        SET_VRING_BASE: first avail index and used index
//   u16 desc        descriptor table at R0 + 16 * desc     (clamped into R0)
//   u16 avail       avail ring at R0 + 2 * avail           (clamped into R0)
//   u16 used        used ring at R0 + 4 * used             (clamped into R0)
//   u8  bumps[4]    after poll round i the driver adds bumps[i] to avail.idx
//   u16 reserved
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "io/backend.h"
#include "reactor/reactor.h"
#include "virtio/blk_queue.h"
#include "virtio/guest_memory.h"
#include "virtio/ring_layout.h"

namespace nestor::fuzz {

// Consumes the input front to back; reads past the end give zeros.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  size_t left() const { return left_; }
  const uint8_t* pos() const { return p_; }
  void Read(void* out, size_t n) {
    size_t k = n < left_ ? n : left_;
    if (k > 0) std::memcpy(out, p_, k);  // p_ may be null for an empty input
    std::memset(static_cast<uint8_t*>(out) + k, 0, n - k);
    p_ += k;
    left_ -= k;
  }
  template <typename T>
  T Get() {
    T v;
    Read(&v, sizeof(v));
    return v;
  }

 private:
  const uint8_t* p_;
  size_t left_;
};

struct RingHeader {
  uint8_t size_log2;
  uint8_t flags;
  uint16_t base;
  uint16_t desc;
  uint16_t avail;
  uint16_t used;
  uint8_t bumps[4];
  uint16_t reserved;
};
static_assert(sizeof(RingHeader) == 16);

constexpr uint8_t kFlagEventIdx = 1;
constexpr uint8_t kFlagIndirect = 2;
constexpr uint8_t kFlagReadOnly = 4;
constexpr uint8_t kFlagNoRanges = 8;

constexpr uint64_t kR0Gpa = 0x10000;
constexpr uint64_t kR0Size = 0x10000;
constexpr uint64_t kR1Gpa = kR0Gpa + kR0Size;
constexpr uint64_t kR1Size = 0x2000;
constexpr uint64_t kR2Gpa = 0xffffffffffffe000ull;  // ends at 2^64 - 4096
constexpr uint64_t kR2Size = 0x1000;
constexpr uint64_t kBackendBytes = 1 << 20;  // the volume: 2048 sectors

class FakeGuest {
 public:
  // Fills R0, R1, R2 from image[0..len) and lays the ring out per h.
  FakeGuest(const RingHeader& h, const uint8_t* image, size_t len);

  const virtio::GuestMemoryMap& map() const { return map_; }
  const virtio::VringSetup& setup() const { return setup_; }
  uint32_t size() const { return setup_.size; }
  uint8_t* r0() { return r0_.get(); }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  using Buf = std::unique_ptr<uint8_t, Free>;
  static Buf Alloc(uint64_t size);
  // Offset of a ring area of `bytes` at unit * index in R0, kept inside R0
  // and aligned to `unit`.
  static uint64_t Place(uint32_t index, uint32_t unit, uint64_t bytes);

  Buf r0_, r1_, r2_;
  virtio::GuestMemoryMap map_;
  virtio::VringSetup setup_;
};

struct QueueRun {
  bool broken = false;  // the queue found the ring broken and stopped
  uint16_t next = 0;    // the avail index its stop reported
};

// Drives one BlkQueue (cfg.vring and cfg.mem must be set) through poll
// rounds and a stop, as a reactor would, with the driver bumping avail.idx
// between rounds (h.bumps).
QueueRun DriveQueue(virtio::BlkQueueConfig cfg, const RingHeader& h);

// The limits BlkExport gives a volume of kBackendBytes, per h.flags.
virtio::BlkLimits FuzzLimits(const RingHeader& h);

// A queue config over guest's ring and memory with FuzzLimits(h).
virtio::BlkQueueConfig QueueConfig(const FakeGuest& guest, const RingHeader& h);

}  // namespace nestor::fuzz
