// A minimal, deliberately unsafe vhost-user frontend for hostile-client
// tests: it sends whatever bytes, headers, payloads and fds a test asks for,
// reads replies with timeouts, and can lay out a split virtqueue by hand in
// a memfd so that tests can put arbitrary descriptors in front of nestord.
//
// Thread: one test thread per object. Errors: every wait is bounded; a
// send or receive failure is reported as a value (never an exception), so
// tests can assert on how the backend reacted.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/scm_rights.h"
#include "vhost/wire.h"
#include "virtio/blk_defs.h"
#include "virtio/ring_layout.h"

namespace nestor::hostile {

using Clock = std::chrono::steady_clock;

inline int64_t MsLeft(Clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return d < 0 ? 0 : d;
}

// Result of an acknowledged (NEED_REPLY) message.
constexpr int64_t kAckTimeout = -1;   // no reply within the timeout
constexpr int64_t kAckClosed = -2;    // the backend closed the connection
constexpr int64_t kAckBadReply = -3;  // a reply that is not a u64 ack for this request

enum class RecvResult { kOk, kTimeout, kClosed };

struct Reply {
  vhost::MsgHeader hdr{};
  std::vector<uint8_t> payload;
  int nfds = 0;  // fds that came with the reply (closed on receipt)
};

class RawConn {
 public:
  // Connects to a unix socket; nullptr if connect fails (errno kept).
  static std::unique_ptr<RawConn> Connect(const std::string& path) {
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) return nullptr;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      int e = errno;
      close(fd);
      errno = e;
      return nullptr;
    }
    auto c = std::unique_ptr<RawConn>(new RawConn());
    c->fd_ = fd;
    return c;
  }
  ~RawConn() { Close(); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  // Sends exactly these bytes (fds ride on the first sendmsg). False if the
  // backend is gone. Never raises SIGPIPE.
  bool SendBytes(const void* data, size_t len, const std::vector<int>& fds = {}) {
    if (fd_ < 0) return false;
    iovec iov{const_cast<void*>(data), len};
    return SendWithFds(fd_, &iov, 1, fds).ok();
  }

  // Header + payload (+ fds) as one message.
  bool Send(uint32_t request, uint32_t flags, const void* payload, uint32_t size, const std::vector<int>& fds = {}) {
    std::vector<uint8_t> buf(sizeof(vhost::MsgHeader) + size);
    vhost::MsgHeader h{request, flags, size};
    std::memcpy(buf.data(), &h, sizeof(h));
    if (size) std::memcpy(buf.data() + sizeof(h), payload, size);
    return SendBytes(buf.data(), buf.size(), fds);
  }
  bool SendMsg(uint32_t request, const void* payload, uint32_t size, const std::vector<int>& fds = {},
               bool need_reply = false) {
    return Send(request, vhost::kVersion | (need_reply ? vhost::kFlagNeedReply : 0), payload, size, fds);
  }

  // Reads one reply (header + payload) within timeout_ms.
  RecvResult Recv(Reply* r, int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    *r = Reply{};
    RecvResult w = WaitReadable(deadline);
    if (w != RecvResult::kOk) return w;
    std::vector<UniqueFd> fds;  // a reply's fds are counted and closed
    bool truncated = false;
    auto got = RecvWithFds(fd_, &r->hdr, sizeof(r->hdr), MSG_DONTWAIT, 16, &fds, &truncated);
    r->nfds += static_cast<int>(fds.size());
    if (!got.ok()) return got.status().err() == EAGAIN ? RecvResult::kTimeout : RecvResult::kClosed;
    if (*got == 0) return RecvResult::kClosed;
    size_t n = *got;
    if (!ReadExact(reinterpret_cast<uint8_t*>(&r->hdr) + n, sizeof(r->hdr) - n, deadline)) return RecvResult::kClosed;
    if (r->hdr.size > (1u << 20)) return RecvResult::kClosed;  // nonsense: treat as broken
    r->payload.resize(r->hdr.size);
    if (!ReadExact(r->payload.data(), r->payload.size(), deadline)) return RecvResult::kClosed;
    return RecvResult::kOk;
  }

  // True if the backend closes the connection within timeout_ms; any data
  // it sends before closing is discarded.
  bool WaitClosed(int timeout_ms) {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      RecvResult w = WaitReadable(deadline);
      if (w == RecvResult::kTimeout) return false;
      if (w == RecvResult::kClosed) return true;
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EINTR) return true;
    }
  }

  // Sends with NEED_REPLY and returns the u64 ack (0 = success), or
  // kAckTimeout / kAckClosed / kAckBadReply.
  int64_t Ack(uint32_t request, const void* payload, uint32_t size, const std::vector<int>& fds = {},
              int timeout_ms = 2000) {
    if (!SendMsg(request, payload, size, fds, true)) return kAckClosed;
    Reply r;
    RecvResult rr = Recv(&r, timeout_ms);
    if (rr == RecvResult::kTimeout) return kAckTimeout;
    if (rr == RecvResult::kClosed) return kAckClosed;
    if (r.hdr.request != request || r.hdr.flags != (vhost::kVersion | vhost::kFlagReply) ||
        r.payload.size() != sizeof(uint64_t))
      return kAckBadReply;
    uint64_t v;
    std::memcpy(&v, r.payload.data(), sizeof(v));
    return static_cast<int64_t>(v & 0x7fffffffffffffffull);
  }
  template <typename T>
  int64_t AckOf(uint32_t request, const T& v, const std::vector<int>& fds = {}) {
    return Ack(request, &v, sizeof(v), fds);
  }

  // A request that always gets its own reply (GET_*): returns the reply
  // payload in *out. False on timeout/close or a reply for another request.
  bool Call(uint32_t request, const void* payload, uint32_t size, Reply* out, int timeout_ms = 2000) {
    if (!SendMsg(request, payload, size)) return false;
    if (Recv(out, timeout_ms) != RecvResult::kOk) return false;
    return out->hdr.request == request && out->hdr.flags == (vhost::kVersion | vhost::kFlagReply);
  }
  bool CallU64(uint32_t request, uint64_t* v) {
    Reply r;
    if (!Call(request, nullptr, 0, &r) || r.payload.size() != 8) return false;
    std::memcpy(v, r.payload.data(), 8);
    return true;
  }

  // The usual opening: SET_OWNER, features (VERSION_1, PROTOCOL_FEATURES
  // plus extra), protocol features (REPLY_ACK, CONFIG, MQ,
  // CONFIGURE_MEM_SLOTS). After this every Ack() gets an answer.
  bool Negotiate(uint64_t extra_features = virtio::Bit(virtio::kFeatureIndirectDesc)) {
    if (!SendMsg(vhost::kSetOwner, nullptr, 0)) return false;
    uint64_t f = 0, pf = 0;
    if (!CallU64(vhost::kGetFeatures, &f)) return false;
    uint64_t want =
        virtio::Bit(virtio::kFeatureVersion1) | virtio::Bit(vhost::kFeatureProtocolFeatures) | extra_features;
    if ((f & want) != want) return false;
    if (!SendMsg(vhost::kSetFeatures, &want, sizeof(want))) return false;
    if (!CallU64(vhost::kGetProtocolFeatures, &pf)) return false;
    uint64_t wp = virtio::Bit(vhost::kProtoReplyAck) | virtio::Bit(vhost::kProtoConfig) | virtio::Bit(vhost::kProtoMq) |
                  virtio::Bit(vhost::kProtoConfigureMemSlots);
    if ((pf & wp) != wp) return false;
    if (!SendMsg(vhost::kSetProtocolFeatures, &wp, sizeof(wp))) return false;
    // A round trip proves the backend digested all of the above.
    uint64_t q = 0;
    return CallU64(vhost::kGetQueueNum, &q);
  }

 private:
  RawConn() = default;

  RecvResult WaitReadable(Clock::time_point deadline) {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(MsLeft(deadline)));
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return RecvResult::kTimeout;
      if (r < 0) return RecvResult::kClosed;
      if (p.revents & POLLIN) return RecvResult::kOk;  // data or EOF: recv tells
      return RecvResult::kClosed;                      // POLLHUP/POLLERR without data
    }
  }
  bool ReadExact(uint8_t* p, size_t len, Clock::time_point deadline) {
    while (len > 0) {
      if (WaitReadable(deadline) != RecvResult::kOk) return false;
      ssize_t n = recv(fd_, p, len, MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return false;
      p += n;
      len -= static_cast<size_t>(n);
    }
    return true;
  }

  int fd_ = -1;
};

