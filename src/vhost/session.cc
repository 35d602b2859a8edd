#include "vhost/session.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string_view>

#include "base/log.h"
#include "base/mutex.h"
#include "base/sanitizers.h"

namespace nestor::vhost {

using virtio::Bit;

namespace {
std::atomic<uint64_t> g_session_ids{0};
std::atomic<uint64_t> g_stop_timeouts{0};
std::atomic<uint64_t> g_orphaned_queues{0};

// A queue stop handed to the reactor. The session thread waits on it; if
// it gives up, it parks the queue and everything it points into in
// `orphan`, which the reactor then destroys once the stop finally finishes.
struct StopWait {
  Mutex mu;
  CondVar cv;
  bool finished ABSL_GUARDED_BY(mu) = false;
  uint16_t next ABSL_GUARDED_BY(mu) = 0;
  std::shared_ptr<void> orphan ABSL_GUARDED_BY(mu);

  // Reactor thread, from inside the queue's own stop: the queue may not be
  // destroyed here, so its release is posted as a message.
  void Finish(uint16_t next_avail, reactor::Reactor* r) {
    MutexLock lock(&mu);
    finished = true;
    next = next_avail;
    if (orphan != nullptr) {
      g_orphaned_queues.fetch_sub(1, std::memory_order_relaxed);
      NLOG_WARN("reactor {}: an orphaned queue finally stopped; its memory is released", r->options().id);
      r->Post([o = std::move(orphan)] {});
    }
    cv.SignalAll();
  }

  // Posts q's stop to r; Finish runs when it is done. `orphan`: already
  // given up on (Finish releases it).
  static std::shared_ptr<StopWait> Post(virtio::BlkQueue* q, reactor::Reactor* r,
                                        std::shared_ptr<void> orphan = nullptr) {
    auto wait = std::make_shared<StopWait>();
    {
      MutexLock lock(&wait->mu);  // (nobody else has it yet)
      wait->orphan = std::move(orphan);
    }
    r->Post([q, wait, r] { q->RequestStop([wait, r](uint16_t next) { wait->Finish(next, r); }); });
    return wait;
  }
};

// Messages that always carry a reply of their own (REPLY_ACK does not apply).
bool HasOwnReply(uint32_t request) {
  switch (request) {
    case kGetFeatures:
    case kGetProtocolFeatures:
    case kGetVringBase:
    case kGetQueueNum:
    case kGetConfig:
    case kGetMaxMemSlots:
    case kGetInflightFd: return true;
    default: return false;
  }
}
}  // namespace

Session::Session(UniqueFd sock, BlkExport* exp)
    : sock_(std::move(sock)),
      export_(exp),
      name_(exp->config().name + "#" + std::to_string(++g_session_ids)),
      vrings_(exp->config().num_queues),
      capacity_sectors_(exp->config().backend->size_bytes() >> virtio::kSectorShift),
      seen_sectors_(capacity_sectors_),
      wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!wake_.valid()) NLOG_WARN("{}: no eventfd for resize notifications: {}", name_, std::strerror(errno));
}

Session::~Session() {
  std::vector<uint32_t> unused;
  (void)StopAll(&unused);  // Run already stopped (or orphaned) every queue
  UnmapInflight();
}

Session::Mapping::~Mapping() {
  if (base != nullptr) munmap(base, len);
}

uint64_t Session::StopTimeouts() { return g_stop_timeouts.load(std::memory_order_relaxed); }
uint64_t Session::OrphanedQueues() { return g_orphaned_queues.load(std::memory_order_relaxed); }

void Session::Shutdown() {
  shutdown_.store(true);
  ::shutdown(sock_.get(), SHUT_RDWR);
}

