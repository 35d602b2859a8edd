// Pool loading: pick the newest valid checkpoint, rebuild the state from
// it, then replay the log entries that follow it until the first one that
// is missing or torn (the end of what was committed).
#include <algorithm>
#include <cstring>

#include "base/crc32c.h"
#include "base/log.h"
#include "volume/aligned_buffer.h"
#include "volume/limits.h"
#include "volume/pool.h"

namespace nestor::volume {

void Pool::Problem(const std::string& what) {
  problems_.push_back(what);
  NLOG_WARN("pool check: {}", what);
}

Status Pool::LoadCheckpoint(int slot, CheckpointHeader* out, std::vector<uint8_t>* block) {
  AlignedBuffer hdr(kBlock);
  NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.ckpt_offset[slot], hdr.data(), kBlock));
  block->assign(hdr.data(), hdr.data() + kBlock);
  auto h = DecodeCheckpointHeader(hdr.data());
  if (!h.ok()) return h.status();
  if (h->pool_id != pool_id_) return Corruption("checkpoint of another pool");
  if (h->payload_bytes > sb_.ckpt_bytes - kBlock) return Corruption("checkpoint payload too large");
  *out = *h;
  return Status::Ok();
}

Status Pool::Load() {
  CheckpointHeader h[2];
  std::vector<uint8_t> blocks[2];
  Status st[2] = {LoadCheckpoint(0, &h[0], &blocks[0]), LoadCheckpoint(1, &h[1], &blocks[1])};
  int order[2] = {0, 1};
  if (st[1].ok() && (!st[0].ok() || h[1].seq > h[0].seq)) std::swap(order[0], order[1]);
  Status last = st[order[0]];
  for (int slot : order) {
    if (!st[slot].ok()) continue;
    uint64_t bytes = (h[slot].payload_bytes + kBlock - 1) / kBlock * kBlock;
    AlignedBuffer payload(bytes);
    Status rs = dev_->ReadAt(sb_.ckpt_offset[slot] + kBlock, payload.data(), bytes);
    if (!rs.ok()) return rs;
    if (Crc32c(payload.data(), h[slot].payload_bytes) != h[slot].payload_crc) {
      last = Corruption("checkpoint slot " + std::to_string(slot) + " payload checksum mismatch");
      NLOG_WARN("{}; trying the other slot", last.message());
      continue;
    }
    NESTOR_RETURN_IF_ERROR(ForEachRecord(payload.data(), h[slot].payload_bytes, [&](const Record& r) {
      mu_.AssertHeld();  // called back synchronously, in this scope
      Status as = Apply(r);
      if (as.ok() || !opts_.check_mode) return as;
      Problem("checkpoint: " + as.message());
      return Status::Ok();
    }));
    int other = 1 - slot;
    bool other_written = std::any_of(blocks[other].begin(), blocks[other].end(), [](uint8_t b) { return b != 0; });
    if ((slot != order[0] || !st[other].ok()) && other_written) {
      const Status& why = st[other].ok() ? last : st[other];
      notices_.push_back("checkpoint slot " + std::to_string(other) + " is not usable (" + why.message() +
                         "): loaded slot " + std::to_string(slot) +
                         " (normal after a crash while a checkpoint was written)");
    }
    active_slot_ = slot;
    active_block_ = blocks[slot];
    seq_ = h[slot].seq;
    log_tail_ = log_head_ = h[slot].log_head;
    log_used_ = 0;
    NESTOR_RETURN_IF_ERROR(ReplayLog(h[slot]));
    return CheckSeal();
  }
  return last.ok() ? Corruption("no valid checkpoint") : last;
}

