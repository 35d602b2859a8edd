// DeviceImpl: connects to a vhost-user-blk backend, negotiates features,
// registers the shared region and starts the queues. See
// include/nestor/client.hpp for the contract.
#include <cstring>
#include <vector>

#include "base/log.h"
#include "client/connection.h"
#include "client/queue_impl.h"
#include "vhost/wire.h"

namespace nestor::client {

namespace {

using virtio::Bit;

constexpr size_t AlignPage(size_t n) { return (n + 4095) & ~size_t{4095}; }

constexpr uint64_t kWantedBlkFeatures = Bit(virtio::kBlkFSizeMax) | Bit(virtio::kBlkFSegMax) |
                                        Bit(virtio::kBlkFGeometry) | Bit(virtio::kBlkFRo) | Bit(virtio::kBlkFBlkSize) |
                                        Bit(virtio::kBlkFFlush) | Bit(virtio::kBlkFTopology) | Bit(virtio::kBlkFMq) |
                                        Bit(virtio::kBlkFDiscard) | Bit(virtio::kBlkFWriteZeroes);

constexpr uint64_t kWantedProtocol =
    Bit(vhost::kProtoMq) | Bit(vhost::kProtoReplyAck) | Bit(vhost::kProtoConfig) | Bit(vhost::kProtoConfigureMemSlots);

// Config bytes we ask for: everything up to write_zeroes_may_unmap and its
// padding (60 bytes), which every backend since virtio 1.1 knows.
constexpr uint32_t kConfigBytes = offsetof(virtio::BlkConfig, max_secure_erase_sectors);

class DeviceImpl final : public Device {
 public:
  explicit DeviceImpl(const Options& o) : opts_(o) {}
  ~DeviceImpl() override { Close(); }

  Status Init();

  const DeviceInfo& info() const override { return shared_.info; }
  uint32_t num_queues() const override { return static_cast<uint32_t>(queues_.size()); }
  Queue& queue(uint32_t index) override { return *queues_[index]; }
  void* AllocBuffer(size_t len, size_t align) override { return shared_.buffers.Alloc(len, align); }
  void FreeBuffer(void* buf) override {
    if (!shared_.buffers.Free(buf)) NLOG_ERROR("libnestor: FreeBuffer of a pointer not from AllocBuffer");
  }
  bool Owns(const void* buf, size_t len) const override { return shared_.region.Contains(buf, len); }
  bool connected() const override { return !shared_.dead.load(std::memory_order_relaxed); }
  void Close() override;

 private:
  Status Negotiate();
  Status ReadConfig();
  Status SetupMemory();
  Status StartQueue(QueueImpl& q);

