#include "reactor/reactor.h"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <future>

#include "base/clock.h"
#include "base/log.h"
#include "reactor/guest_fault.h"

namespace nestor::reactor {

const char* PollModeName(PollMode m) {
  switch (m) {
    case PollMode::kPoll: return "poll";
    case PollMode::kInterrupt: return "interrupt";
    case PollMode::kAdaptive: return "adaptive";
  }
  return "?";
}

Result<PollMode> ParsePollMode(const std::string& s) {
  if (s == "poll") return PollMode::kPoll;
  if (s == "interrupt") return PollMode::kInterrupt;
  if (s == "adaptive") return PollMode::kAdaptive;
  return Status::Invalid("unknown poll mode '" + s + "' (poll|interrupt|adaptive)");
}

Reactor::Reactor(const ReactorOptions& opts) : opts_(opts) {}

Reactor::~Reactor() { (void)Stop(); }

Status Reactor::Start() {
  epoll_fd_.Reset(epoll_create1(EPOLL_CLOEXEC));
  msg_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!epoll_fd_.valid() || !msg_fd_.valid()) return Status::FromErrno("reactor fds");
  std::promise<Status> started;
  auto fut = started.get_future();
  exited_ = std::make_shared<std::promise<void>>();
  thread_ = std::thread([this, &started, exited = exited_] {
    struct SetOnExit {
      std::shared_ptr<std::promise<void>> p;
      ~SetOnExit() { p->set_value(); }
    } on_exit{exited};
    std::string name = "reactor" + std::to_string(opts_.id);
    pthread_setname_np(pthread_self(), name.c_str());
    if (opts_.cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(opts_.cpu, &set);
      if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
        started.set_value(Status::Invalid("cannot pin reactor to CPU " + std::to_string(opts_.cpu)));
        return;
      }
    }
    auto ring = io::IoUring::Create(opts_.ring_entries, opts_.cpu);
    if (!ring.ok()) {
      started.set_value(ring.status());
      return;
    }
    ring_ = std::move(ring.value());
    WatchFd(msg_fd_.get(), true);
    WatchFd(ring_->event_fd(), true);
    started.set_value(Status::Ok());
    Run();
  });
  Status st = fut.get();
  if (!st.ok()) {
    thread_.join();
    return st;
  }
  NLOG_INFO("reactor {} started on cpu {} mode {}", opts_.id, opts_.cpu, PollModeName(opts_.mode));
  return Status::Ok();
}

bool Reactor::Stop(std::chrono::milliseconds limit) {
  if (!thread_.joinable()) return true;
  Post([this] { stop_.store(true); });
  if (exited_->get_future().wait_for(limit) != std::future_status::ready) {
    NLOG_ERROR("reactor {}: did not stop within {} ms; abandoning its thread", opts_.id, limit.count());
    thread_.detach();
    return false;
  }
  thread_.join();
  return true;
}

void Reactor::Post(std::function<void()> fn) {
  {
    MutexLock lock(&mu_);
    messages_.push_back(std::move(fn));
  }
  has_messages_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t unused = write(msg_fd_.get(), &one, sizeof(one));
  (void)unused;
}

bool Reactor::CallFor(std::function<void()> fn, std::chrono::milliseconds limit) {
  auto done = std::make_shared<std::promise<void>>();
  auto fut = done->get_future();
  Post([fn = std::move(fn), done] {
    fn();
    done->set_value();
  });
  if (fut.wait_for(limit) == std::future_status::ready) return true;
  NLOG_ERROR("reactor {}: a control message waited {} ms without running: reactor wedged?", opts_.id, limit.count());
  return false;
}

void Reactor::RunMessages() {
  has_messages_.store(false, std::memory_order_relaxed);
  std::deque<std::function<void()>> batch;
  {
    MutexLock lock(&mu_);
    batch.swap(messages_);
  }
  for (auto& fn : batch) fn();
}

void Reactor::WatchFd(int fd, bool add) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd_.get(), add ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) != 0) {
    NLOG_WARN("reactor {}: epoll_ctl fd {}: {}", opts_.id, fd, errno);
  }
}

void Reactor::AddPoller(Poller* p) {
  pollers_.push_back(p);
  fresh_.push_back(p);  // notification setup touches guest memory: done in Loop
  if (p->wake_fd() >= 0) WatchFd(p->wake_fd(), true);
}

void Reactor::SetUpFreshPollers() {
  while (!fresh_.empty()) {
    Poller* p = fresh_.back();
    fresh_.pop_back();
    if (opts_.mode == PollMode::kInterrupt) {
      (void)p->PrepareToSleep();  // notifications stay on in interrupt mode
    } else {
      p->ResumePolling();
    }
    tls_active_poller = nullptr;
  }
}

void Reactor::RemovePoller(Poller* p) {
  if (tls_active_poller == p) tls_active_poller = nullptr;
  auto it = std::find(pollers_.begin(), pollers_.end(), p);
  if (it == pollers_.end()) return;
  // A poller may remove itself (or another) while PollOnce walks the list:
  // step the cursor back with it, or the poller that slides into its place
  // would miss this pass (and, if it is a queue waiting to finish its stop,
  // an interrupt-mode reactor would then sleep with nothing left to wake it).
  if (walking_ && it - pollers_.begin() <= cursor_) --cursor_;
  pollers_.erase(it);
  fresh_.erase(std::remove(fresh_.begin(), fresh_.end(), p), fresh_.end());
  if (p->wake_fd() >= 0) WatchFd(p->wake_fd(), false);
}

