// RbdPool: a Ceph pool served as nestor's pool kind `rbd:POOL` (nestord
// --pool rbd:POOL). The control plane's volumes, snapshots and clones map
// to RBD images, snapshots and clones (docs/ceph.md, "A Ceph pool"):
//   volume create/delete/resize  rbd_create4 / rbd_remove / rbd_resize2
//   snapshot create/delete       rbd_snap_create + protect / unprotect + remove
//   volume clone SNAP NAME       rbd_clone3 (the snapshot's image's pool)
//   volume inflate               rbd_flatten (decouple: EOPNOTSUPP)
//   stored exports               image metadata "nestor.export" (a
//                                snapshot's: "nestor.export@SNAP" on its image)
// Ceph's model differs from a local pool's in one way: a snapshot stays
// its image's (Ceph snapshots belong to an image), so a snapshot S of V
// has parent V, V lists S among its children, and V cannot be deleted
// while it has snapshots. Snapshot names are unique in the pool as nestor
// creates them; one made outside nestor whose name is not unique is named
// IMAGE@SNAP (the form is accepted everywhere a snapshot name is).
//
// Thread: control methods from any thread, serialized by mu_; each blocks
// on the cluster (bounded by the cluster's op timeout). The data path is
// OpenRbdBackend's (rbd.h). An image that is open here (exported) is
// operated on through its open handle, which holds the exclusive lock:
// snapshots of a served image are taken by the lock holder, between
// writes (crash-consistent). Errors: as volume/image_store.h; librbd's
// errno kept, messages naming the Ceph pool and image.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "rbd/rbd.h"
#include "volume/image_store.h"

namespace nestor::rbd {

struct RbdPoolInfo {
  std::string pool;
  uint64_t images = 0;
  uint64_t snapshots = 0;
  uint64_t stored_bytes = 0;  // rados_ioctx_pool_stat: bytes stored in the pool (one copy)
  uint64_t objects = 0;
  uint64_t cluster_bytes = 0;  // rados_cluster_stat: raw capacity and what is free
  uint64_t cluster_free_bytes = 0;
};

class RbdPool final : public volume::ImageStore {
 public:
  // Fails with ENOENT if the Ceph pool does not exist (never created here).
  static Result<std::unique_ptr<RbdPool>> Open(std::shared_ptr<RadosCluster> cluster, const std::string& pool);
  ~RbdPool() override;
  RbdPool(const RbdPool&) = delete;
  RbdPool& operator=(const RbdPool&) = delete;

  Result<volume::VolumeInfo> CreateVolume(const std::string& name, uint64_t size, bool preallocate) override;
  Status DeleteVolume(const std::string& name) override;
  Status ResizeVolume(const std::string& name, uint64_t size, bool force) override;
  Result<volume::VolumeInfo> CreateSnapshot(const std::string& source, const std::string& name) override;
  Result<volume::VolumeInfo> CloneVolume(const std::string& snap, const std::string& name) override;
  Status InflateVolume(const std::string& name) override;
  Status DecoupleVolume(const std::string& name) override;
  Status SetExport(const std::string& name, const volume::ExportSettings& s) override;
  Status ClearExport(const std::string& name) override;
  std::vector<volume::VolumeInfo> ListVolumes(bool with_space = false) const override;
  Result<volume::VolumeInfo> GetVolume(const std::string& name) const override;
  Result<std::shared_ptr<io::BlockBackend>> OpenVolume(const std::string& name) override;

  Result<RbdPoolInfo> Info() const;
  const std::string& pool() const { return pool_; }

 private:
  struct Ref;  // an image, or one of its snapshots (rbd_pool.cc)
  class Image;
  RbdPool(std::shared_ptr<RadosCluster> cluster, void* ioctx, std::string pool);

  Result<Ref> Find(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The name each snapshot is listed by, by (image, snapshot): SNAP, or
  // IMAGE@SNAP where SNAP alone does not name it (another image has a
  // snapshot of that name, or an image is called so).
  using SnapNames = std::map<std::pair<std::string, std::string>, std::string>;
  SnapNames ListSnapNames(const std::vector<std::string>& images) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // names: how to name snapshots (the image's own, the clone's parent, the
  // snapshot itself); null: by their names in Ceph.
  Result<volume::VolumeInfo> InfoOf(const Ref& ref, bool with_space, const SnapNames* names = nullptr) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Status NameFree(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The image's open handle if it is served here, else a new one.
  Result<std::unique_ptr<Image>> Handle(const std::string& image, bool read_only) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Where(const std::string& name) const { return "ceph pool '" + pool_ + "': '" + name + "'"; }

  std::shared_ptr<RadosCluster> cluster_;
  void* ioctx_;  // rados_ioctx_t for pool_
  std::string pool_;
  mutable Mutex mu_;
  // The backends OpenVolume made for writable images, by image name.
  std::map<std::string, std::weak_ptr<io::BlockBackend>> served_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nestor::rbd
