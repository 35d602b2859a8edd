// ImageStore: what the control plane (daemon/controller.cc) needs from a
// store of images, whatever keeps them: a local pool (volume/pool.h) or a
// Ceph pool (rbd/rbd_pool.h). Volumes, snapshots and clones by name, their
// stored exports, and a block backend per image for the data path.
//
// Thread: any thread; an implementation serializes its own control
// methods. Errors: Status/Result with errno codes, as Pool documents them
// (EINVAL, ENOENT, EEXIST, ENOSPC, EBUSY, EROFS, EOPNOTSUPP, ...), each
// message naming the image.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/backend.h"
#include "volume/volume.h"

namespace nestor::volume {

// One image as the control plane shows it.
struct VolumeInfo {
  uint32_t id = 0;
  std::string name;
  uint64_t size = 0;             // bytes
  uint64_t allocated_bytes = 0;  // mapped or being written
  uint64_t reserved_bytes = 0;   // guaranteed (preallocated) space
  uint64_t extents = 0;
  bool open = false;
  bool exported = false;
  ExportSettings export_settings;
  // Snapshots and clones (volume.h).
  bool snapshot = false;
  std::string parent;                 // the snapshot holes read through to ("" if none)
  std::vector<std::string> children;  // images whose parent this is
  // Space, filled only when asked for (ListVolumes(true)), in bytes of
  // whole clusters. allocated_bytes are the clusters the image holds; of
  // them, a snapshot shares those some child still reads (shared_bytes) and
  // holds alone those every child has overwritten. A clone's shared_bytes
  // are what it reads from its ancestors. Deleting the image frees
  // delete_frees_bytes: its allocated clusters, or 0 while it has children
  // (a snapshot with clones cannot be deleted).
  bool space_known = false;
  uint64_t shared_bytes = 0;
  uint64_t delete_frees_bytes = 0;
};

class ImageStore {
 public:
  virtual ~ImageStore() = default;

  virtual Result<VolumeInfo> CreateVolume(const std::string& name, uint64_t size, bool preallocate) = 0;
  // Any image (volume, clone or childless snapshot).
  virtual Status DeleteVolume(const std::string& name) = 0;
  virtual Status ResizeVolume(const std::string& name, uint64_t size, bool force) = 0;
  // Snapshot `name` of volume or clone `source`, open (exported) or not:
  // crash-consistent, holding every write completed before the call.
  virtual Result<VolumeInfo> CreateSnapshot(const std::string& source, const std::string& name) = 0;
  virtual Result<VolumeInfo> CloneVolume(const std::string& snap, const std::string& name) = 0;
  virtual Status InflateVolume(const std::string& name) = 0;
  virtual Status DecoupleVolume(const std::string& name) = 0;
  // The stored export of an image (nestord serves it again at start).
  virtual Status SetExport(const std::string& name, const ExportSettings& s) = 0;
  virtual Status ClearExport(const std::string& name) = 0;
  // with_space: fill the space fields too (may be slow: walks maps).
  virtual std::vector<VolumeInfo> ListVolumes(bool with_space = false) const = 0;
  virtual Result<VolumeInfo> GetVolume(const std::string& name) const = 0;
  // The data path of one image (a snapshot's is read-only).
  virtual Result<std::shared_ptr<io::BlockBackend>> OpenVolume(const std::string& name) = 0;
};

}  // namespace nestor::volume
