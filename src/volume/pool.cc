#include "volume/pool.h"

#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/crc32c.h"
#include "base/log.h"
#include "volume/aligned_buffer.h"
#include "volume/limits.h"
#include "volume/thin_volume.h"

namespace nestor::volume {
Status Pool::Format(PoolDevice* dev, uint32_t cluster_size, bool force) {
  AlignedBuffer block(kBlock);
  NESTOR_RETURN_IF_ERROR(dev->ReadAt(0, block.data(), kBlock));
  uint64_t magic;
  std::memcpy(&magic, block.data(), 8);
  if (magic == kSuperMagic && !force) {
    return Status::Error(EEXIST, dev->Describe() + " already holds a nestor pool (use --force to overwrite)");
  }
  auto sb = PlanLayout(dev->size_bytes(), cluster_size);
  if (!sb.ok()) return sb.status();
  uint64_t pool_id = PoolId(*sb);
  // Slot 0: an empty state at seq 0 whose log starts at 0; slot 1 and the
  // first log block cleared so nothing of an earlier pool can be replayed.
  AlignedBuffer zero(kBlock);
  NESTOR_RETURN_IF_ERROR(dev->WriteAt(sb->ckpt_offset[1], zero.data(), kBlock));
  NESTOR_RETURN_IF_ERROR(dev->WriteAt(sb->log_offset, zero.data(), kBlock));
  CheckpointHeader h;
  h.pool_id = pool_id;
  h.payload_crc = Crc32c("", 0);
  EncodeCheckpointHeader(h, block.data(), &*sb);
  NESTOR_RETURN_IF_ERROR(dev->WriteAt(sb->ckpt_offset[0], block.data(), kBlock));
  NESTOR_RETURN_IF_ERROR(dev->Sync());
  EncodeSuperblock(*sb, block.data());
  NESTOR_RETURN_IF_ERROR(dev->WriteAt(0, block.data(), kBlock));
  return dev->Sync();
}

Pool::Pool(std::unique_ptr<PoolDevice> dev, const Superblock& sb, PoolOptions opts)
    : dev_(std::move(dev)), sb_(sb), opts_(opts), pool_id_(PoolId(sb)), alloc_(sb.data_clusters) {
  zeros_bytes_ = std::min<size_t>(sb.cluster_size, 4u << 20);
  if (posix_memalign(reinterpret_cast<void**>(&zeros_), 4096, zeros_bytes_) != 0) throw std::bad_alloc();
  std::memset(zeros_, 0, zeros_bytes_);
}

Status Pool::RecoverJournal() {
  auto j = Journal::Open(opts_.journal_dir, sb_.uuid, pool_id_, opts_.boot_id, opts_.read_only);
  if (!j.ok()) return j.status();
  if (*j == nullptr) return Status::Ok();  // read-only, and no journal was ever written
  uint64_t last = load_hardened_;
  {
    MutexLock c(&commit_mu_);
    MutexLock g(&mu_);
    NESTOR_RETURN_IF_ERROR((*j)->Replay(
        load_hardened_, seq_,
        [&](const Record& r) -> Status {
          mu_.AssertHeld();  // Replay calls back synchronously, in this scope
          Status st = Apply(r);
          if (!st.ok() && opts_.check_mode) {
            Problem("journal: " + st.message());
            return Status::Ok();
          }
          if (st.ok()) AppendPendingLocked(r);
          return st;
        },
        &last));
    notes_ = last;
    recorded_notes_.store(last);
    hardened_.store(load_hardened_);
    journal_buf_first_ = last + 1;
  }
  if (opts_.read_only) return Status::Ok();  // nothing is journaled by a read-only pool
  journal_ = std::move(*j);
  // What the journal held becomes committed state; the journal starts over.
  NESTOR_RETURN_IF_ERROR(Commit());
  return journal_->Reset(last + 1);
}

Result<Superblock> Pool::ReadSuperblock(PoolDevice* dev, std::string* damage) {
  AlignedBuffer block(kBlock);
  NESTOR_RETURN_IF_ERROR(dev->ReadAt(0, block.data(), kBlock));
  auto sb = DecodeSuperblock(block.data());
  if (sb.ok() || (sb.status().err() != EUCLEAN && sb.status().err() != ENODEV)) return sb;
  // The copy every checkpoint header carries (slot 0 always has one).
  NESTOR_RETURN_IF_ERROR(dev->ReadAt(kBlock, block.data(), kBlock));
  auto header = DecodeCheckpointHeader(block.data());
  if (!header.ok()) return sb.status();
  auto copy = SuperblockFromCheckpoint(block.data());
  if (!copy.ok() || PoolId(*copy) != header->pool_id) return sb.status();
  *damage = "superblock damaged (" + sb.status().message() +
            "); the copy in checkpoint slot 0 was used (`nestor pool repair` rewrites it)";
  NLOG_ERROR("{}: {}", dev->Describe(), *damage);
  return copy;
}

Result<std::unique_ptr<Pool>> Pool::Open(std::unique_ptr<PoolDevice> dev, PoolOptions opts) {
  std::string sb_problem;
  auto sb = ReadSuperblock(dev.get(), &sb_problem);
  if (!sb.ok()) return sb.status();
  if (sb->device_bytes > dev->size_bytes()) {
    return Corruption(dev->Describe() + " is smaller than the pool it holds");
  }
  std::unique_ptr<Pool> pool(new Pool(std::move(dev), *sb, opts));
  {
    // Nobody else can reach the pool yet: the locks are for the analysis.
    MutexLock c(&pool->commit_mu_);
    MutexLock g(&pool->mu_);
    if (!sb_problem.empty()) pool->problems_.push_back(sb_problem);
    pool->sb_problem_ = sb_problem;
    NESTOR_RETURN_IF_ERROR(pool->Load());
    // Notes are numbered across the pool's life: continue after the last.
    pool->notes_ = pool->load_hardened_;
    pool->recorded_notes_.store(pool->notes_);
    pool->hardened_.store(pool->load_hardened_);
    pool->journal_buf_first_ = pool->notes_ + 1;
    pool->committed_seq_.store(pool->seq_);
    pool->committed_log_used_.store(pool->log_used_);
  }
  // A read-write open clears the seal before anything can be committed.
  if (!opts.read_only) {
    MutexLock c(&pool->commit_mu_);
    NESTOR_RETURN_IF_ERROR(pool->WriteSeal(false));
  }
  if (!opts.journal_dir.empty()) NESTOR_RETURN_IF_ERROR(pool->RecoverJournal());
  MutexLock c(&pool->commit_mu_);
  MutexLock g(&pool->mu_);
  NLOG_INFO("pool {} ({}): {} volume(s), {} of {} clusters used, commit seq {}", pool->dev_->Describe(),
            UuidString(sb->uuid), pool->volumes_.size(), sb->data_clusters - pool->alloc_.free_clusters(),
            sb->data_clusters, pool->seq_);
  return pool;
}

Pool::~Pool() {
  if (committer_.joinable()) {
    {
      MutexLock g(&mu_);
      stop_ = true;
    }
    cv_.Signal();
    committer_.join();
  }
  if (!opts_.read_only && !failed_) {
    Status st = Commit();
    if (!st.ok()) NLOG_ERROR("pool {}: final commit: {}", dev_->Describe(), st.ToString());
    // Everything is committed: the journal's files go, and the seal
    // records where the log ends.
    if (st.ok() && journal_ != nullptr) journal_->Remove();
    if (st.ok()) {
      MutexLock c(&commit_mu_);
      st = WriteSeal(true);
    }
    if (!st.ok()) NLOG_ERROR("pool {}: clean-shutdown seal: {}", dev_->Describe(), st.ToString());
  }
  free(zeros_);
}

std::shared_ptr<Volume> Pool::FindLocked(const std::string& name) const {
  auto n = names_.find(name);
  return n == names_.end() ? nullptr : n->second;
}

void Pool::AddImageLocked(std::shared_ptr<Volume> v) {
  names_.emplace(v->name, v);
  uint32_t id = v->id;
  volumes_.emplace(id, std::move(v));
}

void Pool::EraseImageLocked(uint32_t id) {
  auto it = volumes_.find(id);
  if (it == volumes_.end()) return;
  names_.erase(it->second->name);
  if (last_applied_ == it->second.get()) last_applied_ = nullptr;
  volumes_.erase(it);
}

VolumeInfo Pool::InfoOf(const Volume& v) const {
  VolumeInfo i;
  i.id = v.id;
  i.name = v.name;
  i.size = v.size.load();
  i.allocated_bytes = v.allocated * sb_.cluster_size;
  i.reserved_bytes = v.reserved * sb_.cluster_size;
  i.extents = v.extent_count();
  i.open = v.open_count.load() > 0;
  i.exported = v.exported;
  i.export_settings = v.export_settings;
  i.snapshot = v.snapshot;
  if (v.parent_id != 0) {
    auto p = volumes_.find(v.parent_id);
    if (p != volumes_.end()) i.parent = p->second->name;
  }
  if (v.children > 0) i.children = ChildrenOfLocked(v);
  return i;
}

Result<VolumeInfo> Pool::CreateVolume(const std::string& name, uint64_t size, bool preallocate) {
  NESTOR_RETURN_IF_ERROR(ValidateVolumeName(name));
  NESTOR_RETURN_IF_ERROR(ValidateVolumeSize(size));
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  MutexLock c(&commit_mu_);
  VolumeInfo info;
  {
    MutexLock g(&mu_);
    if (FindLocked(name) != nullptr) return Status::Error(EEXIST, "volume '" + name + "' already exists");
    NESTOR_RETURN_IF_ERROR(RoomForImageLocked());
    uint64_t reserve = preallocate ? ClustersFor(size) : 0;
    if (reserve > 0 && !RoomToReserveLocked(reserve)) {
      return Status::Error(ENOSPC, "pool has no room to preallocate " + std::to_string(size) + " bytes");
    }
    uint32_t id = volumes_.empty() ? 1 : volumes_.rbegin()->first + 1;
    auto v = std::make_shared<Volume>();
    v->id = id;
    v->name = name;
    v->size.store(size);
    v->reserved = reserve;
    reserved_unused_ += reserve;
    AppendPendingLocked(Record{RecordType::kVolumeCreate, id, size, reserve, 0, name});
    info = InfoOf(*v);
    AddImageLocked(std::move(v));
  }
  NESTOR_RETURN_IF_ERROR(CommitLocked());
  NLOG_INFO("pool: created volume {} ({} bytes{})", name, size, preallocate ? ", preallocated" : "");
  return info;
}

Status Pool::DeleteVolume(const std::string& name) {
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  MutexLock c(&commit_mu_);
  {
    MutexLock g(&mu_);
    auto v = FindLocked(name);
    if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
    if (v->children > 0) {
      return Status::Error(EBUSY, "snapshot '" + name + "' has clones (" +
                                      fmt::format("{}", fmt::join(ChildrenOfLocked(*v), ", ")) +
                                      "): delete, inflate or decouple them first");
    }
    if (v->open_count.load() > 0) return Status::Error(EBUSY, "volume '" + name + "' is in use");
    // Its map and parent stay as they are: a request of a clone that was
    // relinked from it a moment ago may still walk them (without a lock);
    // the image is retired, and dropped after the grace period.
    v->lock.AssertHeld();  // not open: no channel of its own reaches its map
    v->map.ForEach([&](const Extent& e) {
      mu_.AssertHeld();  // called back synchronously, in this scope
      pending_frees_.push_back(e);
    });
    reserved_unused_ -= UnusedReservation(*v);
    AppendPendingLocked(Record{RecordType::kVolumeDelete, v->id, 0, 0, 0, {}});
    if (v->parent_id != 0) {
      auto p = volumes_.find(v->parent_id);
      if (p != volumes_.end() && p->second->children > 0) --p->second->children;
    }
    EraseImageLocked(v->id);
    retired_.push_back(std::move(v));
  }
  NESTOR_RETURN_IF_ERROR(CommitLocked());
  NLOG_INFO("pool: deleted volume {}", name);
  return Status::Ok();
}

Status Pool::ResizeVolume(const std::string& name, uint64_t size, bool force) {
  NESTOR_RETURN_IF_ERROR(ValidateVolumeSize(size));
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock a(&admin_mu_);
  MutexLock c(&commit_mu_);
  {
    MutexLock g(&mu_);
    auto v = FindLocked(name);
    if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
    // Every check first: a refused resize changes nothing.
    bool shrink = size < v->size.load();
    if (v->snapshot) return Status::Error(EROFS, "'" + name + "' is a snapshot: snapshots cannot be resized");
    if (shrink && v->parent_id != 0) {
      // Its parent's data past the new end would show again on a later grow.
      return Status::Error(
          ENOTSUP, "volume '" + name + "' reads through to a snapshot and can only grow: inflate it to shrink it");
    }
    uint64_t keep = ClustersFor(size);
    if (shrink && v->open_count.load() > 0) {
      return Status::Error(EBUSY, "volume '" + name + "' is in use: cannot shrink");
    }
    // Some cluster holding data reaches past `size` (mapped_end * cluster > size, without the product).
    v->lock.AssertHeld();  // its map is read only to shrink, and then it is not open
    if (shrink && v->map.mapped_end() > size / sb_.cluster_size && !force) {
      return Status::Error(ENOTEMPTY, "volume '" + name + "' holds data beyond " + std::to_string(size) +
                                          " bytes (use --force to discard it)");
    }
    uint64_t grow = v->reserved > 0 && keep > v->reserved ? keep - v->reserved : 0;
    if (grow > 0 && !RoomToReserveLocked(grow)) {
      return Status::Error(ENOSPC, "pool has no room to keep volume '" + name + "' preallocated");
    }
    if (shrink) NESTOR_RETURN_IF_ERROR(DiscardBeyondLocked(*v, size));
    if (v->reserved > 0) {
      reserved_unused_ -= UnusedReservation(*v);
      v->reserved = keep;
      reserved_unused_ += UnusedReservation(*v);
      AppendPendingLocked(Record{RecordType::kVolumeReserve, v->id, keep, 0, 0, {}});
    }
    v->size.store(size);
    AppendPendingLocked(Record{RecordType::kVolumeResize, v->id, size, 0, 0, {}});
  }
  NESTOR_RETURN_IF_ERROR(CommitLocked());
  NLOG_INFO("pool: resized volume {} to {} bytes", name, size);
  return Status::Ok();
}

Status Pool::UsableSize(const Volume& v) {
  Status st = ValidateVolumeSize(v.size.load());
  if (st.ok()) return st;
  return Status::Error(EUCLEAN, "volume '" + v.name + "': " + st.message() +
                                    " (stored by an older nestor): resize it to a valid size or delete it");
}

Status Pool::DiscardBeyondLocked(Volume& v, uint64_t size) {
  // Whole clusters past the end are unmapped; the part of the last cluster
  // past the end is zeroed, so that a later grow reads zeros there.
  v.lock.AssertHeld();  // not open: no channel reaches its map
  uint64_t keep = ClustersFor(size);
  uint64_t within = size % sb_.cluster_size;  // a multiple of 4 KiB (sizes are)
  uint64_t p = 0, run = 0;
  if (within != 0 && v.map.Lookup(keep - 1, &p, &run)) {
    uint64_t len = sb_.cluster_size - within;
    AlignedBuffer zero(std::min<uint64_t>(len, 1 << 20));
    for (uint64_t off = 0; off < len; off += zero.size()) {
      NESTOR_RETURN_IF_ERROR(dev_->WriteAt(sb_.data_offset + p * sb_.cluster_size + within + off, zero.data(),
                                           std::min<uint64_t>(zero.size(), len - off)));
    }
  }
  std::vector<Extent> freed;
  v.map.Unmap(keep, UINT64_MAX / 2, &freed);
  FreeUnmappedLocked(v, freed);
  return Status::Ok();
}

bool Pool::RoomToReserveLocked(uint64_t clusters) const {
  uint64_t promised = 0;
  if (__builtin_add_overflow(reserved_unused_, clusters, &promised)) return false;
  return alloc_.free_clusters() >= promised;
}

void Pool::FreeUnmappedLocked(Volume& v, const std::vector<Extent>& freed) {
  // One record per freed run (a u32 count each), never one for the whole
  // range: the range of a shrink or a discard can span more than 2^32
  // clusters, and the records must free exactly what the map freed. Each
  // record is a note (journal.h).
  for (const Extent& e : freed) {
    for (uint64_t done = 0; done < e.n;) {
      uint64_t k = std::min<uint64_t>(e.n - done, UINT32_MAX);
      NoteLocked(Record{RecordType::kUnmap, v.id, e.v + done, 0, k, {}});
      done += k;
    }
    pending_frees_.push_back(e);
    AdjustAllocated(v, -static_cast<int64_t>(e.n));
  }
}

Record ExportRecord(uint32_t id, const ExportSettings& s) {
  // Bits 17 and 24..31 are zero in records written before they existed:
  // one frontend, no shared writers.
  uint64_t frontends = s.frontends > 1 ? s.frontends : 0;
  Record r{RecordType::kExportSet,
           id,
           uint64_t{s.queues} | (uint64_t{s.read_only} << 16) | (uint64_t{s.shared_writers} << 17) | (frontends << 24),
           0,
           0,
           {}};
  r.qos[0] = s.read_iops;
  r.qos[1] = s.write_iops;
  r.qos[2] = s.read_bps;
  r.qos[3] = s.write_bps;
  if (!s.access.IsDefault()) {  // else the record older nestor reads
    r.type = RecordType::kExportSetAccess;
    r.access = s.access;
  }
  return r;
}

Status Pool::SetExport(const std::string& name, const ExportSettings& s) {
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  if (s.queues < 1 || s.queues > 64) return Status::Invalid("queues must be 1..64");
  NESTOR_RETURN_IF_ERROR(ValidateFrontends(s.frontends, s.read_only, s.shared_writers));
  NESTOR_RETURN_IF_ERROR(ValidateExportAccess(s.access));
  MutexLock c(&commit_mu_);
  {
    MutexLock g(&mu_);
    auto v = FindLocked(name);
    if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
    if (v->snapshot && !s.read_only) {
      return Status::Invalid("'" + name + "' is a snapshot: it can only be exported read-only");
    }
    if (v->exported && v->export_settings == s) return Status::Ok();
    v->exported = true;
    v->export_settings = s;
    AppendPendingLocked(ExportRecord(v->id, s));
  }
  return CommitLocked();
}

Status Pool::ClearExport(const std::string& name) {
  if (opts_.read_only) return Status::Error(EROFS, "pool opened read-only");
  MutexLock c(&commit_mu_);
  {
    MutexLock g(&mu_);
    auto v = FindLocked(name);
    if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
    if (!v->exported) return Status::Ok();
    v->exported = false;
    AppendPendingLocked(Record{RecordType::kExportClear, v->id, 0, 0, 0, {}});
  }
  return CommitLocked();
}

std::vector<VolumeInfo> Pool::ListVolumes(bool with_space) const {
  std::vector<VolumeInfo> out;
  if (!with_space) {
    MutexLock g(&mu_);
    for (const auto& [id, v] : volumes_) out.push_back(InfoOf(*v));
    return out;
  }
  // The maps are walked outside mu_ (a volume's lock comes before it);
  // admin_mu_ keeps delete and shrink away from them meanwhile.
  MutexLock a(&admin_mu_);
  std::vector<std::shared_ptr<Volume>> images;
  {
    MutexLock g(&mu_);
    for (const auto& [id, v] : volumes_) {
      out.push_back(InfoOf(*v));
      images.push_back(v);
    }
  }
  FillSpace(&out, images);
  return out;
}

Result<VolumeInfo> Pool::GetVolume(const std::string& name) const {
  MutexLock g(&mu_);
  auto v = FindLocked(name);
  if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
  return InfoOf(*v);
}

PoolInfo Pool::Info() const {
  MutexLock g(&mu_);
  PoolInfo i;
  i.sb = sb_;
  i.device = dev_->Describe();
  i.volumes = volumes_.size();
  i.free_clusters = alloc_.free_clusters();
  i.used_clusters = sb_.data_clusters - i.free_clusters;
  i.reserved_unused_clusters = reserved_unused_;
  for (const auto& [id, v] : volumes_) i.extents += v->extent_count();
  // (seq_ and log_used_ are commit_mu_'s: a commit may be running)
  i.commit_seq = committed_seq_.load(std::memory_order_acquire);
  i.log_used_bytes = committed_log_used_.load(std::memory_order_acquire);
  i.checkpoints = checkpoints_.load();
  i.log_entries = log_entries_.load();
  i.commits = commits_.load();
  i.allocations = allocations_.load();
  i.parked_writes = parked_.load();
  i.enospc = enospc_.load();
  return i;
}

std::string PoolStatsString(const PoolInfo& i) {
  return fmt::format(
      "pool {}: volumes {} used_clusters {} free_clusters {} extents {} commits {} log_entries {} "
      "checkpoints {} allocations {} parked_writes {} enospc {}",
      i.device, i.volumes, i.used_clusters, i.free_clusters, i.extents, i.commits, i.log_entries, i.checkpoints,
      i.allocations, i.parked_writes, i.enospc);
}

CheckReport Pool::Check() const {
  MutexLock g(&mu_);
  CheckReport rep;
  rep.problems = problems_;
  rep.notices = notices_;
  CheckTree(&rep);
  Allocator seen(sb_.data_clusters);
  for (const auto& entry : volumes_) {
    const auto& v = entry.second;  // not a structured binding: clang 14 cannot capture one
    v->lock.AssertHeld();          // a quiet pool (see pool.h)
    ++rep.volumes;
    if (Status st = UsableSize(*v); !st.ok()) rep.problems.push_back(st.message());
    uint64_t limit = ClustersFor(v->size.load());
    uint64_t held = 0;
    const std::string& name = v->name;  // clang 14 cannot capture a structured binding
    v->map.ForEach([&](const Extent& e) {
      ++rep.extents;
      held += e.n;
      if (e.p + e.n > sb_.data_clusters || e.p + e.n < e.p) {
        rep.problems.push_back("volume " + name + ": extent at cluster " + std::to_string(e.v) +
                               " points outside the pool");
        return;
      }
      if (e.v + e.n > limit || e.v + e.n < e.v) {
        rep.problems.push_back("volume " + name + ": extent at cluster " + std::to_string(e.v) +
                               " lies beyond the volume's size");
      }
      if (!seen.MarkUsed(e.p, e.n)) {
        rep.problems.push_back("volume " + name + ": a cluster in " + std::to_string(e.p) + "+" + std::to_string(e.n) +
                               " is owned twice");
      }
    });
    for (const auto& [vcl, ie] : v->initializing) {
      held += 1;
      (void)seen.MarkUsed(ie.p, 1);
    }
    if (held != v->allocated) {
      rep.problems.push_back("volume " + v->name + ": holds " + std::to_string(held) + " clusters but accounts " +
                             std::to_string(v->allocated));
    }
  }
  for (const Extent& e : pending_frees_) (void)seen.MarkUsed(e.p, e.n);
  uint64_t mismatched = 0;
  for (uint64_t p = 0; p < sb_.data_clusters; ++p) mismatched += seen.IsUsed(p) != alloc_.IsUsed(p);
  if (mismatched != 0) {
    rep.problems.push_back(std::to_string(mismatched) + " cluster(s) where the free map disagrees with the extents");
  }
  rep.used_clusters = sb_.data_clusters - seen.free_clusters();
  rep.free_clusters = alloc_.free_clusters();
  if (rep.free_clusters != seen.free_clusters()) {
    rep.problems.push_back("free space " + std::to_string(rep.free_clusters) + " clusters, extents imply " +
                           std::to_string(seen.free_clusters()));
  }
  return rep;
}

Result<std::shared_ptr<io::BlockBackend>> Pool::OpenVolume(const std::string& name) {
  std::shared_ptr<Volume> v;
  {
    MutexLock g(&mu_);
    v = FindLocked(name);
  }
  if (v == nullptr) return Status::Error(ENOENT, "no volume '" + name + "'");
  NESTOR_RETURN_IF_ERROR(UsableSize(*v));
  return std::shared_ptr<io::BlockBackend>(std::make_shared<ThinBackend>(this, std::move(v)));
}

// ---- data path ----

Status Pool::AllocateCluster(Volume* vol, uint64_t hint, uint64_t* p) {
  // A mapping made now could never be committed: fail the write as the
  // device error it is, not as a full pool.
  if (failed_.load()) return Status::IoError("pool metadata failed: no new allocations");
  MutexLock g(&mu_);
  uint64_t others = reserved_unused_ - UnusedReservation(*vol);
  if (alloc_.free_clusters() <= others || !alloc_.Allocate(hint, p)) {
    enospc_.fetch_add(1, std::memory_order_relaxed);
    return Status::Error(ENOSPC, "pool full");
  }
  allocations_.fetch_add(1, std::memory_order_relaxed);
  AdjustAllocated(*vol, 1);
  return Status::Ok();
}

void Pool::ReleaseCluster(Volume* vol, uint64_t p) {
  MutexLock g(&mu_);
  alloc_.Free(p, 1);
  AdjustAllocated(*vol, -1);
}

void Pool::NoteLocked(const Record& r) {
  AppendPendingLocked(r);
  ++notes_;
  recorded_notes_.store(notes_, std::memory_order_release);
  if (journal_ != nullptr) {
    AppendRecord(r, &journal_buf_);
    ++journal_buf_count_;
  }
}

void Pool::NoteMapped(Volume* vol, uint64_t v, uint64_t p) {
  MutexLock g(&mu_);
  NoteLocked(Record{RecordType::kMap, vol->id, v, p, 1, {}});
}

void Pool::NoteUnmapped(Volume* vol, const std::vector<Extent>& freed) {
  MutexLock g(&mu_);
  FreeUnmappedLocked(*vol, freed);
}

Result<uint64_t> Pool::HighestLogSeq() {
  uint64_t best = 0;
  const uint64_t chunk = 16ull << 20;
  for (uint64_t start = 0; start < sb_.log_bytes; start += chunk) {
    uint64_t len = std::min(chunk, sb_.log_bytes - start);
    AlignedBuffer buf(len);
    NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset + start, buf.data(), len));
    for (uint64_t off = 0; off < len; off += kBlock) {
      auto h = DecodeAnyLogEntryHeader(buf.data() + off, sb_.log_bytes - start - off, pool_id_);
      if (h.ok()) best = std::max(best, h->seq);  // intact or not: any seq it might claim
    }
  }
  return best;
}

