// nestord: serves volumes as vhost-user-blk devices from polling reactors,
// managed at runtime over a JSON-RPC control socket (docs/rpc.md).
// See docs/usage.md. Exit codes: 0 clean shutdown (SIGTERM/SIGINT),
// 1 runtime failure at start-up, 2 bad command line.
//
// Signals (a signalfd read by the main thread only): SIGTERM/SIGINT drain
// and stop, SIGHUP reloads what can be reloaded (daemon/reload.h), SIGUSR1
// logs the counters. Under systemd (Type=notify) it reports readiness,
// reloads and stopping, and feeds the watchdog while every reactor answers
// (daemon/service.h).
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
#include "daemon/reload.h"
#include "daemon/service.h"
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

// A start-up failure: logged, and told to the service manager.
int StartFailed(const std::string& message) {
  NLOG_ERROR("{}", message);
  NotifyStatus("start-up failed: " + message);
  return 1;
}

std::string ServingStatus(const Controller& ctl, const Options& o) {
  return "serving " + std::to_string(ctl.ExportCount()) + " export(s), " + std::to_string(o.reactors) +
         " reactor(s), mode " + reactor::PollModeName(o.mode) + ", control " + o.control_socket;
}

// SIGHUP: parse the same command line again (the --config file is read
// again) and apply what can change while running; `running` follows.
void Reload(int argc, char** argv, Controller* ctl, Options* running) {
  NotifyReloading();
  auto fresh = ParseOptions(argc, argv, /*reloading=*/true);
  if (!fresh.ok()) {
    NLOG_ERROR("reload: {}; keeping the running settings", fresh.status().message());
    NotifyReady("the last reload failed (" + fresh.status().message() + "); " + ServingStatus(*ctl, *running));
    return;
  }
  ReloadPlan plan = PlanReload(*running, *fresh);
  if (plan.log_json) SetLogFormat(*plan.log_json ? LogFormat::kJson : LogFormat::kText);
  if (plan.log_level) {
    SetLogLevel(*plan.log_level);
    NLOG_INFO("reload: log level {}", LogLevelName(*plan.log_level));
  }
  running->log_level = fresh->log_level;
  running->log_json = fresh->log_json;
  for (const auto& [name, limits] : plan.qos) {
    if (Status st = ctl->SetQos(name, limits); !st.ok()) {
      NLOG_ERROR("reload: --volume {}: {}", name, st.message());
      continue;
    }
    for (VolumeSpec& v : running->volumes) {
      if (v.name == name) v.qos = limits;
    }
  }
  for (const std::string& item : plan.needs_restart) {
    NLOG_WARN("reload: {} changed: it needs a restart; the running value stays", item);
  }
  NLOG_INFO("reload done: {} setting(s) applied, {} need a restart",
            plan.qos.size() + plan.log_level.has_value() + plan.log_json.has_value(), plan.needs_restart.size());
  NotifyReady(ServingStatus(*ctl, *running));
}

// The watchdog is fed only while every reactor runs its messages.
bool ReactorsAnswer(const std::vector<reactor::Reactor*>& reactors, std::chrono::milliseconds limit) {
  for (size_t i = 0; i < reactors.size(); ++i) {
    if (!reactors[i]->CallFor([] {}, limit)) {
      NLOG_ERROR("watchdog: reactor {} did not answer within {} ms; not feeding the watchdog", i, limit.count());
      return false;
    }
  }
  return true;
}

// The main thread until SIGTERM/SIGINT: signals and the watchdog.
void SignalLoop(int sigfd, int argc, char** argv, Controller* ctl, const std::vector<reactor::Reactor*>& reactors,
                Options* running) {
  const std::chrono::milliseconds watchdog = WatchdogInterval();
  if (watchdog.count() > 0) NLOG_INFO("watchdog: fed every {} ms while every reactor answers", watchdog.count());
  for (;;) {
    // An answer within half the interval, then at most half an interval's
    // wait: the watchdog hears from nestord at least once per interval.
    if (watchdog.count() > 0 && ReactorsAnswer(reactors, watchdog / 2)) NotifyWatchdog();
    pollfd p{sigfd, POLLIN, 0};
    if (poll(&p, 1, watchdog.count() > 0 ? static_cast<int>(watchdog.count() / 2) : -1) <= 0) continue;
    signalfd_siginfo si{};
    if (read(sigfd, &si, sizeof(si)) != sizeof(si)) continue;
    if (si.ssi_signo == SIGUSR1) {
      ctl->LogStats();
    } else if (si.ssi_signo == SIGHUP) {
      NLOG_INFO("signal {}: reloading{}", si.ssi_signo,
                running->config_file.empty() ? "" : " (--config " + running->config_file + ")");
      Reload(argc, argv, ctl, running);
    } else {
      NLOG_INFO("signal {}: draining and shutting down", si.ssi_signo);
      NotifyStopping();
      return;
    }
  }
}

int Serve(Options o, int argc, char** argv) {
  // Signals go to a signalfd read by this (main) thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  UniqueFd sigfd(signalfd(-1, &sigs, SFD_CLOEXEC));
  reactor::InstallGuestFaultHandler();

  auto dir_lock = LockSocketDir(o.socket_dir);
  if (!dir_lock.ok()) return StartFailed(dir_lock.status().message());
  // The control socket first: a clash there leaves nothing to undo.
  control::RpcServer rpc(o.control_socket);
  if (Status st = rpc.Bind(); !st.ok()) return StartFailed("control socket: " + st.message());
  auto reactors = StartReactors(o);
  if (!reactors.ok()) return StartFailed(reactors.status().message());
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
    rpc.Stop();  // no handler may run once ctl goes
    return StartFailed(st.message());
  }
  NLOG_INFO("nestord ready: {} reactor(s), mode {}, control {}", raw.size(), reactor::PollModeName(o.mode),
            o.control_socket);
  NotifyReady(ServingStatus(*ctl, o));
  SignalLoop(sigfd.get(), argc, argv, ctl.get(), raw, &o);
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
    nestor::daemon::NotifyStatus("bad command line or --config file (exit 2)");
    return 2;
  }
  if (opts->log_json) nestor::SetLogFormat(nestor::LogFormat::kJson);
  nestor::SetLogLevel(opts->log_level);
  return nestor::daemon::Serve(std::move(opts.value()), argc, argv);
}
