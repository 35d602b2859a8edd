#include "volume/thin_volume.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <deque>
#include <vector>

#include "base/log.h"
#include "io/uring.h"
#include "volume/mapper.h"

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
  bool space_wait = false;     // parked until a commit frees clusters
  bool gate_wait = false;      // parked until the volume's write gate opens (a snapshot)
  bool write_counted = false;  // counted in Volume::writes (modifying, admitted)
  bool orphaned = false;       // the client abandoned req (guest fault)
  uint64_t note = 0;           // set by Finish: the notes it waits for (journal.h)
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
  // ResumeToken (thin_volume.h).
  static FlushWaiter ResumeTokenOf(Op* op);

 private:
  static constexpr int kChildIov = 192;
  static constexpr int kMaxRequestIov = kChildIov - 32;  // room for 16 + 16 entries of zeros/copy around
  struct Child : io::IoRequest {
    Op* parent_op = nullptr;
    bool allocating = false;  // the write of a new cluster: maps it when done
    bool cow_read = false;    // reads the cluster the chain shows; then the write
    bool zero_data = false;   // the piece's own bytes are zeros (write-zeroes)
    uint64_t vcluster = 0;
    uint64_t pcluster = 0;
    uint8_t* bounce = nullptr;               // copy-on-write: the source cluster's bytes
    uint64_t within = 0, len = 0, skip = 0;  // the piece: offset in the cluster, bytes, offset in the request
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
  // Modifying requests: counted in Volume::writes unless the write gate is
  // closed (a snapshot is being taken); then parked until it opens (or,
  // without a ring, waited for here). True: admitted now.
  bool AdmitWrite(Op* op);
  static void OnGateOpen(io::IoRequest* r, int res);
  uint8_t* GetBounce();
  void PutBounce(uint8_t* b);
  void IssueCowWrite(Child* read);
  // Each handles one piece at op->cursor; false: stop issuing (parked or failed).
  bool ReadPiece(Op* op);
  bool WritePiece(Op* op);
  bool AllocatingWrite(Op* op, uint64_t vcl, uint64_t within, uint64_t len, bool zero_data = false);
  bool ZeroPiece(Op* op);
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
    uint64_t cs = m_.cluster_size();
    return {off / cs, off % cs, op->req->length - op->cursor};
  }
  uint64_t Phys(uint64_t p, uint64_t within) const { return m_.Phys(p, within); }

  static void OnChildDone(io::IoRequest* r, int res);
  static void OnResume(io::IoRequest* r, int res);
  static void OnFlushDone(io::IoRequest* r, int res);

  VolumeMapper m_;
  io::IoUring* ring_;
  std::unique_ptr<io::IoChannel> data_;
  const uint64_t cs_;
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
  // Copy-on-write buffers (one cluster each), kept for reuse.
  std::vector<uint8_t*> free_bounce_;
  size_t bounce_total_ = 0;
};

ThinChannel::ThinChannel(Pool* pool, std::shared_ptr<Volume> vol, io::IoUring* ring,
                         std::unique_ptr<io::IoChannel> data)
    : m_(pool, std::move(vol)), ring_(ring), data_(std::move(data)), cs_(m_.cluster_size()) {}

ThinChannel::~ThinChannel() {
  if (live_ops_ != 0) NLOG_WARN("volume {}: channel closed with {} request(s) pending", m_.name(), live_ops_);
  for (uint8_t* b : free_bounce_) free(b);
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
  op->gate_wait = false;
  op->write_counted = false;
  op->orphaned = false;
  op->wake = io::IoRequest{};
  op->wake.parent = req;
  op->wake.owner = req->owner;
  op->wake.hook_ctx = op;
  op->bucket = ~0u;
  if (counted) {
    op->bucket = m_.EnterEpoch();
  }
  req->hook_ctx = op;
  ++live_ops_;
  return op;
}

void ThinChannel::FreeOp(Op* op) {
  if (op->bucket != ~0u) m_.LeaveEpoch(op->bucket);
  if (op->write_counted) m_.LeaveWrite();
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
  c->cow_read = false;
  c->zero_data = false;
  c->bounce = nullptr;
  c->parent = op->req;
  c->owner = op->req->owner;
  c->done = OnChildDone;
  c->offset = offset;
  c->length = length;
  c->iov = c->vecs;
  return c;
}

