// Shared memory for the user-space vhost-user-blk driver: one memfd-backed
// MAP_SHARED region holding the rings, the request headers and the I/O
// buffers, registered once with the backend (guest physical address ==
// process virtual address), plus a first-fit allocator for I/O buffers.
//
// Thread: SharedRegion is immutable after Create(). BufferAllocator is
// thread-safe (one mutex; not meant for the per-I/O hot path).
// Errors: Status/Result; allocation failure is a nullptr.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

#include "base/fd.h"
#include "base/mutex.h"
#include "base/status.h"

namespace nestor::client {

class SharedRegion {
 public:
  // Creates a memfd of `bytes` (rounded up to the page size), maps it
  // MAP_SHARED read-write and optionally pre-faults it.
  static Result<SharedRegion> Create(size_t bytes, bool populate);

  SharedRegion() = default;
  SharedRegion(SharedRegion&& o) noexcept;
  SharedRegion& operator=(SharedRegion&& o) noexcept;
  ~SharedRegion();

  uint8_t* base() const { return base_; }
  size_t size() const { return size_; }
  int fd() const { return fd_.get(); }
  bool Contains(const void* p, size_t len) const {
    auto a = reinterpret_cast<uintptr_t>(p);
    auto b = reinterpret_cast<uintptr_t>(base_);
    return a >= b && len <= size_ && a - b <= size_ - len;
  }

 private:
  UniqueFd fd_;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// First-fit allocator over [base, base + size) with coalescing. Granule
// 64 bytes; alignment a power of two up to the page size.
class BufferAllocator {
 public:
  BufferAllocator() = default;
  void Init(uint8_t* base, size_t size);
  void* Alloc(size_t len, size_t align);  // nullptr when len == 0 or exhausted
  bool Free(void* p);                     // false if p was not allocated here
  size_t free_bytes() const;

 private:
  static constexpr size_t kGranule = 64;
  mutable Mutex mu_;
  uint8_t* base_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<size_t, size_t> free_ ABSL_GUARDED_BY(mu_);  // offset -> length
  std::map<size_t, size_t> used_ ABSL_GUARDED_BY(mu_);  // offset -> length
};

}  // namespace nestor::client
