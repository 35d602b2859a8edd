// Device::Connect against a scripted in-process vhost-user backend: the
// handshake a correct backend sees, and every way a hostile or broken
// backend can answer (silence, hang-up, bad flags, wrong code or size,
// missing features, nack). Each must fail with an error within the
// timeout, never crash or hang.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "nestor/client.hpp"
#include "vhost/wire.h"
#include "virtio/blk_defs.h"
#include "virtio/ring_layout.h"

namespace nestor::client {
namespace {

using virtio::Bit;

struct Reply {
  uint32_t request;
  uint32_t flags = vhost::kVersion | vhost::kFlagReply;
  std::vector<uint8_t> payload;
};

template <typename T>
std::vector<uint8_t> Bytes(const T& v) {
  std::vector<uint8_t> b(sizeof(T));
  std::memcpy(b.data(), &v, sizeof(T));
  return b;
}

// What a fault hook returns: nullopt = default behaviour.
enum class Act { kReply, kSilent, kClose };
struct Fault {
  Act act = Act::kReply;
  std::optional<Reply> reply;
};

class FakeBackend {
 public:
  std::function<std::optional<Fault>(uint32_t request)> fault;
  std::vector<uint32_t> seen;  // request codes, in order (read after Join)
  uint64_t features = Bit(virtio::kFeatureVersion1) | Bit(vhost::kFeatureProtocolFeatures) | Bit(virtio::kBlkFFlush) |
                      Bit(virtio::kBlkFMq) | Bit(virtio::kFeatureEventIdx);
  uint64_t protocol = Bit(vhost::kProtoReplyAck) | Bit(vhost::kProtoConfig) | Bit(vhost::kProtoMq);

  FakeBackend() {
    char tmpl[] = "/tmp/nestor-fake.XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/sock";
    listen_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path_.c_str());
    EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(listen_.get(), 1), 0);
  }
  ~FakeBackend() {
    Join();
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }
  void Run() {
    thread_ = std::thread([this] { Serve(); });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool ReadFull(int fd, void* p, size_t n) {
    auto* b = static_cast<uint8_t*>(p);
    while (n) {
      ssize_t r = recv(fd, b, n, 0);
      if (r <= 0) return false;
      b += r;
      n -= size_t(r);
    }
    return true;
  }
  void Send(int fd, const Reply& r) {
    vhost::MsgHeader h{r.request, r.flags, static_cast<uint32_t>(r.payload.size())};
    std::vector<uint8_t> out = Bytes(h);
    out.insert(out.end(), r.payload.begin(), r.payload.end());
    ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    (void)n;
  }
  std::optional<Reply> Default(uint32_t req, uint32_t flags, const std::vector<uint8_t>& payload) {
    switch (req) {
      case vhost::kGetFeatures: return Reply{req, vhost::kVersion | vhost::kFlagReply, Bytes(features)};
      case vhost::kGetProtocolFeatures: return Reply{req, vhost::kVersion | vhost::kFlagReply, Bytes(protocol)};
      case vhost::kGetQueueNum: return Reply{req, vhost::kVersion | vhost::kFlagReply, Bytes(uint64_t{2})};
      case vhost::kGetMaxMemSlots: return Reply{req, vhost::kVersion | vhost::kFlagReply, Bytes(uint64_t{8})};
      case vhost::kGetConfig: {
        std::vector<uint8_t> p = payload;
        virtio::BlkConfig c{};
        c.capacity = 2048;
        if (p.size() < sizeof(vhost::ConfigHeader) + 8) return Reply{req, vhost::kVersion | vhost::kFlagReply, {}};
        const size_t n = std::min(p.size() - sizeof(vhost::ConfigHeader), sizeof(c));
        std::memcpy(&p[sizeof(vhost::ConfigHeader)], &c, n);
        return Reply{req, vhost::kVersion | vhost::kFlagReply, p};
      }
      case vhost::kGetVringBase: return Reply{req, vhost::kVersion | vhost::kFlagReply, payload};
      default:
        if (flags & vhost::kFlagNeedReply) return Reply{req, vhost::kVersion | vhost::kFlagReply, Bytes(uint64_t{0})};
        return std::nullopt;
    }
  }
  void Serve() {
    UniqueFd c(accept(listen_.get(), nullptr, nullptr));
    for (;;) {
      vhost::MsgHeader h;
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
      iovec iov{&h, sizeof(h)};
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = control;
      m.msg_controllen = sizeof(control);
      if (recvmsg(c.get(), &m, 0) != sizeof(h)) return;
      for (cmsghdr* cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
          close(fd);
        }
      }
      std::vector<uint8_t> payload(h.size);
      if (h.size && !ReadFull(c.get(), payload.data(), h.size)) return;
      seen.push_back(h.request);
      std::optional<Fault> f = fault ? fault(h.request) : std::nullopt;
      if (f && f->act == Act::kClose) return;
      if (f && f->act == Act::kSilent) {
        char b;
        while (recv(c.get(), &b, 1, 0) > 0) {
        }
        return;
      }
      std::optional<Reply> r = f && f->reply ? f->reply : Default(h.request, h.flags, payload);
      if (r) Send(c.get(), *r);
    }
  }