// Kick and call fds must be eventfds, and we make them non-blocking: the
// reactor reads and writes them, and a blocking fd (or a socket that
// claims to be readable) would freeze every queue on that reactor.
Status Session::CheckEventFd(int fd) {
  char target[64] = {};
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
  if (n <= 0 || std::string_view(target, static_cast<size_t>(n)) != "anon_inode:[eventfd]") {
    return Status::Invalid("vring kick/call fd is not an eventfd");
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return Status::FromErrno("fcntl eventfd");
  return Status::Ok();
}

bool Session::Negotiated(int f) const { return (protocol_features_ & Bit(f)) != 0; }

bool Session::PeerConnected() const {
  pollfd p{sock_.get(), POLLRDHUP, 0};
  int n = poll(&p, 1, 0);
  return n == 0 || (n == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0);
}

void Session::Run() {
  NLOG_INFO("{}: frontend connected", name_);
  for (;;) {
    Status st = WaitForMessage();
    if (orphaned_) {
      NLOG_ERROR("{}: disconnecting: a queue did not take the new capacity in time", name_);
      break;
    }
    if (st.ok()) st = ReadMessage(sock_.get(), &msg_);
    if (!st.ok()) {
      if (st.err() == ECONNRESET || shutdown_.load()) {
        NLOG_INFO("{}: frontend disconnected", name_);
      } else {
        NLOG_WARN("{}: disconnecting: {}", name_, st.message());
      }
      break;
    }
    NLOG_DEBUG("{}: {} size {} fds {}", name_, RequestName(msg_.hdr.request), msg_.hdr.size, msg_.fds.size());
    bool replied = false;
    st = Dispatch(msg_, &replied);
    if (orphaned_) {
      NLOG_ERROR("{}: disconnecting: a queue did not stop in time", name_);
      break;
    }
    bool ack = msg_.need_reply() && Negotiated(kProtoReplyAck) && !HasOwnReply(msg_.hdr.request);
    if (ack && !replied) {
      if (!st.ok()) NLOG_WARN("{}: {} failed: {}", name_, RequestName(msg_.hdr.request), st.message());
      if (!SendU64Reply(sock_.get(), msg_.hdr.request, st.ok() ? 0 : 1).ok()) break;
      continue;
    }
    if (!st.ok()) {
      NLOG_WARN("{}: disconnecting after {}: {}", name_, RequestName(msg_.hdr.request), st.message());
      break;
    }
  }
  std::vector<uint32_t> stopped;
  (void)StopAll(&stopped);  // a queue that did not stop keeps what it uses
  mem_ = std::make_shared<MemTable>();
  UnmapInflight();
  // Tell the frontend at once (it sees EOF) and give back its fds; the
  // socket fd itself is closed when the export reaps this session, so a
  // concurrent Shutdown() never touches a reused fd number.
  ::shutdown(sock_.get(), SHUT_RDWR);
  for (Vring& v : vrings_) {
    v.kick.Reset();
    v.call.Reset();
  }
  backend_ = BackendChannel();
}

Status Session::Dispatch(Message& m, bool* replied) {
  int sock = sock_.get();
  auto reply_u64 = [&](uint64_t v) {
    *replied = true;
    return SendU64Reply(sock, m.hdr.request, v);
  };
  auto no_payload = [&]() -> Status { return m.hdr.size == 0 ? Status::Ok() : Status::Invalid("unexpected payload"); };
  switch (m.hdr.request) {
    case kGetFeatures: return reply_u64(export_->features());
    case kSetFeatures: return HandleSetFeatures(m);
    case kGetProtocolFeatures: return reply_u64(export_->protocol_features());
    case kSetProtocolFeatures: return HandleSetProtocolFeatures(m);
    case kSetBackendReqFd: return HandleSetBackendReqFd(m);
    case kSetOwner: return no_payload();
    case kResetOwner: {
      std::vector<uint32_t> stopped;
      NESTOR_RETURN_IF_ERROR(StopAll(&stopped));
      features_ = 0;
      features_set_ = false;
      return Status::Ok();
    }
    case kGetQueueNum: return reply_u64(export_->config().num_queues);
    case kGetMaxMemSlots: return reply_u64(kMaxMemSlots);
    case kSetMemTable: return HandleMemTable(m);
    case kAddMemReg: return HandleAddMemReg(m);
    case kRemMemReg: return HandleRemMemReg(m);
    case kSetVringNum: return HandleVringNum(m);
    case kSetVringAddr: return HandleVringAddr(m);
    case kSetVringBase: return HandleVringBase(m);
    case kGetVringBase: *replied = true; return HandleGetVringBase(m);
    case kSetVringKick:
    case kSetVringCall:
    case kSetVringErr: return HandleVringFd(m);
    case kSetVringEnable: return HandleVringEnable(m);
    case kGetConfig: *replied = true; return HandleGetConfig(m);
    case kSetConfig: return Status::Error(ENOTSUP, "config space is read-only");
    case kGetInflightFd: *replied = true; return HandleGetInflightFd(m);
    case kSetInflightFd: return HandleSetInflightFd(m);
    default:
      return Status::Error(ENOTSUP, std::string("unsupported request ") + RequestName(m.hdr.request) + " (" +
                                        std::to_string(m.hdr.request) + ")");
  }
}

Status Session::HandleSetFeatures(Message& m) {
  if (!m.PayloadIs<uint64_t>()) return Status::Invalid("SET_FEATURES payload size");
  uint64_t f = m.As<uint64_t>();
  if (f & ~export_->features()) return Status::Invalid("SET_FEATURES with features we did not offer");
  features_ = f;
  features_set_ = true;
  return Status::Ok();
}

Status Session::HandleSetProtocolFeatures(Message& m) {
  if (!m.PayloadIs<uint64_t>()) return Status::Invalid("SET_PROTOCOL_FEATURES payload size");
  uint64_t f = m.As<uint64_t>();
  if (f & ~export_->protocol_features()) {
    return Status::Invalid("SET_PROTOCOL_FEATURES with features we did not offer");
  }
  protocol_features_ = f;
  return Status::Ok();
}

Result<Session::Vring*> Session::VringAt(uint32_t index) {
  if (index >= vrings_.size()) {
    return Status::Invalid("queue index " + std::to_string(index) + " out of range");
  }
  return &vrings_[index];
}

Status Session::HandleMemTable(Message& m) {
  if (m.hdr.size < sizeof(MemTableHeader)) return Status::Invalid("SET_MEM_TABLE payload too short");
  auto h = m.As<MemTableHeader>();
  if (h.nregions == 0 || h.nregions > kMaxMemRegions) return Status::Invalid("bad region count");
  if (m.hdr.size != sizeof(MemTableHeader) + h.nregions * sizeof(MemRegion)) {
    return Status::Invalid("SET_MEM_TABLE payload size does not match region count");
  }
  if (m.fds.size() != h.nregions) return Status::Invalid("SET_MEM_TABLE fd count != region count");
  std::vector<MemRegion> regions(h.nregions);
  std::memcpy(regions.data(), m.payload + sizeof(MemTableHeader), h.nregions * sizeof(MemRegion));
  std::vector<uint32_t> stopped;
  NESTOR_RETURN_IF_ERROR(StopAll(&stopped));
  Status st = mem_->SetAll(regions, std::move(m.fds));
  m.fds.clear();
  Status restart = RestartAll(stopped);
  return st.ok() ? restart : st;
}

Status Session::HandleAddMemReg(Message& m) {
  if (!Negotiated(kProtoConfigureMemSlots)) return Status::Invalid("ADD_MEM_REG not negotiated");
  if (!m.PayloadIs<SingleMemRegion>()) return Status::Invalid("ADD_MEM_REG payload size");
  if (m.fds.size() != 1) return Status::Invalid("ADD_MEM_REG needs exactly one fd");
  std::vector<uint32_t> stopped;
  NESTOR_RETURN_IF_ERROR(StopAll(&stopped));
  Status st = mem_->Add(m.As<SingleMemRegion>().region, std::move(m.fds[0]), kMaxMemSlots);
  m.fds.clear();
  Status restart = RestartAll(stopped);
  return st.ok() ? restart : st;
}

Status Session::HandleRemMemReg(Message& m) {
  if (!Negotiated(kProtoConfigureMemSlots)) return Status::Invalid("REM_MEM_REG not negotiated");
  if (!m.PayloadIs<SingleMemRegion>()) return Status::Invalid("REM_MEM_REG payload size");
  std::vector<uint32_t> stopped;
  NESTOR_RETURN_IF_ERROR(StopAll(&stopped));
  Status st = mem_->Remove(m.As<SingleMemRegion>().region);
  Status restart = RestartAll(stopped);
  return st.ok() ? restart : st;
}

Status Session::HandleVringNum(Message& m) {
  if (!m.PayloadIs<VringState>()) return Status::Invalid("SET_VRING_NUM payload size");
  auto s = m.As<VringState>();
  auto v = VringAt(s.index);
  if (!v.ok()) return v.status();
  // 1024 is QEMU's largest queue size; larger ones would only cost memory
  // (each entry has a request slot with its iovec array).
  if (s.num == 0 || s.num > kMaxQueueSize || (s.num & (s.num - 1)) != 0) {
    return Status::Invalid("queue size " + std::to_string(s.num) +
                           " is not a power of two <= " + std::to_string(kMaxQueueSize));
  }
  NESTOR_RETURN_IF_ERROR(Stop(s.index));
  (*v)->num = s.num;
  return Status::Ok();
}

Status Session::HandleVringAddr(Message& m) {
  if (!m.PayloadIs<VringAddr>()) return Status::Invalid("SET_VRING_ADDR payload size");
  auto a = m.As<VringAddr>();
  auto v = VringAt(a.index);
  if (!v.ok()) return v.status();
  NESTOR_RETURN_IF_ERROR(Stop(a.index));
  (*v)->addr = a;
  (*v)->addr_set = true;
  return Status::Ok();
}

Status Session::HandleVringBase(Message& m) {
  if (!m.PayloadIs<VringState>()) return Status::Invalid("SET_VRING_BASE payload size");
  auto s = m.As<VringState>();
  auto v = VringAt(s.index);
  if (!v.ok()) return v.status();
  if (s.num > 0xffff) return Status::Invalid("SET_VRING_BASE index above 65535");
  NESTOR_RETURN_IF_ERROR(Stop(s.index));
  (*v)->base = static_cast<uint16_t>(s.num);
  return Status::Ok();
}

Status Session::HandleGetVringBase(Message& m) {
  if (!m.PayloadIs<VringState>()) return Status::Invalid("GET_VRING_BASE payload size");
  auto s = m.As<VringState>();
  auto v = VringAt(s.index);
  if (!v.ok()) return v.status();
  // Drains in-flight I/O: nothing writes guest memory after the reply. A
  // queue that cannot drain gets no reply: the session ends instead.
  NESTOR_RETURN_IF_ERROR(Stop(s.index));
  (*v)->kick_set = false;
  (*v)->kick.Reset();
  VringState reply{s.index, (*v)->base};
  return SendReply(sock_.get(), kGetVringBase, &reply, sizeof(reply));
}

Status Session::HandleVringFd(Message& m) {
  if (!m.PayloadIs<uint64_t>()) return Status::Invalid("vring fd message payload size");
  uint64_t u = m.As<uint64_t>();
  if (u & ~(kVringIndexMask | kVringNoFdMask)) return Status::Invalid("unknown bits in vring fd message");
  auto v = VringAt(static_cast<uint32_t>(u & kVringIndexMask));
  if (!v.ok()) return v.status();
  bool no_fd = (u & kVringNoFdMask) != 0;
  if (m.fds.size() != (no_fd ? 0u : 1u)) return Status::Invalid("vring fd message with wrong fd count");
  UniqueFd fd = no_fd ? UniqueFd() : std::move(m.fds[0]);
  m.fds.clear();
  if (fd.valid()) NESTOR_RETURN_IF_ERROR(CheckEventFd(fd.get()));
  uint32_t index = static_cast<uint32_t>(u & kVringIndexMask);
  Vring* vr = *v;
  if (m.hdr.request == kSetVringErr) return Status::Ok();  // we never signal errors: close it
  if (m.hdr.request == kSetVringCall) {
    if (vr->queue) {
      int new_fd = fd.get();
      virtio::BlkQueue* q = vr->queue.get();
      if (!vr->reactor->CallFor([q, new_fd] { q->SetCallFd(new_fd); }, export_->config().stop_timeout)) {
        // The reactor may use either fd later: the new one is parked with
        // the queue, the old one is deliberately leaked (closing it could
        // let the reactor signal an unrelated file that reuses its number).
        (void)vr->call.Release();
        vr->call = std::move(fd);
        Orphan(*vr);
        return Status::Error(ETIMEDOUT, "reactor did not take the new call fd in time");
      }
    }
    vr->call = std::move(fd);  // the old fd closes only after the reactor let go
    return Status::Ok();
  }
  NESTOR_RETURN_IF_ERROR(Stop(index));
  vr->kick = std::move(fd);
  vr->kick_set = true;
  return TryStart(index);
}

Status Session::HandleVringEnable(Message& m) {
  if (!m.PayloadIs<VringState>()) return Status::Invalid("SET_VRING_ENABLE payload size");
  auto s = m.As<VringState>();
  auto v = VringAt(s.index);
  if (!v.ok()) return v.status();
  if (s.num > 1) return Status::Invalid("SET_VRING_ENABLE value must be 0 or 1");
  (*v)->enabled = s.num == 1;
  if (!(*v)->enabled) return Stop(s.index);
  return TryStart(s.index);
}

Status Session::HandleGetConfig(Message& m) {
  if (m.hdr.size < sizeof(ConfigHeader)) return Status::Invalid("GET_CONFIG payload too short");
  auto h = m.As<ConfigHeader>();
  virtio::BlkConfig cfg = export_->blk_config();
  // The queues accept what the answer offers before the frontend sees it.
  if (cfg.capacity > capacity_sectors_) NESTOR_RETURN_IF_ERROR(RaiseCapacity(cfg.capacity));
  bool ok = h.size <= kMaxConfigBytes && m.hdr.size == sizeof(ConfigHeader) + h.size && h.offset <= sizeof(cfg) &&
            h.size <= sizeof(cfg) - h.offset && h.size > 0;
  if (!ok) {
    NLOG_WARN("{}: GET_CONFIG offset {} size {} rejected", name_, h.offset, h.size);
    ConfigHeader empty{h.offset, 0, h.flags};
    return SendReply(sock_.get(), kGetConfig, &empty, sizeof(empty));
  }
  uint8_t reply[sizeof(ConfigHeader) + kMaxConfigBytes];
  std::memcpy(reply, &h, sizeof(h));
  std::memcpy(reply + sizeof(h), reinterpret_cast<uint8_t*>(&cfg) + h.offset, h.size);
  return SendReply(sock_.get(), kGetConfig, reply, sizeof(h) + h.size);
}

Status Session::HandleGetInflightFd(Message& m) {
  if (!Negotiated(kProtoInflightShmfd)) return Status::Invalid("GET_INFLIGHT_FD not negotiated");
  if (!m.PayloadIs<InflightDesc>()) return Status::Invalid("GET_INFLIGHT_FD payload size");
  auto d = m.As<InflightDesc>();
  if (d.num_queues == 0 || d.num_queues > vrings_.size() || d.queue_size == 0 || d.queue_size > kMaxQueueSize ||
      (d.queue_size & (d.queue_size - 1)) != 0) {
    return Status::Invalid("GET_INFLIGHT_FD with bad queue count or size");
  }
  std::vector<uint32_t> stopped;
  NESTOR_RETURN_IF_ERROR(StopAll(&stopped));
  UnmapInflight();
  uint64_t stride = virtio::InflightQueueBytes(d.queue_size);
  uint64_t len = stride * d.num_queues;
  UniqueFd fd(memfd_create("nestor-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid() || ftruncate(fd.get(), static_cast<off_t>(len)) != 0) {
    return Status::FromErrno("inflight memfd");
  }
  // Our own region: it may not shrink under us (a shrunken file would SIGBUS).
  fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return Status::FromErrno("mmap inflight region");
  inflight_ = std::make_shared<Mapping>();
  inflight_->base = p;
  inflight_->len = len;
  inflight_base_ = p;
  inflight_stride_ = stride;
  inflight_queues_ = d.num_queues;
  inflight_queue_size_ = d.queue_size;
  InflightDesc reply{len, 0, d.num_queues, d.queue_size, 0};
  Status st = SendReply(sock_.get(), kGetInflightFd, &reply, sizeof(reply), fd.get());
  Status restart = RestartAll(stopped);
  return st.ok() ? restart : st;
}

Status Session::HandleSetInflightFd(Message& m) {
  if (!Negotiated(kProtoInflightShmfd)) return Status::Invalid("SET_INFLIGHT_FD not negotiated");
  if (!m.PayloadIs<InflightDesc>()) return Status::Invalid("SET_INFLIGHT_FD payload size");
  if (m.fds.size() != 1) return Status::Invalid("SET_INFLIGHT_FD needs exactly one fd");
  auto d = m.As<InflightDesc>();
  // Each queue's part is InflightQueueBytes(queue_size) (64-byte aligned),
  // as libvhost-user and QEMU lay the region out; a larger mmap_size only
  // leaves room at the end (mmap_size / num_queues could misalign parts).
  uint64_t stride = virtio::InflightQueueBytes(d.queue_size);
  if (d.num_queues == 0 || d.num_queues > vrings_.size() || d.queue_size == 0 || d.queue_size > kMaxQueueSize ||
      d.mmap_size / d.num_queues < stride) {
    return Status::Invalid("SET_INFLIGHT_FD with bad geometry");
  }
  struct stat st {};
  if (fstat(m.fds[0].get(), &st) != 0 || !S_ISREG(st.st_mode) || d.mmap_offset + d.mmap_size < d.mmap_offset ||
      static_cast<uint64_t>(st.st_size) < d.mmap_offset + d.mmap_size || (d.mmap_offset & 4095) != 0) {
    return Status::Invalid("SET_INFLIGHT_FD region larger than its fd");
  }
  std::vector<uint32_t> stopped;
  NESTOR_RETURN_IF_ERROR(StopAll(&stopped));
  UnmapInflight();
  uint64_t page = st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : 4096;
  uint64_t map_len = (d.mmap_size + page - 1) / page * page;  // hugetlbfs rounds up
  void* p =
      mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, m.fds[0].get(), static_cast<off_t>(d.mmap_offset));
  if (p == MAP_FAILED) return Status::FromErrno("mmap inflight region");
  inflight_ = std::make_shared<Mapping>();
  inflight_->base = p;
  inflight_->len = map_len;
  inflight_base_ = p;
  inflight_stride_ = stride;
  inflight_queues_ = d.num_queues;
  inflight_queue_size_ = d.queue_size;
  NLOG_INFO("{}: inflight region received ({} queues x {} entries)", name_, d.num_queues, d.queue_size);
  return RestartAll(stopped);
}

void Session::UnmapInflight() {
  inflight_.reset();  // a started queue's Vring still holds it
  inflight_base_ = nullptr;
}

Result<virtio::VringSetup> Session::TranslateRing(const Vring& v) const {
  const virtio::GuestMemoryMap& map = mem_->map();
  uint32_t n = v.num;
  const VringAddr& a = v.addr;
  if ((a.desc_user_addr & 15) || (a.avail_user_addr & 1) || (a.used_user_addr & 3)) {
    return Status::Invalid("misaligned ring address");
  }
  virtio::VringSetup s;
  s.size = n;
  s.desc = static_cast<virtio::Desc*>(map.TranslateUserAddr(a.desc_user_addr, virtio::DescTableBytes(n)));
  s.avail = static_cast<virtio::AvailRing*>(map.TranslateUserAddr(a.avail_user_addr, virtio::AvailRingBytes(n)));
  s.used = static_cast<virtio::UsedRing*>(map.TranslateUserAddr(a.used_user_addr, virtio::UsedRingBytes(n)));
  if (s.desc == nullptr || s.avail == nullptr || s.used == nullptr) {
    return Status::Invalid("ring not inside one mapped memory region");
  }
  // Aligned frontend addresses are misaligned pointers here if a region's
  // userspace_addr or mmap_offset is not aligned like its pages.
  if ((reinterpret_cast<uintptr_t>(s.desc) & 15) || (reinterpret_cast<uintptr_t>(s.avail) & 1) ||
      (reinterpret_cast<uintptr_t>(s.used) & 3)) {
    return Status::Invalid("ring misaligned in the frontend's memory region");
  }
  // The control thread never reads guest memory (a shrunken memfd would
  // SIGBUS it): the used index starts at the base the frontend gave us.
  s.last_avail = v.base;
  s.used_idx = v.base;
  s.event_idx = (features_ & Bit(virtio::kFeatureEventIdx)) != 0;
  s.indirect = (features_ & Bit(virtio::kFeatureIndirectDesc)) != 0;
  return s;
}

Status Session::TryStart(uint32_t index) {
  Vring& v = vrings_[index];
  // Without VHOST_USER_F_PROTOCOL_FEATURES rings are enabled at once.
  bool enabled = v.enabled || !(features_ & Bit(kFeatureProtocolFeatures));
  if (v.queue || !v.kick_set || !enabled || !v.addr_set || v.num == 0 || mem_->size() == 0) {
    return Status::Ok();  // not ready yet: a later message completes the setup
  }
  auto setup = TranslateRing(v);
  if (!setup.ok()) return setup.status();
  virtio::BlkQueueConfig qc;
  qc.index = static_cast<int>(index);
  qc.device = name_;
  qc.vring = *setup;
  qc.mem = &mem_->map();
  qc.limits = export_->limits();
  qc.limits.capacity_sectors = capacity_sectors_;  // what this frontend was offered
  qc.backend = export_->config().backend.get();
  qc.qos = export_->config().qos;
  qc.stats = export_->config().stats;
  if (inflight_base_ != nullptr && index < inflight_queues_) {
    if (inflight_queue_size_ != v.num) {
      return Status::Invalid("queue size differs from the inflight region's");
    }
    qc.inflight =
        reinterpret_cast<virtio::InflightQueue*>(static_cast<uint8_t*>(inflight_base_) + index * inflight_stride_);
  }
  qc.kick_fd = v.kick.get();
  qc.call_fd = v.call.get();
  std::string serial = export_->config().name;
  std::memcpy(qc.serial, serial.data(), std::min<size_t>(serial.size(), virtio::kBlkIdBytes));
  int sock = sock_.get();
  qc.on_broken = [sock](const std::string&) { ::shutdown(sock, SHUT_RDWR); };
  v.reactor = export_->ReactorFor(index);
  v.mem = mem_;
  v.inflight = qc.inflight != nullptr ? inflight_ : nullptr;
  v.queue = std::make_unique<virtio::BlkQueue>(std::move(qc));
  auto st = std::make_shared<Status>(Status::Error(ETIMEDOUT, "queue start timed out"));
  virtio::BlkQueue* qp = v.queue.get();
  reactor::Reactor* r = v.reactor;
  if (!r->CallFor([st, qp, r] { *st = qp->Start(r); }, export_->config().stop_timeout)) {
    Orphan(v);  // its Start may still run: a stop is queued behind it
    return *st;
  }
  if (!st->ok()) {
    v.queue.reset();
    v.mem.reset();
    v.inflight.reset();
    return *st;
  }
  NLOG_DEBUG("{}: queue {} started on reactor {} (size {}, base {})", name_, index, v.reactor->options().id, v.num,
             v.base);
  return Status::Ok();
}

Status Session::Stop(uint32_t index) {
  Vring& v = vrings_[index];
  if (!v.queue) return Status::Ok();
  reactor::Reactor* r = v.reactor;
  auto wait = StopWait::Post(v.queue.get(), r);
  const auto limit = export_->config().stop_timeout;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  MutexLock lock(&wait->mu);
  while (!wait->finished) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      NLOG_ERROR(
          "{}: queue {} did not stop within {} ms (in-flight I/O never completed); handing it and "
          "the memory it may touch to reactor {} and ending the session",
          name_, index, limit.count(), r->options().id);
      wait->orphan = Orphaned(v);
      return Status::Error(ETIMEDOUT, "queue " + std::to_string(index) + " did not stop in time");
    }
    if (!wait->cv.WaitUntil(&wait->mu, std::min(deadline, now + std::chrono::seconds(5))) && !wait->finished &&
        std::chrono::steady_clock::now() < deadline) {
      NLOG_WARN("{}: queue {} still waiting for in-flight I/O to finish", name_, index);
    }
  }
  v.base = wait->next;
  v.queue.reset();
  v.mem.reset();
  v.inflight.reset();
  return Status::Ok();
}

