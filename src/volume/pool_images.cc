// Pool: snapshots and clones (pool.h, "snapshots and clones"; the model is
// in volume.h, the records in format.h and docs/on-disk-format.md).
//
// Every physical cluster belongs to one image's map; a snapshot takes the
// source's map over (no copy), clones start empty and read through their
// chain. The data path (thin_volume.cc) does the copy-on-write; this file
// changes the tree of images: create, link, copy up (inflate, decouple),
// and loading and checking it.
#include <algorithm>
#include <chrono>
#include <thread>

#include "base/log.h"
#include "io/uring.h"
#include "volume/aligned_buffer.h"
#include "volume/mapper.h"
#include "volume/pool.h"
#include "volume/thin_volume.h"

namespace nestor::volume {

Status Pool::NeedImagesLocked() const {
  if (sb_.version >= 2) return Status::Ok();
  return Status::Error(ENOTSUP, "pool format version " + std::to_string(sb_.version) +
                                    " has no snapshots or clones: run `nestor pool upgrade` first (older nestor "
                                    "cannot open an upgraded pool)");
}

void Pool::TakeSnapshotLocked(Volume& src, const std::shared_ptr<Volume>& s) {
  s->lock.AssertHeld();  // new: nobody else reaches it
  s->snapshot = true;
  s->size.store(src.size.load());
  s->map.TakeFrom(src.map);
  uint64_t moved = s->map.mapped_clusters();
  s->allocated = moved;
  AdjustAllocated(src, -static_cast<int64_t>(moved));
  // The snapshot takes the source's place under its former parent.
  s->parent = src.parent;
  s->parent_id = src.parent_id;
  src.parent = s;
  src.parent_id = s->id;
  s->children = 1;
  AddImageLocked(s);
}

void Pool::LinkLocked(Volume& v, std::shared_ptr<Volume> parent) {
  if (v.parent_id != 0) {
    auto old = volumes_.find(v.parent_id);
    if (old != volumes_.end() && old->second->children > 0) --old->second->children;
  }
  v.parent_id = parent == nullptr ? 0 : parent->id;
  if (parent != nullptr) ++parent->children;
  v.parent = std::move(parent);
}

std::vector<std::string> Pool::ChildrenOfLocked(const Volume& v) const {
  std::vector<std::string> out;
  for (const auto& entry : volumes_) {
    if (entry.second->parent_id == v.id) out.push_back(entry.second->name);
  }
  return out;
}

// ---- loading ----

Status Pool::ApplyImageRecord(const Record& r) {
  auto find = [&](uint64_t id) -> std::shared_ptr<Volume> {
    mu_.AssertHeld();  // called in this scope
    auto it = id > UINT32_MAX ? volumes_.end() : volumes_.find(static_cast<uint32_t>(id));
    return it == volumes_.end() ? nullptr : it->second;
  };
  std::string what = "image id " + std::to_string(r.volume);
  switch (r.type) {
    case RecordType::kSnapshotCreate:
    case RecordType::kVolumeClone: {
      if (find(r.volume) != nullptr) return Corruption(what + " created twice");
      if (FindLocked(r.name) != nullptr) return Corruption("volume name '" + r.name + "' used twice");
      auto from = find(r.a);
      if (from == nullptr) return Corruption(what + " made from unknown image id " + std::to_string(r.a));
      bool snap = r.type == RecordType::kSnapshotCreate;
      if (from->snapshot == snap) {
        return Corruption(what + (snap ? ": snapshot of snapshot " : ": clone of non-snapshot ") + from->name);
      }
      auto v = std::make_shared<Volume>();
      v->id = r.volume;
      v->name = r.name;
      if (snap) {
        from->lock.AssertHeld();  // loading: no other thread reaches the pool
        TakeSnapshotLocked(*from, v);
        return Status::Ok();
      }
      if (r.b < from->size.load()) return Corruption(what + ": clone smaller than its snapshot");
      v->size.store(r.b);
      v->lock.AssertHeld();
      LinkLocked(*v, from);
      AddImageLocked(std::move(v));
      return Status::Ok();
    }
    case RecordType::kImageLink: {
      auto v = find(r.volume);
      if (v == nullptr) return Corruption("link of unknown " + what);
      if ((r.b & ~kImageSnapshot) != 0) return Corruption(what + ": unknown image flags " + std::to_string(r.b));
      bool snap = (r.b & kImageSnapshot) != 0;
      if (v->snapshot && !snap) return Corruption(what + ": a snapshot cannot become writable");
      if (v->snapshot && v->parent_id != r.a) return Corruption(what + ": a snapshot's parent cannot change");
      std::shared_ptr<Volume> parent;
      if (r.a != 0) {
        parent = find(r.a);
        if (parent == nullptr || !parent->snapshot) {
          return Corruption(what + ": parent id " + std::to_string(r.a) + " is not a snapshot");
        }
        // No cycles: the parent's chain must not lead back here.
        size_t steps = 0;
        for (const Volume* a = parent.get(); a != nullptr; a = a->frozen_parent()) {
          if (a == v.get() || ++steps > volumes_.size()) return Corruption(what + ": its chain of parents loops");
        }
      }
      v->snapshot = snap;
      v->lock.AssertHeld();  // loading
      LinkLocked(*v, std::move(parent));
      return Status::Ok();
    }
    default: return Corruption("unexpected record");
  }
}

void Pool::SerializeLinks(std::string* out) {
  // Parents first, so that loading can check each link as it comes.
  std::vector<std::pair<size_t, const Volume*>> order;
  for (const auto& entry : volumes_) {
    const Volume* v = entry.second.get();
    if (!v->snapshot && v->parent_id == 0) continue;
    size_t depth = 0;
    for (const Volume* a = v->frozen_parent(); a != nullptr; a = a->frozen_parent()) ++depth;
    order.emplace_back(depth, v);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [depth, v] : order) {
    AppendRecord(Record{RecordType::kImageLink, v->id, v->parent_id, v->snapshot ? kImageSnapshot : 0, 0, {}}, out);
  }
}

void Pool::CheckTree(CheckReport* rep) const {
  std::map<uint32_t, uint32_t> children;
  for (const auto& entry : volumes_) {
    const Volume& v = *entry.second;
    if (v.parent_id == 0) continue;
    ++children[v.parent_id];
    auto p = volumes_.find(v.parent_id);
    if (p == volumes_.end()) {
      rep->problems.push_back("image " + v.name + ": parent id " + std::to_string(v.parent_id) + " does not exist");
      continue;
    }
    if (!p->second->snapshot)
      rep->problems.push_back("image " + v.name + ": parent " + p->second->name + " is not a snapshot");
    if (v.frozen_parent() != p->second.get())
      rep->problems.push_back("image " + v.name + ": parent link disagrees with its id");
    if (v.size.load() < p->second->size.load()) {
      rep->problems.push_back("image " + v.name + " is smaller than its parent " + p->second->name);
    }
    size_t steps = 0;
    for (const Volume* a = p->second.get(); a != nullptr; a = a->frozen_parent()) {
      if (a == &v || ++steps > volumes_.size()) {
        rep->problems.push_back("image " + v.name + ": its chain of parents loops");
        break;
      }
    }
  }
  for (const auto& entry : volumes_) {
    auto n = names_.find(entry.second->name);
    if (n == names_.end() || n->second != entry.second) {
      rep->problems.push_back("image " + entry.second->name + ": missing from the name index");
    }
    uint32_t want = children.count(entry.first) ? children[entry.first] : 0;
    if (entry.second->children != want) {
      rep->problems.push_back("image " + entry.second->name + ": counts " + std::to_string(entry.second->children) +
                              " children, has " + std::to_string(want));
    }
  }
  if (names_.size() != volumes_.size()) {
    rep->problems.push_back("the name index holds " + std::to_string(names_.size()) + " names for " +
                            std::to_string(volumes_.size()) + " images");
  }
}

// ---- the write gate ----

void Pool::CloseGate(Volume& v) {
  v.lock.Lock();
  v.gate_closed.fetch_add(1, std::memory_order_seq_cst);
  v.lock.Unlock();
}

void Pool::OpenGate(Volume& v) {
  std::vector<FlushWaiter> waiters;
  v.lock.Lock();
  if (v.gate_closed.fetch_sub(1, std::memory_order_seq_cst) == 1) waiters.swap(v.gate_waiters);
  v.lock.Unlock();
  PostLater(waiters);
}

void Pool::PostLater(const std::vector<FlushWaiter>& w) {
  if (w.empty()) return;
  // From this (control) thread's own ring, made once per thread: never
  // through the committer, which may itself be waiting (grace period) for
  // a request that only this post lets finish.
  thread_local std::unique_ptr<io::IoUring> ring;
  if (ring == nullptr) {
    auto r = io::IoUring::Create(16);
    if (!r.ok()) {
      NLOG_ERROR("pool: cannot resume {} parked request(s): {}", w.size(), r.status().ToString());
      return;
    }
    ring = std::move(*r);
  }
  for (const FlushWaiter& f : w) ring->PostTo(f.ring, f.token, 0);
  ring->Submit();
  ring->Reap();  // (only failed posts complete here)
}

// ---- operations ----

Status Pool::RoomForImageLocked() const {
  if (volumes_.size() < ImageCapacity(sb_)) return Status::Ok();
  return Status::Error(ENOSPC, "pool holds the maximum number of images (" + std::to_string(ImageCapacity(sb_)) + ")");
}

Result<VolumeInfo> Pool::CreateSnapshot(const std::string& source, const std::string& name, uint32_t drain_timeout_ms) {
  NESTOR_RETURN_IF_ERROR(ValidateVolumeName(name));
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  // Every reason to refuse, checked before and again after the drain.
  auto refuse = [&](std::shared_ptr<Volume>* out) -> Status {
    mu_.AssertHeld();
    NESTOR_RETURN_IF_ERROR(NeedImagesLocked());
    auto v = FindLocked(source);
    if (v == nullptr) return Status::Error(ENOENT, "no volume '" + source + "'");
    if (v->snapshot) return Status::Invalid("'" + source + "' is a snapshot already: clone it instead");
    if (FindLocked(name) != nullptr) return Status::Error(EEXIST, "volume '" + name + "' already exists");
    NESTOR_RETURN_IF_ERROR(RoomForImageLocked());
    // A preallocated volume stays so: its clusters go to the snapshot and
    // every one it writes again must still be guaranteed.
    if (v->reserved > 0 && !RoomToReserveLocked(std::min(v->allocated, v->reserved))) {
      return Status::Error(ENOSPC, "pool has no room to keep volume '" + source + "' preallocated after the snapshot");
    }
    *out = std::move(v);
    return Status::Ok();
  };
  std::shared_ptr<Volume> v;
  {
    MutexLock g(&mu_);
    NESTOR_RETURN_IF_ERROR(refuse(&v));
  }
  // New writes wait at the gate; those in flight drain. Then nothing
  // changes the volume's map until the snapshot holds it.
  auto start = std::chrono::steady_clock::now();
  CloseGate(*v);
  while (v->writes_in_flight() != 0) {
    if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(drain_timeout_ms)) {
      OpenGate(*v);
      return Status::Error(EBUSY, "writes to '" + source + "' did not drain within " +
                                      std::to_string(drain_timeout_ms) + " ms; no snapshot taken");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  VolumeInfo info;
  Status st;
  {
    MutexLock c(&commit_mu_);
    v->lock.Lock();
    {
      MutexLock g(&mu_);
      std::shared_ptr<Volume> again;
      st = refuse(&again);  // (admin_mu_ keeps the tree; a name may have been taken)
      if (st.ok() && v != again) st = Status::Error(ENOENT, "volume '" + source + "' was replaced");
      if (st.ok()) {
        auto s = std::make_shared<Volume>();
        s->id = volumes_.rbegin()->first + 1;
        s->name = name;
        TakeSnapshotLocked(*v, s);
        AppendPendingLocked(Record{RecordType::kSnapshotCreate, s->id, v->id, 0, 0, name});
        info = InfoOf(*s);
      }
    }
    v->lock.Unlock();
    if (st.ok()) st = CommitLocked();
  }
  OpenGate(*v);
  if (!st.ok()) return st;
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  NLOG_INFO("pool: snapshot {} of {} ({} clusters, writes paused {} us)", name, source,
            info.allocated_bytes / sb_.cluster_size, took.count());
  return info;
}

Result<VolumeInfo> Pool::CloneVolume(const std::string& snap, const std::string& name) {
  NESTOR_RETURN_IF_ERROR(ValidateVolumeName(name));
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  MutexLock c(&commit_mu_);
  VolumeInfo info;
  {
    MutexLock g(&mu_);
    NESTOR_RETURN_IF_ERROR(NeedImagesLocked());
    auto s = FindLocked(snap);
    if (s == nullptr) return Status::Error(ENOENT, "no snapshot '" + snap + "'");
    if (!s->snapshot) {
      return Status::Invalid("'" + snap + "' is not a snapshot: take one first (snapshot create " + snap + " NAME)");
    }
    if (FindLocked(name) != nullptr) return Status::Error(EEXIST, "volume '" + name + "' already exists");
    NESTOR_RETURN_IF_ERROR(RoomForImageLocked());
    auto v = std::make_shared<Volume>();
    v->id = volumes_.rbegin()->first + 1;
    v->name = name;
    v->size.store(s->size.load());
    v->lock.AssertHeld();  // new: nobody else reaches it
    LinkLocked(*v, s);
    AppendPendingLocked(Record{RecordType::kVolumeClone, v->id, s->id, v->size.load(), 0, name});
    info = InfoOf(*v);
    AddImageLocked(std::move(v));
  }
  NESTOR_RETURN_IF_ERROR(CommitLocked());
  NLOG_INFO("pool: clone {} of {}", name, snap);
  return info;
}

Status Pool::CopyCluster(VolumeMapper& m, uint64_t vcl, uint64_t src) {
  auto f = m.BeginFirstWrite(vcl, /*whole=*/true, /*waiter=*/nullptr);
  if (f.kind == VolumeMapper::FirstWrite::kFailed) return f.status;
  if (f.kind != VolumeMapper::FirstWrite::kStarted) return Status::Ok();  // it holds its own copy, or will
  // Writers of this cluster wait meanwhile (as for a first write).
  AlignedBuffer buf(sb_.cluster_size);
  Status st = dev_->ReadAt(m.Phys(src, 0), buf.data(), sb_.cluster_size);
  if (st.ok()) st = dev_->WriteAt(m.Phys(f.p, 0), buf.data(), sb_.cluster_size);
  std::vector<FlushWaiter> posts;
  for (ParkedOp* w : m.EndFirstWrite(vcl, f.p, st.ok())) {
    FlushWaiter token = ResumeToken(w);
    if (token.ring != nullptr) posts.push_back(token);  // else resumed inline by ResumeToken
  }
  PostLater(posts);
  return st;
}

Status Pool::CopyUp(const std::shared_ptr<Volume>& v, int levels) {
  v->lock.LockShared(0);
  std::shared_ptr<Volume> parent = v->parent;
  v->lock.UnlockShared(0);
  if (parent == nullptr) return Status::Ok();
  VolumeMapper mapper(this, v);  // the copies go through the data path's protocol
  uint64_t end = ClustersFor(v->size.load());
  uint64_t copied = 0;
  for (uint64_t vcl = 0; vcl < end;) {
    uint64_t src = 0, run = UINT64_MAX;
    bool data;
    if (levels == 1) {
      data = parent->frozen_map().Lookup(vcl, &src, &run);
    } else {
      data = ResolveInAncestors(parent.get(), vcl, &src, &run);
    }
    uint64_t n = std::min(run, end - vcl);
    if (data) {
      for (uint64_t i = 0; i < n; ++i) {
        Status st = CopyCluster(mapper, vcl + i, src + i);
        if (st.ok()) continue;
        if (st.err() != ENOSPC || !FreesPending()) return st;
        NESTOR_RETURN_IF_ERROR(Commit());  // freed clusters come back: retry once
        NESTOR_RETURN_IF_ERROR(CopyCluster(mapper, vcl + i, src + i));
      }
      copied += n;
    }
    vcl += n;
  }
  NLOG_INFO("pool: copied up to {} clusters into {}", copied, v->name);
  return Status::Ok();
}

namespace {
Status RefuseCopyUp(const std::shared_ptr<Volume>& v, const std::string& name, bool need_parent) {
  if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
  if (v->snapshot) return Status::Invalid("'" + name + "' is a snapshot: only clones are inflated or decoupled");
  if (need_parent && v->parent_id == 0) return Status::Invalid("'" + name + "' has no parent: nothing to do");
  return Status::Ok();
}
}  // namespace

Status Pool::InflateVolume(const std::string& name) { return CopyUpAndRelink(name, 0); }

Status Pool::DecoupleVolume(const std::string& name) { return CopyUpAndRelink(name, 1); }

Status Pool::CopyUpAndRelink(const std::string& name, int levels) {
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  std::shared_ptr<Volume> v;
  {
    MutexLock g(&mu_);
    v = FindLocked(name);
    NESTOR_RETURN_IF_ERROR(RefuseCopyUp(v, name, true));
  }
  NESTOR_RETURN_IF_ERROR(CopyUp(v, levels));
  MutexLock c(&commit_mu_);
  NESTOR_RETURN_IF_ERROR(CommitLocked());  // the copies first: then the link may change
  v->lock.Lock();
  {
    MutexLock g(&mu_);
    std::shared_ptr<Volume> old = v->parent;
    // Inflate: no parent. Decouple: the grandparent (a snapshot's parent
    // never changes).
    std::shared_ptr<Volume> next = levels == 0 ? nullptr : ABSL_TS_UNCHECKED_READ(old->parent);
    retired_.push_back(old);  // a request may still walk it: kept until the grace period
    LinkLocked(*v, next);
    AppendPendingLocked(Record{RecordType::kImageLink, v->id, v->parent_id, 0, 0, {}});
  }
  v->lock.Unlock();
  NESTOR_RETURN_IF_ERROR(CommitLocked());
  NLOG_INFO("pool: {} {}", levels == 0 ? "inflated" : "decoupled (one level)", name);
  return Status::Ok();
}

Status Pool::Upgrade() {
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  MutexLock c(&commit_mu_);
  if (sb_.version >= kFormatVersion) return Status::Ok();
  Superblock next = sb_;
  next.version = kFormatVersion;
  AlignedBuffer block(kBlock);
  EncodeSuperblock(next, block.data());
  NESTOR_RETURN_IF_ERROR(dev_->WriteAt(0, block.data(), kBlock));
  NESTOR_RETURN_IF_ERROR(dev_->Sync());
  {
    MutexLock g(&mu_);
    sb_.version = kFormatVersion;
  }
  // A checkpoint into each slot now, so both superblock copies (the
  // fallback reads slot 0's) say version 2.
  for (int slot = 0; slot < 2; ++slot) {
    force_checkpoint_ = true;
    NESTOR_RETURN_IF_ERROR(CommitLocked());
  }
  NLOG_INFO("pool {}: upgraded to format version {}", dev_->Describe(), kFormatVersion);
  return Status::Ok();
}

}  // namespace nestor::volume
