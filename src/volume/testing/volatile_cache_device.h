// VolatileCacheDevice: a fault-injection PoolDevice for crash-consistency
// tests. It models a disk with a volatile write cache: every completed write
// is visible to later reads at once, but only Sync() (or a kFlush on a data
// channel) makes it durable. Crash() produces the image a power loss could
// leave behind: the durable image plus each write still in the cache either
// kept, dropped or torn at 512-byte sector granularity (sectors are atomic;
// no byte-level tearing). A test then "reboots" with FromImage(image).
//
// Memory: two full copies of the device (durable image and current view)
// plus the bytes of the writes not yet synced; meant for pools of up to
// ~64 MiB.
//
// Thread: any. One std::mutex protects all state, so the synchronous
// methods, the data() channels and the test accessors may be used from any
// thread. Data channels complete inline: req->done runs on the submitting
// thread before Submit returns (and outside the lock, so it may submit
// again). The IoUring* passed to OpenChannel is ignored (may be nullptr).
//
// Errors: [[nodiscard]] Status for the synchronous calls, -errno completions
// on the data path (io/backend.h). Out-of-range I/O: Status::Invalid /
// -EINVAL. Injected faults: Status::IoError / -EIO; a failed write or sync
// changes nothing (neither the view nor the cache). Contract violations
// documented as REQUIRES abort the process.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "io/backend.h"
#include "volume/pool_device.h"

namespace nestor::volume::testing {

// The fate of each write still in the volatile cache when Crash() runs:
// relative weights (the defaults make each fate equally likely). A torn
// write applies a random non-empty proper subset of the 512-byte sectors it
// touches (a write within one sector cannot tear: it is kept or dropped).
struct CrashOptions {
  uint32_t keep_weight = 1;
  uint32_t drop_weight = 1;
  uint32_t tear_weight = 1;  // REQUIRES: the three weights do not sum to 0
};

class VolatileCacheDevice final : public PoolDevice {
 public:
  static constexpr uint32_t kSectorSize = 512;

  // A zero-filled device of size_bytes, durable and current alike.
  // REQUIRES: size_bytes is a non-zero multiple of kMetaAlign (4096).
  VolatileCacheDevice(uint64_t size_bytes, uint64_t seed, CrashOptions options = {});
  // A device whose durable image and current view are `durable` (e.g. the
  // result of Crash() on another device: a reboot).
  // REQUIRES: durable.size() is a non-zero multiple of kMetaAlign.
  static std::unique_ptr<VolatileCacheDevice> FromImage(std::vector<uint8_t> durable, uint64_t seed,
                                                        CrashOptions options = {});
  ~VolatileCacheDevice() override;
  VolatileCacheDevice(const VolatileCacheDevice&) = delete;
  VolatileCacheDevice& operator=(const VolatileCacheDevice&) = delete;

  // PoolDevice. Alignment is not enforced; the range must lie in the device.
  uint64_t size_bytes() const override { return size_; }
  std::string Describe() const override;
  Status ReadAt(uint64_t off, void* buf, size_t len) override;
  Status WriteAt(uint64_t off, const void* buf, size_t len) override;
  Status Sync() override;
  // Channels over the current view: kRead/kWrite complete with req->length,
  // kFlush (== Sync), kDiscard and kWriteZeroes (both write zeros) with 0.
  // block_size() 512.
  io::BlockBackend* data() override;

  // The image a power loss would leave now: the durable image with each
  // cached write, in order, kept / dropped / torn per CrashOptions. Does not
  // change the device's data (only advances its random generator).
  std::vector<uint8_t> Crash();
  // Copies of the durable image and of the current view (what reads see).
  std::vector<uint8_t> durable_image() const;
  std::vector<uint8_t> current_image() const;

  // Fault knobs (off by default). FailWritesAfter(n): counting from this
  // call, the next n writes (WriteAt or a data-channel kWrite / kWriteZeroes
  // / kDiscard) succeed and every later one fails with EIO. FailSync(true):
  // Sync() and kFlush fail with EIO. ClearFaults() turns both off.
  void FailWritesAfter(uint64_t n);
  void FailSync(bool fail);
  void ClearFaults();
  void set_crash_options(const CrashOptions& options);

  // Counters. writes/syncs count successful operations since construction
  // (a kFlush counts as a sync); failed_* count injected failures.
  // pending_* describe the writes in the volatile cache (not yet durable).
  uint64_t writes() const;
  uint64_t syncs() const;
  uint64_t failed_writes() const;
  uint64_t failed_syncs() const;
  uint64_t pending_writes() const;
  uint64_t pending_bytes() const;

 private:
  class Backend;
  class Channel;

  // A write in the volatile cache. Empty bytes: `length` zeros.
  struct PendingWrite {
    uint64_t offset = 0;
    uint64_t length = 0;
    std::vector<uint8_t> bytes;
  };

  VolatileCacheDevice(std::vector<uint8_t> durable, uint64_t seed, CrashOptions options);

  bool InRange(uint64_t off, uint64_t len) const { return off <= size_ && len <= size_ - off; }
  // Holding mu_: whether the next write may proceed (counts a failure).
  bool AdmitWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Holding mu_: applies a write to the current view and caches it.
  void ApplyWriteLocked(PendingWrite w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status SyncLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A data-channel request, start to finish; returns its completion result.
  int Execute(const io::IoRequest& req);
  static void Apply(std::vector<uint8_t>& image, const PendingWrite& w, uint64_t off, uint64_t len);

  const uint64_t size_;
  std::unique_ptr<Backend> backend_;

  mutable Mutex mu_;  // every field below
  std::vector<uint8_t> durable_ ABSL_GUARDED_BY(mu_);
  std::vector<uint8_t> current_ ABSL_GUARDED_BY(mu_);  // durable_ + pending_ in order
  std::vector<PendingWrite> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  CrashOptions options_ ABSL_GUARDED_BY(mu_);
  bool fail_writes_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t writes_allowed_ ABSL_GUARDED_BY(mu_) = 0;  // before failing, when fail_writes_
  bool fail_sync_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_syncs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace nestor::volume::testing
