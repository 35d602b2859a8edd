#include "volume/thin_volume.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <vector>

#include "base/log.h"
#include "io/uring.h"

namespace nestor::volume {

// One client request in progress (the "parked op" of volume.h).
struct ParkedOp {
  io::IoRequest* req = nullptr;  // the client's request
  class ThinChannel* ch = nullptr;
  io::IoRequest wake;   // token for PostTo: resume / flush done
  uint64_t cursor = 0;  // bytes of req handled so far
  int pending = 0;      // sub-requests in flight (+1 while issuing)
  int result = 0;       // first error
  unsigned bucket = 0;  // epoch bucket it counts in (-1u: none)
  bool parked = false;
  bool space_wait = false;  // parked until a commit frees clusters
  bool orphaned = false;    // the client abandoned req (guest fault)
  uint64_t note = 0;        // set by Finish: the notes it waits for (journal.h)
  ParkedOp* next_free = nullptr;
};
using Op = ParkedOp;

class ThinChannel final : public io::IoChannel {
 public:
  ThinChannel(Pool* pool, std::shared_ptr<Volume> vol, io::IoUring* ring, std::unique_ptr<io::IoChannel> data);
  ~ThinChannel() override;
  void Submit(io::IoRequest* req) override;
  const io::IoStats& stats() const override { return data_->stats(); }
  void Abandon(io::IoRequest* req) override;
  uint32_t pending() const override { return static_cast<uint32_t>(live_ops_); }
  void EndOfBatch() override;

 private:
  static constexpr int kChildIov = 192;
  struct Child : io::IoRequest {
    Op* parent_op = nullptr;
    bool allocating = false;
    uint64_t vcluster = 0;
    uint64_t pcluster = 0;
    Child* next_free = nullptr;
    iovec vecs[kChildIov];
  };

  Op* NewOp(io::IoRequest* req, bool counted);
  void FreeOp(Op* op);
  Child* NewChild(Op* op, io::IoOp kind, uint64_t offset, uint64_t length);
  void FreeChild(Child* c) {
    c->next_free = free_children_;
    free_children_ = c;
  }
  void Continue(Op* op);
  // The extent map at vcl (ExtentMap::Lookup), under this channel's shard.
  bool Lookup(uint64_t vcl, uint64_t* p, uint64_t* run) {
    vol_->lock.LockShared(slot_);
    bool mapped = vol_->map.Lookup(vcl, p, run);
    vol_->lock.UnlockShared(slot_);
    return mapped;
  }
  // Each handles one piece at op->cursor; false: stop issuing (parked or failed).
  bool ReadPiece(Op* op);
  bool WritePiece(Op* op);
  bool AllocatingWrite(Op* op, uint64_t vcl, uint64_t within, uint64_t len);
  bool ZeroPiece(Op* op);
  uint64_t AllocationHint(uint64_t vcl) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(vol_->lock);
  bool WaitForSpace(Op* op);
  void Issue(Child* c);
  void Finish(Op* op);
  void Complete(Op* op);
  void EndAllocation(Child* c, bool ok);
  void Wake(Op* waiter);
  int SliceIov(const io::IoRequest* req, uint64_t skip, uint64_t len, iovec* dst, int max) const;
  int PadZeros(uint64_t bytes, iovec* dst, int max) const;
  // Where op->cursor is: virtual cluster, offset in it, bytes left.
  struct Position {
    uint64_t vcl, within, left;
  };
  Position At(const Op* op) const {
    uint64_t off = op->req->offset + op->cursor;
    return {off / cs_, off % cs_, op->req->length - op->cursor};
  }
  uint64_t Phys(uint64_t p, uint64_t within) const { return pool_->superblock().data_offset + p * cs_ + within; }

  static void OnChildDone(io::IoRequest* r, int res);
  static void OnResume(io::IoRequest* r, int res);
  static void OnFlushDone(io::IoRequest* r, int res);

