// SendWithFds/RecvWithFds over a socketpair: bytes and fds arrive
// together, fds beyond the receiver's room are reported (and none leak),
// a closed peer reads as 0 bytes.
#include "base/scm_rights.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace nestor {
namespace {

TEST(ScmRights, BytesAndFdsArriveTogether) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  UniqueFd e1(eventfd(7, EFD_CLOEXEC)), e2(eventfd(9, EFD_CLOEXEC));
  const char head[] = "hdr", body[] = "payload";
  iovec iov[2] = {{const_cast<char*>(head), 3}, {const_cast<char*>(body), 7}};
  int fds[2] = {e1.get(), e2.get()};
  ASSERT_TRUE(SendWithFds(a.get(), iov, 2, fds).ok());
  char buf[10] = {};
  std::vector<UniqueFd> got;
  bool truncated = true;
  auto n = RecvWithFds(b.get(), buf, sizeof(buf), MSG_WAITALL, 4, &got, &truncated);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
  EXPECT_EQ(std::memcmp(buf, "hdrpayload", 10), 0);
  EXPECT_FALSE(truncated);
  ASSERT_EQ(got.size(), 2u);
  uint64_t v = 0;
  ASSERT_EQ(read(got[1].get(), &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
  EXPECT_EQ(v, 9u);  // the second fd is the second eventfd
}

TEST(ScmRights, TooManyFdsAreReportedAndClosedPeerReadsZero) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::vector<UniqueFd> keep;
  std::vector<int> fds;
  for (int i = 0; i < 6; ++i) {
    keep.emplace_back(eventfd(0, EFD_CLOEXEC));
    fds.push_back(keep.back().get());
  }
  char x = 'x';
  iovec iov{&x, 1};
  ASSERT_TRUE(SendWithFds(a.get(), &iov, 1, fds).ok());
  char buf[1];
  std::vector<UniqueFd> got;
  bool truncated = false;
  auto n = RecvWithFds(b.get(), buf, 1, 0, 2, &got, &truncated);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_TRUE(truncated);
  EXPECT_LE(got.size(), 2u);
  a.Reset();
  n = RecvWithFds(b.get(), buf, 1, 0, 2, &got, &truncated);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

}  // namespace
}  // namespace nestor
