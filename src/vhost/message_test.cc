#include "vhost/message.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace nestor::vhost {
namespace {

class MessageTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv_), 0); }
  void TearDown() override {
    close(sv_[0]);
    if (sv_[1] >= 0) close(sv_[1]);
  }
  // Sends a raw frame with nfds copies of a pipe fd attached.
  void SendRaw(const MsgHeader& h, const void* payload, size_t len, int nfds) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    std::vector<uint8_t> buf(sizeof(h) + len);
    std::memcpy(buf.data(), &h, sizeof(h));
    if (len) std::memcpy(buf.data() + sizeof(h), payload, len);
    iovec iov{buf.data(), buf.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * (nfds ? nfds : 1)));
    if (nfds > 0) {
      mh.msg_control = control.data();
      mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      for (int i = 0; i < nfds; ++i) std::memcpy(CMSG_DATA(c) + i * sizeof(int), &p[0], sizeof(int));
    }
    ASSERT_EQ(sendmsg(sv_[1], &mh, 0), static_cast<ssize_t>(buf.size()));
    close(p[0]);
    close(p[1]);
  }
  static int OpenFds() {
    int n = 0;
    for (int fd = 0; fd < 1024; ++fd) n += fcntl(fd, F_GETFD) >= 0;
    return n;
  }
  int sv_[2] = {-1, -1};
  Message m_;
};

TEST_F(MessageTest, DecodesHeaderPayloadAndFds) {
  VringState s{1, 256};
  SendRaw(MsgHeader{kSetVringNum, kVersion | kFlagNeedReply, sizeof(s)}, &s, sizeof(s), 2);
  ASSERT_TRUE(ReadMessage(sv_[0], &m_).ok());
  EXPECT_EQ(m_.hdr.request, kSetVringNum);
  EXPECT_TRUE(m_.need_reply());
  EXPECT_TRUE(m_.PayloadIs<VringState>());
  EXPECT_EQ(m_.As<VringState>().num, 256u);
  EXPECT_EQ(m_.fds.size(), 2u);
}

TEST_F(MessageTest, RejectsBadVersion) {
  SendRaw(MsgHeader{kGetFeatures, 2, 0}, nullptr, 0, 0);
  EXPECT_FALSE(ReadMessage(sv_[0], &m_).ok());
}

TEST_F(MessageTest, RejectsOversizePayloadWithoutReadingIt) {
  SendRaw(MsgHeader{kSetMemTable, kVersion, 1 << 20}, nullptr, 0, 0);
  Status st = ReadMessage(sv_[0], &m_);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("too large"), std::string::npos);
}

TEST_F(MessageTest, FdFloodIsRejectedAndEveryFdClosed) {
  int before = OpenFds();
  SendRaw(MsgHeader{kSetMemTable, kVersion, 0}, nullptr, 0, 20);
  EXPECT_FALSE(ReadMessage(sv_[0], &m_).ok());
  m_.fds.clear();
  EXPECT_EQ(OpenFds(), before);
}

TEST_F(MessageTest, TruncatedHeaderThenEof) {
  uint32_t half = kGetFeatures;
  ASSERT_EQ(send(sv_[1], &half, sizeof(half), 0), 4);
  close(sv_[1]);
  sv_[1] = -1;
  EXPECT_FALSE(ReadMessage(sv_[0], &m_).ok());
}

