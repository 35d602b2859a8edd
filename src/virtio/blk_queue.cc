#include "virtio/blk_queue.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "reactor/guest_fault.h"
#include "virtio/iov.h"

namespace nestor::virtio {
namespace {

// Polls, by any BlkQueue of this thread (a reactor), that emptied a short
// ring (a latency-sensitive queue: at most kLightHeads heads, all it had). A
// queue that sees it move between two of its own Polls knows a light
// neighbour is active.
thread_local uint64_t tls_light_polls = 0;

}  // namespace

BlkQueue::BlkQueue(BlkQueueConfig cfg) : cfg_(std::move(cfg)), tasks_(cfg_.vring.size) {
  vq_.Init(cfg_.vring, cfg_.mem);
  for (Task& t : tasks_) {
    t.queue = this;
    t.owner = static_cast<reactor::Poller*>(this);
    t.done = &BlkQueue::OnIoDone;
  }
  recovered_ = cfg_.inflight == nullptr;
  qos_ = cfg_.qos.get();
  unpublished_.resize(std::max<uint32_t>(cfg_.vring.size, 1));
  stats_.device = cfg_.device;
  stats_.index = cfg_.index;
  RegisterQueueStats(&stats_);
  if (cfg_.stats) cfg_.stats->AddQueue(&stats_);
}

BlkQueue::~BlkQueue() {
  // Not started, or stopped: the reactor no longer writes stats_.
  if (cfg_.stats) cfg_.stats->RemoveQueue(&stats_);
  UnregisterQueueStats(&stats_);
}

Status BlkQueue::Start(reactor::Reactor* r) {
  auto ch = cfg_.backend->OpenChannel(r->ring());
  if (!ch.ok()) return ch.status();
  channel_ = std::move(ch.value());
  reactor_ = r;
  counters_ = &r->counters_mut();
  stats_.reactor = r->options().id;
  r->AddPoller(this);
  // Requests may have been queued before we started: look at once.
  return Status::Ok();
}

void BlkQueue::RequestStop(std::function<void(uint16_t)> done) {
  // Runs as a message: no guest memory here. The next Poll finishes it.
  stopping_ = true;
  stop_done_ = std::move(done);
}

uint32_t BlkQueue::Pending() const {
  // A broken queue may have lost track of requests interrupted by a fault;
  // only those the backend still holds must come back before memory goes.
  // The channel may still hold work of abandoned requests (a thin volume's
  // sub-requests): it and the guest memory they point into must outlive it.
  uint32_t pending = broken_ ? backend_in_flight_ : in_flight_;
  if (channel_ != nullptr) pending += channel_->pending();
  return pending;
}

void BlkQueue::MaybeFinishStop() {
  if (!stopping_ || Pending() != 0 || !stop_done_) return;
  Publish();
  reactor_->RemovePoller(this);
  auto done = std::move(stop_done_);
  stop_done_ = nullptr;
  // A held head was popped but never taken: give it back (see blk_queue.h).
  uint16_t next = static_cast<uint16_t>(vq_.last_avail() - (held_ ? 1 : 0));
  held_ = false;
  done(next);
}

void BlkQueue::Break(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  NLOG_ERROR("{} queue {}: ring broken, queue stopped: {}", cfg_.device, cfg_.index, why);
  if (cfg_.on_broken) cfg_.on_broken(why);
}

void BlkQueue::OnGuestFault(io::IoRequest* completing) {
  // The interrupted request (if any) will never reach Complete: settle its
  // accounting here so that stopping the queue does not wait for it.
  Task* t = completing != nullptr ? static_cast<Task*>(completing) : submitting_;
  submitting_ = nullptr;
  if (t != nullptr) {
    channel_->Abandon(t);
    if (t->in_backend) {
      t->in_backend = false;
      --backend_in_flight_;
    }
    if (t->busy) {
      t->busy = false;
      --in_flight_;
    }
  }
  Break("guest memory fault (SIGBUS): the frontend shrank memory it shared");
  if (stopping_) MaybeFinishStop();
}

int BlkQueue::Poll() {
  reactor::tls_active_poller = this;
  if (stopping_ || broken_) {
    MaybeFinishStop();
    return 0;
  }
  if (!recovered_) {
    poll_now_ = NowNs();
    start_ns_ = 0;
    RecoverInflight();  // first Poll: guest memory may be touched here
    recovered_ = true;
  }
  int taken = 0;
  if (held_) {
    uint64_t now = NowNs();
    // Still waiting: report work so that the reactor keeps polling without
    // trying to sleep (which would enable and disable kicks on every other
    // queue of the reactor each time).
    if (!Admit(held_req_, now)) return 1;
    held_ = false;
    Task* t = &tasks_[held_head_];
    Take(t, /*resubmit=*/false);
    Begin(t, held_req_);
    if (broken_) return 1;
    poll_now_ = now;
    taken = 1;
  }
  // Fairness: while another queue of this reactor emptied a short ring
  // within the last kContendedPolls of our polls, take at most kFairBatch
  // heads per Poll, so that its requests never wait behind a long batch of
  // ours. Backlogged queues among themselves keep full batches (round
  // robin already shares the reactor evenly; small batches would only add
  // per-iteration overhead).
  ++polls_;
  if (tls_light_polls != light_seen_) contended_until_ = polls_ + kContendedPolls;
  int avail = vq_.Available();
  if (avail < 0) {
    Break("avail index moved further than the queue size");
    return taken;
  }
  int cap = polls_ < contended_until_ ? kFairBatch : kBatch;
  int n = std::min(avail, cap - taken);
  if (n <= 0) {
    light_seen_ = tls_light_polls;
    return taken;
  }
  // Latency sampling: time at most one batch per kLatencySampleNs of the
  // reactor's own (coarse, free) clock; QoS needs the time anyway.
  uint64_t coarse = counters_->busy_ns.load(std::memory_order_relaxed) +
                    counters_->idle_ns.load(std::memory_order_relaxed) +
                    counters_->sleep_ns.load(std::memory_order_relaxed);
  bool timed = coarse - last_timed_ >= kLatencySampleNs;
  if (taken == 0 && (timed || (qos_ != nullptr && qos_->active()))) poll_now_ = NowNs();
  if (timed) last_timed_ = coarse;
  start_ns_ = timed ? poll_now_ : 0;
  int i = 0;
  while (i < n && !broken_ && !held_) {
    Process(vq_.PopHead());
    ++i;
  }
  int popped = taken + i - (held_ ? 1 : 0);
  if (n == avail && n <= kLightHeads) ++tls_light_polls;
  light_seen_ = tls_light_polls;
  return popped;
}

bool BlkQueue::Admit(const BlkRequest& req, uint64_t now_ns) {
  switch (req.op) {
    case BlkOp::kRead: return qos_->TryAdmit(false, req.length, now_ns);
    case BlkOp::kWrite: return qos_->TryAdmit(true, req.length, now_ns);
    case BlkOp::kDiscard:
    case BlkOp::kWriteZeroes: return qos_->TryAdmit(true, 0, now_ns);
    default: return true;
  }
}

// Hot path helpers, inlined into their callers.
[[gnu::always_inline]] inline void BlkQueue::Take(Task* t, bool resubmit) {
  if (cfg_.inflight != nullptr && !resubmit) TrackPop(t->head);
  t->busy = true;
  ++in_flight_;
  stats_.in_flight.store(in_flight_, std::memory_order_relaxed);
}

[[gnu::always_inline]] inline void BlkQueue::Begin(Task* t, const BlkRequest& req) {
  t->status = req.no_status ? nullptr : req.status;
  t->used_len = req.no_status ? 0 : req.used_len;
  Execute(t, req);
}

void BlkQueue::Process(uint16_t head, bool resubmit) {
  if (head >= tasks_.size()) {
    Break("available head " + std::to_string(head) + " out of range");
    return;
  }
  Task* t = &tasks_[head];
  if (t->busy) {
    Break("head " + std::to_string(head) + " made available while in flight");
    return;
  }
  // Walk and decode before taking the head (reads only): QoS decides on
  // the decoded request whether it is taken now or held.
  t->head = head;
  t->timed = false;
  t->start_ns = start_ns_;
  Chain chain;
  Status st = vq_.WalkChain(head, t->vecs, kMaxIov, &chain);
  if (!st.ok()) {
    Take(t, resubmit);
    if (bad_requests_logged_++ < 16) {
      NLOG_WARN("{} queue {}: bad descriptor chain at head {}: {}", cfg_.device, cfg_.index, head, st.message());
    }
    t->status = nullptr;
    t->used_len = 0;
    Complete(t, kBlkIoErr);  // no trustworthy status byte: used len 0
    return;
  }
  BlkRequest req = DecodeBlkRequest(chain, t->vecs, cfg_.limits);
  // Recovered requests were admitted by the previous backend.
  if (qos_ != nullptr && qos_->active() && !resubmit && !Admit(req, poll_now_)) {
    held_ = true;
    held_head_ = head;
    held_req_ = req;
    QueueStats::Inc(stats_.throttled);
    return;
  }
  Take(t, resubmit);
  Begin(t, req);
}

void BlkQueue::Execute(Task* t, const BlkRequest& req) {
  switch (req.op) {
    case BlkOp::kFail: Complete(t, req.fail_status); return;
    case BlkOp::kGetId: {
      iovec* iov = req.data;
      size_t left = kBlkIdBytes;
      const char* src = cfg_.serial;
      for (int i = 0; i < req.data_count && left > 0; ++i) {
        size_t chunk = std::min(left, iov[i].iov_len);
        std::memcpy(iov[i].iov_base, src, chunk);
        src += chunk;
        left -= chunk;
      }
      Complete(t, kBlkOk);
      return;
    }
    case BlkOp::kRead: t->op = io::IoOp::kRead; break;
    case BlkOp::kWrite: t->op = io::IoOp::kWrite; break;
    case BlkOp::kFlush: t->op = io::IoOp::kFlush; break;
    case BlkOp::kDiscard: t->op = io::IoOp::kDiscard; break;
    case BlkOp::kWriteZeroes: t->op = io::IoOp::kWriteZeroes; break;
  }
  if ((req.op == BlkOp::kRead || req.op == BlkOp::kWrite) && req.length == 0) {
    Complete(t, kBlkOk);
    return;
  }
  t->offset = req.offset;
  t->length = req.length;
  t->unmap = req.unmap;
  t->iov = req.data;
  t->iovcnt = req.data_count;
  t->kind = req.op;
  t->timed = true;
  ++backend_in_flight_;
  t->in_backend = true;
  submitting_ = t;
  channel_->Submit(t);
  submitting_ = nullptr;
}

void BlkQueue::OnIoDone(io::IoRequest* req, int result) {
  Task* t = static_cast<Task*>(req);
  reactor::tls_active_poller = t->queue;
  --t->queue->backend_in_flight_;
  t->in_backend = false;
  if (result < 0 && t->queue->bad_requests_logged_++ < 16) {
    NLOG_WARN("{} queue {}: backend error {} at offset {}", t->queue->cfg_.device, t->queue->cfg_.index, result,
              t->offset);
  }
  t->queue->Complete(t, result < 0 ? kBlkIoErr : kBlkOk);
}

void BlkQueue::Complete(Task* t, uint8_t status) {
  if (broken_) {  // its memory may be gone: account only
    t->busy = false;
    --in_flight_;
    if (stopping_) MaybeFinishStop();
    return;
  }
  if (t->status != nullptr) __atomic_store_n(t->status, status, __ATOMIC_RELAXED);
  vq_.PushUsed(t->head, status == kBlkOk || t->status == nullptr ? t->used_len : 1);
  if (cfg_.inflight != nullptr) TrackComplete(t->head);
  t->busy = false;
  --in_flight_;
  counters_->requests.fetch_add(1, std::memory_order_relaxed);
  QueueStats::Inc(stats_.requests);
  if (status != kBlkOk) QueueStats::Inc(stats_.errors);
  stats_.in_flight.store(in_flight_, std::memory_order_relaxed);
  if (t->timed) {
    switch (t->kind) {
      case BlkOp::kRead:
        QueueStats::Inc(stats_.read_ops);
        if (status == kBlkOk) QueueStats::Inc(stats_.read_bytes, t->length);
        break;
      case BlkOp::kWrite:
        QueueStats::Inc(stats_.write_ops);
        if (status == kBlkOk) QueueStats::Inc(stats_.write_bytes, t->length);
        break;
      case BlkOp::kFlush: QueueStats::Inc(stats_.flush_ops); break;
      case BlkOp::kDiscard: QueueStats::Inc(stats_.discard_ops); break;
      case BlkOp::kWriteZeroes: QueueStats::Inc(stats_.write_zeroes_ops); break;
      default: break;
    }
    if (t->start_ns != 0) {
      if (n_unpublished_ == unpublished_.size()) RecordLatencies();  // not expected: bounded anyway
      unpublished_[n_unpublished_++] = t->start_ns;
    }
  }
  if (stopping_) MaybeFinishStop();
}

// Inflight tracking (virtio/inflight.h). Stores to the region are ordered
// with release fences: after a crash, whatever prefix of them reached
// memory must describe a state RecoverInflight can repair.
void BlkQueue::TrackPop(uint16_t head) {
  InflightDesc* d = &cfg_.inflight->desc[head];
  d->counter = ++inflight_counter_;
  __atomic_thread_fence(__ATOMIC_RELEASE);
  d->inflight = 1;
}

void BlkQueue::TrackComplete(uint16_t head) {
  InflightQueue* q = cfg_.inflight;
  q->last_batch_head = head;
  vq_.ExposeUsed();  // visible before we forget the head
  __atomic_thread_fence(__ATOMIC_RELEASE);
  q->desc[head].inflight = 0;
  __atomic_thread_fence(__ATOMIC_RELEASE);
  q->used_idx = vq_.used_idx();
}

void BlkQueue::RecoverInflight() {
  InflightQueue* q = cfg_.inflight;
  uint32_t n = vq_.size();
  uint16_t used = vq_.ReadUsedIdx();
  if (q->version != 1 || q->desc_num != n) {  // fresh region (or resized queue)
    std::memset(q->desc, 0, sizeof(InflightDesc) * n);
    q->desc_num = static_cast<uint16_t>(n);
    q->last_batch_head = 0;
    q->used_idx = used;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    q->version = 1;
    vq_.ResumeAt(used, vq_.last_avail());
    return;
  }
  // The last completion was published but its head not yet cleared.
  if (q->used_idx != used && q->last_batch_head < n) {
    q->desc[q->last_batch_head].inflight = 0;
    q->used_idx = used;
  }
  std::vector<std::pair<uint64_t, uint16_t>> pending;  // (counter, head); start-up only
  for (uint32_t i = 0; i < n; ++i) {
    if (q->desc[i].inflight == 1) pending.emplace_back(q->desc[i].counter, static_cast<uint16_t>(i));
  }
  std::sort(pending.begin(), pending.end());
  inflight_counter_ = pending.empty() ? 0 : pending.back().first;
  vq_.ResumeAt(used, static_cast<uint16_t>(used + pending.size()));
  if (!pending.empty()) {
    NLOG_INFO("{} queue {}: resubmitting {} request(s) in flight at the previous backend's exit", cfg_.device,
              cfg_.index, pending.size());
  }
  for (const auto& [counter, head] : pending) Process(head, /*resubmit=*/true);
  // The previous backend may have published completions and died before
  // notifying; with EVENT_IDX the guest would then wait forever (its
  // used_event lags behind). Signal once, unconditionally.
  SignalCall();
}

void BlkQueue::SignalCall() {
  if (cfg_.call_fd < 0) return;
  // The frontend shares this eventfd and could clear O_NONBLOCK and fill
  // its counter: never let a write block the reactor.
  pollfd p{cfg_.call_fd, POLLOUT, 0};
  if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT)) return;
  uint64_t one = 1;
  ssize_t unused = write(cfg_.call_fd, &one, sizeof(one));
  (void)unused;
  counters_->calls.fetch_add(1, std::memory_order_relaxed);
  QueueStats::Inc(stats_.calls);
}

