// Unit tests for vhost::Session, driven over a socketpair by a minimal
// frontend (the test), as BlkExport hands a connection to a session: one
// export of a memory volume with two queues, one reactor.
#include "vhost/session.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "base/scm_rights.h"
#include "vhost/blk_export.h"
#include "virtio/inflight.h"
#include "virtio/ring_layout.h"

namespace nestor::vhost {
namespace {

constexpr uint32_t kQueueSize = 16;
constexpr uint64_t kGuestBytes = 64 * 1024;
constexpr uint64_t kUva = 0x7f0000000000;
constexpr uint64_t kVolumeBytes = 1 << 20;

// A memory volume whose size the test changes, as a pool resize does.
class ResizableBackend final : public io::BlockBackend {
 public:
  explicit ResizableBackend(std::unique_ptr<io::BlockBackend> inner) : inner_(std::move(inner)) {}
  uint64_t size_bytes() const override { return size_.load(); }
  std::string Describe() const override { return "resizable " + inner_->Describe(); }
  Result<std::unique_ptr<io::IoChannel>> OpenChannel(io::IoUring* ring) override { return inner_->OpenChannel(ring); }
  void Resize(uint64_t bytes) { size_.store(bytes); }

 private:
  std::unique_ptr<io::BlockBackend> inner_;
  std::atomic<uint64_t> size_{kVolumeBytes};
};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reactor::ReactorOptions ro;
    ro.mode = reactor::PollMode::kInterrupt;
    reactor_ = std::make_unique<reactor::Reactor>(ro);
    ASSERT_TRUE(reactor_->Start().ok());
    ExportConfig cfg;
    cfg.name = "session-test";
    cfg.num_queues = 2;
    auto backend = io::OpenMemBackend(4 * kVolumeBytes);
    ASSERT_TRUE(backend.ok());
    backend_ = std::make_shared<ResizableBackend>(std::move(backend.value()));
    cfg.backend = backend_;
    export_ = std::make_unique<BlkExport>(std::move(cfg), std::vector<reactor::Reactor*>{reactor_.get()});
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    frontend_.Reset(sv[0]);
    session_ = std::make_unique<Session>(UniqueFd(sv[1]), export_.get());
    thread_ = std::thread([this] { session_->Run(); });
  }