Status Pool::ReplayLog(const CheckpointHeader& h) {
  uint64_t pos = h.log_head;
  uint64_t want = h.seq + 1;
  AlignedBuffer head(kBlock);
  for (;;) {
    uint64_t waste = 0;
    if (pos >= sb_.log_bytes) {
      waste = sb_.log_bytes - pos;
      pos = 0;
    }
    NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset + pos, head.data(), kBlock));
    auto eh = DecodeLogEntryHeader(head.data(), sb_.log_bytes - pos, want, pool_id_);
    if (!eh.ok() && pos != 0) {
      // The writer wraps to the start when an entry does not fit the tail.
      NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset, head.data(), kBlock));
      auto wrapped = DecodeLogEntryHeader(head.data(), sb_.log_bytes, want, pool_id_);
      if (wrapped.ok()) {
        waste = sb_.log_bytes - pos;
        pos = 0;
        eh = wrapped;
      }
    }
    uint64_t bytes = eh.ok() ? PaddedLogEntryBytes(eh->payload_bytes) : 0;
    AlignedBuffer entry(std::max<uint64_t>(bytes, kBlock));
    if (eh.ok()) NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset + pos, entry.data(), bytes));
    if (!eh.ok() || !VerifyLogEntry(*eh, entry.data()).ok()) {  // the end: torn, or damaged
      Resume resume;
      NESTOR_RETURN_IF_ERROR(CheckLogEnd(pos, want, &resume));
      if (resume.seq == 0) return Status::Ok();
      pos = resume.pos;  // salvage: go on behind the damage
      want = resume.seq;
      continue;
    }
    // Checksummed yet malformed (or inconsistent): a bug, not a crash.
    NESTOR_RETURN_IF_ERROR(ForEachRecord(entry.data() + kLogHeaderBytes, eh->payload_bytes, [&](const Record& r) {
      mu_.AssertHeld();  // called back synchronously, in this scope
      Status as = Apply(r);
      if (as.ok() || !opts_.check_mode) return as;
      Problem("log entry " + std::to_string(want) + ": " + as.message());
      return Status::Ok();
    }));
    log_used_ += waste + bytes;
    pos += bytes;
    log_head_ = pos;
    seq_ = want++;
  }
}

// Where the entry after `pos` could start: right behind an entry of at
// most kMaxLogEntryBytes, or at offset 0 if the writer wrapped.
Result<Pool::LaterEntries> Pool::FindLaterEntries(uint64_t pos, uint64_t want) {
  const uint64_t window = PaddedLogEntryBytes(kMaxLogEntryBytes) + kBlock;
  LaterEntries found;
  found.damaged_seq = want;
  for (uint64_t start : {pos, uint64_t{0}}) {
    uint64_t len = std::min(window, sb_.log_bytes - std::min(start, sb_.log_bytes));
    if (len == 0) continue;
    AlignedBuffer buf(len);
    NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset + start, buf.data(), len));
    for (uint64_t off = 0; off < len; off += kBlock) {
      auto h = DecodeAnyLogEntryHeader(buf.data() + off, sb_.log_bytes - start - off, pool_id_);
      if (!h.ok() || h->seq <= want) continue;
      // Follow the chain from this entry: how far does the intact log go?
      NESTOR_RETURN_IF_ERROR(FollowChain(start + off, h->seq, &found));
      if (found.count > 0) return found;
    }
  }
  return found;
}

Status Pool::FollowChain(uint64_t pos, uint64_t seq, LaterEntries* out) {
  AlignedBuffer head(kBlock);
  for (;;) {
    if (pos >= sb_.log_bytes) pos = 0;
    NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset + pos, head.data(), kBlock));
    auto h = DecodeLogEntryHeader(head.data(), sb_.log_bytes - pos, seq, pool_id_);
    if (!h.ok() && pos != 0) {
      NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset, head.data(), kBlock));
      h = DecodeLogEntryHeader(head.data(), sb_.log_bytes, seq, pool_id_);
      if (h.ok()) pos = 0;
    }
    if (!h.ok()) return Status::Ok();
    uint64_t bytes = PaddedLogEntryBytes(h->payload_bytes);
    AlignedBuffer entry(bytes);
    NESTOR_RETURN_IF_ERROR(dev_->ReadAt(sb_.log_offset + pos, entry.data(), bytes));
    if (!VerifyLogEntry(*h, entry.data()).ok()) return Status::Ok();
    if (out->count++ == 0) {
      out->first_seq = seq;
      out->first_pos = pos;
    }
    out->last_seq = seq;
    out->later_commit |= h->seq > out->damaged_seq + h->commit_index;
    pos += bytes;
    ++seq;
    if (out->count > sb_.log_bytes / kBlock) return Status::Ok();  // cannot be longer than the ring
  }
}

