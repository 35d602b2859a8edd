// Pool: snapshots and clones (pool.h, "snapshots and clones").
#include "volume/pool.h"

namespace nestor::volume {

Result<VolumeInfo> Pool::CreateSnapshot(const std::string&, const std::string&, uint32_t) {
  return Status::Error(ENOSYS, "snapshots: in progress");
}
Result<VolumeInfo> Pool::CloneVolume(const std::string&, const std::string&) {
  return Status::Error(ENOSYS, "clones: in progress");
}
Status Pool::InflateVolume(const std::string&) { return Status::Error(ENOSYS, "inflate: in progress"); }
Status Pool::DecoupleVolume(const std::string&) { return Status::Error(ENOSYS, "decouple: in progress"); }
Status Pool::Upgrade() { return Status::Error(ENOSYS, "upgrade: in progress"); }

}  // namespace nestor::volume
