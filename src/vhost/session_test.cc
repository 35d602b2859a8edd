// Unit tests for vhost::Session, driven over a socketpair by a minimal
// frontend (the test), as BlkExport hands a connection to a session: one
// export of a memory volume with two queues, one reactor.
#include "vhost/session.h"

#include <gtest/gtest.h>
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
    auto backend = io::OpenMemBackend(1 << 20);
    ASSERT_TRUE(backend.ok());
    cfg.backend = std::move(backend.value());
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

  std::unique_ptr<reactor::Reactor> reactor_;
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

}  // namespace
}  // namespace nestor::vhost
