// RbdPool (rbd_pool.h): a Ceph pool as nestor's image store.
#include "rbd/rbd_pool.h"

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "rbd/export_meta.h"
#include "volume/limits.h"

namespace nestor::rbd {
namespace {

constexpr const char* kExportKey = "nestor.export";
std::string ExportKey(const std::string& snap) { return snap.empty() ? kExportKey : kExportKey + ("@" + snap); }

Status Err(int r, const std::string& what) { return Status::Error(-r, what + ": " + strerror(-r)); }

rados_ioctx_t Io(void* p) { return static_cast<rados_ioctx_t>(p); }

// ---- librbd's lists, as vectors ----

Result<std::vector<std::string>> ListImages(rados_ioctx_t io) {
  std::vector<rbd_image_spec_t> specs(64);
  for (;;) {
    size_t n = specs.size();
    int r = rbd_list2(io, specs.data(), &n);
    if (r == -ERANGE) {
      specs.resize(n + 16);
      continue;
    }
    if (r < 0) return Err(r, "listing images");
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) out.emplace_back(specs[i].name);
    rbd_image_spec_list_cleanup(specs.data(), n);
    return out;
  }
}

struct SnapInfo {
  std::string name;
  uint64_t size;
};

Result<std::vector<SnapInfo>> ListSnaps(rbd_image_t img) {
  std::vector<rbd_snap_info_t> snaps(16);
  for (;;) {
    int max = static_cast<int>(snaps.size());
    int r = rbd_snap_list(img, snaps.data(), &max);
    if (r == -ERANGE) {
      snaps.resize(static_cast<size_t>(max) + 8);
      continue;
    }
    if (r < 0) return Err(r, "listing snapshots");
    std::vector<SnapInfo> out;
    for (int i = 0; i < r; ++i) out.push_back({snaps[i].name, snaps[i].size});
    rbd_snap_list_end(snaps.data());
    return out;
  }
}

// The live clones of the snapshot an image handle is opened at, as names
// ("POOL/IMAGE" for a clone in another pool).
Result<std::vector<std::string>> ListChildren(rbd_image_t img_at_snap, const std::string& pool) {
  std::vector<rbd_linked_image_spec_t> kids(8);
  for (;;) {
    size_t n = kids.size();
    int r = rbd_list_children3(img_at_snap, kids.data(), &n);
    if (r == -ERANGE) {
      kids.resize(n + 8);
      continue;
    }
    if (r < 0) return Err(r, "listing clones");
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) {
      if (kids[i].trash) continue;
      std::string name = kids[i].image_name;
      out.push_back(pool == kids[i].pool_name ? name : std::string(kids[i].pool_name) + "/" + name);
    }
    rbd_linked_image_spec_list_cleanup(kids.data(), n);
    return out;
  }
}

Result<std::string> GetMeta(rbd_image_t img, const std::string& key) {
  std::string buf(256, '\0');
  for (;;) {
    size_t len = buf.size();
    int r = rbd_metadata_get(img, key.c_str(), buf.data(), &len);
    if (r == -ERANGE && len > buf.size() && len <= 65536) {
      buf.resize(len);
      continue;
    }
    if (r < 0) return Err(r, "metadata " + key);
    buf.resize(strnlen(buf.data(), std::min(len, buf.size())));
    return buf;
  }
}

int CountAllocated(uint64_t, size_t len, int exists, void* arg) {
  if (exists) *static_cast<uint64_t*>(arg) += len;
  return 0;
}

// Bytes of the objects the image (at its open snapshot) holds itself, or
// 0 without fast-diff (where counting would read every object's state).
uint64_t Allocated(rbd_image_t img, uint64_t size) {
  uint64_t features = 0;
  if (rbd_get_features(img, &features) < 0 || (features & RBD_FEATURE_FAST_DIFF) == 0) return 0;
  uint64_t bytes = 0;
  if (rbd_diff_iterate2(img, nullptr, 0, size, 0, 1, &CountAllocated, &bytes) < 0) return 0;
  return bytes;
}

