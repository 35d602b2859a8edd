// Pool commits: the batched path that makes mappings durable.
//
// Order inside one commit (docs/on-disk-format.md, "Commit"):
//   1. take the pending records (or a snapshot of the whole state for a
//      checkpoint) and the pending frees, atomically;
//   2. Sync: every data write that completed before its mapping was
//      recorded is now durable, so no committed mapping can point at
//      stale bytes;
//   3. write the log entry (or the checkpoint slot), Sync;
//   4. wait out the grace period (no I/O that looked up a freed cluster is
//      still in flight), then let the allocator reuse the freed clusters.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/crc32c.h"
#include "base/log.h"
#include "io/uring.h"
#include "volume/aligned_buffer.h"
#include "volume/pool.h"

namespace nestor::volume {

void Pool::AppendPendingLocked(const Record& r) {
  if (r.type == RecordType::kMap && last_map_.count_at != SIZE_MAX && last_map_.volume == r.volume &&
      last_map_.v_end == r.a && last_map_.p_end == r.b) {
    // Extends the previous record's run (sequential first writes).
    std::string& chunk = pending_.back();
    uint32_t count;
    std::memcpy(&count, chunk.data() + last_map_.count_at, 4);
    if (count < UINT32_MAX - r.count) {
      count += static_cast<uint32_t>(r.count);
      std::memcpy(chunk.data() + last_map_.count_at, &count, 4);
      last_map_.v_end += r.count;
      last_map_.p_end += r.count;
      return;
    }
  }
  if (pending_.empty() || pending_.back().size() > kMaxLogEntryBytes - 128) {
    pending_.emplace_back();
    pending_counts_.push_back(0);
  }
  AppendRecord(r, &pending_.back());
  ++pending_counts_.back();
  if (r.type == RecordType::kMap) {
    last_map_ = LastMap{r.volume, r.a + r.count, r.b + r.count, pending_.back().size() - 4};
  } else {
    last_map_.count_at = SIZE_MAX;
  }
}

void Pool::SerializeState(std::string* out) {
  for (const auto& entry : volumes_) {
    const uint32_t id = entry.first;  // not a structured binding: clang 14 cannot capture one
    const auto& v = entry.second;
    v->lock.AssertHeld();  // held by CommitLocked (LockVolumes), or Repair's pool is quiet
    Record c{RecordType::kVolumeCreate, id, v->size.load(), v->reserved, 0, v->name};
    AppendRecord(c, out);
    if (v->exported) AppendRecord(ExportRecord(id, v->export_settings), out);
    v->map.ForEach([&](const Extent& e) {
      for (uint64_t done = 0; done < e.n;) {
        uint64_t n = std::min<uint64_t>(e.n - done, UINT32_MAX);
        AppendRecord(Record{RecordType::kMap, id, e.v + done, e.p + done, n, {}}, out);
        done += n;
      }
    });
  }
  SerializeLinks(out);  // after every image: a link may name a later id
  // The notes this state includes (journal.h).
  AppendRecord(Record{RecordType::kNoteMark, 0, notes_, 0, 0, {}}, out);
}

// Every volume's lock, in a loop the analysis cannot follow (SerializeState
// asserts them).
void Pool::LockVolumes(const std::vector<std::shared_ptr<Volume>>& vols) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (auto& v : vols) v->lock.Lock();
}

void Pool::UnlockVolumes(const std::vector<std::shared_ptr<Volume>>& vols) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  for (auto& v : vols) v->lock.Unlock();
}

Status Pool::Commit() {
  MutexLock c(&commit_mu_);
  return CommitLocked();
}

Status Pool::CommitLocked() {
  if (failed_) return Status::IoError("pool metadata is read-only after an earlier write error");
  if (opts_.read_only) return Status::Ok();
  std::vector<std::string> chunks;
  std::vector<uint32_t> counts;
  std::vector<Extent> frees;
  std::vector<std::shared_ptr<Volume>> retired;
  std::string snapshot;
  bool checkpoint = false;
  uint64_t through = 0;
  {
    mu_.Lock();
    uint64_t bytes = 0;
    for (const auto& ch : pending_) bytes += PaddedLogEntryBytes(ch.size());
    checkpoint = force_checkpoint_ || log_used_ + bytes + kMaxLogEntryBytes > sb_.log_bytes / 2;
    if (checkpoint) {
      // The snapshot and the hand-over of pending records must be one
      // instant: lock every volume (no mapping changes), then the pool.
      mu_.Unlock();
      std::vector<std::shared_ptr<Volume>> vols;
      {
        MutexLock g(&mu_);
        for (auto& [id, v] : volumes_) vols.push_back(v);
      }
      LockVolumes(vols);
      mu_.Lock();
      SerializeState(&snapshot);
      UnlockVolumes(vols);
    }
    chunks.swap(pending_);
    counts.swap(pending_counts_);
    frees.swap(pending_frees_);
    retired.swap(retired_);
    last_map_.count_at = SIZE_MAX;
    through = notes_;
    mu_.Unlock();
  }
  // The state committed now includes every note so far (journal.h); a
  // checkpoint's snapshot says so itself.
  if (!checkpoint && through != hardened_.load(std::memory_order_relaxed)) {
    if (chunks.empty()) {
      chunks.emplace_back();
      counts.push_back(0);
    }
    AppendRecord(Record{RecordType::kNoteMark, 0, through, 0, 0, {}}, &chunks.back());
    ++counts.back();
  }
  Status st = dev_->Sync();
  if (st.ok()) st = checkpoint ? WriteCheckpoint(snapshot) : AppendLog(chunks, counts);
  if (st.ok() && (checkpoint || !chunks.empty())) st = dev_->Sync();
  if (!st.ok()) {
    failed_ = true;
    NLOG_ERROR("pool {}: metadata commit failed, no further commits: {}", dev_->Describe(), st.ToString());
    return st;
  }
  if (checkpoint) force_checkpoint_ = false;
  commits_.fetch_add(1, std::memory_order_relaxed);
  hardened_.store(through, std::memory_order_release);
  committed_seq_.store(seq_, std::memory_order_release);
  committed_log_used_.store(log_used_, std::memory_order_release);
  if (!frees.empty() || !retired.empty()) {
    WaitForGracePeriod();
    MutexLock g(&mu_);
    for (const Extent& e : frees) alloc_.Free(e.p, e.n);
  }
  return Status::Ok();
}

