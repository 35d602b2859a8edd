// QueueImpl: one virtio-blk request queue of a Device (see
// include/nestor/client.hpp for the contract). Builds request chains
// (header, data, status) over a DriverVring, kicks through the kick
// eventfd, reaps by polling the used ring or sleeping on the call eventfd,
// maps the status byte to a result and keeps a fixed per-head slot pool
// (no allocation per I/O).
//
// Thread: one thread at a time per queue. Errors: -errno ints on the hot
// path, Status for the synchronous helpers.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "client/memory.h"
#include "client/vring.h"
#include "nestor/client.hpp"
#include "virtio/blk_defs.h"

namespace nestor::client {

class VhostConnection;

// State shared by the device and its queues; outlives them.
struct DeviceShared {
  SharedRegion region;
  BufferAllocator buffers;
  DeviceInfo info;
  int timeout_ms = 10000;
  VhostConnection* conn = nullptr;  // for liveness checks; null: none (tests, closed)
  std::atomic<bool> dead{false};    // backend gone: every queue fails
  bool CheckAlive();                // polls the socket; sets dead
};

// Per-head request header and status byte, in shared memory.
struct alignas(64) SlotShared {
  virtio::BlkReqHeader hdr;
  virtio::BlkDiscardWriteZeroes seg;
  uint8_t status;
};

class QueueImpl final : public Queue {
 public:
  // Entries of the per-head indirect table; longer requests use a direct chain.
  static constexpr uint32_t kIndirectEntries = 16;
  static size_t SharedBytes(uint32_t size) {
    return DriverVring::Bytes(size) + (sizeof(SlotShared) + kIndirectEntries * sizeof(virtio::Desc)) * size;
  }

  // mem: SharedBytes(size) bytes inside dev->region, 64-byte aligned.
  // indirect: VIRTIO_RING_F_INDIRECT_DESC was negotiated.
  QueueImpl(DeviceShared* dev, uint32_t index, uint32_t size, uint8_t* mem, bool event_idx, bool indirect, bool polled);
  Status OpenEventFds(bool want_call_fd);

  DriverVring& vring() { return vring_; }
  int kick_fd() const { return kick_fd_.get(); }
  int call_fd() const { return call_fd_.get(); }
  // Fails every in-flight request with `result` (backend gone); they are
  // returned by the next Poll/Wait.
  void FailAll(int result);

  uint32_t index() const override { return index_; }
  uint32_t size() const override { return vring_.size(); }
  uint32_t inflight() const override { return vring_.inflight_chains(); }
  using Queue::Submit;
  int Submit(std::span<const Request> reqs) override;
  int Poll(Completion* out, int max) override;
  int Wait(Completion* out, int min, int max, int timeout_ms) override;
  Status SyncTransfer(Op op, uint64_t offset, uint8_t* buf, size_t len);
  Status Read(uint64_t offset, void* buf, size_t len) override;
  Status Write(uint64_t offset, const void* buf, size_t len) override;
  Status Flush() override;
  Status Discard(uint64_t offset, uint64_t len) override;
  Status WriteZeroes(uint64_t offset, uint64_t len, bool unmap) override;
  Status GetId(std::string* id) override;

 private:
  struct Slot {
    void* user_data = nullptr;
    void* bounce = nullptr;  // freed at completion (synchronous helpers)
    bool internal = false;   // completion goes to a SyncWaiter, not to the caller
  };
  struct SyncWaiter {
    bool done = false;
    int result = 0;
  };

  int Add(const Request& r, bool internal);  // head or -errno; not published
  int DataSegments(const Request& r, uint32_t writable);
  void PublishAndKick();
  int Reap(Completion* out, int max);  // ring only
  void Deliver(uint32_t head, int result, Completion* out, int* n, int max);
  bool PeriodicLivenessCheck();
  void Broken(int result);
  int SleepOnCall(int timeout_ms);
  int RunSync(Request r, void* bounce);
  Status SyncStatus(int result, const char* what);
  uint64_t SyncChunk() const;

  DeviceShared* dev_;
  uint32_t index_;
  DriverVring vring_;
  SlotShared* slots_shared_;
  virtio::Desc* indirect_tables_ = nullptr;  // kIndirectEntries per head; null without INDIRECT_DESC
  std::vector<Slot> slots_;
  std::vector<Segment> segs_;      // scratch for one chain
  std::vector<Completion> stash_;  // completions kept for the next Poll
  size_t stash_head_ = 0, stash_count_ = 0;
  bool polled_;
  int broken_ = 0;  // -errno once the queue is unusable
  uint64_t next_live_check_ns_ = 0;
  UniqueFd kick_fd_, call_fd_;
};

}  // namespace nestor::client