void ThinChannel::Submit(io::IoRequest* req) {
  uint64_t size = m_.size_bytes();
  // A piece's sub-request holds its slice of the buffers plus the zeros or
  // copied bytes around it: more buffers than kMaxRequestIov could not be
  // carried whole (virtio's requests have at most 160, BlkQueue::kMaxIov).
  if (req->offset > size || req->length > size - req->offset || req->iovcnt > kMaxRequestIov) {
    req->done(req, -EINVAL);
    return;
  }
  if (req->op == io::IoOp::kFlush) {
    if (ring_ != nullptr && m_.committer_running()) {
      Op* op = NewOp(req, false);
      op->wake.hook = OnFlushDone;
      ring_->ExpectPosted();
      m_.RequestFlush(FlushWaiter{&op->wake, ring_});
      return;
    }
    req->done(req, m_.FlushInline());
    return;
  }
  if (req->op == io::IoOp::kRead) {
    Continue(NewOp(req, true));
    return;
  }
  if (m_.read_only()) {  // a snapshot (exports of snapshots are read-only too)
    req->done(req, -EROFS);
    return;
  }
  Op* op = NewOp(req, false);
  if (AdmitWrite(op)) Continue(op);
}

bool ThinChannel::AdmitWrite(Op* op) {
  for (;;) {
    if (m_.EnterWrite()) {
      op->write_counted = true;
      op->bucket = m_.EnterEpoch();
      return true;
    }
    if (ring_ == nullptr) {  // a synchronous channel: nothing of its own is in flight
      while (m_.gate_closed()) std::this_thread::sleep_for(std::chrono::microseconds(20));
      continue;
    }
    op->parked = true;
    op->gate_wait = true;
    op->wake.hook = OnGateOpen;
    if (m_.ParkAtGate(FlushWaiter{&op->wake, ring_})) {
      ring_->ExpectPosted();
      return false;
    }
    op->parked = false;  // opened meanwhile
    op->gate_wait = false;
  }
}

void ThinChannel::OnGateOpen(io::IoRequest* r, int) {
  Op* op = static_cast<Op*>(r->hook_ctx);
  op->parked = false;
  op->gate_wait = false;
  if (op->orphaned) {
    op->ch->FreeOp(op);
    return;
  }
  if (op->ch->AdmitWrite(op)) op->ch->Continue(op);
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
  auto [mapped, p, run] = m_.Chain(vcl);
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
  auto [mapped, p, run] = m_.Own(vcl);
  if (!mapped) return AllocatingWrite(op, vcl, within, std::min(left, cs_ - within));
  uint64_t span = std::min(left, run * cs_ - within);
  Child* c = NewChild(op, io::IoOp::kWrite, Phys(p, within), span);
  c->iovcnt = SliceIov(req, op->cursor, span, c->vecs, kChildIov);
  op->cursor += span;
  Issue(c);
  return true;
}

bool ThinChannel::AllocatingWrite(Op* op, uint64_t vcl, uint64_t within, uint64_t len, bool zero_data) {
  op->parked = true;  // before anyone can resume it (a waker without a ring resumes inline)
  auto f = m_.BeginFirstWrite(vcl, within == 0 && len == cs_, op);
  if (f.kind != VolumeMapper::FirstWrite::kParked) op->parked = false;
  switch (f.kind) {
    case VolumeMapper::FirstWrite::kMapped: return true;  // write in place
    case VolumeMapper::FirstWrite::kParked:
      if (ring_ != nullptr) ring_->ExpectPosted();
      return false;
    case VolumeMapper::FirstWrite::kFailed:
      if (f.status.err() == ENOSPC && m_.FreesPending()) return WaitForSpace(op);
      op->result = -f.status.err();
      return false;
    case VolumeMapper::FirstWrite::kStarted: break;
  }
  uint64_t p = f.p, src = f.src;
  bool copy = f.copy;
  if (copy) {
    // First the source cluster into a buffer; the write follows
    // (IssueCowWrite) when it is in.
    Child* c = NewChild(op, io::IoOp::kRead, Phys(src, 0), cs_);
    c->cow_read = true;
    c->zero_data = zero_data;
    c->vcluster = vcl;
    c->pcluster = p;
    c->within = within;
    c->len = len;
    c->skip = op->cursor;
    c->bounce = GetBounce();
    c->vecs[0] = iovec{c->bounce, cs_};
    c->iovcnt = 1;
    op->cursor += len;
    Issue(c);
    return true;
  }
  Child* c = NewChild(op, io::IoOp::kWrite, Phys(p, 0), cs_);
  c->allocating = true;
  c->vcluster = vcl;
  c->pcluster = p;
  int n = PadZeros(within, c->vecs, kChildIov);
  // (one entry kept for the zeros after, which PadZeros needs for up to
  // 4 MiB of them, see zeros_bytes; larger clusters have the room too)
  n += zero_data ? PadZeros(len, c->vecs + n, kChildIov - n - 16)
                 : SliceIov(op->req, op->cursor, len, c->vecs + n, kChildIov - n - 16);
  n += PadZeros(cs_ - within - len, c->vecs + n, kChildIov - n);
  c->iovcnt = n;
  op->cursor += len;
  Issue(c);
  return true;
}

