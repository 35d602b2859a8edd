#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "client/connection.h"
#include "client/queue_impl.h"

namespace nestor::client {

namespace {

constexpr uint64_t kLivenessPeriodNs = 10'000'000;  // 10 ms

int StatusToResult(uint8_t status) {
  switch (status) {
    case virtio::kBlkOk: return 0;
    case virtio::kBlkIoErr: return -EIO;
    case virtio::kBlkUnsupp: return -ENOTSUP;
    default: return -EPROTO;  // the device never wrote a valid status
  }
}

// Busy-wait step: pause; after kYieldAfterNs without progress also yield,
// so an oversubscribed machine (backend on the same CPU) still makes progress.
constexpr uint64_t kYieldAfterNs = 50'000;

inline void SpinStep(uint64_t idle_since_ns, uint64_t now_ns) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
  if (now_ns - idle_since_ns > kYieldAfterNs) sched_yield();
}

}  // namespace

bool DeviceShared::CheckAlive() {
  if (dead.load(std::memory_order_relaxed)) return false;
  if (conn != nullptr && !conn->IsAlive()) {
    dead.store(true, std::memory_order_relaxed);
    return false;
  }
  return true;
}

QueueImpl::QueueImpl(DeviceShared* dev, uint32_t index, uint32_t size, uint8_t* mem, bool event_idx, bool indirect,
                     bool polled)
    : dev_(dev), index_(index), polled_(polled) {
  vring_.Init(mem, size, event_idx);
  slots_shared_ = reinterpret_cast<SlotShared*>(mem + DriverVring::Bytes(size));
  std::memset(static_cast<void*>(slots_shared_), 0, sizeof(SlotShared) * size);
  if (indirect) indirect_tables_ = reinterpret_cast<virtio::Desc*>(slots_shared_ + size);
  slots_.resize(size);
  segs_.resize(size);
  stash_.resize(size);
  vring_.SuppressInterrupts();
}

Status QueueImpl::OpenEventFds(bool want_call_fd) {
  kick_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!kick_fd_.valid()) return Status::FromErrno("eventfd");
  if (want_call_fd) {
    call_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!call_fd_.valid()) return Status::FromErrno("eventfd");
  }
  return Status::Ok();
}

int QueueImpl::DataSegments(const Request& r, uint32_t writable) {
  const DeviceInfo& info = dev_->info;
  const uint32_t max_segs = std::min<uint32_t>(info.seg_max, vring_.size() - 2);
  const uint64_t piece = info.size_max ? info.size_max : UINT32_MAX;
  uint32_t n = 1;  // segs_[0] is the header
  auto add = [&](const void* p, uint64_t len) -> int {
    if (len == 0) return 0;
    if (!dev_->region.Contains(p, len)) return -EFAULT;
    auto addr = reinterpret_cast<uint64_t>(p);
    while (len > 0) {
      if (n - 1 >= max_segs) return -EINVAL;
      uint32_t l = static_cast<uint32_t>(std::min(len, piece));
      segs_[n++] = {addr, l, writable != 0};
      addr += l;
      len -= l;
    }
    return 0;
  };
  uint64_t total = 0;
  if (r.iovcnt == 0) {
    if (int e = add(r.buf, r.len)) return e;
    total = r.len;
  } else {
    if (r.iov == nullptr) return -EINVAL;
    for (uint32_t i = 0; i < r.iovcnt; ++i) {
      if (int e = add(r.iov[i].iov_base, r.iov[i].iov_len)) return e;
      total += r.iov[i].iov_len;
    }
  }
  if (total == 0) return -EINVAL;
  if (r.op != Op::kGetId && total % virtio::kSectorSize != 0) return -EINVAL;
  return static_cast<int>(n);
}

