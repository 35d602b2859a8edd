#include "client/memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <utility>

namespace nestor::client {

Result<SharedRegion> SharedRegion::Create(size_t bytes, bool populate) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (bytes == 0) return Status::Invalid("empty shared region");
  bytes = (bytes + page - 1) / page * page;
  SharedRegion r;
  r.fd_.Reset(memfd_create("nestor-client", MFD_CLOEXEC));
  if (!r.fd_.valid()) return Status::FromErrno("memfd_create");
  if (ftruncate(r.fd_.get(), static_cast<off_t>(bytes)) != 0) return Status::FromErrno("ftruncate");
  int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, r.fd_.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno("mmap shared region");
  r.base_ = static_cast<uint8_t*>(p);
  r.size_ = bytes;
  return r;
}

SharedRegion::SharedRegion(SharedRegion&& o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}

SharedRegion& SharedRegion::operator=(SharedRegion&& o) noexcept {
  if (this != &o) {
    if (base_) munmap(base_, size_);
    fd_ = std::move(o.fd_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

SharedRegion::~SharedRegion() {
  if (base_) munmap(base_, size_);
}

void BufferAllocator::Init(uint8_t* base, size_t size) {
  MutexLock lock(&mu_);
  base_ = base;
  free_.clear();
  used_.clear();
  size_t start = (kGranule - reinterpret_cast<uintptr_t>(base) % kGranule) % kGranule;
  if (size > start + kGranule) free_[start] = (size - start) / kGranule * kGranule;
}

void* BufferAllocator::Alloc(size_t len, size_t align) {
  if (len == 0 || align == 0 || (align & (align - 1)) != 0 || align > 4096) return nullptr;
  if (align < kGranule) align = kGranule;
  len = (len + kGranule - 1) / kGranule * kGranule;
  MutexLock lock(&mu_);
  const auto b = reinterpret_cast<uintptr_t>(base_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    size_t off = it->first, flen = it->second;
    size_t aligned = ((b + off + align - 1) & ~(align - 1)) - b;
    size_t pad = aligned - off;
    if (flen < pad || flen - pad < len) continue;
    free_.erase(it);
    if (pad) free_[off] = pad;
    if (flen - pad > len) free_[aligned + len] = flen - pad - len;
    used_[aligned] = len;
    return base_ + aligned;
  }
  return nullptr;
}

bool BufferAllocator::Free(void* p) {
  if (!p) return true;
  MutexLock lock(&mu_);
  auto off = static_cast<size_t>(static_cast<uint8_t*>(p) - base_);
  auto u = used_.find(off);
  if (static_cast<uint8_t*>(p) < base_ || u == used_.end()) return false;
  size_t len = u->second;
  used_.erase(u);
  auto next = free_.lower_bound(off);
  if (next != free_.end() && next->first == off + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == off) {
      prev->second += len;
      return true;
    }
  }
  free_[off] = len;
  return true;
}

size_t BufferAllocator::free_bytes() const {
  MutexLock lock(&mu_);
  size_t n = 0;
  for (auto& [off, len] : free_) n += len;
  return n;
}

}  // namespace nestor::client