int NoProgress(uint64_t, uint64_t, void*) { return 0; }

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

struct RbdPool::Ref {
  std::string image;
  std::string snap;  // empty: the image itself
};

// An open image: a new handle (closed here) or a served backend's (kept
// alive while used; never moved to a snapshot: it serves I/O).
class RbdPool::Image {
 public:
  Image(rbd_image_t img, std::shared_ptr<io::BlockBackend> served) : img_(img), served_(std::move(served)) {}
  ~Image() {
    if (served_ == nullptr) rbd_close(img_);
  }
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;
  rbd_image_t get() const { return img_; }
  io::BlockBackend* served() const { return served_.get(); }

 private:
  rbd_image_t img_;
  std::shared_ptr<io::BlockBackend> served_;
};

Result<std::unique_ptr<RbdPool>> RbdPool::Open(std::shared_ptr<RadosCluster> cluster, const std::string& pool) {
  if (pool.empty() || pool.find('/') != std::string::npos) {
    return Status::Invalid("rbd:" + pool + ": want rbd:POOL (a Ceph pool's name)");
  }
  rados_ioctx_t io = nullptr;
  int r = rados_ioctx_create(static_cast<rados_t>(cluster->handle()), pool.c_str(), &io);
  if (r == -ENOENT)
    return Status::Error(
        ENOENT, "ceph pool '" + pool + "' does not exist (create it with ceph osd pool create and rbd pool init)");
  if (r < 0) return Err(r, "ceph pool '" + pool + "'");
  auto images = ListImages(io);
  if (!images.ok()) {
    rados_ioctx_destroy(io);
    return Status::Error(images.status().err(), "ceph pool '" + pool + "': " + images.status().message());
  }
  NLOG_INFO("ceph pool {}: {} image(s)", pool, images->size());
  return std::unique_ptr<RbdPool>(new RbdPool(std::move(cluster), io, pool));
}

RbdPool::RbdPool(std::shared_ptr<RadosCluster> cluster, void* ioctx, std::string pool)
    : cluster_(std::move(cluster)), ioctx_(ioctx), pool_(std::move(pool)) {}

RbdPool::~RbdPool() { rados_ioctx_destroy(Io(ioctx_)); }

Result<std::unique_ptr<RbdPool::Image>> RbdPool::Handle(const std::string& image, bool read_only) const {
  auto it = served_.find(image);
  if (it != served_.end()) {
    if (auto b = it->second.lock()) return std::make_unique<Image>(static_cast<rbd_image_t>(ImageOf(b.get())), b);
  }
  rbd_image_t img = nullptr;
  int r = read_only ? rbd_open_read_only(Io(ioctx_), image.c_str(), &img, nullptr)
                    : rbd_open(Io(ioctx_), image.c_str(), &img, nullptr);
  if (r == -ENOENT) return Status::Error(ENOENT, "no volume '" + image + "' in ceph pool '" + pool_ + "'");
  if (r < 0) return Err(r, Where(image));
  return std::make_unique<Image>(img, nullptr);
}