void ThinChannel::IssueCowWrite(Child* read) {
  // The copy: the source's bytes around the piece, the piece's own bytes
  // (from the client's buffers, no copy) in the middle; one vectored write
  // of the whole new cluster.
  Op* op = read->parent_op;
  Child* c = NewChild(op, io::IoOp::kWrite, Phys(read->pcluster, 0), cs_);
  c->allocating = true;
  c->vcluster = read->vcluster;
  c->pcluster = read->pcluster;
  c->bounce = read->bounce;
  read->bounce = nullptr;
  int n = 0;
  if (read->within > 0) c->vecs[n++] = iovec{c->bounce, read->within};
  n += read->zero_data ? PadZeros(read->len, c->vecs + n, kChildIov - n - 1)
                       : SliceIov(op->req, read->skip, read->len, c->vecs + n, kChildIov - n - 1);
  uint64_t tail = read->within + read->len;
  if (tail < cs_ && n < kChildIov) c->vecs[n++] = iovec{c->bounce + tail, cs_ - tail};
  c->iovcnt = n;
  Issue(c);
}

uint8_t* ThinChannel::GetBounce() {
  if (!free_bounce_.empty()) {
    uint8_t* b = free_bounce_.back();
    free_bounce_.pop_back();
    return b;
  }
  void* b = nullptr;
  if (posix_memalign(&b, 4096, cs_) != 0) throw std::bad_alloc();
  ++bounce_total_;
  return static_cast<uint8_t*>(b);
}

void ThinChannel::PutBounce(uint8_t* b) {
  // Keep a few (up to 4 MiB) for the next copies; return the rest.
  if (free_bounce_.size() * cs_ < (4u << 20)) {
    free_bounce_.push_back(b);
    return;
  }
  free(b);
  --bounce_total_;
}