  Options opts_;
  VhostConnection conn_;
  DeviceShared shared_;  // outlives queues_
  std::vector<std::unique_ptr<QueueImpl>> queues_;
  uint64_t features_ = 0;
  uint64_t protocol_ = 0;
  bool closed_ = false;
};

Status DeviceImpl::Negotiate() {
  NESTOR_RETURN_IF_ERROR(conn_.Send(vhost::kSetOwner, nullptr, 0));
  auto f = conn_.CallU64(vhost::kGetFeatures);
  if (!f.ok()) return f.status();
  const uint64_t offered = *f;
  if (!(offered & Bit(vhost::kFeatureProtocolFeatures)))
    return Status::Error(ENOTSUP, "backend does not offer VHOST_USER_F_PROTOCOL_FEATURES");
  if (!(offered & Bit(virtio::kFeatureVersion1))) return Status::Error(ENOTSUP, "backend does not offer VERSION_1");

  auto pf = conn_.CallU64(vhost::kGetProtocolFeatures);
  if (!pf.ok()) return pf.status();
  protocol_ = *pf & kWantedProtocol;
  if (!(protocol_ & Bit(vhost::kProtoConfig)))
    return Status::Error(ENOTSUP, "backend does not offer the CONFIG protocol feature");
  NESTOR_RETURN_IF_ERROR(conn_.SendU64(vhost::kSetProtocolFeatures, protocol_));
  if (protocol_ & Bit(vhost::kProtoReplyAck)) conn_.EnableReplyAck();

  uint32_t max_queues = 1;
  if (protocol_ & Bit(vhost::kProtoMq)) {
    auto qn = conn_.CallU64(vhost::kGetQueueNum);
    if (!qn.ok()) return qn.status();
    if (*qn == 0 || *qn > 1024) return Status::Error(EPROTO, fmt::format("backend reports {} queues", *qn));
    max_queues = static_cast<uint32_t>(*qn);
  }
  if (protocol_ & Bit(vhost::kProtoConfigureMemSlots)) {
    auto slots = conn_.CallU64(vhost::kGetMaxMemSlots);
    if (!slots.ok()) return slots.status();
    if (*slots == 0) protocol_ &= ~Bit(vhost::kProtoConfigureMemSlots);  // fall back to SET_MEM_TABLE
  }

  uint64_t wanted = Bit(virtio::kFeatureVersion1) | Bit(vhost::kFeatureProtocolFeatures) | kWantedBlkFeatures;
  if (opts_.event_idx) wanted |= Bit(virtio::kFeatureEventIdx);
  if (opts_.indirect) wanted |= Bit(virtio::kFeatureIndirectDesc);
  features_ = offered & wanted;
  NESTOR_RETURN_IF_ERROR(conn_.SendU64(vhost::kSetFeatures, features_));

  DeviceInfo& info = shared_.info;
  info.features = features_;
  info.protocol_features = protocol_;
  info.max_queues = (features_ & Bit(virtio::kBlkFMq)) ? max_queues : 1;
  if (opts_.num_queues == 0 || opts_.num_queues > info.max_queues)
    return Status::Invalid(fmt::format("{} queues requested, backend offers {}", opts_.num_queues, info.max_queues));
  NLOG_DEBUG("libnestor: features {:#x} protocol {:#x} max queues {}", features_, protocol_, max_queues);
  return Status::Ok();
}

Status DeviceImpl::ReadConfig() {
  struct {
    vhost::ConfigHeader h;
    uint8_t bytes[sizeof(virtio::BlkConfig)];
  } req{}, rep{};
  req.h = {0, kConfigBytes, 0};
  NESTOR_RETURN_IF_ERROR(
      conn_.Call(vhost::kGetConfig, &req, sizeof(req.h) + kConfigBytes, &rep, sizeof(rep.h) + kConfigBytes));
  if (rep.h.offset != 0 || rep.h.size != kConfigBytes)
    return Status::Error(EPROTO, fmt::format("GET_CONFIG reply offset {} size {}", rep.h.offset, rep.h.size));
  virtio::BlkConfig c{};
  std::memcpy(&c, rep.bytes, kConfigBytes);

  DeviceInfo& info = shared_.info;
  auto has = [&](int bit) { return (features_ & Bit(bit)) != 0; };
  if (c.capacity > (UINT64_MAX >> virtio::kSectorShift))
    return Status::Error(EPROTO, fmt::format("capacity {} sectors overflows", c.capacity));
  info.capacity_bytes = c.capacity << virtio::kSectorShift;
  if (has(virtio::kBlkFBlkSize)) {
    if (c.blk_size >= 512 && c.blk_size <= 65536 && (c.blk_size & (c.blk_size - 1)) == 0)
      info.block_size = c.blk_size;
    else
      NLOG_WARN("libnestor: ignoring bad blk_size {}", c.blk_size);
  }
  info.size_max = has(virtio::kBlkFSizeMax) ? c.size_max : 0;
  if (info.size_max != 0 && info.size_max < 512)
    return Status::Error(EPROTO, fmt::format("size_max {} too small", info.size_max));
  info.seg_max = opts_.queue_size - 2;
  if (has(virtio::kBlkFSegMax) && c.seg_max > 0 && c.seg_max < info.seg_max) info.seg_max = c.seg_max;
  info.read_only = has(virtio::kBlkFRo);
  info.flush = has(virtio::kBlkFFlush);
  info.event_idx = has(virtio::kFeatureEventIdx);
  info.indirect = has(virtio::kFeatureIndirectDesc);
  info.discard = has(virtio::kBlkFDiscard);
  if (info.discard) {
    info.max_discard_sectors = c.max_discard_sectors;
    info.max_discard_seg = c.max_discard_seg;
    info.discard_sector_alignment = c.discard_sector_alignment;
  }
  info.write_zeroes = has(virtio::kBlkFWriteZeroes);
  if (info.write_zeroes) {
    info.max_write_zeroes_sectors = c.max_write_zeroes_sectors;
    info.max_write_zeroes_seg = c.max_write_zeroes_seg;
    info.write_zeroes_may_unmap = c.write_zeroes_may_unmap != 0;
  }
  return Status::Ok();
}

Status DeviceImpl::SetupMemory() {
  const uint32_t n = opts_.queue_size;
  const size_t per_queue = AlignPage(QueueImpl::SharedBytes(n));
  const size_t ring_bytes = per_queue * opts_.num_queues;
  auto region = SharedRegion::Create(ring_bytes + AlignPage(opts_.buffer_bytes), opts_.populate);
  if (!region.ok()) return region.status();
  shared_.region = std::move(*region);
  uint8_t* base = shared_.region.base();
  shared_.buffers.Init(base + ring_bytes, shared_.region.size() - ring_bytes);

  const auto addr = reinterpret_cast<uint64_t>(base);
  vhost::MemRegion mr{addr, shared_.region.size(), addr, 0};
  const int fd = shared_.region.fd();
  if (protocol_ & Bit(vhost::kProtoConfigureMemSlots)) {
    vhost::SingleMemRegion m{0, mr};
    NESTOR_RETURN_IF_ERROR(conn_.Send(vhost::kAddMemReg, &m, sizeof(m), {&fd, 1}));
  } else {
    struct {
      vhost::MemTableHeader h;
      vhost::MemRegion r;
    } t{{1, 0}, mr};
    NESTOR_RETURN_IF_ERROR(conn_.Send(vhost::kSetMemTable, &t, sizeof(t), {&fd, 1}));
  }
  const bool event_idx = (features_ & Bit(virtio::kFeatureEventIdx)) != 0;
  const bool indirect = (features_ & Bit(virtio::kFeatureIndirectDesc)) != 0;
  for (uint32_t i = 0; i < opts_.num_queues; ++i)
    queues_.push_back(
        std::make_unique<QueueImpl>(&shared_, i, n, base + i * per_queue, event_idx, indirect, opts_.polled));
  return Status::Ok();
}

Status DeviceImpl::StartQueue(QueueImpl& q) {
  const uint32_t i = q.index();
  NESTOR_RETURN_IF_ERROR(q.OpenEventFds(!opts_.polled || opts_.call_fd_when_polled));
  vhost::VringState num{i, q.size()};
  NESTOR_RETURN_IF_ERROR(conn_.Send(vhost::kSetVringNum, &num, sizeof(num)));
  vhost::VringState base{i, 0};
  NESTOR_RETURN_IF_ERROR(conn_.Send(vhost::kSetVringBase, &base, sizeof(base)));
  vhost::VringAddr a{};
  a.index = i;
  a.desc_user_addr = reinterpret_cast<uint64_t>(q.vring().desc());
  a.used_user_addr = reinterpret_cast<uint64_t>(q.vring().used());
  a.avail_user_addr = reinterpret_cast<uint64_t>(q.vring().avail());
  NESTOR_RETURN_IF_ERROR(conn_.Send(vhost::kSetVringAddr, &a, sizeof(a)));
  int kick = q.kick_fd();
  NESTOR_RETURN_IF_ERROR(conn_.SendU64(vhost::kSetVringKick, i, {&kick, 1}));
  int call = q.call_fd();
  if (call >= 0)
    NESTOR_RETURN_IF_ERROR(conn_.SendU64(vhost::kSetVringCall, i, {&call, 1}));
  else
    NESTOR_RETURN_IF_ERROR(conn_.SendU64(vhost::kSetVringCall, i | vhost::kVringNoFdMask));
  vhost::VringState en{i, 1};
  return conn_.Send(vhost::kSetVringEnable, &en, sizeof(en));
}

Status DeviceImpl::Init() {
  if (!DriverVring::ValidSize(opts_.queue_size))
    return Status::Invalid(fmt::format("queue size {} is not a power of two in [2, 32768]", opts_.queue_size));
  if (opts_.timeout_ms <= 0) return Status::Invalid("timeout_ms must be positive");
  shared_.timeout_ms = opts_.timeout_ms;
  auto c = VhostConnection::Connect(opts_.socket_path, opts_.timeout_ms);
  if (!c.ok()) return c.status();
  conn_ = std::move(*c);
  NESTOR_RETURN_IF_ERROR(Negotiate());
  NESTOR_RETURN_IF_ERROR(ReadConfig());
  NESTOR_RETURN_IF_ERROR(SetupMemory());
  for (auto& q : queues_) NESTOR_RETURN_IF_ERROR(StartQueue(*q));
  shared_.conn = &conn_;
  return Status::Ok();
}

void DeviceImpl::Close() {
  if (closed_) return;
  closed_ = true;
  if (shared_.conn != nullptr && !shared_.dead.load()) {
    // Stop every ring so the backend stops touching our memory.
    for (auto& q : queues_) {
      vhost::VringState s{q->index(), 0}, rep{};
      Status st = conn_.Call(vhost::kGetVringBase, &s, sizeof(s), &rep, sizeof(rep));
      if (!st.ok()) {
        NLOG_DEBUG("libnestor: GET_VRING_BASE {}: {}", q->index(), st.ToString());
        break;
      }
    }
  }
  shared_.dead.store(true);
  shared_.conn = nullptr;
  conn_.Close();
}

}  // namespace

Result<std::unique_ptr<Device>> Device::Connect(const Options& options) {
  auto dev = std::make_unique<DeviceImpl>(options);
  Status st = dev->Init();
  if (!st.ok()) return st;
  return std::unique_ptr<Device>(std::move(dev));
}

std::string ResultName(int result) {
  switch (result) {
    case 0: return "ok";
    case -EIO: return "-EIO";
    case -ENOTSUP: return "-ENOTSUP";
    case -EPROTO: return "-EPROTO";
    case -ENOTCONN: return "-ENOTCONN";
    case -ETIMEDOUT: return "-ETIMEDOUT";
    case -EINVAL: return "-EINVAL";
    case -EAGAIN: return "-EAGAIN";
    case -EFAULT: return "-EFAULT";
    default: return fmt::format("{}", result);
  }
}

}  // namespace nestor::client