Result<RbdPool::Ref> RbdPool::Find(const std::string& name) const {
  auto at = name.find('@');
  if (at != std::string::npos) {  // IMAGE@SNAP
    Ref ref{name.substr(0, at), name.substr(at + 1)};
    rbd_image_t img = nullptr;
    int r = rbd_open_read_only(Io(ioctx_), ref.image.c_str(), &img, ref.snap.c_str());
    if (r == -ENOENT) return Status::Error(ENOENT, "no snapshot '" + name + "' in ceph pool '" + pool_ + "'");
    if (r < 0) return Err(r, Where(name));
    rbd_close(img);
    return ref;
  }
  {
    rbd_image_t img = nullptr;
    int r = rbd_open_read_only(Io(ioctx_), name.c_str(), &img, nullptr);
    if (r == 0) {
      rbd_close(img);
      return Ref{name, ""};
    }
    if (r != -ENOENT) return Err(r, Where(name));
  }
  // A snapshot: nestor's names are the pool's, Ceph's are the image's.
  auto images = ListImages(Io(ioctx_));
  if (!images.ok()) return Status::Error(images.status().err(), Where(name) + ": " + images.status().message());
  std::vector<Ref> found;
  for (const auto& [key, shown] : ListSnapNames(*images)) {
    if (key.second == name) found.push_back({key.first, key.second});
  }
  if (found.empty()) return Status::Error(ENOENT, "no volume or snapshot '" + name + "' in ceph pool '" + pool_ + "'");
  if (found.size() > 1) {
    std::vector<std::string> all;
    for (const Ref& r : found) all.push_back(r.image + "@" + r.snap);
    return Status::Invalid("snapshot name '" + name + "' is ambiguous in ceph pool '" + pool_ + "': name one of " +
                           Join(all));
  }
  return found[0];
}

Status RbdPool::NameFree(const std::string& name) const {
  NESTOR_RETURN_IF_ERROR(volume::ValidateVolumeName(name));
  auto ref = Find(name);
  if (ref.ok()) {
    return Status::Error(EEXIST, std::string(ref->snap.empty() ? "volume" : "snapshot") + " '" + name +
                                     "' already exists in ceph pool '" + pool_ + "'");
  }
  if (ref.status().err() == EINVAL) {
    // A valid name (no '@') that Find cannot resolve: several snapshots
    // (made outside nestor) have it. Taken, as much as one would.
    return Status::Error(EEXIST, ref.status().message());
  }
  return ref.status().err() == ENOENT ? Status::Ok() : ref.status();
}

// Describes the image (the head) or one snapshot of it.
RbdPool::SnapNames RbdPool::ListSnapNames(const std::vector<std::string>& images) const {
  std::vector<std::pair<std::string, std::string>> all;
  std::map<std::string, int> uses;  // how many images and snapshots a name names
  for (const std::string& image : images) ++uses[image];
  for (const std::string& image : images) {
    auto h = Handle(image, true);
    if (!h.ok()) continue;  // (deleted meanwhile)
    auto snaps = ListSnaps((*h)->get());
    if (!snaps.ok()) continue;
    for (const SnapInfo& s : *snaps) {
      all.emplace_back(image, s.name);
      ++uses[s.name];
    }
  }
  SnapNames names;
  for (const auto& [image, snap] : all) names[{image, snap}] = uses[snap] > 1 ? image + "@" + snap : snap;
  return names;
}

