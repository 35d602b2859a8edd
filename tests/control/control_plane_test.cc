// The control plane against a real nestord with a pool, through the real
// control socket: volumes created, exported, limited, observed and deleted
// while another volume serves I/O (which must keep completing), exports and
// their settings back after a restart, a forced delete disconnecting a
// connected client while nestord stays healthy, the socket's permissions,
// runtime QoS, and the Prometheus endpoint.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "../common/rpc_client.h"
#include "../daemon/nestord_process.h"
#include "base/clock.h"
#include "base/sanitizers.h"
#include "nestor/client.hpp"
#include "volume/pool.h"

namespace nestor::testing {
namespace {

using Json = nlohmann::json;
using client::Device;

class ControlPlane : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = d_.dir() + "/pool.img";
    {
      auto dev = volume::OpenFilePoolDevice(pool_, true, 256ull << 20);
      ASSERT_TRUE(dev.ok());
      ASSERT_TRUE(volume::Pool::Format(dev->get(), 64 << 10, false).ok());
    }
    Start();
  }
  void Start() {
    unlink((d_.dir() + "/control.ctl").c_str());
    std::string err;
    ASSERT_TRUE(
        d_.Start({"--pool", pool_, "--reactors", "2", "--metrics-port", std::to_string(port_)}, {"control.ctl"}, &err))
        << err;
    rpc_ = std::make_unique<Rpc>(d_.dir() + "/control.ctl");
    ASSERT_TRUE(rpc_->ok());
  }
  void TearDown() override {
    if (::testing::Test::HasFailure()) std::cerr << "---- nestord log ----\n" << d_.Log();
  }
  std::unique_ptr<Device> Connect(const std::string& volume, int timeout_ms = 10000, uint32_t queues = 1) {
    client::Options o;
    o.num_queues = queues;
    o.socket_path = d_.dir() + "/" + volume + ".sock";
    o.polled = false;
    o.buffer_bytes = 4 << 20;
    o.timeout_ms = timeout_ms;
    auto dev = Device::Connect(o);
    EXPECT_TRUE(dev.ok()) << dev.status().message();
    return dev.ok() ? std::move(dev.value()) : nullptr;
  }

  NestordProcess d_;
  std::string pool_;
  std::unique_ptr<Rpc> rpc_;
  int port_ = 19000 + getpid() % 10000;
};