TEST_F(MessageTest, TruncatedPayloadThenEof) {
  MsgHeader h{kSetFeatures, kVersion, 8};
  ASSERT_EQ(send(sv_[1], &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
  ASSERT_EQ(send(sv_[1], "abc", 3, 0), 3);
  close(sv_[1]);
  sv_[1] = -1;
  Status st = ReadMessage(sv_[0], &m_);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.err(), ECONNRESET);
}

TEST_F(MessageTest, ReplyHasReplyFlagOnly) {
  ASSERT_TRUE(SendU64Reply(sv_[0], kGetFeatures, 0x1234).ok());
  struct {
    MsgHeader h;
    uint64_t v;
  } __attribute__((packed)) r;
  ASSERT_EQ(recv(sv_[1], &r, sizeof(r), MSG_WAITALL), static_cast<ssize_t>(sizeof(r)));
  // Copies: the fields of a packed struct may be misaligned for a reference.
  const uint32_t request = r.h.request, flags = r.h.flags, size = r.h.size;
  const uint64_t v = r.v;
  EXPECT_EQ(request, kGetFeatures);
  EXPECT_EQ(flags, 0x5u);  // QEMU checks this exactly: version 1 | REPLY
  EXPECT_EQ(size, 8u);
  EXPECT_EQ(v, 0x1234u);
}

// Backend channel: CONFIG_CHANGE_MSG is a bare header, version 1, with
// NEED_REPLY only when an ack is wanted (QEMU acks it then).
TEST_F(MessageTest, BackendRequestEncoding) {
  ASSERT_TRUE(SendBackendRequest(sv_[0], kBackendConfigChangeMsg, true).ok());
  ASSERT_TRUE(SendBackendRequest(sv_[0], kBackendConfigChangeMsg, false).ok());
  MsgHeader h[2];
  ASSERT_EQ(recv(sv_[1], h, sizeof(h), MSG_WAITALL), static_cast<ssize_t>(sizeof(h)));
  EXPECT_EQ(h[0].request, 2u);
  EXPECT_EQ(h[0].flags, 0x9u);  // version 1 | NEED_REPLY
  EXPECT_EQ(h[0].size, 0u);
  EXPECT_EQ(h[1].request, 2u);
  EXPECT_EQ(h[1].flags, 0x1u);
  EXPECT_EQ(h[1].size, 0u);
}

// A frontend that does not read: the send fails at once with EAGAIN
// (nothing half-sent), it never waits.
TEST_F(MessageTest, BackendRequestNeverBlocksOnAFullChannel) {
  int small = 4096;
  ASSERT_EQ(setsockopt(sv_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  Status st;
  int sent = 0;
  while ((st = SendBackendRequest(sv_[0], kBackendConfigChangeMsg, true)).ok()) ASSERT_LT(++sent, 1 << 20);
  EXPECT_EQ(st.err(), EAGAIN);
  EXPECT_GT(sent, 0);
  // Every request that went out is whole.
  MsgHeader h;
  for (int i = 0; i < sent; ++i) {
    ASSERT_EQ(recv(sv_[1], &h, sizeof(h), MSG_WAITALL), static_cast<ssize_t>(sizeof(h)));
    ASSERT_EQ(h.request, 2u);
  }
}

// Replies arrive in pieces; a frame that is not a reply is refused.
TEST_F(MessageTest, BackendReplyReaderReassemblesAndChecks) {
  struct {
    MsgHeader h;
    uint64_t v;
  } __attribute__((packed)) r{{kBackendConfigChangeMsg, kVersion | kFlagReply, 8}, 7};
  const auto* bytes = reinterpret_cast<const char*>(&r);
  BackendReplyReader reader;
  BackendReply got;
  ASSERT_EQ(send(sv_[1], bytes, 5, 0), 5);
  ASSERT_TRUE(reader.ReadAvailable(sv_[0]).ok());
  EXPECT_FALSE(reader.Next(&got));
  ASSERT_EQ(send(sv_[1], bytes + 5, sizeof(r) - 5, 0), static_cast<ssize_t>(sizeof(r) - 5));
  ASSERT_TRUE(reader.ReadAvailable(sv_[0]).ok());
  ASSERT_TRUE(reader.Next(&got));
  EXPECT_EQ(got.request, 2u);
  EXPECT_EQ(got.value, 7u);
  EXPECT_FALSE(reader.Next(&got));
  ASSERT_TRUE(reader.ReadAvailable(sv_[0]).ok());  // nothing there: fine, no wait
  MsgHeader not_reply{kBackendConfigChangeMsg, kVersion | kFlagNeedReply, 0};
  ASSERT_EQ(send(sv_[1], &not_reply, sizeof(not_reply), 0), static_cast<ssize_t>(sizeof(not_reply)));
  EXPECT_EQ(reader.ReadAvailable(sv_[0]).err(), EPROTO);
  close(sv_[1]);
  sv_[1] = -1;
  BackendReplyReader fresh;
  EXPECT_EQ(fresh.ReadAvailable(sv_[0]).err(), ECONNRESET);
}

}  // namespace
}  // namespace nestor::vhost