Result<CheckReport> Pool::Repair(std::unique_ptr<PoolDevice> dev, PoolOptions opts) {
  opts.check_mode = true;
  opts.salvage = true;
  opts.read_only = true;  // nothing is written while loading
  auto opened = Open(std::move(dev), opts);
  if (!opened.ok()) return opened.status();
  Pool& p = **opened;
  CheckReport before = p.Check();
  // The new checkpoint must be newer than anything left in the log, so that
  // no stale entry is ever replayed on top of it.
  auto highest = p.HighestLogSeq();
  if (!highest.ok()) return highest.status();
  MutexLock c(&p.commit_mu_);
  p.seq_ = std::max(p.seq_, *highest);
  std::string snapshot;
  {
    MutexLock g(&p.mu_);
    p.SerializeState(&snapshot);
  }
  NESTOR_RETURN_IF_ERROR(p.WriteCheckpoint(snapshot));
  NESTOR_RETURN_IF_ERROR(p.dev_->Sync());
  if (!p.sb_problem_.empty()) {
    AlignedBuffer block(kBlock);
    EncodeSuperblock(p.sb_, block.data());
    NESTOR_RETURN_IF_ERROR(p.dev_->WriteAt(0, block.data(), kBlock));
    NESTOR_RETURN_IF_ERROR(p.dev_->Sync());
  }
  return before;
}