std::shared_ptr<void> Session::Orphaned(Vring& v) {
  // Declared in destruction order's reverse: the queue goes first (on its
  // reactor), then the fds and memory it used.
  struct Parked {
    std::shared_ptr<MemTable> mem;
    std::shared_ptr<Mapping> inflight;
    UniqueFd kick, call;
    std::unique_ptr<virtio::BlkQueue> queue;
  };
  g_stop_timeouts.fetch_add(1, std::memory_order_relaxed);
  g_orphaned_queues.fetch_add(1, std::memory_order_relaxed);
  auto p = std::make_shared<Parked>();
  p->mem = std::move(v.mem);
  p->inflight = std::move(v.inflight);
  p->kick = std::move(v.kick);
  p->call = std::move(v.call);
  p->queue = std::move(v.queue);
  // Freed when its stop finally finishes; if the I/O never ends, never
  // (not even at exit): memory a request may still write stays mapped.
  IntentionalLeak(p.get());
  v.kick_set = false;
  // The session may not change (or unmap) what the queue still reads.
  if (mem_ == p->mem) mem_ = std::make_shared<MemTable>();
  if (inflight_ != nullptr && inflight_ == p->inflight) UnmapInflight();
  orphaned_ = true;
  return p;
}

void Session::Orphan(Vring& v) {
  // Queue a stop behind whatever the reactor has not run yet; its done
  // callback owns the parked queue and releases it.
  virtio::BlkQueue* q = v.queue.get();
  reactor::Reactor* r = v.reactor;
  (void)StopWait::Post(q, r, Orphaned(v));
}

Status Session::StopAll(std::vector<uint32_t>* stopped) {
  // Every queue gets its stop, even after one failed.
  Status first;
  for (uint32_t i = 0; i < vrings_.size(); ++i) {
    if (!vrings_[i].queue) continue;
    Status st = Stop(i);
    if (st.ok()) stopped->push_back(i);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Status Session::RestartAll(const std::vector<uint32_t>& indices) {
  for (uint32_t i : indices) NESTOR_RETURN_IF_ERROR(TryStart(i));
  return Status::Ok();
}

}  // namespace nestor::vhost
