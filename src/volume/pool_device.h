// PoolDevice: the physical store under a pool (a file or a block device),
// seen two ways: synchronous metadata I/O for the control and commit
// threads, and an asynchronous io::BlockBackend for the reactors' data path.
// Both reach the same bytes; offsets are device byte offsets.
//
// Thread: ReadAt/WriteAt/Sync may be called from any thread, but the pool
// serializes metadata I/O (one commit at a time). data() channels follow
// io/backend.h (one per reactor). Errors: Status / -errno completions.
// Durability contract (the one the fault-injection device models): a write
// that completed may still sit in a volatile cache; Sync() (and a kFlush on
// a data channel) makes every write completed before it durable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "io/backend.h"

namespace nestor::volume {

class PoolDevice {
 public:
  virtual ~PoolDevice() = default;
  virtual uint64_t size_bytes() const = 0;
  virtual std::string Describe() const = 0;
  // buf, off and len are multiples of kMetaAlign (4096).
  virtual Status ReadAt(uint64_t off, void* buf, size_t len) = 0;
  virtual Status WriteAt(uint64_t off, const void* buf, size_t len) = 0;
  virtual Status Sync() = 0;
  // The data path over the same bytes. Owned by the device.
  virtual io::BlockBackend* data() = 0;
};

inline constexpr size_t kMetaAlign = 4096;

// Opens a file or block device. create: make the regular file `size` bytes
// (sparse) if it does not exist or is smaller. size 0: the current size.
// Takes an advisory lock (flock; shared when read_only) for the device's
// lifetime, the one every opener of a pool or backing file takes
// (base/file_lock.h): EBUSY, naming the holder when known, if another
// process holds it (nestord serving it as a pool or a file: volume).
Result<std::unique_ptr<PoolDevice>> OpenFilePoolDevice(const std::string& path, bool create, uint64_t size,
                                                       bool read_only = false);

// Opens a file or block device read-only (O_RDONLY: nothing can be written
// through it) *without* its lock, to read a pool another process holds
// (committed_view.h). Only the caller's care makes what it reads
// consistent: the holder may write at any moment.
Result<std::unique_ptr<PoolDevice>> OpenFilePoolDeviceUnlocked(const std::string& path);

}  // namespace nestor::volume
