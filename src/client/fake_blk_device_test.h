// Test-only: a tiny virtio-blk device loop over a DriverVring's memory, run
// in-process (optionally on its own thread), so the driver side can be
// tested without a backend. Not robust against hostile drivers.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "virtio/blk_defs.h"
#include "virtio/ring_layout.h"

namespace nestor::client::testing {

class TestDevice {
 public:
  TestDevice(virtio::Desc* d, virtio::AvailRing* a, virtio::UsedRing* u, uint32_t n, bool event_idx)
      : desc_(d), avail_(a), used_(u), n_(n), event_idx_(event_idx) {}

  bool Pop(uint16_t* head) {
    uint16_t idx = std::atomic_ref<uint16_t>(avail_->idx).load(std::memory_order_acquire);
    if (idx == last_avail_) return false;
    *head = avail_->ring[last_avail_ % n_];
    ++last_avail_;
    return true;
  }
  // The request's descriptors, following an indirect table if there is one.
  std::vector<virtio::Desc> Chain(uint16_t head) const {
    std::vector<virtio::Desc> out;
    const virtio::Desc* table = desc_;
    uint32_t limit = n_;
    if (desc_[head].flags & virtio::kDescFlagIndirect) {
      table = reinterpret_cast<const virtio::Desc*>(desc_[head].addr);
      limit = desc_[head].len / sizeof(virtio::Desc);
      head = 0;
      ++indirect_;
    }
    for (uint16_t i = head;; i = table[i].next) {
      out.push_back(table[i]);
      if (!(table[i].flags & virtio::kDescFlagNext) || out.size() > limit) break;
    }
    return out;
  }
  uint64_t indirect_seen() const { return indirect_; }
  // Publishes one used element; returns true if the driver wants a call.
  bool Push(uint32_t id, uint32_t len) {
    const uint16_t old = used_idx_;
    used_->ring[used_idx_ % n_] = {id, len};
    ++used_idx_;
    std::atomic_ref<uint16_t>(used_->idx).store(used_idx_, std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (event_idx_) {
      uint16_t ev = std::atomic_ref<uint16_t>(*virtio::UsedEventPtr(avail_, n_)).load(std::memory_order_relaxed);
      return virtio::NeedEvent(ev, used_idx_, old);
    }
    return !(std::atomic_ref<uint16_t>(avail_->flags).load(std::memory_order_relaxed) & virtio::kAvailFlagNoInterrupt);
  }
  void SetNoNotify(bool on) { used_->flags = on ? virtio::kUsedFlagNoNotify : 0; }
  void SetAvailEvent(uint16_t v) { *virtio::AvailEventPtr(used_, n_) = v; }
  uint16_t last_avail() const { return last_avail_; }

 private:
  virtio::Desc* desc_;
  virtio::AvailRing* avail_;
  virtio::UsedRing* used_;
  uint32_t n_;
  bool event_idx_;
  uint16_t last_avail_ = 0;
  uint16_t used_idx_ = 0;
  mutable uint64_t indirect_ = 0;
};

// Serves virtio-blk requests from a RAM disk on a thread until stopped.
class FakeBlk {
 public:
  FakeBlk(TestDevice dev, uint64_t capacity_bytes, int call_fd)
      : dev_(dev), disk_(capacity_bytes, 0), call_fd_(call_fd) {}
  ~FakeBlk() { Stop(); }

  // Hook to corrupt behaviour: may change the used id or skip the status.
  std::function<void(uint16_t head, uint32_t* id, bool* write_status)> tamper;
  std::atomic<bool> paused{false};
  std::atomic<uint64_t> calls{0};
  std::vector<uint8_t>& disk() { return disk_; }
  uint64_t indirect_seen() const { return dev_.indirect_seen(); }

  void Start() {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        if (paused.load() || !ServeOne()) std::this_thread::yield();
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool ServeOne() {
    uint16_t head;
    if (!dev_.Pop(&head)) return false;
    auto chain = dev_.Chain(head);
    auto* hdr = reinterpret_cast<virtio::BlkReqHeader*>(chain.front().addr);
    auto* status = reinterpret_cast<uint8_t*>(chain.back().addr);
    uint8_t st = virtio::kBlkOk;
    uint32_t written = 1;
    uint64_t off = hdr->sector * 512;
    switch (hdr->type) {
      case virtio::kBlkIn:
      case virtio::kBlkOut:
        for (size_t i = 1; i + 1 < chain.size(); ++i) {
          if (off + chain[i].len > disk_.size()) {
            st = virtio::kBlkIoErr;
            break;
          }
          auto* p = reinterpret_cast<uint8_t*>(chain[i].addr);
          if (hdr->type == virtio::kBlkIn) {
            std::memcpy(p, disk_.data() + off, chain[i].len);
            written += chain[i].len;
          } else {
            std::memcpy(disk_.data() + off, p, chain[i].len);
          }
          off += chain[i].len;
        }
        break;
      case virtio::kBlkFlush: break;
      case virtio::kBlkGetId:
        std::memcpy(reinterpret_cast<void*>(chain[1].addr), "fake-serial", 12);
        written += 20;
        break;
      case virtio::kBlkWriteZeroes:
      case virtio::kBlkDiscard: {
        auto* s = reinterpret_cast<virtio::BlkDiscardWriteZeroes*>(chain[1].addr);
        uint64_t o = s->sector * 512, l = uint64_t(s->num_sectors) * 512;
        if (o + l > disk_.size())
          st = virtio::kBlkIoErr;
        else
          std::memset(disk_.data() + o, 0, l);
        break;
      }
      default: st = virtio::kBlkUnsupp;
    }
    uint32_t id = head;
    bool write_status = true;
    if (tamper) tamper(head, &id, &write_status);
    if (write_status) *status = st;
    if (dev_.Push(id, written) && call_fd_ >= 0) {
      uint64_t one = 1;
      ssize_t r = write(call_fd_, &one, sizeof(one));
      (void)r;
      calls++;
    }
    return true;
  }

 private:
  TestDevice dev_;
  std::vector<uint8_t> disk_;
  int call_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace nestor::client::testing