Result<volume::VolumeInfo> RbdPool::InfoOf(const Ref& ref, bool with_space, const SnapNames* names) const {
  auto h = Handle(ref.image, true);
  if (!h.ok()) return h.status();
  rbd_image_t img = (*h)->get();
  // The name the snapshot (image, snap) is listed by.
  auto snap_name = [names](const std::string& image, const std::string& snap) {
    if (names != nullptr) {
      auto it = names->find({image, snap});
      if (it != names->end()) return it->second;
    }
    return snap;
  };
  volume::VolumeInfo v;
  v.name = ref.snap.empty() ? ref.image : snap_name(ref.image, ref.snap);
  auto snaps = ListSnaps(img);
  if (!snaps.ok()) return Status::Error(snaps.status().err(), Where(ref.image) + ": " + snaps.status().message());
  auto meta = GetMeta(img, ExportKey(ref.snap));
  if (meta.ok()) {
    auto s = DecodeExport(*meta);
    if (s.ok()) {
      v.exported = true;
      v.export_settings = *s;
    } else {
      NLOG_ERROR("{}: {} (not served again)", Where(v.name), s.status().message());
    }
  }
  if (ref.snap.empty()) {
    int r = rbd_get_size(img, &v.size);
    if (r < 0) return Err(r, Where(ref.image));
    rbd_linked_image_spec_t pimg;
    rbd_snap_spec_t psnap;
    r = rbd_get_parent(img, &pimg, &psnap);
    if (r == 0) {
      v.parent = pool_ == pimg.pool_name ? snap_name(pimg.image_name, psnap.name)
                                         : std::string(pimg.pool_name) + "/" + pimg.image_name + "@" + psnap.name;
      rbd_linked_image_spec_cleanup(&pimg);
      rbd_snap_spec_cleanup(&psnap);
    } else if (r != -ENOENT) {
      return Err(r, Where(ref.image) + ": its parent");
    }
    for (const SnapInfo& s : *snaps) v.children.push_back(snap_name(ref.image, s.name));
    v.allocated_bytes = Allocated(img, v.size);
  } else {
    v.snapshot = true;
    v.parent = ref.image;
    bool have = false;
    for (const SnapInfo& s : *snaps) {
      if (s.name == ref.snap) v.size = s.size, have = true;
    }
    if (!have) return Status::Error(ENOENT, "no snapshot '" + ref.image + "@" + ref.snap + "'");
    rbd_image_t at = nullptr;
    int r = rbd_open_read_only(Io(ioctx_), ref.image.c_str(), &at, ref.snap.c_str());
    if (r < 0) return Err(r, Where(ref.image + "@" + ref.snap));
    auto kids = ListChildren(at, pool_);
    if (kids.ok()) v.children = *kids;
    v.allocated_bytes = Allocated(at, v.size);
    rbd_close(at);
    if (!kids.ok()) return Status::Error(kids.status().err(), Where(v.name) + ": " + kids.status().message());
  }
  (void)with_space;  // Ceph has no cheap per-image shared/freed count: space_known stays false
  return v;
}

// ---- volumes ----

Result<volume::VolumeInfo> RbdPool::CreateVolume(const std::string& name, uint64_t size, bool preallocate) {
  MutexLock g(&mu_);
  if (preallocate) {
    return Status::Error(EOPNOTSUPP, "ceph pool '" + pool_ + "': preallocation is not supported (RBD images are thin)");
  }
  NESTOR_RETURN_IF_ERROR(volume::ValidateVolumeSize(size));
  NESTOR_RETURN_IF_ERROR(NameFree(name));
  rbd_image_options_t opts;
  rbd_image_options_create(&opts);
  int r = rbd_create4(Io(ioctx_), name.c_str(), size, opts);
  rbd_image_options_destroy(opts);
  if (r == -EEXIST) return Status::Error(EEXIST, "volume '" + name + "' already exists in ceph pool '" + pool_ + "'");
  if (r < 0) return Err(r, Where(name) + ": creating it");
  NLOG_INFO("{}: created ({} bytes)", Where(name), size);
  return InfoOf({name, ""}, false);
}