Status Pool::WriteCheckpoint(const std::string& payload) {
  if (payload.size() > sb_.ckpt_bytes - kBlock) return Status::Error(ENOSPC, "checkpoint does not fit its slot");
  int slot = 1 - active_slot_;
  uint64_t padded = (payload.size() + kBlock - 1) / kBlock * kBlock;
  AlignedBuffer buf(kBlock + padded);
  std::memcpy(buf.data() + kBlock, payload.data(), payload.size());
  CheckpointHeader h;
  h.seq = seq_ + 1;
  h.log_head = log_head_;
  h.payload_bytes = payload.size();
  h.payload_crc = Crc32c(payload.data(), payload.size());
  h.pool_id = pool_id_;
  EncodeCheckpointHeader(h, buf.data(), &sb_);
  NESTOR_RETURN_IF_ERROR(dev_->WriteAt(sb_.ckpt_offset[slot], buf.data(), buf.size()));
  seq_ = h.seq;
  active_slot_ = slot;
  active_block_.assign(buf.data(), buf.data() + kBlock);
  log_tail_ = log_head_;
  log_used_ = 0;
  checkpoints_.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Status Pool::AppendLog(const std::vector<std::string>& chunks, const std::vector<uint32_t>& counts) {
  for (size_t i = 0; i < chunks.size(); ++i) {
    std::string e =
        EncodeLogEntry(seq_ + 1, counts[i], chunks[i], pool_id_, static_cast<uint8_t>(std::min<size_t>(i, 255)));
    if (log_head_ + e.size() > sb_.log_bytes) {
      log_used_ += sb_.log_bytes - log_head_;
      log_head_ = 0;
    }
    AlignedBuffer buf(e.size());
    std::memcpy(buf.data(), e.data(), e.size());
    NESTOR_RETURN_IF_ERROR(dev_->WriteAt(sb_.log_offset + log_head_, buf.data(), buf.size()));
    log_head_ += e.size();
    log_used_ += e.size();
    ++seq_;
    log_entries_.fetch_add(1, std::memory_order_relaxed);
  }
  return Status::Ok();
}

void Pool::WaitForGracePeriod() {
  // Requests count themselves in the bucket of the epoch they started in;
  // after the flip, everything that could have seen a freed mapping is in
  // the old bucket.
  uint64_t old = epoch_.fetch_add(1, std::memory_order_seq_cst) & 1;
  for (;;) {
    uint64_t active = 0;
    {
      MutexLock g(&mu_);
      for (EpochCounters* c : channels_) active += c->active[old].load(std::memory_order_seq_cst);
    }
    if (active == 0) return;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

EpochCounters* Pool::RegisterChannel() {
  auto* c = new EpochCounters();
  MutexLock g(&mu_);
  channels_.push_back(c);
  return c;
}

void Pool::UnregisterChannel(EpochCounters* c) {
  {
    MutexLock g(&mu_);
    std::erase(channels_, c);
  }
  delete c;
}

int Pool::FlushInline() {
  Status st = Commit();
  return st.ok() ? 0 : -st.err();
}

void Pool::RequestFlush(const FlushWaiter& w) {
  {
    MutexLock g(&mu_);
    flush_waiters_.push_back(w);
  }
  cv_.Signal();
}

void Pool::StartCommitter() {
  if (committer_.joinable() || opts_.read_only) return;
  committer_ = std::thread([this] { CommitterLoop(); });
}

void Pool::CommitterLoop() {
  pthread_setname_np(pthread_self(), "pool-commit");
  auto ring = io::IoUring::Create(64);
  if (!ring.ok()) {
    NLOG_ERROR("pool committer: {}", ring.status().ToString());
    return;
  }
  auto interval = std::chrono::milliseconds(opts_.commit_interval_ms);
  for (;;) {
    std::vector<FlushWaiter> waiters;
    bool pending;
    {
      MutexLock l(&mu_);
      const auto deadline = std::chrono::steady_clock::now() + interval;
      while (!stop_ && flush_waiters_.empty()) {
        if (!cv_.WaitUntil(&mu_, deadline)) break;
      }
      waiters.swap(flush_waiters_);
      pending = !pending_.empty() || !pending_frees_.empty();
      if (stop_ && waiters.empty()) break;
    }
    if (waiters.empty() && !pending) continue;
    int res = FlushInline();
    for (const FlushWaiter& w : waiters) (*ring)->PostTo(w.ring, w.token, res);
    (*ring)->Submit();
    (*ring)->Reap();
  }
}

}  // namespace nestor::volume
