// AlignedBuffer: a heap buffer aligned for O_DIRECT metadata I/O.
// Thread: owned by one thread at a time. Errors: aborts on out-of-memory,
// like std::vector.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace nestor::volume {

class AlignedBuffer {
 public:
  explicit AlignedBuffer(size_t bytes, size_t align = 4096) : size_(bytes) {
    if (posix_memalign(&p_, align, bytes == 0 ? align : bytes) != 0) throw std::bad_alloc();
    std::memset(p_, 0, bytes);
  }
  ~AlignedBuffer() { free(p_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  uint8_t* data() { return static_cast<uint8_t*>(p_); }
  const uint8_t* data() const { return static_cast<const uint8_t*>(p_); }
  size_t size() const { return size_; }

 private:
  void* p_ = nullptr;
  size_t size_;
};

}  // namespace nestor::volume