Status RbdPool::DeleteVolume(const std::string& name) {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  if (!ref->snap.empty()) {
    auto v = InfoOf(*ref, false);
    if (!v.ok()) return v.status();
    if (!v->children.empty()) {
      return Status::Error(
          EBUSY, "snapshot '" + name + "' has clones (" + Join(v->children) + "): delete or inflate them first");
    }
    auto h = Handle(ref->image, false);
    if (!h.ok()) return h.status();
    int r = rbd_snap_unprotect((*h)->get(), ref->snap.c_str());
    if (r < 0 && r != -EINVAL) return Err(r, Where(name) + ": unprotecting it");  // EINVAL: was not protected
    r = rbd_snap_remove((*h)->get(), ref->snap.c_str());
    if (r < 0) return Err(r, Where(name) + ": deleting it");
    r = rbd_metadata_remove((*h)->get(), ExportKey(ref->snap).c_str());
    if (r < 0 && r != -ENOENT) NLOG_WARN("{}: removing its stored export: {}", Where(name), strerror(-r));
    return Status::Ok();
  }
  auto it = served_.find(name);
  if (it != served_.end() && !it->second.expired()) {
    return Status::Error(EBUSY, "volume '" + name + "' is in use (exported)");
  }
  {
    auto h = Handle(name, true);
    if (!h.ok()) return h.status();
    auto snaps = ListSnaps((*h)->get());
    if (!snaps.ok()) return Status::Error(snaps.status().err(), Where(name) + ": " + snaps.status().message());
    if (!snaps->empty()) {
      std::vector<std::string> names;
      for (const SnapInfo& s : *snaps) names.push_back(s.name);
      return Status::Error(EBUSY, "volume '" + name + "' has snapshots (" + Join(names) + "): delete them first");
    }
  }
  int r = rbd_remove(Io(ioctx_), name.c_str());
  if (r == -EBUSY) {
    return Status::Error(EBUSY, "volume '" + name + "' is open by another client (another nestord serves it?)");
  }
  if (r < 0) return Err(r, Where(name) + ": deleting it");
  NLOG_INFO("{}: deleted", Where(name));
  return Status::Ok();
}

Status RbdPool::ResizeVolume(const std::string& name, uint64_t size, bool force) {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  if (!ref->snap.empty()) return Status::Error(EROFS, "'" + name + "' is a snapshot: it cannot be resized");
  NESTOR_RETURN_IF_ERROR(volume::ValidateVolumeSize(size));
  auto h = Handle(name, false);
  if (!h.ok()) return h.status();
  if ((*h)->served() == nullptr) {
    // Another client (another nestord) holding the lock would carry the
    // resize out for us, but the export it serves would keep its old size
    // (grown: the new end unreachable, EIO; shrunk: reads past the end):
    // only the nestord that serves an image resizes it.
    rbd_lock_mode_t mode;
    char* owners[4] = {};
    size_t count = 4;
    int r = rbd_lock_get_owners((*h)->get(), &mode, owners, &count);
    if (r == 0 && count > 0) {
      std::string owner = owners[0];
      rbd_lock_get_owners_cleanup(owners, count);
      return Status::Error(EBUSY, "volume '" + name + "' is served by another client (" + owner +
                                      " holds its exclusive lock): resize it on the nestord that serves it");
    }
    if (r < 0 && r != -ENOENT) return Err(r, Where(name) + ": who holds its lock");
  }
  uint64_t have = 0;
  int r = rbd_get_size((*h)->get(), &have);
  if (r < 0) return Err(r, Where(name));
  if (size < have) {
    if ((*h)->served() != nullptr) {
      return Status::Error(EBUSY, "volume '" + name + "' is exported: it can only grow while served");
    }
    if (!force) {
      return Status::Error(ENOTEMPTY, "shrinking '" + name + "' from " + std::to_string(have) + " to " +
                                          std::to_string(size) + " bytes discards its data past the end: use force");
    }
  }
  // librbd calls the progress callback without checking it for null (each
  // object a shrink trims): it must be a function.
  r = rbd_resize2((*h)->get(), size, force, &NoProgress, nullptr);
  if (r < 0) return Err(r, Where(name) + ": resizing it");
  if ((*h)->served() != nullptr) SetServedSize((*h)->served(), size);
  NLOG_INFO("{}: resized from {} to {} bytes", Where(name), have, size);
  return Status::Ok();
}

// ---- snapshots and clones ----