  std::string dir_, path_;
  UniqueFd listen_;
  std::thread thread_;
};

Result<std::unique_ptr<Device>> ConnectTo(FakeBackend& b, uint32_t queues = 1) {
  Options o;
  o.socket_path = b.path();
  o.num_queues = queues;
  o.timeout_ms = 300;
  o.buffer_bytes = 1 << 20;
  o.populate = false;
  return Device::Connect(o);
}

TEST(DeviceHandshake, FollowsTheFrontendSequence) {
  FakeBackend b;
  b.Run();
  auto d = ConnectTo(b, 2);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)->info().capacity_bytes, 2048u * 512);
  EXPECT_TRUE((*d)->info().flush);
  EXPECT_TRUE((*d)->info().event_idx);
  EXPECT_EQ((*d)->num_queues(), 2u);
  (*d)->Close();
  b.Join();
  using namespace vhost;
  std::vector<uint32_t> want = {kSetOwner,    kGetFeatures, kGetProtocolFeatures, kSetProtocolFeatures,
                                kGetQueueNum, kSetFeatures, kGetConfig,           kSetMemTable};
  for (uint32_t q = 0; q < 2; ++q) {
    for (uint32_t r : {kSetVringNum, kSetVringBase, kSetVringAddr, kSetVringKick, kSetVringCall, kSetVringEnable})
      want.push_back(r);
  }
  want.push_back(kGetVringBase);
  want.push_back(kGetVringBase);
  EXPECT_EQ(b.seen, want);
}

TEST(DeviceHandshake, UsesAddMemRegWithConfigureMemSlots) {
  FakeBackend b;
  b.protocol |= Bit(vhost::kProtoConfigureMemSlots);
  b.Run();
  auto d = ConnectTo(b);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  (*d)->Close();
  b.Join();
  auto has = [&](uint32_t r) { return std::find(b.seen.begin(), b.seen.end(), r) != b.seen.end(); };
  EXPECT_TRUE(has(vhost::kGetMaxMemSlots));
  EXPECT_TRUE(has(vhost::kAddMemReg));
  EXPECT_FALSE(has(vhost::kSetMemTable));
}

struct Case {
  const char* name;
  uint32_t request;
  Fault fault;
  int err;
};

class DeviceHostile : public ::testing::TestWithParam<Case> {};