bool ThinChannel::ZeroPiece(Op* op) {
  io::IoRequest* req = op->req;
  auto [vcl, within, left] = At(op);
  bool may_unmap = req->op == io::IoOp::kDiscard || req->unmap;
  auto [own, below] = m_.OwnAndBelow(vcl);
  if (below.data) {
    // An ancestor's data is there: unmapping would show it again. DISCARD
    // is advisory: keep what is there. WRITE_ZEROES must read zeros: zero
    // our own cluster in place, or take a cluster of zeros (a copy on
    // write of zeros).
    uint64_t span = std::min(left, std::min(below.run, own.data ? own.run : below.run) * cs_ - within);
    if (req->op == io::IoOp::kDiscard) {
      op->cursor += span;
      return true;
    }
    if (!own.data) return AllocatingWrite(op, vcl, within, std::min(left, cs_ - within), /*zero_data=*/true);
    Child* c = NewChild(op, io::IoOp::kWriteZeroes, Phys(own.p, within), span);
    c->iov = nullptr;
    Issue(c);
    op->cursor += span;
    return true;
  }
  uint64_t limit = below.run == UINT64_MAX ? left : std::min(left, below.run * cs_ - within);
  if (may_unmap && within == 0 && limit >= cs_) {
    uint64_t k = limit / cs_;
    m_.Unmap(vcl, k);
    op->cursor += k * cs_;
    return true;
  }
  uint64_t span = own.run == UINT64_MAX ? limit : std::min(limit, own.run * cs_ - within);
  if (may_unmap) span = std::min(span, cs_ - within);  // whole clusters after this get unmapped
  if (own.data) {
    Child* c = NewChild(op, io::IoOp::kWriteZeroes, Phys(own.p, within), span);
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
  m_.LeaveEpoch(op->bucket);
  if (ring_ == nullptr || !m_.committer_running()) {
    int res = m_.FlushInline();
    op->bucket = m_.EnterEpoch();
    if (res == 0) return true;  // retry this piece
    op->result = res;           // the commit failed (device error): no space is coming
    return false;
  }
  op->bucket = ~0u;
  op->parked = true;
  op->space_wait = true;
  op->wake.hook = OnResume;
  ring_->ExpectPosted();
  m_.RequestFlush(FlushWaiter{&op->wake, ring_});
  return false;
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
  if (c->cow_read) {
    if (res >= 0 && op->result == 0 && !op->orphaned) {
      ch->IssueCowWrite(c);  // takes the buffer
    } else {
      ch->EndAllocation(c, false);
    }
  }
  if (c->allocating) ch->EndAllocation(c, res >= 0);
  if (c->bounce != nullptr) ch->PutBounce(c->bounce);
  if (res < 0 && op->result == 0) op->result = res;
  ch->FreeChild(c);
  if (--op->pending == 0 && !op->parked) ch->Finish(op);
}

void ThinChannel::EndAllocation(Child* c, bool ok) {
  for (Op* w : m_.EndFirstWrite(c->vcluster, c->pcluster, ok)) Wake(w);
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
    op->bucket = op->ch->m_.EnterEpoch();
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
  op->note = modifies ? m_.recorded_notes() : 0;
  if (op->note > m_.safe_notes() && m_.journaling() && !op->orphaned) {
    if (ring_ != nullptr) {
      op->parked = true;  // Abandon must leave it to EndOfBatch
      unjournaled_.push_back(op);
      return;
    }
    Status st = m_.WriteJournal();
    if (op->note > m_.safe_notes() && op->result >= 0) op->result = st.ok() ? -EIO : -st.err();
  }
  Complete(op);
}

void ThinChannel::EndOfBatch() {
  if (unjournaled_.empty()) return;
  Status st = m_.WriteJournal();
  uint64_t safe = m_.safe_notes();
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
  // A copy on write faulting while its read's completion issued the write:
  // both are cut (the write owns the allocation and the buffer then).
  Child* cut_leaf = nullptr;
  if (cut != nullptr && cut == submitting_ && leaf != nullptr && leaf != &op->wake && leaf->parent == req &&
      leaf != cut) {
    cut_leaf = static_cast<Child*>(leaf);
  }
  for (Child* c : {cut, cut_leaf}) {
    if (c == nullptr) continue;
    data_->Abandon(c);
    if (c->allocating || (c->cow_read && c->bounce != nullptr)) EndAllocation(c, false);
    if (c->bounce != nullptr) PutBounce(c->bounce);
    FreeChild(c);
    --op->pending;
  }
  if (cut != nullptr) submitting_ = nullptr;
  if (issuing_ == op) {  // Continue's own hold, lost with the unwound stack
    --op->pending;
    issuing_ = nullptr;
  }
  op->orphaned = true;
  if (op->pending == 0 && !op->parked) FreeOp(op);
}

FlushWaiter ResumeToken(ParkedOp* op) { return ThinChannel::ResumeTokenOf(op); }

FlushWaiter ThinChannel::ResumeTokenOf(Op* op) {
  op->wake.hook = OnResume;
  if (op->ch->ring_ == nullptr) {
    OnResume(&op->wake, 0);
    return FlushWaiter{};
  }
  return FlushWaiter{&op->wake, op->ch->ring_};
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
    uint64_t take = std::min<uint64_t>(bytes, m_.zeros_bytes());
    dst[n++] = iovec{const_cast<uint8_t*>(m_.zeros()), take};
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