int Reactor::PollOnce() {
  if (!fresh_.empty()) SetUpFreshPollers();
  int work = 0;
  // Cursor loops: a poller may remove itself (queue stop) during Poll or
  // Flush; RemovePoller keeps cursor_ on the next one.
  walking_ = true;
  for (cursor_ = 0; cursor_ < std::ssize(pollers_); ++cursor_) work += pollers_[cursor_]->Poll();
  walking_ = false;
  tls_active_poller = nullptr;  // pollers set it while they touch guest memory
  ring_->Submit();
  work += ring_->Reap();
  tls_active_poller = nullptr;
  walking_ = true;
  for (cursor_ = 0; cursor_ < std::ssize(pollers_); ++cursor_) pollers_[cursor_]->Flush();
  walking_ = false;
  tls_active_poller = nullptr;
  return work;
}

bool Reactor::CanSleep() const {
  return std::all_of(pollers_.begin(), pollers_.end(), [](Poller* p) { return p->wake_fd() >= 0; });
}

void Reactor::Sleep() {
  bool raced = false;
  for (Poller* p : pollers_) raced |= p->PrepareToSleep();
  tls_active_poller = nullptr;
  ring_->Submit();
  if (!raced) {
    counters_.sleeps.fetch_add(1, std::memory_order_relaxed);
    uint64_t t0 = NowNs();
    epoll_event evs[64];
    int n = epoll_wait(epoll_fd_.get(), evs, 64, -1);
    counters_.sleep_ns.fetch_add(NowNs() - t0, std::memory_order_relaxed);
    for (int i = 0; i < n; ++i) {
      // RWF_NOWAIT: a kick eventfd is shared with its frontend, which could
      // clear O_NONBLOCK and drain it first; this read must never block.
      uint64_t v;
      iovec iov{&v, sizeof(v)};
      ssize_t unused = preadv2(evs[i].data.fd, &iov, 1, -1, RWF_NOWAIT);
      (void)unused;
      if (evs[i].data.fd != msg_fd_.get() && evs[i].data.fd != ring_->event_fd()) {
        counters_.kicks.fetch_add(1, std::memory_order_relaxed);
        for (Poller* p : pollers_) {
          if (p->wake_fd() == evs[i].data.fd) p->OnWake();
        }
      }
    }
  }
  if (opts_.mode != PollMode::kInterrupt) {
    for (Poller* p : pollers_) p->ResumePolling();
    tls_active_poller = nullptr;
  }
}

void Reactor::Run() {
  sigjmp_buf recovery;
  tls_fault_jmp = &recovery;
  for (;;) {
    if (sigsetjmp(recovery, 0) == 0) {
      Loop();
      break;
    }
    // A guest-memory fault unwound us here from somewhere inside Loop().
    UnblockGuestFaults();
    walking_ = false;
    // A backend's sub-request is charged to the request it serves; the
    // backend still sees the leaf in io::tls_completing while it abandons.
    io::IoRequest* completing = io::tls_completing;
    while (completing != nullptr && completing->parent != nullptr) completing = completing->parent;
    Poller* culprit = completing != nullptr ? static_cast<Poller*>(completing->owner) : tls_active_poller;
    tls_active_poller = nullptr;
    counters_.guest_faults.fetch_add(1, std::memory_order_relaxed);
    if (culprit != nullptr) culprit->OnGuestFault(completing);
    io::tls_completing = nullptr;
  }
  tls_fault_jmp = nullptr;
  RunMessages();
}

void Reactor::Loop() {
  // Reading the clock costs about as much as an empty poll, so idle
  // iterations read it only every kIdleClockStride polls: idle time and
  // the adaptive threshold are accurate to that many polls.
  constexpr uint32_t kIdleClockStride = 32;
  uint64_t last = NowNs();
  uint64_t last_work = last;
  uint32_t idle_spins = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    if (has_messages_.load(std::memory_order_acquire)) RunMessages();
    int work = PollOnce();
    if (work > 0) {
      uint64_t now = NowNs();
      counters_.busy_ns.fetch_add(now - last, std::memory_order_relaxed);
      counters_.polls_work.fetch_add(1, std::memory_order_relaxed);
      last = last_work = now;
      idle_spins = 0;
      continue;
    }
    counters_.polls_idle.fetch_add(1, std::memory_order_relaxed);
    if (has_messages_.load(std::memory_order_acquire)) continue;
    bool polling = !pollers_.empty() || ring_->in_flight() > 0;
    if (polling && opts_.mode != PollMode::kInterrupt && ++idle_spins < kIdleClockStride) continue;
    idle_spins = 0;
    uint64_t now = NowNs();
    counters_.idle_ns.fetch_add(now - last, std::memory_order_relaxed);
    last = now;
    if (polling && opts_.mode == PollMode::kPoll) continue;
    if (polling && opts_.mode == PollMode::kAdaptive && now - last_work < opts_.idle_ns) continue;
    if (!CanSleep() || stop_.load(std::memory_order_relaxed)) continue;
    Sleep();
    last = NowNs();
  }
}

std::string Reactor::CountersString() const {
  auto g = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  return fmt::format(
      "reactor {} cpu {} mode {}: busy {:.3f}s idle {:.3f}s sleeping {:.3f}s polls(work) {} "
      "polls(idle) {} sleeps {} kicks {} calls {} calls_suppressed {} requests {} guest_faults {}",
      opts_.id, opts_.cpu, PollModeName(opts_.mode), g(counters_.busy_ns) / 1e9, g(counters_.idle_ns) / 1e9,
      g(counters_.sleep_ns) / 1e9, g(counters_.polls_work), g(counters_.polls_idle), g(counters_.sleeps),
      g(counters_.kicks), g(counters_.calls), g(counters_.calls_suppressed), g(counters_.requests),
      g(counters_.guest_faults));
}

}  // namespace nestor::reactor
