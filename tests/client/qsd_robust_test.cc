// libnestor robustness against qemu-storage-daemon 7.2: a backend killed
// mid-I/O, polled queues without a call fd, connect errors, reconnect.
// Every wait here is bounded; a hang is a failure by ctest timeout.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "nestor/client.hpp"
#include "qsd_process.h"

namespace nestor::client {
namespace {

using testing::Qsd;
using Clock = std::chrono::steady_clock;

constexpr const char* kNull = "driver=null-co,node-name=n0,size=1073741824,read-zeroes=on";

Options Opts(const std::string& sock, bool polled) {
  Options o;
  o.socket_path = sock;
  o.polled = polled;
  o.timeout_ms = 3000;
  o.buffer_bytes = 4 << 20;
  return o;
}

// Keeps qd reads in flight until an error; returns the first error seen.
int ReadUntilError(Queue& q, void* buf, std::atomic<bool>& started) {
  Request r;
  r.op = Op::kRead;
  r.len = 4096;
  r.buf = buf;
  Completion c[8];
  for (;;) {
    while (q.inflight() < 8) {
      int rc = q.Submit(r);
      if (rc < 0) return rc;
    }
    started = true;
    int n = q.Wait(c, 1, 8, 10000);
    if (n < 0) return n;
    for (int i = 0; i < n; ++i)
      if (c[i].result != 0) return c[i].result;
  }
}

class QsdRobust : public ::testing::TestWithParam<bool> {};

TEST_P(QsdRobust, BackendKilledDuringIoFailsCleanly) {
  std::string err;
  auto qsd = Qsd::Launch(kNull, 1, &err);
  ASSERT_TRUE(qsd) << err;
  auto dev = Device::Connect(Opts(qsd->socket(), GetParam()));
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  void* buf = (*dev)->AllocBuffer(4096);
  std::atomic<bool> started{false};
  int result = 0;
  std::thread io([&] { result = ReadUntilError((*dev)->queue(0), buf, started); });
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto t0 = Clock::now();
  qsd->Stop(SIGKILL);
  io.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(result, -ENOTCONN);
  EXPECT_FALSE((*dev)->connected());
  std::vector<uint8_t> b(4096);
  EXPECT_EQ((*dev)->queue(0).Read(0, b.data(), b.size()).err(), ENOTCONN);
  (*dev)->Close();  // no hang on a dead socket
}

TEST_P(QsdRobust, CloseThenReconnect) {
  std::string err;
  auto qsd = Qsd::Launch(kNull, 2, &err);
  ASSERT_TRUE(qsd) << err;
  for (int round = 0; round < 3; ++round) {
    Options o = Opts(qsd->socket(), GetParam());
    o.num_queues = 2;
    auto dev = Device::Connect(o);
    ASSERT_TRUE(dev.ok()) << "round " << round << ": " << dev.status().ToString();
    std::vector<uint8_t> b(65536);
    ASSERT_TRUE((*dev)->queue(round % 2).Read(4096 * round, b.data(), b.size()).ok());
    (*dev)->Close();
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, QsdRobust, ::testing::Bool(),
                         [](const auto& info) { return std::string(info.param ? "Polled" : "Blocking"); });

// A polled queue announced with SET_VRING_CALL's no-fd bit. Without
// EVENT_IDX, NO_INTERRUPT keeps qsd 7.2 from signalling and I/O works.
// With EVENT_IDX, libvhost-user 7.2 always signals the first completion
// and panics ("Error writing eventfd: Bad file descriptor"): the client
// must then fail with an error, not hang.
TEST(QsdNoCallFd, WorksWithoutEventIdx) {
  std::string err;
  auto qsd = Qsd::Launch(kNull, 1, &err);
  ASSERT_TRUE(qsd) << err;
  Options o = Opts(qsd->socket(), true);
  o.call_fd_when_polled = false;
  o.event_idx = false;
  auto dev = Device::Connect(o);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  std::vector<uint8_t> b(1 << 20);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE((*dev)->queue(0).Read(0, b.data(), b.size()).ok()) << i;
}

TEST(QsdNoCallFd, EventIdxMakesQsdPanicAndClientFailsCleanly) {
  std::string err;
  auto qsd = Qsd::Launch(kNull, 1, &err);
  ASSERT_TRUE(qsd) << err;
  Options o = Opts(qsd->socket(), true);
  o.call_fd_when_polled = false;
  auto dev = Device::Connect(o);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  std::vector<uint8_t> b(4096);
  Status st;
  for (int i = 0; i < 20 && st.ok(); ++i) st = (*dev)->queue(0).Read(0, b.data(), b.size());
  std::printf("qsd 7.2, polled queue without call fd, EVENT_IDX: %s; qsd log: %s\n", st.ToString().c_str(),
              qsd->Log().c_str());
  if (!st.ok()) {
    EXPECT_EQ(st.err(), ENOTCONN) << st.ToString();
    EXPECT_NE(qsd->Log().find("Error writing eventfd"), std::string::npos);
  }
}

TEST(QsdConnect, Errors) {
  Options o;
  o.socket_path = "/nonexistent/nestor.sock";
  auto d = Device::Connect(o);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().err(), ENOENT) << d.status().ToString();

  std::string err;
  auto qsd = Qsd::Launch(kNull, 2, &err);
  ASSERT_TRUE(qsd) << err;
  o = Opts(qsd->socket(), true);
  o.num_queues = 3;
  d = Device::Connect(o);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().err(), EINVAL) << d.status().ToString();
  o.num_queues = 1;
  o.queue_size = 100;
  d = Device::Connect(o);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().err(), EINVAL);
  o.queue_size = 256;
  d = Device::Connect(o);  // qsd still serves after the failed attempts
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  std::vector<uint8_t> b(4096);
  EXPECT_TRUE((*d)->queue(0).Read(0, b.data(), b.size()).ok());
}

}  // namespace
}  // namespace nestor::client