Status Pool::CheckSeal() {
  Seal seal;
  if (log_damaged_ || !DecodeSeal(active_block_.data(), &seal) || seal.pool_id != pool_id_ || seal.seq <= seq_) {
    return Status::Ok();  // (damage behind the log's end is reported once)
  }
  std::string what = "the pool was closed cleanly after log entry " + std::to_string(seal.seq) +
                     ", but the log ends after entry " + std::to_string(seq_) + ": entry " + std::to_string(seq_ + 1) +
                     " at log offset " + std::to_string(log_head_) + " is damaged; committed metadata would be lost";
  if (!opts_.check_mode) return Corruption(what);
  Problem(what);
  return Status::Ok();
}

Status Pool::CheckLogEnd(uint64_t pos, uint64_t want, Resume* resume) {
  const uint64_t at = pos;  // where ReplayLog reads it (it wraps itself)
  if (pos >= sb_.log_bytes) pos = 0;
  auto later = FindLaterEntries(pos, want);
  if (!later.ok()) return later.status();
  // Valid entries of the same (unsynced) commit may follow a torn one
  // after a crash; only an entry of a later commit proves damage.
  if (later->count == 0 || !later->later_commit) return Status::Ok();
  if (opts_.live && live_reread_seq_ != want) {
    // A later commit starts after this entry's commit was synced: if the
    // entry was only torn because the writer was writing it, it is whole
    // now. Read it again (once).
    live_reread_seq_ = want;
    *resume = Resume{at, want};
    return Status::Ok();
  }
  std::string what = "log entry " + std::to_string(want) + " at log offset " + std::to_string(pos) +
                     " is damaged (bad header or checksum), yet " + std::to_string(later->count) + " valid log entr" +
                     (later->count == 1 ? "y" : "ies") + " of later commits follow it (seq " +
                     std::to_string(later->first_seq) + ".." + std::to_string(later->last_seq) +
                     "): committed metadata would be lost";
  if (!opts_.check_mode) return Corruption(what);
  log_damaged_ = true;
  if (opts_.salvage) {
    what += "; its records are lost, replay went on at entry " + std::to_string(later->first_seq);
    *resume = Resume{later->first_pos, later->first_seq};
  }
  Problem(what);
  return Status::Ok();
}

void Pool::AdjustAllocated(Volume& v, int64_t delta) {
  reserved_unused_ -= UnusedReservation(v);
  v.allocated = static_cast<uint64_t>(static_cast<int64_t>(v.allocated) + delta);
  reserved_unused_ += UnusedReservation(v);
}