int QueueImpl::Add(const Request& r, bool internal) {
  if (broken_) return broken_;
  if (dev_->dead.load(std::memory_order_relaxed)) return -ENOTCONN;
  if (vring_.inflight_chains() + stash_count_ >= vring_.size() || vring_.free_descs() == 0) return -EAGAIN;
  const DeviceInfo& info = dev_->info;
  const uint32_t head = vring_.next_head();
  SlotShared& ss = slots_shared_[head];
  uint32_t type = 0;
  int n = 1;
  switch (r.op) {
    case Op::kRead:
    case Op::kWrite:
      if (r.offset % virtio::kSectorSize) return -EINVAL;
      type = r.op == Op::kRead ? virtio::kBlkIn : virtio::kBlkOut;
      n = DataSegments(r, r.op == Op::kRead);
      break;
    case Op::kGetId: {
      Request id = r;
      id.len = virtio::kBlkIdBytes;
      if (r.iovcnt != 0 || r.len < virtio::kBlkIdBytes) return -EINVAL;
      type = virtio::kBlkGetId;
      n = DataSegments(id, 1);
      break;
    }
    case Op::kFlush:
      if (!info.flush) return -ENOTSUP;
      type = virtio::kBlkFlush;
      break;
    case Op::kDiscard:
    case Op::kWriteZeroes: {
      const bool discard = r.op == Op::kDiscard;
      if (!(discard ? info.discard : info.write_zeroes)) return -ENOTSUP;
      if (r.offset % virtio::kSectorSize || r.len % virtio::kSectorSize || r.len == 0) return -EINVAL;
      if ((r.len >> virtio::kSectorShift) > UINT32_MAX) return -EINVAL;
      type = discard ? virtio::kBlkDiscard : virtio::kBlkWriteZeroes;
      ss.seg.sector = r.offset >> virtio::kSectorShift;
      ss.seg.num_sectors = static_cast<uint32_t>(r.len >> virtio::kSectorShift);
      ss.seg.flags = r.flags & kReqUnmap;
      segs_[1] = {reinterpret_cast<uint64_t>(&ss.seg), sizeof(ss.seg), false};
      n = 2;
      break;
    }
    default: return -EINVAL;
  }
  if (n < 0) return n;
  ss.hdr.type = type;
  ss.hdr.ioprio = 0;
  ss.hdr.sector = (r.op == Op::kRead || r.op == Op::kWrite) ? r.offset >> virtio::kSectorShift : 0;
  ss.status = 0xff;
  segs_[0] = {reinterpret_cast<uint64_t>(&ss.hdr), sizeof(ss.hdr), false};
  segs_[n++] = {reinterpret_cast<uint64_t>(&ss.status), 1, true};
  const auto count = static_cast<uint32_t>(n);
  int h = indirect_tables_ && count <= kIndirectEntries
              ? vring_.AddIndirect(indirect_tables_ + size_t(head) * kIndirectEntries, segs_.data(), count)
              : vring_.AddChain(segs_.data(), count);
  if (h < 0) return h;
  slots_[h] = Slot{r.user_data, nullptr, internal};
  return h;
}

void QueueImpl::PublishAndKick() {
  vring_.Publish();
  if (vring_.KickNeeded()) {
    uint64_t one = 1;
    ssize_t rc = write(kick_fd_.get(), &one, sizeof(one));
    (void)rc;  // EAGAIN: the counter is saturated, the backend will see it anyway
  }
}

int QueueImpl::Submit(std::span<const Request> reqs) {
  int n = 0;
  int err = 0;
  for (const Request& r : reqs) {
    int h = Add(r, false);
    if (h < 0) {
      err = h;
      break;
    }
    ++n;
  }
  if (n > 0) PublishAndKick();
  return n > 0 ? n : err;
}

void QueueImpl::Deliver(uint32_t head, int result, Completion* out, int* n, int max) {
  Slot& s = slots_[head];
  if (s.internal) {
    if (s.user_data) {
      auto* w = static_cast<SyncWaiter*>(s.user_data);
      w->done = true;
      w->result = result;
    }
    if (s.bounce) dev_->buffers.Free(s.bounce);
  } else if (out != nullptr && *n < max) {
    out[(*n)++] = Completion{s.user_data, result};
  } else {
    stash_[(stash_head_ + stash_count_++) % stash_.size()] = Completion{s.user_data, result};
  }
  s = Slot{};
}

