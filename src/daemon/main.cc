// nestord: serves volumes as vhost-user-blk devices from polling reactors.
// See docs/usage.md. Exit codes: 0 clean shutdown (SIGTERM/SIGINT),
// 1 runtime failure at start-up, 2 bad command line.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "base/log.h"
#include "daemon/options.h"
#include "io/backend.h"
#include "reactor/guest_fault.h"
#include "reactor/reactor.h"
#include "vhost/blk_export.h"
#include "vhost/mem_table.h"
#include "virtio/queue_stats.h"
#include "volume/pool.h"

namespace nestor::daemon {
namespace {

Result<std::shared_ptr<io::BlockBackend>> OpenBackend(const VolumeSpec& v) {
  Result<std::unique_ptr<io::BlockBackend>> b = Status::Invalid("unknown backend");
  if (v.backend == "mem") b = io::OpenMemBackend(v.size);
  if (v.backend == "null") b = io::OpenNullBackend(v.size);
  if (v.backend == "file") b = io::OpenFileBackend(v.path, v.size, v.read_only, v.delay_us);
  if (v.delay_us > 0 && v.backend != "file") return Status::Invalid("delay_us needs backend=file");
  if (!b.ok()) return b.status();
  return std::shared_ptr<io::BlockBackend>(std::move(b.value()));
}

// Opens the pool, starts its committer and adds one export spec per volume.
Result<std::unique_ptr<volume::Pool>> OpenPool(const Options& o, std::vector<VolumeSpec>* specs) {
  auto dev = volume::OpenFilePoolDevice(o.pool, false, 0);
  if (!dev.ok()) return dev.status();
  volume::PoolOptions po;
  po.commit_interval_ms = o.commit_ms;
  auto pool = volume::Pool::Open(std::move(dev.value()), po);
  if (!pool.ok()) return pool.status();
  for (const volume::VolumeInfo& info : (*pool)->ListVolumes()) {
    for (const VolumeSpec& other : *specs) {
      if (other.name == info.name) return Status::Invalid("--volume " + info.name + " clashes with a pool volume");
    }
    VolumeSpec s;
    s.name = info.name;
    s.size = info.size;
    s.backend = "pool";
    s.queues = o.pool_queues;
    specs->push_back(s);
  }
  (*pool)->StartCommitter();
  return std::move(pool.value());
}

// One "stats ..." line per reactor, per started queue and per volume, plus
// the frontend memory still mapped: on SIGUSR1 and at exit.
void LogCounters(const std::vector<std::unique_ptr<reactor::Reactor>>& reactors,
                 const std::vector<std::unique_ptr<vhost::BlkExport>>& exports, volume::Pool* pool) {
  if (pool != nullptr) NLOG_INFO("stats {}", volume::PoolStatsString(pool->Info()));
  for (const auto& r : reactors) NLOG_INFO("stats {}", r->CountersString());
  virtio::ForEachQueueStats([](const virtio::QueueStats& q) { NLOG_INFO("stats {}", virtio::QueueStatsString(q)); });
  for (const auto& e : exports) {
    NLOG_INFO("stats volume {}: sessions {}", e->config().name, e->active_sessions());
  }
  NLOG_INFO("stats memory: mapped_bytes {}", vhost::MemTable::TotalMappedBytes());
}

int Serve(const Options& o) {
  // Signals go to a signalfd read by this (control) thread only.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  UniqueFd sigfd(signalfd(-1, &sigs, SFD_CLOEXEC));
  reactor::InstallGuestFaultHandler();

  mkdir(o.socket_dir.c_str(), 0755);
  std::vector<std::unique_ptr<reactor::Reactor>> reactors;
  std::vector<reactor::Reactor*> raw;
  for (int i = 0; i < o.reactors; ++i) {
    reactor::ReactorOptions ro;
    ro.id = i;
    ro.cpu = o.cpus.empty() ? -1 : o.cpus[static_cast<size_t>(i) % o.cpus.size()];
    ro.mode = o.mode;
    ro.idle_ns = o.idle_us * 1000;
    auto r = std::make_unique<reactor::Reactor>(ro);
    Status st = r->Start();
    if (!st.ok()) {
      NLOG_ERROR("reactor {}: {}", i, st.message());
      return 1;
    }
    raw.push_back(r.get());
    reactors.push_back(std::move(r));
  }
  std::unique_ptr<volume::Pool> pool;
  std::vector<VolumeSpec> specs = o.volumes;
  if (!o.pool.empty()) {
    auto opened = OpenPool(o, &specs);
    if (!opened.ok()) {
      NLOG_ERROR("pool {}: {}", o.pool, opened.status().message());
      return 1;
    }
    pool = std::move(opened.value());
  }
  std::vector<std::unique_ptr<vhost::BlkExport>> exports;
  for (const VolumeSpec& v : specs) {
    auto backend = v.backend == "pool" ? pool->OpenVolume(v.name) : OpenBackend(v);
    if (!backend.ok()) {
      NLOG_ERROR("volume {}: {}", v.name, backend.status().message());
      return 1;
    }
    vhost::ExportConfig ec;
    ec.name = v.name;
    ec.socket_path = o.socket_dir + "/" + v.name + ".sock";
    ec.read_only = v.read_only;
    ec.num_queues = v.queues;
    ec.queue_reactor = v.queue_reactor;
    ec.backend = std::move(backend.value());
    auto exp = std::make_unique<vhost::BlkExport>(std::move(ec), raw);
    Status st = exp->Listen();
    if (!st.ok()) {
      NLOG_ERROR("volume {}: {}", v.name, st.message());
      return 1;
    }
    exports.push_back(std::move(exp));
  }
  NLOG_INFO("nestord ready: {} volume(s), {} reactor(s), mode {}", exports.size(), reactors.size(),
            reactor::PollModeName(o.mode));

  std::vector<pollfd> pfds;
  pfds.push_back({sigfd.get(), POLLIN, 0});
  for (auto& e : exports) pfds.push_back({e->listen_fd(), POLLIN, 0});
  bool running = true;
  while (running) {
    if (poll(pfds.data(), pfds.size(), -1) < 0) continue;
    if (pfds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (read(sigfd.get(), &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGUSR1) {
          LogCounters(reactors, exports, pool.get());
        } else {
          NLOG_INFO("signal {}: draining and shutting down", si.ssi_signo);
          running = false;
        }
      }
    }
    for (size_t i = 1; i < pfds.size(); ++i) {
      if (pfds[i].revents & POLLIN) exports[i - 1]->AcceptOne();
    }
  }
  for (auto& e : exports) e->Shutdown();  // stops every queue, draining in-flight I/O
  for (auto& r : reactors) r->Stop();
  LogCounters(reactors, exports, pool.get());
  exports.clear();
  pool.reset();  // commits what the drained queues left pending
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
  return nestor::daemon::Serve(opts.value());
}