TEST_P(DeviceHostile, FailsCleanly) {
  FakeBackend b;
  const Case& c = GetParam();
  b.fault = [&c](uint32_t req) -> std::optional<Fault> {
    if (req == c.request) return c.fault;
    return std::nullopt;
  };
  b.Run();
  auto t0 = std::chrono::steady_clock::now();
  auto d = ConnectTo(b);
  EXPECT_FALSE(d.ok());
  EXPECT_EQ(d.status().err(), c.err) << d.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

Reply R(uint32_t req, std::vector<uint8_t> p, uint32_t flags = vhost::kVersion | vhost::kFlagReply) {
  return Reply{req, flags, std::move(p)};
}

const Case kCases[] = {
    {"Silent", vhost::kGetFeatures, {Act::kSilent, {}}, ETIMEDOUT},
    {"HangUp", vhost::kGetFeatures, {Act::kClose, {}}, ENOTCONN},
    {"HangUpOnMemTable", vhost::kSetMemTable, {Act::kClose, {}}, ENOTCONN},
    {"NoReplyFlag", vhost::kGetFeatures, {Act::kReply, R(vhost::kGetFeatures, Bytes(~0ull), vhost::kVersion)}, EPROTO},
    {"WrongVersion",
     vhost::kGetFeatures,
     {Act::kReply, R(vhost::kGetFeatures, Bytes(~0ull), 2 | vhost::kFlagReply)},
     EPROTO},
    {"WrongCode", vhost::kGetFeatures, {Act::kReply, R(vhost::kGetProtocolFeatures, Bytes(~0ull))}, EPROTO},
    {"ShortReply", vhost::kGetFeatures, {Act::kReply, R(vhost::kGetFeatures, Bytes(uint32_t{1}))}, EPROTO},
    {"HugeReply", vhost::kGetFeatures, {Act::kReply, R(vhost::kGetFeatures, std::vector<uint8_t>(100000))}, EPROTO},
    {"NoProtocolFeatures",
     vhost::kGetFeatures,
     {Act::kReply, R(vhost::kGetFeatures, Bytes(Bit(virtio::kFeatureVersion1)))},
     ENOTSUP},
    {"NoVersion1",
     vhost::kGetFeatures,
     {Act::kReply, R(vhost::kGetFeatures, Bytes(Bit(vhost::kFeatureProtocolFeatures)))},
     ENOTSUP},
    {"NoConfig",
     vhost::kGetProtocolFeatures,
     {Act::kReply, R(vhost::kGetProtocolFeatures, Bytes(uint64_t{0}))},
     ENOTSUP},
    {"ZeroQueues", vhost::kGetQueueNum, {Act::kReply, R(vhost::kGetQueueNum, Bytes(uint64_t{0}))}, EPROTO},
    {"EmptyConfig", vhost::kGetConfig, {Act::kReply, R(vhost::kGetConfig, {})}, EPROTO},
    {"NackMemTable", vhost::kSetMemTable, {Act::kReply, R(vhost::kSetMemTable, Bytes(uint64_t{1}))}, EIO},
    {"NackVringAddr", vhost::kSetVringAddr, {Act::kReply, R(vhost::kSetVringAddr, Bytes(uint64_t{22}))}, EIO},
    {"SilentOnKick", vhost::kSetVringKick, {Act::kSilent, {}}, ETIMEDOUT},
};

INSTANTIATE_TEST_SUITE_P(Cases, DeviceHostile, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(DeviceHostile, HugeCapacityRejected) {
  FakeBackend b;
  b.fault = [](uint32_t req) -> std::optional<Fault> {
    if (req != vhost::kGetConfig) return std::nullopt;
    struct {
      vhost::ConfigHeader h{0, 60, 0};
      uint8_t bytes[60] = {};
    } p;
    uint64_t cap = ~0ull;
    std::memcpy(p.bytes, &cap, 8);
    return Fault{Act::kReply, R(vhost::kGetConfig, Bytes(p))};
  };
  b.Run();
  auto d = ConnectTo(b);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().err(), EPROTO);
}

}  // namespace
}  // namespace nestor::client
