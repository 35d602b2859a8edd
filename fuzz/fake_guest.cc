#include "fake_guest.h"

#include <sys/eventfd.h>

#include <algorithm>

namespace nestor::fuzz {
namespace {

io::BlockBackend* Backend() {
  // Per process: a volume of 2048 sectors; its contents never steer a run.
  static io::BlockBackend* backend = [] {
    auto b = io::OpenMemBackend(kBackendBytes);
    if (!b.ok()) __builtin_trap();
    return b.value().release();
  }();
  return backend;
}

reactor::Reactor* FakeReactor() {
  // Never started: the fuzzer's thread is the reactor thread.
  static reactor::Reactor* r = new reactor::Reactor(reactor::ReactorOptions{});
  return r;
}

// The queue's call eventfd (per process; the fuzzer never reads it: its
// counter cannot overflow in any run's lifetime).
int CallFd() {
  static int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return fd;
}

// Polls until the queue takes nothing (bounded: the driver's avail.idx may
// be rewritten by the device's own writes, e.g. a read into the ring).
void PollRound(virtio::BlkQueue& q) {
  for (int i = 0; i < 512 && q.Poll() > 0; ++i) {
  }
  q.Flush();
  (void)q.PrepareToSleep();
  q.ResumePolling();
}

}  // namespace

FakeGuest::Buf FakeGuest::Alloc(uint64_t size) {
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(4096, size));
  if (p == nullptr) __builtin_trap();
  std::memset(p, 0, size);
  return Buf(p);
}

uint64_t FakeGuest::Place(uint32_t index, uint32_t unit, uint64_t bytes) {
  uint64_t off = (static_cast<uint64_t>(index) * unit) % kR0Size;
  if (off + bytes > kR0Size) off = (kR0Size - bytes) & ~static_cast<uint64_t>(unit - 1);
  return off;
}

FakeGuest::FakeGuest(const RingHeader& h, const uint8_t* image, size_t len)
    : r0_(Alloc(kR0Size)), r1_(Alloc(kR1Size)), r2_(Alloc(kR2Size)) {
  for (auto [buf, size] : {std::pair{r0_.get(), kR0Size}, {r1_.get(), kR1Size}, {r2_.get(), kR2Size}}) {
    size_t n = std::min<size_t>(len, size);
    std::memcpy(buf, image, n);
    image += n;
    len -= n;
  }
  map_ = virtio::GuestMemoryMap({{kR2Gpa, kR2Size, 0x7f0000400000, r2_.get()},
                                 {kR0Gpa, kR0Size, 0x7f0000010000, r0_.get()},
                                 {kR1Gpa, kR1Size, 0x7f0000200000, r1_.get()}});
  uint32_t n = 1u << (h.size_log2 % 9);
  setup_.size = n;
  setup_.desc = reinterpret_cast<virtio::Desc*>(r0() + Place(h.desc, 16, virtio::DescTableBytes(n)));
  setup_.avail = reinterpret_cast<virtio::AvailRing*>(r0() + Place(h.avail, 2, virtio::AvailRingBytes(n)));
  setup_.used = reinterpret_cast<virtio::UsedRing*>(r0() + Place(h.used, 4, virtio::UsedRingBytes(n)));
  setup_.last_avail = h.base;
  setup_.used_idx = h.base;
  setup_.event_idx = (h.flags & kFlagEventIdx) != 0;
  setup_.indirect = (h.flags & kFlagIndirect) != 0;
}

virtio::BlkQueueConfig QueueConfig(const FakeGuest& guest, const RingHeader& h) {
  virtio::BlkQueueConfig cfg;
  cfg.device = "fuzz";
  cfg.vring = guest.setup();
  cfg.mem = &guest.map();
  cfg.limits = FuzzLimits(h);
  return cfg;
}

virtio::BlkLimits FuzzLimits(const RingHeader& h) {
  virtio::BlkLimits l;
  l.capacity_sectors = kBackendBytes >> virtio::kSectorShift;
  l.read_only = (h.flags & kFlagReadOnly) != 0;
  l.max_data_bytes = 64u << 20;
  l.max_discard_sectors = 1u << 22;
  l.max_write_zeroes_sectors = 1u << 22;
  l.discard = l.write_zeroes = (h.flags & kFlagNoRanges) == 0;
  return l;
}

QueueRun DriveQueue(virtio::BlkQueueConfig cfg, const RingHeader& h) {
  QueueRun run;
  bool& broken = run.broken;
  cfg.backend = Backend();
  cfg.call_fd = CallFd();
  cfg.on_broken = [&broken](const std::string&) { broken = true; };
  std::memcpy(cfg.serial, "fuzz-serial-0123456789", virtio::kBlkIdBytes);
  virtio::AvailRing* avail = cfg.vring.avail;
  virtio::UsedRing* used = cfg.vring.used;
  bool inflight = cfg.inflight != nullptr;
  uint16_t base = cfg.vring.last_avail;
  virtio::BlkQueue q(std::move(cfg));
  if (!q.Start(FakeReactor()).ok()) __builtin_trap();
  for (int round = 0;; ++round) {
    PollRound(q);
    if (round == 4 || h.bumps[round] == 0) break;
    avail->idx = static_cast<uint16_t>(avail->idx + h.bumps[round]);
  }
  bool stopped = false;
  q.RequestStop([&](uint16_t n) {
    stopped = true;
    run.next = n;
  });
  (void)q.Poll();
  if (!stopped) q.Flush();
  // Every request completed inline: nothing may keep the stop waiting.
  if (!stopped) __builtin_trap();
  // Without inflight recovery (which resumes at the ring's used index),
  // each head popped was completed exactly once and published: once
  // anything was popped, the used index is where popping stopped (the
  // device wrote it last).
  bool popped = run.next != base;
  if (!broken && !inflight && popped && used->idx != run.next) __builtin_trap();
  return run;
}

}  // namespace nestor::fuzz
