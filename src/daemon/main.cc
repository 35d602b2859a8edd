// nestord: serves volumes as vhost-user-blk devices from polling reactors,
// managed at runtime over a JSON-RPC control socket (docs/rpc.md).
// See docs/usage.md. Exit codes: 0 clean shutdown (SIGTERM/SIGINT),
// 1 runtime failure at start-up, 2 bad command line.
//
// Ownership: one nestord per socket directory (a flock on the directory,
// held for the daemon's life); a second one exits 1 before it creates or
// removes anything. Sockets are replaced only when stale and removed only
// if still the ones this process bound (base/unix_listener.h).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "base/file_lock.h"
#include "base/log.h"
#include "control/rpc_server.h"
#include "daemon/controller.h"
#include "daemon/metrics.h"
#include "daemon/options.h"
#include "reactor/guest_fault.h"
#include "reactor/reactor.h"

namespace nestor::daemon {
namespace {

Result<std::vector<std::unique_ptr<reactor::Reactor>>> StartReactors(const Options& o) {
  std::vector<std::unique_ptr<reactor::Reactor>> reactors;
  for (int i = 0; i < o.reactors; ++i) {
    reactor::ReactorOptions ro;
    ro.id = i;
    ro.cpu = o.cpus.empty() ? -1 : o.cpus[static_cast<size_t>(i) % o.cpus.size()];
    ro.mode = o.mode;
    ro.idle_ns = o.idle_us * 1000;
    auto r = std::make_unique<reactor::Reactor>(ro);
    Status st = r->Start();
    if (!st.ok()) return Status::Error(st.err(), "reactor " + std::to_string(i) + ": " + st.message());
    reactors.push_back(std::move(r));
  }
  return reactors;
}

// Locks the socket directory (created with its missing parents, like
// mkdir -p, mode 0755) for this daemon's life: the returned descriptor
// holds the lock. Creates no file in it.
Result<UniqueFd> LockSocketDir(const std::string& dir) {
  for (size_t at = dir.find('/', 1);; at = dir.find('/', at + 1)) {
    std::string prefix = dir.substr(0, at);
    if (!prefix.empty() && mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::FromErrno("socket directory " + dir + ": mkdir " + prefix);
    }
    if (at == std::string::npos) break;
  }
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("socket directory " + dir);
  Status st = LockFile(fd.get(), false, "socket directory " + dir);
  if (st.err() == EBUSY) {
    return Status::Error(EBUSY, st.message() + ": another nestord serves it (give each nestord its own --socket-dir)");
  }
  if (!st.ok()) return st;
  return fd;
}

int Serve(const Options& o) {
  // Signals go to a signalfd read by this (main) thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  UniqueFd sigfd(signalfd(-1, &sigs, SFD_CLOEXEC));
  reactor::InstallGuestFaultHandler();

  auto dir_lock = LockSocketDir(o.socket_dir);
  if (!dir_lock.ok()) {
    NLOG_ERROR("{}", dir_lock.status().message());
    return 1;
  }
  // The control socket first: a clash there leaves nothing to undo.
  control::RpcServer rpc(o.control_socket);
  if (Status st = rpc.Bind(); !st.ok()) {
    NLOG_ERROR("control socket: {}", st.message());
    return 1;
  }
  auto reactors = StartReactors(o);
  if (!reactors.ok()) {
    NLOG_ERROR("{}", reactors.status().message());
    return 1;
  }
  std::vector<reactor::Reactor*> raw;
  for (auto& r : *reactors) raw.push_back(r.get());
  auto ctl = std::make_unique<Controller>(o, raw);
  ctl->RegisterMethods(&rpc);
  std::unique_ptr<MetricsServer> metrics;
  if (o.metrics_port != 0)
    metrics = std::make_unique<MetricsServer>(o.metrics_port, [&] { return ctl->PrometheusText(); });
  Status st = ctl->Start();
  if (st.ok()) st = rpc.Start();
  if (st.ok() && metrics) st = metrics->Start();
  if (!st.ok()) {
    NLOG_ERROR("{}", st.message());
    rpc.Stop();  // no handler may run once ctl goes
    return 1;
  }
  NLOG_INFO("nestord ready: {} reactor(s), mode {}, control {}", raw.size(), reactor::PollModeName(o.mode),
            o.control_socket);

  for (bool running = true; running;) {
    pollfd p{sigfd.get(), POLLIN, 0};
    if (poll(&p, 1, -1) <= 0) continue;
    signalfd_siginfo si{};
    if (read(sigfd.get(), &si, sizeof(si)) != sizeof(si)) continue;
    if (si.ssi_signo == SIGUSR1) {
      ctl->LogStats();
    } else {
      NLOG_INFO("signal {}: draining and shutting down", si.ssi_signo);
      running = false;
    }
  }
  if (metrics) metrics->Stop();
  rpc.Stop();
  ctl->Shutdown();  // stops every queue, draining in-flight I/O (bounded: --queue-stop-timeout-ms)
  bool stopped = true;
  for (auto& r : *reactors) stopped &= r->Stop();
  ctl->LogStats();
  if (!stopped) {
    // A reactor is stuck inside a call that never returns: it may still
    // touch the pool and guest memory, so nothing may be torn down.
    NLOG_ERROR("nestord: a reactor did not stop; exiting without the final pool commit");
    _exit(1);
  }
  ctl.reset();  // the pool commits what the drained queues left pending
  NLOG_INFO("nestord stopped cleanly");
  return 0;
}

}  // namespace
}  // namespace nestor::daemon

int main(int argc, char** argv) {
  auto opts = nestor::daemon::ParseOptions(argc, argv);
  if (!opts.ok()) {
    if (opts.status().err() == 0) return 0;  // --help
    if (!opts.status().message().empty()) fprintf(stderr, "nestord: %s\n", opts.status().message().c_str());
    return 2;
  }
  if (opts->log_json) nestor::SetLogFormat(nestor::LogFormat::kJson);
  return nestor::daemon::Serve(opts.value());
}