int QueueImpl::Reap(Completion* out, int max) {
  int n = 0;
  bool any = false;
  while (out == nullptr || n < max) {
    virtio::UsedElem e;
    int rc = vring_.PopUsed(&e);
    if (rc == 0) break;
    if (rc < 0) {
      Broken(-EPROTO);
      break;
    }
    any = true;
    int result = StatusToResult(std::atomic_ref<uint8_t>(slots_shared_[e.id].status).load(std::memory_order_relaxed));
    vring_.FreeChain(e.id);
    Deliver(e.id, result, out, &n, max);
  }
  if (any) vring_.SuppressInterrupts();
  return n;
}

void QueueImpl::FailAll(int result) {
  for (uint32_t h = 0; h < vring_.size(); ++h) {
    if (!vring_.in_flight(h)) continue;
    vring_.FreeChain(h);
    int n = 0;
    Deliver(h, result, nullptr, &n, 0);
  }
}

void QueueImpl::Broken(int result) {
  if (!broken_) broken_ = result;
  FailAll(result);
}

bool QueueImpl::PeriodicLivenessCheck() {
  if (dev_->dead.load(std::memory_order_relaxed)) {
    Broken(-ENOTCONN);
    return false;
  }
  uint64_t now = NowNs();
  if (now < next_live_check_ns_) return true;
  next_live_check_ns_ = now + kLivenessPeriodNs;
  if (dev_->CheckAlive()) return true;
  Broken(-ENOTCONN);
  return false;
}

int QueueImpl::Poll(Completion* out, int max) {
  int n = 0;
  while (n < max && stash_count_ > 0) {
    out[n++] = stash_[stash_head_];
    stash_head_ = (stash_head_ + 1) % stash_.size();
    --stash_count_;
  }
  if (n < max && !broken_) n += Reap(out + n, max - n);
  if (n == 0 && !broken_ && vring_.inflight_chains() > 0) PeriodicLivenessCheck();
  if (n == 0 && stash_count_ > 0) return Poll(out, max);  // failures just queued
  if (n == 0 && broken_) return broken_;
  return n;
}

// Sleeps until the call eventfd fires, the socket hangs up or timeout_ms
// passes. Re-enables calls, fences and re-checks first, so a completion
// that raced with the re-enable is never lost.
int QueueImpl::SleepOnCall(int timeout_ms) {
  vring_.EnableInterrupts();
  if (vring_.HasUsed()) {
    vring_.SuppressInterrupts();
    return 0;
  }
  pollfd fds[2] = {{call_fd_.get(), POLLIN, 0}, {dev_->conn ? dev_->conn->fd() : -1, POLLRDHUP, 0}};
  int rc = poll(fds, 2, timeout_ms);
  if (rc > 0 && (fds[0].revents & POLLIN)) {
    uint64_t v;
    ssize_t r = read(call_fd_.get(), &v, sizeof(v));
    (void)r;
  }
  if (rc > 0 && (fds[1].revents & (POLLHUP | POLLRDHUP | POLLERR))) dev_->dead.store(true);
  vring_.SuppressInterrupts();
  return 0;
}

int QueueImpl::Wait(Completion* out, int min, int max, int timeout_ms) {
  if (max <= 0 || min > max) return -EINVAL;
  const uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : NowNs() + uint64_t(timeout_ms) * 1000000;
  int n = 0;
  uint64_t idle_since = NowNs();
  for (;;) {
    int r = Poll(out + n, max - n);
    if (r < 0) return n > 0 ? n : r;
    n += r;
    if (r > 0) idle_since = NowNs();
    if (n >= min || (vring_.inflight_chains() == 0 && stash_count_ == 0)) return n;
    uint64_t now = NowNs();
    if (now >= deadline) return n > 0 ? n : -ETIMEDOUT;
    if (polled_ || !call_fd_.valid()) {
      SpinStep(idle_since, now);
    } else {
      uint64_t left_ms = (deadline - now + 999999) / 1000000;
      SleepOnCall(static_cast<int>(std::min<uint64_t>(left_ms, 100)));
    }
  }
}

}  // namespace nestor::client