void BlkQueue::RecordLatencies() {
  uint64_t now = NowNs();
  for (size_t i = 0; i < n_unpublished_; ++i) {
    stats_.latency.Record(now > unpublished_[i] ? now - unpublished_[i] : 0);
  }
  n_unpublished_ = 0;
}

void BlkQueue::Flush() {
  if (channel_ != nullptr) channel_->EndOfBatch();  // may complete requests
  Publish();
  // A stop also finishes here, after the reactor reaped completions: some
  // (a thin volume's sub-requests of abandoned requests) end no request of
  // ours, so only this check sees that nothing is pending any more.
  if (stopping_) MaybeFinishStop();
}

void BlkQueue::Publish() {
  reactor::tls_active_poller = this;
  if (broken_) {
    n_unpublished_ = 0;
    return;
  }
  if (!vq_.HasUnpublished()) {
    if (n_unpublished_ != 0) RecordLatencies();  // already exposed (inflight tracking)
    return;
  }
  bool notify = vq_.PublishUsed();
  if (n_unpublished_ != 0) RecordLatencies();
  if (notify && cfg_.call_fd >= 0) {
    SignalCall();
  } else {
    counters_->calls_suppressed.fetch_add(1, std::memory_order_relaxed);
    QueueStats::Inc(stats_.calls_suppressed);
  }
}

bool BlkQueue::PrepareToSleep() {
  reactor::tls_active_poller = this;
  // A stop that can finish must not wait for a wake-up: its frontend may be
  // gone, and no kick or completion would ever come.
  if (stopping_) return stop_done_ && Pending() == 0;
  if (held_ && !broken_) return true;  // retry the throttled head soon
  return !broken_ && vq_.EnableKicks();
}

void BlkQueue::ResumePolling() {
  reactor::tls_active_poller = this;
  if (!broken_) vq_.DisableKicks();
}

}  // namespace nestor::virtio
