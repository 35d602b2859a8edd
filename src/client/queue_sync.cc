// Synchronous helpers of QueueImpl: split a byte range by the device
// limits, bounce through the shared region when the caller's memory is
// outside it, and wait (bounded) for each piece.
#include <sched.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "client/queue_impl.h"

namespace nestor::client {

namespace {
constexpr uint64_t kMaxSyncChunk = 1u << 20;
}

// Largest data request the device limits allow, capped at 1 MiB.
uint64_t QueueImpl::SyncChunk() const {
  const DeviceInfo& info = dev_->info;
  uint64_t chunk = kMaxSyncChunk;
  uint32_t segs = std::min<uint32_t>(info.seg_max, vring_.size() - 2);
  if (info.size_max) chunk = std::min<uint64_t>(chunk, uint64_t(info.size_max) * segs);
  return std::max<uint64_t>(chunk / virtio::kSectorSize * virtio::kSectorSize, virtio::kSectorSize);
}

Status QueueImpl::SyncStatus(int result, const char* what) {
  if (result == 0) return Status::Ok();
  return Status::Error(-result, fmt::format("queue {}: {} failed: {}", index_, what, ResultName(result)));
}

// Submits r as an internal request and waits for it. On timeout the slot is
// abandoned: its completion is dropped later and `bounce` freed then.
// Returns the completion result or -errno.
int QueueImpl::RunSync(Request r, void* bounce) {
  SyncWaiter waiter;
  r.user_data = &waiter;
  const uint64_t deadline = NowNs() + uint64_t(dev_->timeout_ms) * 1000000;
  int head;
  for (;;) {
    head = Add(r, true);
    if (head != -EAGAIN) break;
    Reap(nullptr, 0);  // make room; other completions go to the stash
    if (stash_count_ + vring_.inflight_chains() >= vring_.size()) return -EBUSY;  // caller must reap first
    if (!PeriodicLivenessCheck()) return -ENOTCONN;
    if (NowNs() >= deadline) return -ETIMEDOUT;
  }
  if (head < 0) return head;
  PublishAndKick();
  const uint64_t start = NowNs();
  while (!waiter.done) {
    Reap(nullptr, 0);
    if (waiter.done) break;
    if (broken_ || !PeriodicLivenessCheck()) return waiter.done ? waiter.result : (broken_ ? broken_ : -ENOTCONN);
    uint64_t now = NowNs();
    if (now >= deadline) {
      slots_[head].user_data = nullptr;
      slots_[head].bounce = bounce;
      return -ETIMEDOUT;
    }
    if (polled_ || !call_fd_.valid()) {
      if (now - start > 50'000) sched_yield();  // spin, then share the CPU
    } else
      SleepOnCall(static_cast<int>(std::min<uint64_t>((deadline - now) / 1000000 + 1, 100)));
  }
  return waiter.result;
}

// Synchronous read or write of any memory: split by the device limits, and
// through a bounce buffer in the shared region when buf lies outside it.
Status QueueImpl::SyncTransfer(Op op, uint64_t offset, uint8_t* buf, size_t len) {
  const bool write = op == Op::kWrite;
  const uint64_t chunk = SyncChunk();
  const bool direct = dev_->region.Contains(buf, len);
  void* bounce = nullptr;
  if (!direct) {
    bounce = dev_->buffers.Alloc(std::min<uint64_t>(chunk, len), 4096);
    if (!bounce) return Status::Error(ENOMEM, "no bounce buffer in the shared region");
  }
  Status st;
  for (uint64_t done = 0; done < len && st.ok();) {
    uint64_t l = std::min<uint64_t>(chunk, len - done);
    Request r;
    r.op = op;
    r.offset = offset + done;
    r.len = l;
    if (direct) {
      r.buf = buf + done;
    } else {
      if (write) std::memcpy(bounce, buf + done, l);
      r.buf = bounce;
    }
    int rc = RunSync(r, bounce);
    if (rc == -ETIMEDOUT) bounce = nullptr;  // owned by the abandoned slot now
    st = SyncStatus(rc, write ? "write" : "read");
    if (st.ok() && !direct && !write) std::memcpy(buf + done, bounce, l);
    done += l;
  }
  if (bounce) dev_->buffers.Free(bounce);
  return st;
}

Status QueueImpl::Read(uint64_t offset, void* buf, size_t len) {
  return SyncTransfer(Op::kRead, offset, static_cast<uint8_t*>(buf), len);
}

Status QueueImpl::Write(uint64_t offset, const void* buf, size_t len) {
  // The buffer is only read from: the device reads it for a write request.
  return SyncTransfer(Op::kWrite, offset, const_cast<uint8_t*>(static_cast<const uint8_t*>(buf)), len);
}

Status QueueImpl::Flush() {
  Request r;
  r.op = Op::kFlush;
  return SyncStatus(RunSync(r, nullptr), "flush");
}

Status QueueImpl::Discard(uint64_t offset, uint64_t len) {
  uint64_t max = dev_->info.max_discard_sectors ? dev_->info.max_discard_sectors : UINT32_MAX;
  max = max / 8 * 8 * virtio::kSectorSize;  // keep pieces 4 KiB-aligned
  for (uint64_t done = 0; done < len;) {
    Request r;
    r.op = Op::kDiscard;
    r.offset = offset + done;
    r.len = std::min(max, len - done);
    NESTOR_RETURN_IF_ERROR(SyncStatus(RunSync(r, nullptr), "discard"));
    done += r.len;
  }
  return Status::Ok();
}

Status QueueImpl::WriteZeroes(uint64_t offset, uint64_t len, bool unmap) {
  uint64_t max = dev_->info.max_write_zeroes_sectors ? dev_->info.max_write_zeroes_sectors : UINT32_MAX;
  max = max / 8 * 8 * virtio::kSectorSize;
  for (uint64_t done = 0; done < len;) {
    Request r;
    r.op = Op::kWriteZeroes;
    r.flags = unmap ? kReqUnmap : 0;
    r.offset = offset + done;
    r.len = std::min(max, len - done);
    NESTOR_RETURN_IF_ERROR(SyncStatus(RunSync(r, nullptr), "write-zeroes"));
    done += r.len;
  }
  return Status::Ok();
}

Status QueueImpl::GetId(std::string* id) {
  void* bounce = dev_->buffers.Alloc(64, 64);
  if (!bounce) return Status::Error(ENOMEM, "no bounce buffer in the shared region");
  std::memset(bounce, 0, 64);
  Request r;
  r.op = Op::kGetId;
  r.buf = bounce;
  r.len = virtio::kBlkIdBytes;
  int rc = RunSync(r, bounce);
  if (rc == 0) id->assign(static_cast<char*>(bounce), strnlen(static_cast<char*>(bounce), virtio::kBlkIdBytes));
  if (rc != -ETIMEDOUT) dev_->buffers.Free(bounce);
  return SyncStatus(rc, "get-id");
}

}  // namespace nestor::client