  Pool* pool_;
  std::shared_ptr<Volume> vol_;
  io::IoUring* ring_;
  std::unique_ptr<io::IoChannel> data_;
  EpochCounters* epoch_;
  unsigned slot_;
  uint64_t cs_;
  std::vector<std::unique_ptr<Op>> ops_;
  std::vector<std::unique_ptr<Child>> children_;
  Op* free_ops_ = nullptr;
  Child* free_children_ = nullptr;
  Op* issuing_ = nullptr;        // inside Continue (fault recovery)
  Child* submitting_ = nullptr;  // inside data_->Submit (fault recovery)
  int live_ops_ = 0;
  // Finished ops whose changes are not yet journaled (Pool::safe_notes):
  // completed by EndOfBatch, after one journal write for all of them.
  std::deque<Op*> unjournaled_;
};

namespace {
std::atomic<unsigned> g_next_slot{0};
}

ThinChannel::ThinChannel(Pool* pool, std::shared_ptr<Volume> vol, io::IoUring* ring,
                         std::unique_ptr<io::IoChannel> data)
    : pool_(pool),
      vol_(std::move(vol)),
      ring_(ring),
      data_(std::move(data)),
      epoch_(pool->RegisterChannel()),
      slot_(g_next_slot.fetch_add(1)),
      cs_(pool->superblock().cluster_size) {}

ThinChannel::~ThinChannel() {
  if (live_ops_ != 0) NLOG_WARN("volume {}: channel closed with {} request(s) pending", vol_->name, live_ops_);
  pool_->UnregisterChannel(epoch_);
}

Op* ThinChannel::NewOp(io::IoRequest* req, bool counted) {
  if (free_ops_ == nullptr) {
    ops_.push_back(std::make_unique<Op>());
    free_ops_ = ops_.back().get();
  }
  Op* op = free_ops_;
  free_ops_ = op->next_free;
  op->req = req;
  op->ch = this;
  op->cursor = 0;
  op->pending = 0;
  op->result = 0;
  op->parked = false;
  op->space_wait = false;
  op->orphaned = false;
  op->wake = io::IoRequest{};
  op->wake.parent = req;
  op->wake.owner = req->owner;
  op->wake.hook_ctx = op;
  op->bucket = ~0u;
  if (counted) {
    op->bucket = static_cast<unsigned>(pool_->epoch_bucket());
    epoch_->active[op->bucket].fetch_add(1, std::memory_order_seq_cst);
  }
  req->hook_ctx = op;
  ++live_ops_;
  return op;
}

void ThinChannel::FreeOp(Op* op) {
  if (op->bucket != ~0u) epoch_->active[op->bucket].fetch_sub(1, std::memory_order_release);
  --live_ops_;
  op->next_free = free_ops_;
  free_ops_ = op;
}

ThinChannel::Child* ThinChannel::NewChild(Op* op, io::IoOp kind, uint64_t offset, uint64_t length) {
  if (free_children_ == nullptr) {
    children_.push_back(std::make_unique<Child>());
    free_children_ = children_.back().get();
  }
  Child* c = free_children_;
  free_children_ = c->next_free;
  static_cast<io::IoRequest&>(*c) = io::IoRequest{};
  c->op = kind;
  c->parent_op = op;
  c->allocating = false;
  c->parent = op->req;
  c->owner = op->req->owner;
  c->done = OnChildDone;
  c->offset = offset;
  c->length = length;
  c->iov = c->vecs;
  return c;
}

void ThinChannel::Submit(io::IoRequest* req) {
  uint64_t size = vol_->size.load(std::memory_order_relaxed);
  if (req->offset > size || req->length > size - req->offset) {
    req->done(req, -EINVAL);
    return;
  }
  if (req->op == io::IoOp::kFlush) {
    if (ring_ != nullptr && pool_->committer_running()) {
      Op* op = NewOp(req, false);
      op->wake.hook = OnFlushDone;
      ring_->ExpectPosted();
      pool_->RequestFlush(FlushWaiter{&op->wake, ring_});
      return;
    }
    req->done(req, pool_->FlushInline());
    return;
  }
  Continue(NewOp(req, true));
}

void ThinChannel::Continue(Op* op) {
  Op* outer = issuing_;
  issuing_ = op;
  ++op->pending;  // held while issuing: children completing inline cannot finish op
  bool go = true;
  while (go && op->cursor < op->req->length && op->result == 0) {
    switch (op->req->op) {
      case io::IoOp::kRead: go = ReadPiece(op); break;
      case io::IoOp::kWrite: go = WritePiece(op); break;
      default: go = ZeroPiece(op); break;
    }
  }
  issuing_ = outer;
  if (--op->pending == 0 && !op->parked) Finish(op);
}

bool ThinChannel::ReadPiece(Op* op) {
  io::IoRequest* req = op->req;
  auto [vcl, within, left] = At(op);
  uint64_t p = 0, run = 0;
  bool mapped = Lookup(vcl, &p, &run);
  uint64_t span = run == UINT64_MAX ? left : std::min(left, run * cs_ - within);
  if (!mapped) {
    // A hole (or a cluster still being initialized): zeros, straight into
    // the client's buffers. No lock is held while guest memory is touched.
    iovec v[kChildIov];
    int n = SliceIov(req, op->cursor, span, v, kChildIov);
    for (int i = 0; i < n; ++i) std::memset(v[i].iov_base, 0, v[i].iov_len);
    op->cursor += span;
    return true;
  }
  Child* c = NewChild(op, io::IoOp::kRead, Phys(p, within), span);
  c->iovcnt = SliceIov(req, op->cursor, span, c->vecs, kChildIov);
  op->cursor += span;
  Issue(c);
  return true;
}

bool ThinChannel::WritePiece(Op* op) {
  io::IoRequest* req = op->req;
  auto [vcl, within, left] = At(op);
  uint64_t p = 0, run = 0;
  bool mapped = Lookup(vcl, &p, &run);
  if (!mapped) return AllocatingWrite(op, vcl, within, std::min(left, cs_ - within));
  uint64_t span = std::min(left, run * cs_ - within);
  Child* c = NewChild(op, io::IoOp::kWrite, Phys(p, within), span);
  c->iovcnt = SliceIov(req, op->cursor, span, c->vecs, kChildIov);
  op->cursor += span;
  Issue(c);
  return true;
}

bool ThinChannel::AllocatingWrite(Op* op, uint64_t vcl, uint64_t within, uint64_t len) {
  uint64_t p = 0, run = 0;
  vol_->lock.Lock();
  if (vol_->map.Lookup(vcl, &p, &run)) {  // mapped meanwhile: write in place
    vol_->lock.Unlock();
    return true;
  }
  auto it = vol_->initializing.find(vcl);
  if (it != vol_->initializing.end()) {
    // Another write is filling this cluster: wait for it, else its zero
    // fill could land over our bytes.
    it->second.waiters.push_back(op);
    op->parked = true;
    pool_->CountParkedWrite();
    vol_->lock.Unlock();
    if (ring_ != nullptr) ring_->ExpectPosted();
    return false;
  }
  Status st = pool_->AllocateCluster(vol_.get(), AllocationHint(vcl), &p);
  if (!st.ok()) {
    vol_->lock.Unlock();
    if (st.err() == ENOSPC && pool_->FreesPending()) return WaitForSpace(op);
    op->result = -st.err();
    return false;
  }
  vol_->initializing.emplace(vcl, InitEntry{p, {}});
  vol_->alloc_hint = p + 1;
  vol_->lock.Unlock();

  Child* c = NewChild(op, io::IoOp::kWrite, Phys(p, 0), cs_);
  c->allocating = true;
  c->vcluster = vcl;
  c->pcluster = p;
  int n = PadZeros(within, c->vecs, kChildIov);
  n += SliceIov(op->req, op->cursor, len, c->vecs + n, kChildIov - n);
  n += PadZeros(cs_ - within - len, c->vecs + n, kChildIov - n);
  c->iovcnt = n;
  op->cursor += len;
  Issue(c);
  return true;
}

bool ThinChannel::ZeroPiece(Op* op) {
  io::IoRequest* req = op->req;
  auto [vcl, within, left] = At(op);
  bool may_unmap = req->op == io::IoOp::kDiscard || req->unmap;
  if (may_unmap && within == 0 && left >= cs_) {
    uint64_t k = left / cs_;
    std::vector<Extent> freed;
    vol_->lock.Lock();
    vol_->map.Unmap(vcl, k, &freed);
    if (!freed.empty()) pool_->NoteUnmapped(vol_.get(), freed);
    vol_->lock.Unlock();
    op->cursor += k * cs_;
    return true;
  }
  uint64_t p = 0, run = 0;
  bool mapped = Lookup(vcl, &p, &run);
  uint64_t span = run == UINT64_MAX ? left : std::min(left, run * cs_ - within);
  if (may_unmap) span = std::min(span, cs_ - within);  // whole clusters after this get unmapped
  if (mapped) {
    Child* c = NewChild(op, io::IoOp::kWriteZeroes, Phys(p, within), span);
    c->iov = nullptr;
    Issue(c);
  }
  op->cursor += span;
  return true;
}

bool ThinChannel::WaitForSpace(Op* op) {
  // Clusters freed by discards come back at the next commit: have one now
  // and retry, rather than fail a write the space is about to exist for.
  if (op->pending != 1) {  // pieces of it are in flight: it cannot leave the grace count
    op->result = -ENOSPC;
    return false;
  }
  // Waiting ops must not hold up the commit's grace period: leave the
  // epoch count (nothing of this op is in flight) and rejoin after.
  epoch_->active[op->bucket].fetch_sub(1, std::memory_order_release);
  if (ring_ == nullptr || !pool_->committer_running()) {
    int res = pool_->FlushInline();
    op->bucket = static_cast<unsigned>(pool_->epoch_bucket());
    epoch_->active[op->bucket].fetch_add(1, std::memory_order_seq_cst);
    if (res == 0) return true;  // retry this piece
    op->result = res;           // the commit failed (device error): no space is coming
    return false;
  }
  op->bucket = ~0u;
  op->parked = true;
  op->space_wait = true;
  op->wake.hook = OnResume;
  ring_->ExpectPosted();
  pool_->RequestFlush(FlushWaiter{&op->wake, ring_});
  return false;
}

uint64_t ThinChannel::AllocationHint(uint64_t vcl) const {
  // Right after the physical cluster of the virtual neighbour, so that
  // extents stay contiguous even when streams interleave their first
  // writes; a stream that starts somewhere new begins a gap after the
  // volume's last allocation, leaving room for that one to go on
  // contiguously. (Exclusive lock held.)
  if (vcl > 0) {
    uint64_t p = 0, run = 0;
    if (vol_->map.Lookup(vcl - 1, &p, &run)) return p + 1;
    auto it = vol_->initializing.find(vcl - 1);
    if (it != vol_->initializing.end()) return it->second.p + 1;
  }
  constexpr uint64_t kStreamGap = 64;
  return vol_->alloc_hint + kStreamGap;
}

void ThinChannel::Issue(Child* c) {
  ++c->parent_op->pending;
  Child* outer = submitting_;
  submitting_ = c;
  data_->Submit(c);
  submitting_ = outer;
}

void ThinChannel::OnChildDone(io::IoRequest* r, int res) {
  Child* c = static_cast<Child*>(r);
  Op* op = c->parent_op;
  ThinChannel* ch = op->ch;
  if (c->allocating) ch->EndAllocation(c, res >= 0);
  if (res < 0 && op->result == 0) op->result = res;
  ch->FreeChild(c);
  if (--op->pending == 0 && !op->parked) ch->Finish(op);
}

void ThinChannel::EndAllocation(Child* c, bool ok) {
  std::vector<Op*> waiters;
  vol_->lock.Lock();
  if (ok) {
    vol_->map.Map(c->vcluster, c->pcluster, 1);
    pool_->NoteMapped(vol_.get(), c->vcluster, c->pcluster);
  } else {
    pool_->ReleaseCluster(vol_.get(), c->pcluster);
  }
  auto it = vol_->initializing.find(c->vcluster);
  if (it != vol_->initializing.end()) {
    waiters.swap(it->second.waiters);
    vol_->initializing.erase(it);
  }
  vol_->lock.Unlock();
  for (Op* w : waiters) Wake(w);
}

void ThinChannel::Wake(Op* waiter) {
  // Resumed on its own reactor, from its ring's completions: never inline
  // here, where a fault on its buffers would be charged to our request.
  if (ring_ != nullptr && waiter->ch->ring_ != nullptr) {
    waiter->wake.hook = OnResume;
    ring_->PostTo(waiter->ch->ring_, &waiter->wake, 0);
    return;
  }
  OnResume(&waiter->wake, 0);
}

void ThinChannel::OnResume(io::IoRequest* r, int res) {
  Op* op = static_cast<Op*>(r->hook_ctx);
  op->parked = false;
  if (op->space_wait) {
    op->space_wait = false;
    op->bucket = static_cast<unsigned>(op->ch->pool_->epoch_bucket());
    op->ch->epoch_->active[op->bucket].fetch_add(1, std::memory_order_seq_cst);
    if (res < 0 && op->result == 0) op->result = res;  // the commit failed: no space is coming
  }
  if (op->orphaned) {
    if (op->pending == 0) op->ch->FreeOp(op);
    return;
  }
  op->ch->Continue(op);
}

void ThinChannel::OnFlushDone(io::IoRequest* r, int res) {
  Op* op = static_cast<Op*>(r->hook_ctx);
  op->result = res;
  op->ch->Finish(op);
}

void ThinChannel::Finish(Op* op) {
  // A change the client will be told about must survive a process crash
  // first (journal.h): batch the journal write at the end of the reactor
  // iteration; without a reactor (tools, tests) write it now. A modifying
  // request waits for every note recorded before it finished: its own
  // mapping changes, and the mappings it wrote through, which another
  // request may have made and not journaled yet (another queue's first
  // write into the cluster). Reads and FLUSH (a commit) wait for none.
  bool modifies = op->req->op != io::IoOp::kRead && op->req->op != io::IoOp::kFlush;
  op->note = modifies ? pool_->recorded_notes() : 0;
  if (op->note > pool_->safe_notes() && pool_->journaling() && !op->orphaned) {
    if (ring_ != nullptr) {
      op->parked = true;  // Abandon must leave it to EndOfBatch
      unjournaled_.push_back(op);
      return;
    }
    Status st = pool_->WriteJournal();
    if (op->note > pool_->safe_notes() && op->result >= 0) op->result = st.ok() ? -EIO : -st.err();
  }
  Complete(op);
}

void ThinChannel::EndOfBatch() {
  if (unjournaled_.empty()) return;
  Status st = pool_->WriteJournal();
  uint64_t safe = pool_->safe_notes();
  while (!unjournaled_.empty()) {
    Op* op = unjournaled_.front();
    unjournaled_.pop_front();  // before its completion, which may fault
    op->parked = false;
    // Not covered: the journal and the fallback commit both failed.
    if (op->note > safe && op->result >= 0) op->result = st.ok() ? -EIO : -st.err();
    io::tls_completing = op->req;  // a fault in its completion is charged to it
    Complete(op);
    io::tls_completing = nullptr;
  }
}

void ThinChannel::Complete(Op* op) {
  io::IoRequest* req = op->req;
  bool orphaned = op->orphaned;
  int res = op->result;
  bool data = req->op == io::IoOp::kRead || req->op == io::IoOp::kWrite;
  if (res >= 0) res = data ? static_cast<int>(req->length) : 0;
  req->hook_ctx = nullptr;  // a fault inside done must not find the op again
  FreeOp(op);
  if (!orphaned) req->done(req, res);
}

void ThinChannel::Abandon(io::IoRequest* req) {
  Op* op = static_cast<Op*>(req->hook_ctx);
  if (op == nullptr) return;
  // A sub-request whose submission or completion the fault cut short.
  Child* cut = nullptr;
  if (submitting_ != nullptr && submitting_->parent_op == op) cut = submitting_;
  auto* leaf = io::tls_completing;
  if (cut == nullptr && leaf != nullptr && leaf != &op->wake && leaf->parent == req) {
    cut = static_cast<Child*>(leaf);
  }
  if (cut != nullptr) {
    data_->Abandon(cut);
    if (cut->allocating) EndAllocation(cut, false);
    FreeChild(cut);
    --op->pending;
    submitting_ = nullptr;
  }
  if (issuing_ == op) {  // Continue's own hold, lost with the unwound stack
    --op->pending;
    issuing_ = nullptr;
  }
  op->orphaned = true;
  if (op->pending == 0 && !op->parked) FreeOp(op);
}

int ThinChannel::SliceIov(const io::IoRequest* req, uint64_t skip, uint64_t len, iovec* dst, int max) const {
  int n = 0;
  for (int i = 0; i < req->iovcnt && len > 0 && n < max; ++i) {
    uint64_t l = req->iov[i].iov_len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    uint64_t take = std::min(l - skip, len);
    dst[n++] = iovec{static_cast<uint8_t*>(req->iov[i].iov_base) + skip, take};
    len -= take;
    skip = 0;
  }
  return n;
}

int ThinChannel::PadZeros(uint64_t bytes, iovec* dst, int max) const {
  int n = 0;
  while (bytes > 0 && n < max) {
    uint64_t take = std::min<uint64_t>(bytes, pool_->zeros_bytes());
    dst[n++] = iovec{const_cast<uint8_t*>(pool_->zeros()), take};
    bytes -= take;
  }
  return n;
}

// ---- ThinBackend ----

ThinBackend::ThinBackend(Pool* pool, std::shared_ptr<Volume> vol) : pool_(pool), vol_(std::move(vol)) {
  vol_->open_count.fetch_add(1);
}

ThinBackend::~ThinBackend() { vol_->open_count.fetch_sub(1); }

uint64_t ThinBackend::size_bytes() const { return vol_->size.load(std::memory_order_relaxed); }

uint32_t ThinBackend::block_size() const { return pool_->device()->data()->block_size(); }

std::string ThinBackend::Describe() const { return "volume " + vol_->name + " in pool " + pool_->device()->Describe(); }

Result<std::unique_ptr<io::IoChannel>> ThinBackend::OpenChannel(io::IoUring* ring) {
  auto data = pool_->device()->data()->OpenChannel(ring);
  if (!data.ok()) return data.status();
  return std::unique_ptr<io::IoChannel>(new ThinChannel(pool_, vol_, ring, std::move(data.value())));
}

}  // namespace nestor::volume
