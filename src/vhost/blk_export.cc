#include "vhost/blk_export.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "vhost/session.h"
#include "vhost/wire.h"

namespace nestor::vhost {

using virtio::Bit;

BlkExport::BlkExport(ExportConfig cfg, std::vector<reactor::Reactor*> reactors)
    : cfg_(std::move(cfg)), reactors_(std::move(reactors)) {
  if (!cfg_.qos) cfg_.qos = std::make_shared<virtio::VolumeQos>();  // unlimited
  if (!cfg_.stats) cfg_.stats = std::make_shared<virtio::VolumeStats>();
}

BlkExport::~BlkExport() {
  Shutdown();
  listener_.Close();  // unlinks the socket only if it is still ours
}

uint64_t BlkExport::features() const {
  uint64_t f = Bit(virtio::kFeatureVersion1) | Bit(kFeatureProtocolFeatures) | Bit(virtio::kFeatureIndirectDesc) |
               Bit(virtio::kFeatureEventIdx) | Bit(virtio::kBlkFSegMax) | Bit(virtio::kBlkFBlkSize) |
               Bit(virtio::kBlkFFlush) | Bit(virtio::kBlkFMq) | Bit(virtio::kBlkFDiscard) |
               Bit(virtio::kBlkFWriteZeroes) | Bit(virtio::kBlkFTopology);
  if (cfg_.read_only) f |= Bit(virtio::kBlkFRo);
  return f;
}

uint64_t BlkExport::protocol_features() const {
  return Bit(kProtoMq) | Bit(kProtoReplyAck) | Bit(kProtoBackendReq) | Bit(kProtoConfig) |
         Bit(kProtoConfigureMemSlots) | Bit(kProtoInflightShmfd);
}

virtio::BlkConfig BlkExport::blk_config() const {
  virtio::BlkConfig c{};
  c.capacity = cfg_.backend->size_bytes() >> virtio::kSectorShift;
  c.seg_max = kSegMax;
  c.blk_size = cfg_.backend->block_size();
  c.topology.physical_block_exp = 3;  // 4 KiB physical blocks
  c.topology.min_io_size = 8;
  c.num_queues = cfg_.num_queues;
  c.max_discard_sectors = kMaxDiscardSectors;
  c.max_discard_seg = 1;
  c.discard_sector_alignment = 8;
  c.max_write_zeroes_sectors = kMaxDiscardSectors;
  c.max_write_zeroes_seg = 1;
  c.write_zeroes_may_unmap = 1;
  return c;
}

virtio::BlkLimits BlkExport::limits() const {
  virtio::BlkLimits l;
  l.capacity_sectors = cfg_.backend->size_bytes() >> virtio::kSectorShift;
  l.read_only = cfg_.read_only;
  l.max_data_bytes = 64u << 20;
  l.max_discard_sectors = kMaxDiscardSectors;
  l.max_write_zeroes_sectors = kMaxDiscardSectors;
  return l;
}

reactor::Reactor* BlkExport::ReactorFor(uint32_t queue) const {
  size_t r =
      queue < cfg_.queue_reactor.size() ? static_cast<size_t>(cfg_.queue_reactor[queue]) : queue % reactors_.size();
  return reactors_[r % reactors_.size()];
}

Status BlkExport::Listen() {
  NESTOR_RETURN_IF_ERROR(listener_.Listen(cfg_.socket_path, 16, cfg_.socket_perms));
  struct stat st {};
  if (stat(cfg_.socket_path.c_str(), &st) == 0) {
    socket_uid_ = st.st_uid;
    socket_gid_ = st.st_gid;
    socket_mode_ = st.st_mode & 07777;
  }
  NLOG_INFO("volume {}: {} bytes, {} queue(s){}, backend {}, socket {}", cfg_.name, cfg_.backend->size_bytes(),
            cfg_.num_queues, cfg_.read_only ? ", read-only" : "", cfg_.backend->Describe(), cfg_.socket_path);
  return Status::Ok();
}

void BlkExport::ReapFinished() {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->finished.load()) {
      it->thread.join();
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t BlkExport::active_sessions() {
  MutexLock lock(&mu_);
  ReapFinished();
  return sessions_.size();
}

size_t BlkExport::NotifyCapacityChange() {
  MutexLock lock(&mu_);
  ReapFinished();
  for (Running& r : sessions_) r.session->NotifyCapacity();
  return sessions_.size();
}

uint64_t BlkExport::SeenCapacityBytes() {
  MutexLock lock(&mu_);
  ReapFinished();
  uint64_t most = 0;
  for (Running& r : sessions_) most = std::max(most, r.session->seen_capacity_sectors());
  return most << virtio::kSectorShift;
}

Status BlkExport::ReplaceBackendWhileIdle(const std::function<Status()>& change,
                                          const std::function<Result<std::shared_ptr<io::BlockBackend>>()>& reopen,
                                          uint64_t* seen_bytes) {
  MutexLock lock(&mu_);
  ReapFinished();
  *seen_bytes = 0;
  for (Running& r : sessions_) {
    *seen_bytes = std::max(*seen_bytes, r.session->seen_capacity_sectors() << virtio::kSectorShift);
  }
  if (!sessions_.empty()) {
    return Status::Error(EBUSY,
                         "volume '" + cfg_.name + "' has " + std::to_string(sessions_.size()) + " connected client(s)");
  }
  cfg_.backend.reset();  // no session holds it: the volume is closed now
  Status st = change();
  auto again = reopen();
  if (!again.ok()) {
    NLOG_ERROR("volume {}: cannot open it again after the change: {}; the export serves nothing", cfg_.name,
               again.status().message());
    return again.status();
  }
  cfg_.backend = std::move(again.value());
  return st;
}

namespace {
bool Listed(const std::vector<uint32_t>& ids, uint32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}
}  // namespace

bool BlkExport::AdmitPeer(int conn) {
  if (cfg_.allow_uids.empty() && cfg_.allow_gids.empty()) return true;
  ucred cred{};
  socklen_t len = sizeof(cred);
  bool known = getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(cred);
  if (known && (Listed(cfg_.allow_uids, cred.uid) || Listed(cfg_.allow_gids, cred.gid))) return true;
  refused_.fetch_add(1, std::memory_order_relaxed);
  std::string more;
  if (!RefusalLogDue(&more)) return false;
  if (known) {
    NLOG_WARN("volume {}: refused a connection from uid {} gid {} pid {}: not in allow_uids/allow_gids{}", cfg_.name,
              cred.uid, cred.gid, cred.pid, more);
  } else {
    NLOG_WARN("volume {}: refused a connection: its credentials are unknown (SO_PEERCRED: {}){}", cfg_.name,
              std::strerror(errno), more);
  }
  return false;
}

bool BlkExport::RefusalLogDue(std::string* more) {
  // At most one line a second per export: a client retrying in a loop
  // must not flood the log.
  auto now = std::chrono::steady_clock::now();
  if (now - last_refusal_log_ < std::chrono::seconds(1)) {
    ++refusals_unlogged_;
    return false;
  }
  *more = refusals_unlogged_ == 0 ? "" : fmt::format(" ({} more refused since the last message)", refusals_unlogged_);
  last_refusal_log_ = now;
  refusals_unlogged_ = 0;
  return true;
}

bool BlkExport::RoomForFrontend() {
  uint32_t live = 0;
  for (Running& r : sessions_) live += !r.finished.load() && r.session->PeerConnected();
  std::string more;
  if (live >= cfg_.max_frontends) {
    if (RefusalLogDue(&more)) {
      NLOG_WARN("volume {}: refused a frontend: {} attached, the export allows {}{}{}", cfg_.name, live,
                cfg_.max_frontends,
                cfg_.max_frontends == 1 ? " (to share it, export it read-only with more frontends)" : "", more);
    }
    return false;
  }
  if (sessions_.size() >= cfg_.max_frontends + kMaxDrainingSessions) {
    if (RefusalLogDue(&more)) {
      NLOG_WARN("volume {}: refused a frontend: {} sessions still draining{}", cfg_.name, sessions_.size() - live,
                more);
    }
    return false;
  }
  return true;
}

void BlkExport::AcceptOne() {
  UniqueFd conn(accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!conn.valid()) {
    if (errno == EMFILE || errno == ENFILE) {
      // Out of fds: the connection stays queued and the listener readable;
      // back off instead of spinning (this is the acceptor thread).
      NLOG_ERROR("volume {}: cannot accept a connection: {}; retrying in 100 ms", cfg_.name, strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return;
  }
  if (!AdmitPeer(conn.get())) return;  // closed before any message is read
  MutexLock lock(&mu_);
  ReapFinished();
  if (cfg_.backend == nullptr) {
    NLOG_WARN("volume {}: refusing connection: the volume could not be opened again", cfg_.name);
    return;
  }
  if (!RoomForFrontend()) return;  // closed before any message is read
  Running& r = sessions_.emplace_back();
  r.session = std::make_unique<Session>(std::move(conn), this);
  Running* rp = &r;
  r.thread = std::thread([rp] {
    rp->session->Run();
    rp->finished.store(true);
  });
}

void BlkExport::Shutdown() {
  MutexLock lock(&mu_);
  for (Running& r : sessions_) r.session->Shutdown();
  for (Running& r : sessions_) r.thread.join();
  sessions_.clear();
}

}  // namespace nestor::vhost