Result<volume::VolumeInfo> RbdPool::CreateSnapshot(const std::string& source, const std::string& name) {
  MutexLock g(&mu_);
  auto ref = Find(source);
  if (!ref.ok()) return ref.status();
  if (!ref->snap.empty()) return Status::Invalid("'" + source + "' is a snapshot: snapshot its volume instead");
  NESTOR_RETURN_IF_ERROR(NameFree(name));
  if (name.find('@') != std::string::npos) return Status::Invalid("snapshot name '" + name + "' must not hold '@'");
  auto h = Handle(source, false);
  if (!h.ok()) return h.status();
  // On a served image this is the lock holder's handle: librbd blocks new
  // writes, waits for those in flight, then snapshots (crash-consistent).
  int r = rbd_snap_create((*h)->get(), name.c_str());
  if (r < 0) return Err(r, Where(source) + ": snapshot '" + name + "'");
  r = rbd_snap_protect((*h)->get(), name.c_str());  // clones need it (and it keeps a snapshot with clones)
  if (r < 0) {
    int undo = rbd_snap_remove((*h)->get(), name.c_str());
    if (undo < 0) NLOG_ERROR("{}: removing snapshot {} again: {}", Where(source), name, strerror(-undo));
    return Err(r, Where(source) + ": protecting snapshot '" + name + "'");
  }
  NLOG_INFO("{}: snapshot {} created", Where(source), name);
  return InfoOf({source, name}, false);
}

Result<volume::VolumeInfo> RbdPool::CloneVolume(const std::string& snap, const std::string& name) {
  MutexLock g(&mu_);
  auto ref = Find(snap);
  if (!ref.ok()) return ref.status();
  if (ref->snap.empty()) return Status::Invalid("'" + snap + "' is not a snapshot: clones are made of snapshots");
  NESTOR_RETURN_IF_ERROR(NameFree(name));
  {
    // A snapshot made outside nestor (rbd snap create) is not protected, and
    // a clone of an unprotected snapshot is EINVAL (clone format 1, the
    // default unless the cluster requires mimic clients): protect it, as
    // nestor's own snapshots are (it keeps the snapshot while it has clones).
    auto h = Handle(ref->image, false);
    if (!h.ok()) return h.status();
    int prot = 0;
    int r = rbd_snap_is_protected((*h)->get(), ref->snap.c_str(), &prot);
    if (r < 0) return Err(r, Where(snap) + ": is it protected");
    if (!prot) {
      r = rbd_snap_protect((*h)->get(), ref->snap.c_str());
      if (r < 0 && r != -EBUSY) return Err(r, Where(snap) + ": protecting it");  // EBUSY: protected meanwhile
      NLOG_INFO("{}: protected (to be cloned)", Where(snap));
    }
  }
  rbd_image_options_t opts;
  rbd_image_options_create(&opts);
  int r = rbd_clone3(Io(ioctx_), ref->image.c_str(), ref->snap.c_str(), Io(ioctx_), name.c_str(), opts);
  rbd_image_options_destroy(opts);
  if (r < 0) return Err(r, Where(name) + ": cloning " + ref->image + "@" + ref->snap);
  NLOG_INFO("{}: clone of {}@{} created", Where(name), ref->image, ref->snap);
  return InfoOf({name, ""}, false);
}

Status RbdPool::InflateVolume(const std::string& name) {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  if (!ref->snap.empty()) return Status::Invalid("'" + name + "' is a snapshot: only a clone can be inflated");
  auto h = Handle(name, false);
  if (!h.ok()) return h.status();
  int r = rbd_flatten((*h)->get());
  if (r == -EINVAL) return Status::Invalid("'" + name + "' is not a clone (it has no parent)");
  if (r < 0) return Err(r, Where(name) + ": flattening it");
  NLOG_INFO("{}: flattened", Where(name));
  return Status::Ok();
}

Status RbdPool::DecoupleVolume(const std::string& name) {
  return Status::Error(EOPNOTSUPP,
                       "'" + name + "': a Ceph pool copies every level at once: use volume inflate (rbd flatten)");
}

// ---- stored exports ----

Status RbdPool::SetExport(const std::string& name, const volume::ExportSettings& s) {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  auto h = Handle(ref->image, false);
  if (!h.ok()) return h.status();
  int r = rbd_metadata_set((*h)->get(), ExportKey(ref->snap).c_str(), EncodeExport(s).c_str());
  if (r < 0) return Err(r, Where(name) + ": storing its export");
  return Status::Ok();
}

