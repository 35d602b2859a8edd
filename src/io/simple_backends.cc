// Null and memory backends: complete inline on the submitting reactor.
#include <sys/mman.h>

#include <cstring>

#include "io/backend.h"

namespace nestor::io {
namespace {

// Null: writes are dropped, reads complete without touching the buffer
// (like Linux null_blk), everything succeeds instantly.
class NullChannel final : public IoChannel {
 public:
  void Submit(IoRequest* req) override {
    int res = (req->op == IoOp::kRead || req->op == IoOp::kWrite) ? static_cast<int>(req->length) : 0;
    req->done(req, res);
  }
  const IoStats& stats() const override { return stats_; }

 private:
  IoStats stats_;
};

class NullBackend final : public BlockBackend {
 public:
  explicit NullBackend(uint64_t size) : size_(size) {}
  uint64_t size_bytes() const override { return size_; }
  std::string Describe() const override { return "null"; }
  Result<std::unique_ptr<IoChannel>> OpenChannel(IoUring*) override {
    return std::unique_ptr<IoChannel>(new NullChannel());
  }

 private:
  uint64_t size_;
};

// Memory: an anonymous private mapping, zero-filled on first touch.
// Reactors serving queues of the same volume touch disjoint or racing
// ranges exactly as concurrent writers to a disk would.
class MemChannel final : public IoChannel {
 public:
  explicit MemChannel(uint8_t* base) : base_(base) {}
  void Submit(IoRequest* req) override {
    uint8_t* p = base_ + req->offset;
    switch (req->op) {
      case IoOp::kRead:
        for (int i = 0; i < req->iovcnt; ++i) {
          std::memcpy(req->iov[i].iov_base, p, req->iov[i].iov_len);
          p += req->iov[i].iov_len;
        }
        break;
      case IoOp::kWrite:
        for (int i = 0; i < req->iovcnt; ++i) {
          std::memcpy(p, req->iov[i].iov_base, req->iov[i].iov_len);
          p += req->iov[i].iov_len;
        }
        break;
      case IoOp::kDiscard:
      case IoOp::kWriteZeroes: ZeroRange(p, req->length); break;
      case IoOp::kFlush: break;
    }
    bool data = req->op == IoOp::kRead || req->op == IoOp::kWrite;
    req->done(req, data ? static_cast<int>(req->length) : 0);
  }
  const IoStats& stats() const override { return stats_; }

 private:
  // Whole pages are dropped (they read back as zeros), the edges cleared.
  static void ZeroRange(uint8_t* p, uint64_t len) {
    const uintptr_t page = 4096;
    uintptr_t start = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
    uintptr_t end = (reinterpret_cast<uintptr_t>(p) + len) & ~(page - 1);
    if (end <= start || madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED) != 0) {
      std::memset(p, 0, len);
      return;
    }
    std::memset(p, 0, start - reinterpret_cast<uintptr_t>(p));
    std::memset(reinterpret_cast<void*>(end), 0, reinterpret_cast<uintptr_t>(p) + len - end);
  }

  uint8_t* base_;
  IoStats stats_;
};

class MemBackend final : public BlockBackend {
 public:
  MemBackend(uint8_t* base, uint64_t size) : base_(base), size_(size) {}
  ~MemBackend() override { munmap(base_, size_); }
  uint64_t size_bytes() const override { return size_; }
  std::string Describe() const override { return "mem"; }
  Result<std::unique_ptr<IoChannel>> OpenChannel(IoUring*) override {
    return std::unique_ptr<IoChannel>(new MemChannel(base_));
  }

 private:
  uint8_t* base_;
  uint64_t size_;
};

}  // namespace

Result<std::unique_ptr<BlockBackend>> OpenNullBackend(uint64_t size) {
  return std::unique_ptr<BlockBackend>(new NullBackend(size));
}

Result<std::unique_ptr<BlockBackend>> OpenMemBackend(uint64_t size) {
  if (size == 0) return Status::Invalid("mem backend needs a non-zero size");
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Status::FromErrno("mmap mem backend");
  return std::unique_ptr<BlockBackend>(new MemBackend(static_cast<uint8_t*>(p), size));
}

}  // namespace nestor::io
