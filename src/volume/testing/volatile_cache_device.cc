#include "volume/testing/volatile_cache_device.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace nestor::volume::testing {
namespace {

void CheckImageSize(uint64_t size) {
  if (size == 0 || size % kMetaAlign != 0) {
    std::fprintf(stderr, "VolatileCacheDevice: size %llu is not a non-zero multiple of %zu\n",
                 static_cast<unsigned long long>(size), kMetaAlign);
    std::abort();
  }
}

}  // namespace

class VolatileCacheDevice::Channel final : public io::IoChannel {
 public:
  explicit Channel(VolatileCacheDevice* dev) : dev_(dev) {}
  void Submit(io::IoRequest* req) override {
    int res = dev_->Execute(*req);  // takes and releases the device lock
    req->done(req, res);
  }
  const io::IoStats& stats() const override { return stats_; }

 private:
  VolatileCacheDevice* dev_;
  io::IoStats stats_;
};

class VolatileCacheDevice::Backend final : public io::BlockBackend {
 public:
  explicit Backend(VolatileCacheDevice* dev) : dev_(dev) {}
  uint64_t size_bytes() const override { return dev_->size_bytes(); }
  std::string Describe() const override { return dev_->Describe(); }
  uint32_t block_size() const override { return kSectorSize; }
  Result<std::unique_ptr<io::IoChannel>> OpenChannel(io::IoUring*) override {
    return std::unique_ptr<io::IoChannel>(new Channel(dev_));
  }

 private:
  VolatileCacheDevice* dev_;
};

VolatileCacheDevice::VolatileCacheDevice(uint64_t size_bytes, uint64_t seed, CrashOptions options)
    : VolatileCacheDevice(std::vector<uint8_t>(size_bytes, 0), seed, options) {}

VolatileCacheDevice::VolatileCacheDevice(std::vector<uint8_t> durable, uint64_t seed, CrashOptions options)
    : size_(durable.size()), backend_(new Backend(this)), durable_(std::move(durable)), rng_(seed), options_(options) {
  CheckImageSize(size_);
  current_ = durable_;
}

std::unique_ptr<VolatileCacheDevice> VolatileCacheDevice::FromImage(std::vector<uint8_t> durable, uint64_t seed,
                                                                    CrashOptions options) {
  return std::unique_ptr<VolatileCacheDevice>(new VolatileCacheDevice(std::move(durable), seed, options));
}

VolatileCacheDevice::~VolatileCacheDevice() = default;

std::string VolatileCacheDevice::Describe() const {
  MutexLock lock(&mu_);
  return "volatile-cache(size=" + std::to_string(size_) + ", pending_writes=" + std::to_string(pending_.size()) +
         ", pending_bytes=" + std::to_string(pending_bytes_) + ")";
}

Status VolatileCacheDevice::ReadAt(uint64_t off, void* buf, size_t len) {
  if (!InRange(off, len)) return Status::Invalid("volatile-cache: read out of range");
  MutexLock lock(&mu_);
  if (len > 0) std::memcpy(buf, current_.data() + off, len);
  return Status::Ok();
}

Status VolatileCacheDevice::WriteAt(uint64_t off, const void* buf, size_t len) {
  if (!InRange(off, len)) return Status::Invalid("volatile-cache: write out of range");
  MutexLock lock(&mu_);
  if (!AdmitWriteLocked()) return Status::IoError("volatile-cache: injected write failure");
  const auto* p = static_cast<const uint8_t*>(buf);
  ApplyWriteLocked(PendingWrite{off, len, std::vector<uint8_t>(p, p + len)});
  return Status::Ok();
}

Status VolatileCacheDevice::Sync() {
  MutexLock lock(&mu_);
  return SyncLocked();
}

io::BlockBackend* VolatileCacheDevice::data() { return backend_.get(); }

bool VolatileCacheDevice::AdmitWriteLocked() {
  if (fail_writes_) {
    if (writes_allowed_ == 0) {
      ++failed_writes_;
      return false;
    }
    --writes_allowed_;
  }
  return true;
}

void VolatileCacheDevice::ApplyWriteLocked(PendingWrite w) {
  ++writes_;
  if (w.length == 0) return;
  Apply(current_, w, w.offset, w.length);
  pending_bytes_ += w.length;
  pending_.push_back(std::move(w));
}

Status VolatileCacheDevice::SyncLocked() {
  if (fail_sync_) {
    ++failed_syncs_;
    return Status::IoError("volatile-cache: injected sync failure");
  }
  // current_ == durable_ + pending_: replay the (usually few) cached
  // writes rather than copying the whole image.
  if (pending_bytes_ >= size_) {
    durable_ = current_;
  } else {
    for (const PendingWrite& w : pending_) Apply(durable_, w, w.offset, w.length);
  }
  pending_.clear();
  pending_bytes_ = 0;
  ++syncs_;
  return Status::Ok();
}

void VolatileCacheDevice::Apply(std::vector<uint8_t>& image, const PendingWrite& w, uint64_t off, uint64_t len) {
  if (w.bytes.empty()) {
    std::memset(image.data() + off, 0, len);
  } else {
    std::memcpy(image.data() + off, w.bytes.data() + (off - w.offset), len);
  }
}