// Shared guest memory: a memfd mapped MAP_SHARED; guest physical address
// == frontend virtual address == the pointer (as libnestor does).
class GuestMem {
 public:
  // file_bytes < bytes makes a region larger than its file (never touch
  // the tail locally: it would SIGBUS us).
  static std::unique_ptr<GuestMem> Create(size_t bytes, size_t file_bytes = 0) {
    if (file_bytes == 0) file_bytes = bytes;
    int fd = memfd_create("hostile-guest", MFD_CLOEXEC);
    if (fd < 0) return nullptr;
    if (ftruncate(fd, static_cast<off_t>(file_bytes)) != 0) {
      close(fd);
      return nullptr;
    }
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      return nullptr;
    }
    auto g = std::unique_ptr<GuestMem>(new GuestMem());
    g->fd_ = fd;
    g->base_ = static_cast<uint8_t*>(p);
    g->bytes_ = bytes;
    g->file_bytes_ = file_bytes;
    if (file_bytes >= bytes) std::memset(p, 0, bytes);
    return g;
  }
  ~GuestMem() {
    if (base_) munmap(base_, bytes_);
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }
  uint8_t* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  uint64_t gpa(const void* p) const { return reinterpret_cast<uint64_t>(p); }
  uint64_t gpa_at(size_t off) const { return reinterpret_cast<uint64_t>(base_ + off); }
  vhost::MemRegion Region() const { return {gpa_at(0), bytes_, gpa_at(0), 0}; }
  vhost::SingleMemRegion Single() const { return {0, Region()}; }

 private:
  GuestMem() = default;
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
  size_t file_bytes_ = 0;
};

