// BlkExport: one volume exported as a vhost-user-blk device on a unix
// socket: its features, config space and limits, the queue-to-reactor map,
// and the sessions (connected frontends) it serves.
//
// Thread: created, listened on and accepted from by the daemon's control
// thread; each accepted session runs on a thread of its own (so a slow or
// hostile frontend stalls nobody else). Sessions only read the export; the
// backend is replaced only while no session exists, under mu_, which
// AcceptOne holds while it creates one (ReplaceBackendWhileIdle).
// AcceptOne (and with it the refusal log) runs on one acceptor thread.
// Errors: Listen returns a Status (EBUSY: another process listens on the
// socket path; EEXIST: a file that is not a socket is there, and stays);
// per-session errors end that session. The socket file is removed on
// destruction only if it is still the one Listen bound.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/mutex.h"
#include "base/status.h"
#include "base/unix_listener.h"
#include "io/backend.h"
#include "reactor/reactor.h"
#include "virtio/blk_defs.h"
#include "virtio/blk_request.h"
#include "virtio/qos.h"
#include "virtio/volume_stats.h"

namespace nestor::vhost {

class Session;

struct ExportConfig {
  std::string name;
  std::string socket_path;
  bool read_only = false;
  uint16_t num_queues = 1;
  std::vector<int> queue_reactor;  // reactor index per queue; empty: spread
  std::shared_ptr<io::BlockBackend> backend;
  // Frontends attached at once: a connection beyond them is closed at
  // accept (logged, at most once a second). A session whose frontend hung
  // up and that is still draining its queues does not count; at most
  // kMaxDrainingSessions of those may linger besides.
  uint32_t max_frontends = 1;
  // How long a session waits for a queue to stop (drain its in-flight I/O)
  // or for a reactor to run its message, before it gives the queue up to
  // the reactor and ends (nestord --queue-stop-timeout-ms).
  std::chrono::milliseconds stop_timeout{30'000};
  // Who may attach: the socket file's owner, group and mode (applied
  // before the socket listens), and the peers admitted at accept
  // (SO_PEERCRED: uid in allow_uids or gid in allow_gids; both empty:
  // every peer that can connect). A refused peer is closed before any
  // vhost-user message is read, logged (rate-limited) and counted.
  SocketPerms socket_perms;
  std::vector<uint32_t> allow_uids, allow_gids;
  // Shared by every queue of every session (created by BlkExport if null).
  std::shared_ptr<virtio::VolumeQos> qos;
  std::shared_ptr<virtio::VolumeStats> stats;
};

class BlkExport {
 public:
  static constexpr uint32_t kMaxDrainingSessions = 8;

  BlkExport(ExportConfig cfg, std::vector<reactor::Reactor*> reactors);
  ~BlkExport();

  [[nodiscard]] Status Listen();
  int listen_fd() const { return listener_.fd(); }
  // Accepts one pending connection and starts its session thread.
  void AcceptOne();
  // Ends every session (clients see EOF) and waits for their threads.
  void Shutdown();

  const ExportConfig& config() const { return cfg_; }
  uint64_t features() const;
  uint64_t protocol_features() const;
  virtio::BlkConfig blk_config() const;
  virtio::BlkLimits limits() const;
  reactor::Reactor* ReactorFor(uint32_t queue) const;
  virtio::VolumeQos& qos() const { return *cfg_.qos; }
  virtio::VolumeStats& stats() const { return *cfg_.stats; }
  size_t active_sessions();
  // Online resize (control thread, after the backend grew): every session
  // raises the capacity its queues accept and tells its frontend
  // (Session::NotifyCapacity). Returns how many sessions were told.
  size_t NotifyCapacityChange();
  // The largest capacity (bytes) a connected session has offered its
  // frontend (Session::seen_capacity_sectors), 0 with nobody connected: a
  // shrink below it would take away blocks a guest may address.
  uint64_t SeenCapacityBytes();
  // Control thread, for a change the volume allows only while nobody
  // uses it (a shrink). With no session connected, and none let in
  // meanwhile (a new connection waits in AcceptOne), lets the backend go,
  // runs change(), then serves what reopen() returns. EBUSY, nothing run,
  // if a session is connected (*seen_bytes: SeenCapacityBytes()). If reopen
  // fails the export serves nothing (connections are closed at accept):
  // the caller must delete it. Returns change()'s status, or reopen's.
  [[nodiscard]] Status ReplaceBackendWhileIdle(const std::function<Status()>& change,
                                               const std::function<Result<std::shared_ptr<io::BlockBackend>>()>& reopen,
                                               uint64_t* seen_bytes);
  // Connections closed at accept because their peer is not admitted.
  uint64_t refused_connections() const { return refused_.load(std::memory_order_relaxed); }
  // The socket file as Listen left it (owner, group, permission bits).
  uint32_t socket_uid() const { return socket_uid_; }
  uint32_t socket_gid() const { return socket_gid_; }
  uint32_t socket_mode() const { return socket_mode_; }

  static constexpr uint32_t kSegMax = 126;
  static constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per request

 private:
  struct Running {
    std::unique_ptr<Session> session;
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  void ReapFinished() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if another frontend may attach now; else logs (rate-limited).
  bool RoomForFrontend() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True (and sets *more to the suffix naming what went unlogged) if a
  // refusal may be logged now: at most one line a second per export.
  bool RefusalLogDue(std::string* more);
  // True if the peer of conn may attach; else logs (rate-limited) and counts.
  bool AdmitPeer(int conn);

  ExportConfig cfg_;
  std::vector<reactor::Reactor*> reactors_;
  UnixListener listener_;
  Mutex mu_;  // guards sessions_ (accept vs shutdown; control path only)
  std::list<Running> sessions_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> refused_{0};
  // Refusal log rate limit (the acceptor thread only).
  std::chrono::steady_clock::time_point last_refusal_log_{};
  uint64_t refusals_unlogged_ = 0;
  uint32_t socket_uid_ = 0, socket_gid_ = 0, socket_mode_ = 0;  // set by Listen
};

}  // namespace nestor::vhost
