// libnestor C++ API: a user-space vhost-user-blk frontend (driver).
//
// Purpose: connect to any vhost-user-blk backend (nestord,
// qemu-storage-daemon, SPDK), negotiate features, share one memfd region
// with it (rings + I/O buffers; descriptor addresses are plain pointers)
// and drive its queues from user space without a VM.
//
// Threads: Device::Connect, Device::Close and the destructor belong to one
// thread, and Close must not run while any queue is in use. Each Queue is
// used by one thread at a time (no locks inside); different queues may be
// driven from different threads concurrently. AllocBuffer/FreeBuffer and
// the const accessors are thread-safe.
//
// Errors: setup and synchronous helpers return nestor::Status (errno +
// message, see base/status.h). The asynchronous hot path returns int:
// >= 0 on success, -errno on failure. Completion results are 0, -EIO
// (device IOERR), -ENOTSUP (device UNSUPP), -EPROTO (backend broke the
// protocol), -ENOTCONN (backend went away), -ETIMEDOUT.
//
// Buffers: data buffers of asynchronous requests must lie inside the shared
// region (AllocBuffer); -EFAULT otherwise. Synchronous helpers accept any
// memory and bounce through the region when needed. Offsets and lengths of
// data requests are multiples of 512 bytes; bounds are checked by the
// device, not here (so tests can send out-of-range requests).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

namespace nestor::client {

enum class Op : uint8_t { kRead = 0, kWrite = 1, kFlush = 2, kDiscard = 3, kWriteZeroes = 4, kGetId = 5 };

// Request flags.
constexpr uint32_t kReqUnmap = 1;  // write-zeroes: the device may unmap

struct Request {
  Op op = Op::kRead;
  uint32_t flags = 0;          // kReq*
  uint64_t offset = 0;         // bytes, multiple of 512
  uint64_t len = 0;            // bytes: buf length, or the discard/write-zeroes range
  void* buf = nullptr;         // read/write/get-id data (get-id: >= 20 bytes), used when iovcnt == 0
  const iovec* iov = nullptr;  // alternative scatter-gather list, each piece inside the region
  uint32_t iovcnt = 0;
  void* user_data = nullptr;  // returned in the Completion
};

struct Completion {
  void* user_data;
  int result;  // 0 or -errno (see banner)
};

struct Options {
  std::string socket_path;
  uint32_t num_queues = 1;            // <= what the backend offers
  uint32_t queue_size = 128;          // power of two, 2..32768
  bool polled = true;                 // true: busy-poll the used ring; false: sleep on the call eventfd
  size_t buffer_bytes = 64ull << 20;  // I/O buffer arena inside the shared region
  int timeout_ms = 10000;             // control messages, synchronous helpers, Close()
  bool event_idx = true;              // negotiate VIRTIO_RING_F_EVENT_IDX when offered
  bool indirect = true;               // negotiate VIRTIO_RING_F_INDIRECT_DESC when offered
  bool call_fd_when_polled = true;    // give polled queues a call eventfd anyway (qsd 7.2 needs one)
  bool populate = true;               // pre-fault the shared region
};

struct DeviceInfo {
  uint64_t capacity_bytes = 0;
  uint32_t block_size = 512;  // logical block size (BLK_SIZE) or 512
  uint32_t size_max = 0;      // max bytes per segment, 0 = no limit
  uint32_t seg_max = 0;       // max data segments per request (after our own ring limit)
  uint32_t max_queues = 1;    // offered by the backend
  bool read_only = false;
  bool flush = false;
  bool discard = false;
  bool write_zeroes = false;
  bool event_idx = false;
  bool indirect = false;  // one ring slot per request (up to 14 data segments)
  uint32_t max_discard_sectors = 0;
  uint32_t max_discard_seg = 0;
  uint32_t discard_sector_alignment = 0;
  uint32_t max_write_zeroes_sectors = 0;
  uint32_t max_write_zeroes_seg = 0;
  bool write_zeroes_may_unmap = false;
  uint64_t features = 0;           // negotiated virtio feature bits
  uint64_t protocol_features = 0;  // negotiated vhost-user protocol feature bits
};

class Queue {
 public:
  virtual ~Queue() = default;
  virtual uint32_t index() const = 0;
  virtual uint32_t size() const = 0;      // ring entries
  virtual uint32_t inflight() const = 0;  // submitted, not yet reaped

  // Asynchronous path. Submit queues up to reqs.size() requests, publishes
  // them with one avail.idx update and kicks at most once. Returns the
  // number accepted (a prefix), or -errno if the first one failed (-EAGAIN:
  // ring full; -EINVAL / -EFAULT: bad request; -ENOTCONN: backend gone).
  virtual int Submit(std::span<const Request> reqs) = 0;
  int Submit(const Request& r) { return Submit(std::span<const Request>(&r, 1)); }

  // Reaps up to max completions without blocking. Returns the count, or
  // -errno if the queue is broken and nothing was reaped.
  virtual int Poll(Completion* out, int max) = 0;
  // Reaps at least min (<= max) completions, busy-polling (polled mode) or
  // sleeping on the call eventfd (blocking mode); timeout_ms < 0 waits
  // forever unless the backend disconnects. Returns the count reaped (may be
  // < min on timeout or when fewer are in flight), or -ETIMEDOUT /
  // -ENOTCONN / -EPROTO if none.
  virtual int Wait(Completion* out, int min, int max, int timeout_ms) = 0;

  // Synchronous helpers: block until done (bounded by Options::timeout_ms).
  // Ranges are split by the device limits; any memory is accepted. They
  // may be mixed with asynchronous requests: other completions are kept
  // for the next Poll/Wait.
  virtual Status Read(uint64_t offset, void* buf, size_t len) = 0;
  virtual Status Write(uint64_t offset, const void* buf, size_t len) = 0;
  virtual Status Flush() = 0;
  virtual Status Discard(uint64_t offset, uint64_t len) = 0;
  virtual Status WriteZeroes(uint64_t offset, uint64_t len, bool unmap) = 0;
  virtual Status GetId(std::string* id) = 0;
};

class Device {
 public:
  // Connects and negotiates; on return every queue is running.
  static Result<std::unique_ptr<Device>> Connect(const Options& options);
  virtual ~Device() = default;  // calls Close()

  virtual const DeviceInfo& info() const = 0;
  virtual uint32_t num_queues() const = 0;
  virtual Queue& queue(uint32_t index) = 0;  // REQUIRES: index < num_queues()

  // I/O buffers inside the shared region. Alloc returns nullptr when out
  // of space; align is a power of two <= 4096.
  virtual void* AllocBuffer(size_t len, size_t align = 4096) = 0;
  virtual void FreeBuffer(void* buf) = 0;
  virtual bool Owns(const void* buf, size_t len) const = 0;

  // False once the backend disconnected (checked lazily while waiting).
  virtual bool connected() const = 0;
  // Stops the rings (GET_VRING_BASE), closes the socket. Idempotent.
  virtual void Close() = 0;
};

// "0", "-EIO" ... for reports.
std::string ResultName(int result);

}  // namespace nestor::client
