// Reactor: one pinned thread that owns a set of pollers (virtqueues), one
// io_uring and per-reactor counters, and runs them without locks.
//
// Thread: Start/Stop/Post/Call are for other threads (the control path);
// AddPoller/RemovePoller/ring()/counters_mut() only on the reactor thread
// (from inside a posted message or a poller). Modes: poll (busy-poll
// forever, notifications off), interrupt (sleep on eventfds with
// notifications on: the stock baseline), adaptive (poll while work arrives;
// after idle_ns without work re-enable notifications, re-check and sleep).
// Errors: Start returns a Status; nothing else fails. Messages never touch
// guest memory (only Loop does, under the fault recovery of guest_fault.h).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/mutex.h"
#include "base/status.h"
#include "io/uring.h"
#include "reactor/poller.h"

namespace nestor::reactor {

enum class PollMode { kPoll, kInterrupt, kAdaptive };
const char* PollModeName(PollMode m);
Result<PollMode> ParsePollMode(const std::string& s);

// Counters written by the reactor (relaxed), readable from any thread.
struct Counters {
  std::atomic<uint64_t> busy_ns{0};           // iterations that did work
  std::atomic<uint64_t> idle_ns{0};           // polling without work
  std::atomic<uint64_t> sleep_ns{0};          // blocked in epoll_wait
  std::atomic<uint64_t> polls_work{0};        // iterations with work
  std::atomic<uint64_t> polls_idle{0};        // iterations without work
  std::atomic<uint64_t> sleeps{0};            // times the reactor went to sleep
  std::atomic<uint64_t> kicks{0};             // kick eventfd wake-ups consumed
  std::atomic<uint64_t> calls{0};             // call eventfd writes (interrupts sent)
  std::atomic<uint64_t> calls_suppressed{0};  // completions published without a call
  std::atomic<uint64_t> requests{0};          // requests completed
  std::atomic<uint64_t> guest_faults{0};      // SIGBUS on guest memory, recovered
};

struct ReactorOptions {
  int id = 0;
  int cpu = -1;  // -1: not pinned
  PollMode mode = PollMode::kAdaptive;
  uint64_t idle_ns = 50'000;  // adaptive: idle time before sleeping
  unsigned ring_entries = 256;
};

class Reactor {
 public:
  explicit Reactor(const ReactorOptions& opts);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Spawns and pins the thread and creates its io_uring there.
  Status Start();
  // Runs every queued message, then stops the thread, waiting at most
  // `limit`. Pollers should have been removed by their owners first; one
  // that is left (a queue whose I/O never completed) is abandoned. Returns
  // false if the thread did not end in time: it is then detached, still
  // running, and the process must not tear down what it may use (exit).
  [[nodiscard]] bool Stop(std::chrono::milliseconds limit = std::chrono::seconds(10));

  // Queues fn to run on the reactor thread.
  void Post(std::function<void()> fn);
  // Runs fn on the reactor thread and waits for it, at most `limit`. Not
  // from the reactor. On timeout returns false and fn still runs later, so
  // fn must own (or share) everything it touches. Messages run at the top
  // of every reactor iteration: only a wedged reactor makes this time out.
  [[nodiscard]] bool CallFor(std::function<void()> fn, std::chrono::milliseconds limit);

  // Reactor thread only.
  void AddPoller(Poller* p);
  void RemovePoller(Poller* p);
  io::IoUring* ring() { return ring_.get(); }
  Counters& counters_mut() { return counters_; }

  const Counters& counters() const { return counters_; }
  const ReactorOptions& options() const { return opts_; }
  std::string CountersString() const;

 private:
  void Run();
  void Loop();
  void SetUpFreshPollers();
  void RunMessages();
  int PollOnce();
  bool CanSleep() const;
  void Sleep();
  void SetNotifications(bool on);
  void WatchFd(int fd, bool add);

  ReactorOptions opts_;
  std::thread thread_;
  std::shared_ptr<std::promise<void>> exited_;  // set when the thread ends
  std::unique_ptr<io::IoUring> ring_;
  UniqueFd epoll_fd_;
  UniqueFd msg_fd_;
  std::vector<Poller*> pollers_;
  std::vector<Poller*> fresh_;  // added, notifications not yet set up
  // PollOnce's walk over pollers_: the index it is calling. Pollers run
  // only on this thread, in the order of pollers_ (see RemovePoller).
  bool walking_ = false;
  ptrdiff_t cursor_ = 0;
  Counters counters_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> has_messages_{false};
  Mutex mu_;  // guards messages_ (control path only, never per I/O)
  std::deque<std::function<void()>> messages_ ABSL_GUARDED_BY(mu_);
  Status start_status_;
};

}  // namespace nestor::reactor