Status Pool::WriteSeal(bool sealed) {
  if (active_block_.size() != kBlock) return Status::Ok();
  Seal old;
  bool was = DecodeSeal(active_block_.data(), &old);
  if (!sealed && !was) return Status::Ok();
  // Only the seal's sector changes (the header CRC ignores it), so a torn
  // write cannot damage the checkpoint header.
  std::memset(active_block_.data() + kCkptSealAt, 0, kSealBytes);
  if (sealed) EncodeSeal(Seal{seq_, log_head_, pool_id_}, active_block_.data());
  AlignedBuffer buf(kBlock);
  std::memcpy(buf.data(), active_block_.data(), kBlock);
  NESTOR_RETURN_IF_ERROR(dev_->WriteAt(sb_.ckpt_offset[active_slot_], buf.data(), kBlock));
  return dev_->Sync();
}

Status Pool::WriteJournal() {
  {
    MutexLock j(&journal_mu_);
    std::string records;
    uint64_t first;
    uint32_t count;
    {
      MutexLock g(&mu_);
      if (journal_buf_count_ == 0) return Status::Ok();
      records.swap(journal_buf_);
      first = journal_buf_first_;
      count = journal_buf_count_;
      journal_buf_first_ += count;
      journal_buf_count_ = 0;
    }
    Status st = journal_->Append(first, count, records, hardened_.load(std::memory_order_acquire),
                                 committed_seq_.load(std::memory_order_acquire));
    // Replay stops at a gap: notes after one are safe only once a commit
    // has covered the gap.
    if (st.ok() && hardened_.load(std::memory_order_acquire) >= journal_gap_) {
      journaled_.store(first + count - 1, std::memory_order_release);
      return Status::Ok();
    }
    if (!st.ok()) {
      journal_gap_ = std::max(journal_gap_, first + count - 1);
      NLOG_WARN("pool {}: journal write failed ({}); committing instead", dev_->Describe(), st.ToString());
    }
  }
  return Commit();  // covers every note recorded so far
}

}  // namespace nestor::volume