Status Pool::Apply(const Record& r) {
  if (!RecordAllowed(r.type, sb_.version)) {
    return Corruption("record type " + std::to_string(static_cast<int>(r.type)) + " in a version " +
                      std::to_string(sb_.version) + " pool");
  }
  if (r.type == RecordType::kSnapshotCreate || r.type == RecordType::kVolumeClone || r.type == RecordType::kImageLink) {
    return ApplyImageRecord(r);
  }
  if (r.type == RecordType::kNoteMark) {
    load_hardened_ = r.a;
    return Status::Ok();
  }
  if (r.type == RecordType::kVolumeCreate) {
    if (volumes_.contains(r.volume)) return Corruption("volume id " + std::to_string(r.volume) + " created twice");
    if (FindLocked(r.name) != nullptr) return Corruption("volume name '" + r.name + "' used twice");
    auto v = std::make_shared<Volume>();
    v->id = r.volume;
    v->name = r.name;
    v->size.store(r.a);
    v->reserved = r.b;
    reserved_unused_ += v->reserved;
    AddImageLocked(std::move(v));
    return Status::Ok();
  }
  // A checkpoint holds each image's records together: most records are for
  // the image of the one before.
  if (last_applied_ == nullptr || last_applied_->id != r.volume) {
    auto it = volumes_.find(r.volume);
    if (it == volumes_.end()) return Corruption("record for unknown volume id " + std::to_string(r.volume));
    last_applied_ = it->second.get();
  }
  Volume& v = *last_applied_;
  v.lock.AssertHeld();  // loading: no other thread reaches the pool
  switch (r.type) {
    case RecordType::kVolumeDelete:
      if (v.children > 0) return Corruption("volume " + v.name + " deleted while it has clones");
      v.map.ForEach([&](const Extent& e) {
        mu_.AssertHeld();  // called back synchronously, in this scope
        alloc_.Free(e.p, e.n);
      });
      reserved_unused_ -= UnusedReservation(v);
      LinkLocked(v, nullptr);
      EraseImageLocked(v.id);
      return Status::Ok();
    case RecordType::kVolumeResize: v.size.store(r.a); return Status::Ok();
    case RecordType::kExportSet:
    case RecordType::kExportSetAccess:
      v.exported = true;
      v.export_settings.queues = static_cast<uint16_t>(r.a & 0xFFFF);
      v.export_settings.read_only = (r.a >> 16) & 1;
      v.export_settings.shared_writers = (r.a >> 17) & 1;
      v.export_settings.frontends = std::max<uint16_t>(1, static_cast<uint16_t>((r.a >> 24) & 0xFF));
      v.export_settings.read_iops = r.qos[0];
      v.export_settings.write_iops = r.qos[1];
      v.export_settings.read_bps = r.qos[2];
      v.export_settings.write_bps = r.qos[3];
      v.export_settings.access = r.access;  // kExportSet: the defaults
      if (v.export_settings.queues < 1 || v.export_settings.queues > 64) {
        return Corruption("export of volume " + v.name + " has a bad queue count");
      }
      if (!ValidateFrontends(v.export_settings.frontends, v.export_settings.read_only, v.export_settings.shared_writers)
               .ok()) {
        return Corruption("export of volume " + v.name + " has a bad frontend count");
      }
      if (!ValidateExportAccess(r.access).ok()) {
        return Corruption("export of volume " + v.name + " has bad access settings");
      }
      return Status::Ok();
    case RecordType::kExportClear: v.exported = false; return Status::Ok();
    case RecordType::kNoteMark: return Status::Ok();  // handled before the volume lookup
    case RecordType::kVolumeReserve:
      reserved_unused_ -= UnusedReservation(v);
      v.reserved = r.a;
      reserved_unused_ += UnusedReservation(v);
      return Status::Ok();
    case RecordType::kMap: {
      if (r.count == 0 || r.a + r.count > ClustersFor(v.size.load()) || r.a + r.count < r.a) {
        return Corruption("volume '" + v.name + "' (id " + std::to_string(v.id) + "): extent of " +
                          std::to_string(r.count) + " cluster(s) at cluster " + std::to_string(r.a) +
                          " lies beyond its size of " + std::to_string(v.size.load()) + " bytes");
      }
      uint64_t p, run;
      // (In order, as a checkpoint holds them: past the end is a hole.)
      bool in_order = r.a >= v.map.mapped_end();
      if (!in_order && (v.map.Lookup(r.a, &p, &run) || run < r.count)) {
        return Corruption("extent mapped twice in volume " + v.name);
      }
      if (!alloc_.MarkUsed(r.b, r.count)) {
        return Corruption("cluster " + std::to_string(r.b) + " owned twice or outside the pool");
      }
      v.map.Map(r.a, r.b, r.count);
      AdjustAllocated(v, static_cast<int64_t>(r.count));
      return Status::Ok();
    }
    case RecordType::kUnmap: {
      std::vector<Extent> freed;
      v.map.Unmap(r.a, r.count, &freed);
      for (const Extent& e : freed) {
        alloc_.Free(e.p, e.n);
        AdjustAllocated(v, -static_cast<int64_t>(e.n));
      }
      return Status::Ok();
    }
    default: return Corruption("unexpected record");
  }
}

}  // namespace nestor::volume