// A split ring laid out by hand inside GuestMem at [ring_off, ring_off +
// 64 KiB): desc table, avail ring, used ring; [ring_off + 64 KiB, area_end)
// is a bump allocator for request buffers.
class RawRing {
 public:
  static constexpr size_t kRingArea = 64 * 1024;

  RawRing(GuestMem* mem, uint32_t n, size_t ring_off = 0, size_t area_end = 0)
      : mem_(mem), n_(n), data_off_(ring_off + kRingArea), data_end_(area_end ? area_end : mem->bytes()) {
    uint8_t* b = mem->base() + ring_off;
    desc_ = reinterpret_cast<virtio::Desc*>(b);
    avail_ = reinterpret_cast<virtio::AvailRing*>(b + Align(virtio::DescTableBytes(n), 64));
    used_ = reinterpret_cast<virtio::UsedRing*>(b + Align(virtio::DescTableBytes(n), 64) +
                                                Align(virtio::AvailRingBytes(n), 64));
    next_data_ = data_off_;
  }

  uint32_t n() const { return n_; }
  virtio::Desc* desc() const { return desc_; }
  virtio::AvailRing* avail() const { return avail_; }
  virtio::UsedRing* used() const { return used_; }
  GuestMem* mem() const { return mem_; }

  vhost::VringAddr Addr(uint32_t index) const {
    return {index, 0, mem_->gpa(desc_), mem_->gpa(used_), mem_->gpa(avail_), 0};
  }

  // Bump allocation in the data area (wraps back to the start when full;
  // tests keep few buffers alive at once).
  uint8_t* Alloc(size_t len, size_t align = 64) {
    size_t off = Align(next_data_, align);
    if (off + len > data_end_) off = Align(data_off_, align);
    next_data_ = off + len;
    return mem_->base() + off;
  }

  // Descriptor slots: handed out round-robin.
  uint16_t NextDesc() {
    uint16_t d = static_cast<uint16_t>(next_desc_ % n_);
    ++next_desc_;
    return d;
  }
  void SetDesc(uint16_t i, const void* addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    SetDescRaw(i, mem_->gpa(addr), len, flags, next);
  }
  void SetDescRaw(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    desc_[i] = virtio::Desc{addr, len, flags, next};
  }

  // Makes head available (does not kick).
  void Publish(uint16_t head) {
    avail_->ring[avail_idx_ % n_] = head;
    ++avail_idx_;
    __atomic_store_n(&avail_->idx, avail_idx_, __ATOMIC_RELEASE);
  }
  // Stores an arbitrary avail.idx (ring-breaking tests).
  void StoreAvailIdx(uint16_t v) { __atomic_store_n(&avail_->idx, v, __ATOMIC_RELEASE); }
  uint16_t avail_idx() const { return avail_idx_; }

  uint16_t used_idx() const { return __atomic_load_n(&used_->idx, __ATOMIC_ACQUIRE); }
  // Waits until used.idx reaches target (bounded).
  bool WaitUsed(uint16_t target, int timeout_ms) const {
    auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (static_cast<int16_t>(used_idx() - target) < 0) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
  }
  // Waits (bounded) for the next used element the test has not seen yet.
  bool NextUsed(virtio::UsedElem* e, int timeout_ms) {
    if (!WaitUsed(static_cast<uint16_t>(used_seen_ + 1), timeout_ms)) return false;
    *e = UsedAt(used_seen_++);
    return true;
  }
  virtio::UsedElem UsedAt(uint16_t i) const {
    virtio::UsedElem e;
    std::memcpy(&e, &used_->ring[i % n_], sizeof(e));
    return e;
  }

  static size_t Align(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

 private:
  GuestMem* mem_;
  uint32_t n_;
  size_t data_off_;
  size_t data_end_;
  size_t next_data_;
  virtio::Desc* desc_;
  virtio::AvailRing* avail_;
  virtio::UsedRing* used_;
  uint16_t avail_idx_ = 0;
  uint16_t used_seen_ = 0;
  uint32_t next_desc_ = 0;
};

}  // namespace nestor::hostile