int VolatileCacheDevice::Execute(const io::IoRequest& req) {
  using io::IoOp;
  if (req.op == IoOp::kFlush) {
    MutexLock lock(&mu_);
    return SyncLocked().ok() ? 0 : -EIO;
  }
  if (!InRange(req.offset, req.length)) return -EINVAL;
  if (req.op == IoOp::kRead || req.op == IoOp::kWrite) {
    uint64_t total = 0;
    for (int i = 0; i < req.iovcnt; ++i) total += req.iov[i].iov_len;
    if (req.iovcnt < 0 || total != req.length) return -EINVAL;
  }
  const int data_result = static_cast<int>(req.length);
  MutexLock lock(&mu_);
  switch (req.op) {
    case IoOp::kRead: {
      const uint8_t* p = current_.data() + req.offset;
      for (int i = 0; i < req.iovcnt; ++i) {
        if (req.iov[i].iov_len > 0) std::memcpy(req.iov[i].iov_base, p, req.iov[i].iov_len);
        p += req.iov[i].iov_len;
      }
      return data_result;
    }
    case IoOp::kWrite: {
      if (!AdmitWriteLocked()) return -EIO;
      PendingWrite w{req.offset, req.length, {}};
      w.bytes.reserve(req.length);
      for (int i = 0; i < req.iovcnt; ++i) {
        const auto* b = static_cast<const uint8_t*>(req.iov[i].iov_base);
        w.bytes.insert(w.bytes.end(), b, b + req.iov[i].iov_len);
      }
      ApplyWriteLocked(std::move(w));
      return data_result;
    }
    case IoOp::kDiscard:
    case IoOp::kWriteZeroes:
      if (!AdmitWriteLocked()) return -EIO;
      ApplyWriteLocked(PendingWrite{req.offset, req.length, {}});
      return 0;
    case IoOp::kFlush: break;  // handled above
  }
  return -EINVAL;
}

std::vector<uint8_t> VolatileCacheDevice::Crash() {
  MutexLock lock(&mu_);
  std::vector<uint8_t> image = durable_;
  const uint64_t keep = options_.keep_weight;
  const uint64_t drop = options_.drop_weight;
  const uint64_t total = keep + drop + options_.tear_weight;
  if (total == 0) {
    std::fprintf(stderr, "VolatileCacheDevice: CrashOptions weights sum to 0\n");
    std::abort();
  }
  std::vector<bool> applied;
  for (const PendingWrite& w : pending_) {
    const uint64_t r = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng_);
    if (r < keep) {
      Apply(image, w, w.offset, w.length);
      continue;
    }
    if (r < keep + drop) continue;
    // Torn: the write's pieces in each sector it touches are atomic.
    const uint64_t first = w.offset / kSectorSize;
    const uint64_t end = (w.offset + w.length + kSectorSize - 1) / kSectorSize;
    const uint64_t n = end - first;
    applied.assign(n, false);
    uint64_t count = 0;
    for (uint64_t i = 0; i < n; ++i) {
      applied[i] = (rng_() & 1) != 0;
      count += applied[i];
    }
    if (n >= 2 && (count == 0 || count == n)) {
      // Make the subset proper and non-empty: flip one sector.
      const uint64_t i = std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_);
      applied[i] = !applied[i];
    }
    for (uint64_t i = 0; i < n; ++i) {
      if (!applied[i]) continue;
      const uint64_t lo = std::max(w.offset, (first + i) * kSectorSize);
      const uint64_t hi = std::min(w.offset + w.length, (first + i + 1) * kSectorSize);
      Apply(image, w, lo, hi - lo);
    }
  }
  return image;
}

std::vector<uint8_t> VolatileCacheDevice::durable_image() const {
  MutexLock lock(&mu_);
  return durable_;
}

std::vector<uint8_t> VolatileCacheDevice::current_image() const {
  MutexLock lock(&mu_);
  return current_;
}

void VolatileCacheDevice::FailWritesAfter(uint64_t n) {
  MutexLock lock(&mu_);
  fail_writes_ = true;
  writes_allowed_ = n;
}

void VolatileCacheDevice::FailSync(bool fail) {
  MutexLock lock(&mu_);
  fail_sync_ = fail;
}

void VolatileCacheDevice::ClearFaults() {
  MutexLock lock(&mu_);
  fail_writes_ = false;
  writes_allowed_ = 0;
  fail_sync_ = false;
}

void VolatileCacheDevice::set_crash_options(const CrashOptions& options) {
  MutexLock lock(&mu_);
  options_ = options;
}

uint64_t VolatileCacheDevice::writes() const {
  MutexLock lock(&mu_);
  return writes_;
}

uint64_t VolatileCacheDevice::syncs() const {
  MutexLock lock(&mu_);
  return syncs_;
}

uint64_t VolatileCacheDevice::failed_writes() const {
  MutexLock lock(&mu_);
  return failed_writes_;
}

uint64_t VolatileCacheDevice::failed_syncs() const {
  MutexLock lock(&mu_);
  return failed_syncs_;
}

uint64_t VolatileCacheDevice::pending_writes() const {
  MutexLock lock(&mu_);
  return pending_.size();
}

uint64_t VolatileCacheDevice::pending_bytes() const {
  MutexLock lock(&mu_);
  return pending_bytes_;
}

}  // namespace nestor::volume::testing