Status RbdPool::ClearExport(const std::string& name) {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  auto h = Handle(ref->image, false);
  if (!h.ok()) return h.status();
  int r = rbd_metadata_remove((*h)->get(), ExportKey(ref->snap).c_str());
  if (r < 0 && r != -ENOENT) return Err(r, Where(name) + ": removing its stored export");
  return Status::Ok();
}

// ---- listing and serving ----

std::vector<volume::VolumeInfo> RbdPool::ListVolumes(bool with_space) const {
  MutexLock g(&mu_);
  std::vector<volume::VolumeInfo> out;
  auto images = ListImages(Io(ioctx_));
  if (!images.ok()) {
    NLOG_ERROR("ceph pool {}: {}", pool_, images.status().message());
    return out;
  }
  const SnapNames names = ListSnapNames(*images);
  for (const std::string& image : *images) {
    auto v = InfoOf({image, ""}, with_space, &names);
    if (!v.ok()) {
      if (v.status().err() != ENOENT) NLOG_ERROR("{}: {}", Where(image), v.status().message());
      continue;  // (deleted meanwhile)
    }
    out.push_back(std::move(*v));
    for (auto it = names.lower_bound({image, ""}); it != names.end() && it->first.first == image; ++it) {
      auto sv = InfoOf({image, it->first.second}, with_space, &names);
      if (sv.ok()) out.push_back(std::move(*sv));
    }
  }
  return out;
}

Result<volume::VolumeInfo> RbdPool::GetVolume(const std::string& name) const {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  auto v = InfoOf(*ref, false);
  if (v.ok()) v->name = name;  // a snapshot as asked for (SNAP or IMAGE@SNAP)
  return v;
}

Result<std::shared_ptr<io::BlockBackend>> RbdPool::OpenVolume(const std::string& name) {
  MutexLock g(&mu_);
  auto ref = Find(name);
  if (!ref.ok()) return ref.status();
  // An image made outside nestor may have any name; served, it becomes a
  // socket DIR/NAME.sock: only names nestor itself would accept.
  if (Status valid = volume::ValidateVolumeName(ref->snap.empty() ? ref->image : ref->snap); !valid.ok()) {
    return Status::Invalid(Where(name) + " cannot be served under its name: " + valid.message());
  }
  RbdOpenOptions o;
  o.snapshot = ref->snap;
  if (ref->snap.empty()) {
    auto it = served_.find(ref->image);
    if (it != served_.end() && !it->second.expired()) {
      return Status::Error(EBUSY, "volume '" + name + "' is already open here");
    }
  }
  auto b = OpenRbdBackend(cluster_, ImageSpec{pool_, ref->image}, o);
  if (!b.ok()) return b.status();
  std::shared_ptr<io::BlockBackend> shared(std::move(b.value()));
  if (ref->snap.empty()) served_[ref->image] = shared;
  return shared;
}

Result<RbdPoolInfo> RbdPool::Info() const {
  MutexLock g(&mu_);
  RbdPoolInfo i;
  i.pool = pool_;
  rados_pool_stat_t ps;
  int r = rados_ioctx_pool_stat(Io(ioctx_), &ps);
  if (r < 0) return Err(r, "ceph pool '" + pool_ + "': stat");
  i.stored_bytes = ps.num_bytes;
  i.objects = ps.num_objects;
  rados_cluster_stat_t cs;
  r = rados_cluster_stat(static_cast<rados_t>(cluster_->handle()), &cs);
  if (r < 0) return Err(r, "ceph cluster: stat");
  i.cluster_bytes = cs.kb * 1024;
  i.cluster_free_bytes = cs.kb_avail * 1024;
  auto images = ListImages(Io(ioctx_));
  if (!images.ok()) return images.status();
  i.images = images->size();
  i.snapshots = ListSnapNames(*images).size();
  return i;
}

}  // namespace nestor::rbd
