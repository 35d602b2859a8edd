// BorrowedPoolDevice: lends a PoolDevice to a Pool without giving it away
// (Pool::Open owns its device), so a test or fuzz harness keeps the image
// after the pool closed, or opens it again.
//
// Thread: as the device it forwards to. Errors: the device's.
#pragma once

#include <string>

#include "volume/pool_device.h"

namespace nestor::volume::testing {

class BorrowedPoolDevice final : public PoolDevice {
 public:
  explicit BorrowedPoolDevice(PoolDevice* d) : d_(d) {}
  uint64_t size_bytes() const override { return d_->size_bytes(); }
  std::string Describe() const override { return d_->Describe(); }
  Status ReadAt(uint64_t off, void* buf, size_t len) override { return d_->ReadAt(off, buf, len); }
  Status WriteAt(uint64_t off, const void* buf, size_t len) override { return d_->WriteAt(off, buf, len); }
  Status Sync() override { return d_->Sync(); }
  io::BlockBackend* data() override { return d_->data(); }

 private:
  PoolDevice* d_;
};

}  // namespace nestor::volume::testing