  void TearDown() override {
    shutdown(frontend_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    session_.reset();
    export_.reset();
    EXPECT_TRUE(reactor_->Stop());
  }

  void Send(uint32_t request, const void* payload, uint32_t size, std::vector<int> fds = {},
            uint32_t flags = kVersion) {
    MsgHeader h{request, flags, size};
    iovec iov[2] = {{&h, sizeof(h)}, {const_cast<void*>(payload), size}};
    ASSERT_TRUE(SendWithFds(frontend_.get(), iov, size > 0 ? 2 : 1, fds).ok());
  }
  template <typename T>
  void Send(uint32_t request, const T& payload, std::vector<int> fds = {}, uint32_t flags = kVersion) {
    Send(request, &payload, sizeof(payload), std::move(fds), flags);
  }

  // The REPLY_ACK answer to a message sent with kFlagNeedReply: 0 success.
  uint64_t Ack(uint32_t request) {
    struct {
      MsgHeader h;
      uint64_t v;
    } __attribute__((packed)) reply{};
    EXPECT_EQ(recv(frontend_.get(), &reply, sizeof(reply), MSG_WAITALL), static_cast<ssize_t>(sizeof(reply)));
    EXPECT_EQ(reply.h.request, request);
    return reply.v;
  }

  // GET_VRING_BASE: stops the queue (its in-flight work drained) and
  // returns the next avail index.
  uint32_t GetVringBase(uint32_t index) {
    Send(kGetVringBase, VringState{index, 0});
    struct {
      MsgHeader h;
      VringState s;
    } reply{};
    EXPECT_EQ(recv(frontend_.get(), &reply, sizeof(reply), MSG_WAITALL), static_cast<ssize_t>(sizeof(reply)));
    EXPECT_EQ(reply.h.request, kGetVringBase);
    return reply.s.num;
  }

  static UniqueFd Memfd(uint64_t size) {
    UniqueFd fd(memfd_create("session-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
    return fd;
  }

  void Negotiate(uint64_t protocol_features) {
    uint64_t f = virtio::Bit(virtio::kFeatureVersion1) | virtio::Bit(kFeatureProtocolFeatures);
    Send(kSetFeatures, f);
    Send(kSetProtocolFeatures, protocol_features);
  }

  // Maps guest memory (gpa 0, all zero: empty rings) and starts queue
  // `index` with its rings at a per-queue offset.
  void StartQueue(uint32_t index, int guest_fd) {
    struct {
      MemTableHeader h;
      MemRegion r;
    } table{{1, 0}, {0, kGuestBytes, kUva, 0}};
    Send(kSetMemTable, table, {guest_fd});
    uint64_t base = 0x1000 * (index + 1);
    Send(kSetVringNum, VringState{index, kQueueSize});
    Send(kSetVringAddr, VringAddr{index, 0, kUva + base, kUva + base + 0x400, kUva + base + 0x200, 0});
    UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    Send(kSetVringKick, uint64_t{index}, {kick.get()});
    Send(kSetVringEnable, VringState{index, 1});
  }

  // GET_CONFIG of the capacity field: the capacity in sectors.
  uint64_t ConfigCapacity() {
    struct {
      ConfigHeader h;
      uint64_t capacity;
    } __attribute__((packed)) req{{0, 8, 0}, 0};
    struct {
      MsgHeader m;
      ConfigHeader h;
      uint64_t capacity;
    } __attribute__((packed)) reply{};
    Send(kGetConfig, req);
    EXPECT_EQ(recv(frontend_.get(), &reply, sizeof(reply), MSG_WAITALL), static_cast<ssize_t>(sizeof(reply)));
    const uint32_t size = reply.h.size;  // copies: packed fields may be misaligned
    const uint64_t capacity = reply.capacity;
    EXPECT_EQ(size, 8u);
    return capacity;
  }

  // Hands the session a backend channel; returns the frontend's end.
  UniqueFd GiveBackendChannel() {
    int ch[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch), 0);
    UniqueFd mine(ch[0]), theirs(ch[1]);
    Send(kSetBackendReqFd, nullptr, 0, {theirs.get()}, kVersion | kFlagNeedReply);
    EXPECT_EQ(Ack(kSetBackendReqFd), 0u);
    return mine;
  }

  // Reads one backend request header from ch, waiting at most 5 s.
  static bool ReadBackendRequest(int ch, MsgHeader* h) {
    pollfd p{ch, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    return recv(ch, h, sizeof(*h), MSG_WAITALL) == static_cast<ssize_t>(sizeof(*h));
  }

  std::unique_ptr<reactor::Reactor> reactor_;
  std::shared_ptr<ResizableBackend> backend_;
  std::unique_ptr<BlkExport> export_;
  std::unique_ptr<Session> session_;
  std::thread thread_;
  UniqueFd frontend_;
};

// SET_INFLIGHT_FD regions are laid out one InflightQueueBytes(queue_size)
// (64-byte aligned) part per queue, as libvhost-user and QEMU do, whatever
// mmap_size says beyond that: a region a few bytes larger than needed used
// to give queue 1 a misaligned part at mmap_size / num_queues.
TEST_F(SessionTest, InflightPartsFollowTheQueueSizeNotMmapSize) {
  Negotiate(virtio::Bit(kProtoInflightShmfd));
  const uint64_t part = virtio::InflightQueueBytes(kQueueSize);
  UniqueFd inflight = Memfd(4096);
  InflightDesc d{2 * part + 4, 0, 2, kQueueSize, 0};
  Send(kSetInflightFd, d, {inflight.get()});
  UniqueFd guest = Memfd(kGuestBytes);
  StartQueue(1, guest.get());
  EXPECT_EQ(GetVringBase(1), 0u);  // the queue ran its first poll (recovery)
  virtio::InflightQueue q1{};
  ASSERT_EQ(pread(inflight.get(), &q1, sizeof(q1), static_cast<off_t>(part)), static_cast<ssize_t>(sizeof(q1)));
  EXPECT_EQ(q1.version, 1);  // recovery initialised queue 1's part where the frontend expects it
  EXPECT_EQ(q1.desc_num, kQueueSize);
}

// Ring addresses are checked for alignment where the reactor will use
// them, in our mapping: a region whose userspace_addr (or mmap_offset) is
// not aligned like its pages turns aligned ring addresses into misaligned
// pointers (UB on every ring access; found by fuzz.vhost_session).
TEST_F(SessionTest, RingMisalignedInOurMappingIsRefused) {
  Negotiate(virtio::Bit(kProtoReplyAck));
  UniqueFd guest = Memfd(kGuestBytes);
  struct {
    MemTableHeader h;
    MemRegion r;
  } table{{1, 0}, {0, kGuestBytes - 1, kUva + 1, 0}};
  Send(kSetMemTable, table, {guest.get()});
  Send(kSetVringNum, VringState{0, kQueueSize});
  Send(kSetVringAddr, VringAddr{0, 0, kUva + 0x1000, kUva + 0x1400, kUva + 0x1200, 0});
  Send(kSetVringEnable, VringState{0, 1});
  UniqueFd kick(eventfd(0, EFD_CLOEXEC));
  Send(kSetVringKick, uint64_t{0}, {kick.get()}, kVersion | kFlagNeedReply);
  EXPECT_EQ(Ack(kSetVringKick), 1u);  // the queue did not start
  // The same rings in a region mapped at an aligned address start.
  table.r = {0, kGuestBytes, kUva, 0};
  Send(kSetMemTable, table, {guest.get()}, kVersion | kFlagNeedReply);
  EXPECT_EQ(Ack(kSetMemTable), 0u);
  Send(kSetVringKick, uint64_t{0}, {kick.get()}, kVersion | kFlagNeedReply);
  EXPECT_EQ(Ack(kSetVringKick), 0u);
  EXPECT_EQ(GetVringBase(0), 0u);
}

// Online resize with a backend channel: the session raises its capacity
// and sends CONFIG_CHANGE_MSG (NEED_REPLY with REPLY_ACK); while the ack
// is outstanding it still answers the main socket (QEMU re-reads the
// config there before it acks), and GET_CONFIG shows the new capacity.
TEST_F(SessionTest, GrowIsAnnouncedOnTheBackendChannel) {
  Negotiate(virtio::Bit(kProtoReplyAck) | virtio::Bit(kProtoBackendReq) | virtio::Bit(kProtoConfig));
  UniqueFd ch = GiveBackendChannel();
  EXPECT_EQ(ConfigCapacity(), kVolumeBytes / 512);
  EXPECT_EQ(session_->seen_capacity_sectors(), kVolumeBytes / 512);
  backend_->Resize(2 * kVolumeBytes);
  session_->NotifyCapacity();
  MsgHeader h{};
  ASSERT_TRUE(ReadBackendRequest(ch.get(), &h));
  EXPECT_EQ(h.request, kBackendConfigChangeMsg);
  EXPECT_EQ(h.flags, kVersion | kFlagNeedReply);
  EXPECT_EQ(h.size, 0u);
  EXPECT_EQ(session_->seen_capacity_sectors(), 2 * kVolumeBytes / 512);  // raised before it was announced
  EXPECT_EQ(ConfigCapacity(), 2 * kVolumeBytes / 512);                   // the ack is still outstanding
  struct {
    MsgHeader h;
    uint64_t v;
  } __attribute__((packed)) ack{{kBackendConfigChangeMsg, kVersion | kFlagReply, 8}, 0};
  ASSERT_EQ(send(ch.get(), &ack, sizeof(ack), 0), static_cast<ssize_t>(sizeof(ack)));
  // Nothing more is sent for a notification that brings nothing new.
  session_->NotifyCapacity();
  EXPECT_EQ(ConfigCapacity(), 2 * kVolumeBytes / 512);
  pollfd p{ch.get(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 100), 0);
}

// A frontend that never reads its backend channel nor acks stalls
// nothing: the notification is sent without blocking and the session goes
// on answering.
TEST_F(SessionTest, AFrontendThatNeverAcksDoesNotStallTheSession) {
  Negotiate(virtio::Bit(kProtoReplyAck) | virtio::Bit(kProtoBackendReq) | virtio::Bit(kProtoConfig));
  UniqueFd ch = GiveBackendChannel();
  for (uint64_t k = 2; k <= 4; ++k) {
    backend_->Resize(k * kVolumeBytes);
    session_->NotifyCapacity();
    EXPECT_EQ(ConfigCapacity(), k * kVolumeBytes / 512);
  }
  Send(kGetQueueNum, nullptr, 0);
  struct {
    MsgHeader h;
    uint64_t v;
  } __attribute__((packed)) reply{};
  EXPECT_EQ(recv(frontend_.get(), &reply, sizeof(reply), MSG_WAITALL), static_cast<ssize_t>(sizeof(reply)));
  const uint64_t queues = reply.v;
  EXPECT_EQ(queues, 2u);
}

// Without BACKEND_REQ (libnestor, older frontends) a grow reaches the
// frontend at its next GET_CONFIG; SET_BACKEND_REQ_FD is refused unless
// negotiated, and its fd must be a socket.
TEST_F(SessionTest, WithoutBackendChannelGrowShowsAtTheNextGetConfig) {
  Negotiate(virtio::Bit(kProtoReplyAck) | virtio::Bit(kProtoConfig));
  int ch[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ch), 0);
  UniqueFd a(ch[0]), b(ch[1]);
  Send(kSetBackendReqFd, nullptr, 0, {b.get()}, kVersion | kFlagNeedReply);
  EXPECT_EQ(Ack(kSetBackendReqFd), 1u);
  EXPECT_EQ(ConfigCapacity(), kVolumeBytes / 512);
  backend_->Resize(3 * kVolumeBytes);
  session_->NotifyCapacity();
  EXPECT_EQ(ConfigCapacity(), 3 * kVolumeBytes / 512);
  EXPECT_EQ(session_->seen_capacity_sectors(), 3 * kVolumeBytes / 512);
}

TEST_F(SessionTest, BackendChannelMustBeAStreamSocket) {
  Negotiate(virtio::Bit(kProtoReplyAck) | virtio::Bit(kProtoBackendReq));
  UniqueFd efd(eventfd(0, EFD_CLOEXEC));
  Send(kSetBackendReqFd, nullptr, 0, {efd.get()}, kVersion | kFlagNeedReply);
  EXPECT_EQ(Ack(kSetBackendReqFd), 1u);
}

}  // namespace
}  // namespace nestor::vhost