TEST_F(ControlPlane, VolumeLifecycleDoesNotStallAnotherVolume) {
  rpc_->Ok("volume_create", {{"name", "busy"}, {"size", 64 << 20}});
  rpc_->Ok("export_create", {{"name", "busy"}});
  auto dev = Connect("busy");
  ASSERT_NE(dev, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> done{0}, errors{0}, max_gap_ns{0};
  std::thread io([&] {
    auto* buf = static_cast<uint8_t*>(dev->AllocBuffer(4096));
    uint64_t last = NowNs();
    for (uint64_t i = 0; !stop.load(); ++i) {
      std::memset(buf, static_cast<int>(i), 4096);
      Status st = (i % 2) ? dev->queue(0).Read((i * 4096) % (32 << 20), buf, 4096)
                          : dev->queue(0).Write((i * 4096) % (32 << 20), buf, 4096);
      if (!st.ok()) errors.fetch_add(1);
      uint64_t now = NowNs();
      if (now - last > max_gap_ns.load()) max_gap_ns.store(now - last);
      last = now;
      done.fetch_add(1);
    }
    dev->FreeBuffer(buf);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  uint64_t before = done.load();
  max_gap_ns.store(0);
  int windows_with_io = 0;
  const int kRounds = 8;
  for (int i = 0; i < kRounds; ++i) {
    std::string n = "tmp" + std::to_string(i);
    uint64_t at = done.load();
    rpc_->Ok("volume_create", {{"name", n}, {"size", 32 << 20}});
    rpc_->Ok("export_create", {{"name", n}, {"queues", 2}});
    {
      auto other = Connect(n, 10000, 2);
      ASSERT_NE(other, nullptr);
      auto* b = static_cast<uint8_t*>(other->AllocBuffer(1 << 20));
      std::memset(b, 0x5A, 1 << 20);
      ASSERT_TRUE(other->queue(1).Write(0, b, 1 << 20).ok());
      ASSERT_TRUE(other->queue(0).Flush().ok());
      other->FreeBuffer(b);
    }
    rpc_->Ok("export_delete", {{"name", n}});
    rpc_->Ok("volume_delete", {{"name", n}});
    windows_with_io += done.load() > at;
  }
  uint64_t during = done.load() - before;
  stop = true;
  io.join();
  std::cout << "I/O on 'busy' during " << kRounds << " create/export/write/delete rounds: " << during
            << " requests, longest gap " << max_gap_ns.load() / 1000 << " us, rounds with I/O " << windows_with_io
            << "/" << kRounds << "\n";
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_EQ(windows_with_io, kRounds) << "I/O on another volume stopped during a control operation";
  EXPECT_LT(max_gap_ns.load(), 1'000'000'000u) << "I/O on another volume stalled for a second or more";
  EXPECT_EQ(rpc_->Ok("volume_list").size(), 1u);
}

TEST_F(ControlPlane, ExportsAndSettingsComeBackAfterRestart) {
  rpc_->Ok("volume_create", {{"name", "db"}, {"size", 16 << 20}});
  rpc_->Ok("volume_create", {{"name", "logs"}, {"size", 16 << 20}, {"preallocate", true}});
  rpc_->Ok("volume_create", {{"name", "cold"}, {"size", 16 << 20}});
  rpc_->Ok("export_create", {{"name", "db"}, {"queues", 2}, {"qos", {{"write_iops", 7000}}}});
  rpc_->Ok("export_create", {{"name", "logs"}, {"readonly", true}});
  rpc_->Ok("qos_set", {{"name", "logs"}, {"read_bps", 50 << 20}});
  EXPECT_EQ(rpc_->Err("export_create", {{"name", "db"}}), "EEXIST");
  EXPECT_EQ(rpc_->Err("export_create", {{"name", "nope"}}), "ENOENT");
  EXPECT_EQ(rpc_->Err("volume_create", {{"name", "db"}, {"size", 4096}}), "EEXIST");
  EXPECT_EQ(rpc_->Err("volume_create", {{"name", "huge"}, {"size", 1ull << 40}, {"preallocate", true}}), "ENOSPC");
  EXPECT_EQ(rpc_->Err("volume_create", {{"name", "x"}}), "EINVAL");
  // Issue #10: a size past the limit is refused here too (and the restart
  // below shows the pool still opens).
  EXPECT_EQ(rpc_->Err("volume_create", {{"name", "big"}, {"size", 18446744073709547520ull}}), "EINVAL");
  EXPECT_EQ(rpc_->Err("volume_resize", {{"name", "cold"}, {"size", 18446744073709547520ull}}), "EINVAL");
  {
    auto dev = Connect("db");
    ASSERT_NE(dev, nullptr);
    auto* b = static_cast<uint8_t*>(dev->AllocBuffer(65536));
    std::memset(b, 0xD8, 65536);
    ASSERT_TRUE(dev->queue(0).Write(65536, b, 65536).ok());
    ASSERT_TRUE(dev->queue(0).Flush().ok());
    dev->FreeBuffer(b);
  }
  rpc_.reset();
  ASSERT_TRUE(d_.Stop()) << d_.Log();
  Start();
  Json exports = rpc_->Ok("export_list");
  ASSERT_EQ(exports.size(), 2u) << exports.dump();
  for (const Json& e : exports) {
    EXPECT_TRUE(e["persistent"].get<bool>());
    if (e["name"] == "db") {
      EXPECT_EQ(e["queues"], 2);
      EXPECT_FALSE(e["readonly"].get<bool>());
      EXPECT_EQ(e["qos"]["write_iops"], 7000);
    } else {
      EXPECT_EQ(e["name"], "logs");
      EXPECT_TRUE(e["readonly"].get<bool>());
      EXPECT_EQ(e["qos"]["read_bps"], 50 << 20);
    }
  }
  auto dev = Connect("db");
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->num_queues(), 1u);  // asked for 1 of the 2 offered
  EXPECT_EQ(dev->info().max_queues, 2u);
  auto* b = static_cast<uint8_t*>(dev->AllocBuffer(65536));
  ASSERT_TRUE(dev->queue(0).Read(65536, b, 65536).ok());
  EXPECT_EQ(b[0], 0xD8);
  EXPECT_EQ(b[65535], 0xD8);
  dev->FreeBuffer(b);
  auto ro = Connect("logs");
  ASSERT_NE(ro, nullptr);
  EXPECT_TRUE(ro->info().read_only);
}

TEST_F(ControlPlane, ForcedDeleteDisconnectsTheClientAndNestordStaysHealthy) {
  rpc_->Ok("volume_create", {{"name", "victim"}, {"size", 16 << 20}});
  rpc_->Ok("volume_create", {{"name", "bystander"}, {"size", 16 << 20}});
  rpc_->Ok("export_create", {{"name", "victim"}});
  rpc_->Ok("export_create", {{"name", "bystander"}});
  auto victim = Connect("victim", 2000);
  auto bystander = Connect("bystander");
  ASSERT_NE(victim, nullptr);
  ASSERT_NE(bystander, nullptr);
  auto* vb = static_cast<uint8_t*>(victim->AllocBuffer(4096));
  auto* bb = static_cast<uint8_t*>(bystander->AllocBuffer(4096));
  ASSERT_TRUE(victim->queue(0).Write(0, vb, 4096).ok());
  EXPECT_EQ(rpc_->Err("export_delete", {{"name", "victim"}}), "EBUSY");
  EXPECT_EQ(rpc_->Err("volume_delete", {{"name", "victim"}}), "EBUSY");
  EXPECT_EQ(rpc_->Ok("export_list").size(), 2u);
  rpc_->Ok("volume_delete", {{"name", "victim"}, {"force", true}});
  EXPECT_FALSE(victim->queue(0).Write(0, vb, 4096).ok()) << "the deleted volume's client can still write";
  EXPECT_FALSE(victim->connected());
  ASSERT_TRUE(bystander->queue(0).Write(0, bb, 4096).ok());
  ASSERT_TRUE(bystander->queue(0).Read(0, bb, 4096).ok());
  EXPECT_EQ(rpc_->Err("qos_get", {{"name", "victim"}}), "ENOENT");
  Json vols = rpc_->Ok("volume_list");
  ASSERT_EQ(vols.size(), 1u);
  EXPECT_EQ(vols[0]["name"], "bystander");
  struct stat st {};
  ASSERT_EQ(stat((d_.dir() + "/victim.sock").c_str(), &st), -1) << "the deleted export's socket is still there";
  victim->FreeBuffer(vb);
  bystander->FreeBuffer(bb);
}

TEST_F(ControlPlane, SocketIsOwnerOnlyAndRejectsBadRequests) {
  struct stat st {};
  ASSERT_EQ(stat((d_.dir() + "/control.ctl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Json r = rpc_->Call("no_such_method");
  EXPECT_EQ(r["error"]["code"], -32601);
  EXPECT_EQ(rpc_->Err("volume_create", {{"name", "a"}, {"size", "big"}}), "EINVAL");
  EXPECT_EQ(rpc_->Err("volume_delete", {{"name", "ghost"}}), "ENOENT");
  EXPECT_EQ(rpc_->Err("stats_get", {{"name", "ghost"}}), "ENOENT");
  // Still serving after the bad requests.
  EXPECT_TRUE(rpc_->Ok("pool_info").contains("uuid"));
}

TEST_F(ControlPlane, QosChangesAtRuntimeAndStatsAndMetricsSeeTheTraffic) {
  rpc_->Ok("volume_create", {{"name", "q"}, {"size", 16 << 20}});
  rpc_->Ok("export_create", {{"name", "q"}});
  auto dev = Connect("q");
  ASSERT_NE(dev, nullptr);
  auto* b = static_cast<uint8_t*>(dev->AllocBuffer(4096));
  std::memset(b, 1, 4096);
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(dev->queue(0).Write(uint64_t(i) * 4096, b, 4096).ok());
  auto rate = [&](double seconds) {
    uint64_t n = 0, t0 = NowNs();
    while (NowNs() - t0 < static_cast<uint64_t>(seconds * 1e9)) {
      EXPECT_TRUE(dev->queue(0).Write((n % 64) * 4096, b, 4096).ok());
      ++n;
    }
    return static_cast<double>(n) / (static_cast<double>(NowNs() - t0) / 1e9);
  };
  double unlimited = rate(0.3);
  rpc_->Ok("qos_set", {{"name", "q"}, {"write_iops", 400}});
  (void)rate(0.2);  // the bucket settles
  double limited = rate(1.5);
  std::cout << "QD1 writes: unlimited " << unlimited << " IOPS, limited to 400: " << limited << " IOPS\n";
  // The limit holds (never above it). At QD1 every scheduling delay of the
  // reactor beyond the 0.5 ms burst window is lost for good, so a loaded
  // machine delivers less; the 5 % accuracy test (QD8) is daemon.03.
  // Sanitizer builds run too slowly for the lower bounds: only the limit.
  EXPECT_LE(limited, 400 * 1.05);
  if (!kSanitized) {
    EXPECT_GT(unlimited, 800);
    EXPECT_GE(limited, 400 * 0.7);
  }
  rpc_->Ok("qos_set", {{"name", "q"}, {"write_iops", 0}});
  double again = rate(0.3);
  if (!kSanitized) {
    EXPECT_GT(again, 800);
  }
  Json s = rpc_->Ok("stats_get", {{"name", "q"}});
  const Json& v = s["volumes"][0];
  EXPECT_GT(v["write_ops"].get<uint64_t>(), 600u);
  EXPECT_EQ(v["write_bytes"].get<uint64_t>(), v["write_ops"].get<uint64_t>() * 4096);
  EXPECT_GT(v["throttled"].get<uint64_t>(), 0u);
  EXPECT_GT(v["latency_ns"]["p99"].get<uint64_t>(), 0u);
  EXPECT_EQ(v["queues"].size(), 1u);
  Json reactors = rpc_->Ok("reactor_list");
  EXPECT_EQ(reactors.size(), 2u);

  // Prometheus text over loopback HTTP.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  std::string get = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
  ASSERT_EQ(write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  EXPECT_EQ(resp.rfind("HTTP/1.1 200 OK", 0), 0u) << resp.substr(0, 200);
  std::string want = "nestor_volume_write_ops_total{volume=\"q\"} " + std::to_string(v["write_ops"].get<uint64_t>());
  EXPECT_NE(resp.find("nestor_volume_write_ops_total{volume=\"q\"} "), std::string::npos) << resp;
  EXPECT_NE(resp.find("nestor_reactor_busy_seconds_total{reactor=\"1\"}"), std::string::npos);
  EXPECT_NE(resp.find("nestor_pool_free_bytes "), std::string::npos);
  dev->FreeBuffer(b);
}

// Issue #11: wrong types and unknown keys used to be accepted silently and
// reported as success. Each is now -32602 naming the field, and changes
// nothing.
TEST_F(ControlPlane, BadParamsAreRefusedNamingTheFieldAndChangeNothing) {
  struct Case {
    const char* method;
    Json params;
    const char* field;
  } cases[] = {
      {"volume_create", {{"name", "v"}, {"size", 1 << 20}, {"preallocate", 1}}, "preallocate"},
      {"volume_create", {{"name", "v"}, {"size", "1M"}}, "size"},
      {"volume_create", {{"name", "v"}, {"size", 1 << 20}, {"thin", true}}, "thin"},
      {"volume_create", {{"name", "v"}, {"size", 1000}}, ""},  // a limit, from the pool
      {"export_create", {{"name", "base"}, {"readonly", "yes"}}, "readonly"},
      {"export_create", {{"name", "base"}, {"read_only", true}}, "read_only"},
      {"export_create", {{"name", "base"}, {"qos", {{"readiops", 10}}}}, "qos.readiops"},
      {"export_create", {{"name", "base"}, {"queues", 65}}, "queues"},
      {"qos_set", {{"name", "base"}, {"readiops", 10}}, "readiops"},
      {"volume_list", {{"all", true}}, "all"},
  };
  rpc_->Ok("volume_create", {{"name", "base"}, {"size", 1 << 20}});
  for (const Case& c : cases) {
    Json r = rpc_->Call(c.method, c.params);
    ASSERT_TRUE(r.contains("error")) << c.method << " " << c.params.dump() << " -> " << r.dump();
    EXPECT_EQ(r["error"]["code"], -32602) << r.dump();
    EXPECT_EQ(r["error"]["data"]["errno"], "EINVAL") << r.dump();
    if (*c.field != '\0') {
      EXPECT_EQ(r["error"]["data"]["field"], c.field) << r.dump();
    }
  }
  EXPECT_EQ(rpc_->Ok("volume_list").size(), 1u);  // no "v"
  EXPECT_EQ(rpc_->Ok("export_list").size(), 0u);  // "base" not exported by any of them
  // A notification runs and gets no reply: the next reply is for the next id.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, (d_.dir() + "/control.ctl").c_str(), sizeof(a.sun_path) - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  std::string two = R"({"jsonrpc":"2.0","method":"export_create","params":{"name":"base"}})"
                    "\n"
                    R"({"jsonrpc":"2.0","id":42,"method":"export_list"})"
                    "\n";
  ASSERT_EQ(send(fd, two.data(), two.size(), MSG_NOSIGNAL), static_cast<ssize_t>(two.size()));
  std::string line;
  char ch;
  while (read(fd, &ch, 1) == 1 && ch != '\n') line += ch;
  close(fd);
  Json r = Json::parse(line, nullptr, false);
  EXPECT_EQ(r["id"], 42) << line;
  ASSERT_EQ(r["result"].size(), 1u) << line;  // the notification did export it
}

// Issue #11: 100 hostile connections at once (flooding, half-sent, silent)
// while nestorctl keeps working within 1 s per call.
TEST_F(ControlPlane, NestorctlWorksNextToAHundredHostileConnections) {
  const char* ctl = std::getenv("NESTORCTL");
  ASSERT_NE(ctl, nullptr) << "NESTORCTL unset";
  std::string path = d_.dir() + "/control.ctl";
  std::vector<int> fds;
  for (int i = 0; i < 100; ++i) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    fds.push_back(fd);
  }
  std::string burst;
  for (int i = 0; i < 100; ++i)
    burst += R"({"jsonrpc":"2.0","id":1,"method":"stats_get"})"
             "\n";
  std::atomic<bool> stop{false};
  std::thread flood([&] {  // 40 flood and never read; 30 send half a line; 30 stay silent
    while (!stop.load()) {
      for (int i = 0; i < 40; ++i) (void)!send(fds[i], burst.data(), burst.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  for (int i = 40; i < 70; ++i) (void)!send(fds[i], "{\"jsonrpc\":", 11, MSG_NOSIGNAL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string cmd = std::string("timeout 10 ") + ctl + " -s " + path + " volume list >/dev/null";
  double worst_ms = 0;
  for (int i = 0; i < 10; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    int rc = std::system(cmd.c_str());
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    worst_ms = std::max(worst_ms, ms);
    EXPECT_EQ(rc, 0) << "call " << i;
  }
  stop = true;
  flood.join();
  for (int fd : fds) close(fd);
  std::printf("nestorctl next to 100 hostile connections: slowest of 10 calls %.0f ms\n", worst_ms);
  EXPECT_LT(worst_ms, 1000);
  rpc_->Ok("pool_info");  // nestord healthy
}

}  // namespace
}  // namespace nestor::testing
