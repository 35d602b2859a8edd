// Ownership of files and sockets (issue #10, items 4 and 5): a nestord
// touches only what it owns.
//   - A second nestord on the same --socket-dir refuses to start (exit 1,
//     naming the directory) and leaves the first one's sockets alone.
//   - A socket somebody listens on is never replaced; a stale one is.
//   - A file that is not a socket is never deleted: not at start-up, not by
//     export_create / export_delete, not at shutdown (even when it took the
//     place of a socket nestord had bound).
//   - backend=file:PATH locks PATH like a pool: a pool served by another
//     nestord, or a file another nestord serves, is refused; a file with a
//     pool signature is refused as a raw file unless `force`.
//   - A nestord SIGKILLed with requests in flight leaves nothing that stops
//     its restart: the directory and file locks go with the process.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "../common/rpc_client.h"
#include "nestor/client.hpp"
#include "nestord_process.h"
#include "volume/pool.h"

namespace nestor::testing {
namespace {

struct FileId {
  bool exists = false;
  bool socket = false;
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const FileId&) const = default;
};

void PrintTo(const FileId& f, std::ostream* os) {
  if (!f.exists) {
    *os << "(absent)";
  } else {
    *os << (f.socket ? "socket" : "file") << " dev " << f.dev << " inode " << f.ino;
  }
}

FileId Id(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return {};
  return {true, S_ISSOCK(st.st_mode), st.st_dev, st.st_ino};
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

// The names in dir, but the test's logs.
std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> names;
  std::string cmd = "ls -A '" + dir + "'";
  FILE* p = popen(cmd.c_str(), "r");
  char line[512];
  while (p != nullptr && fgets(line, sizeof(line), p) != nullptr) {
    std::string n(line);
    if (!n.empty() && n.back() == '\n') n.pop_back();
    if (n.size() < 4 || n.compare(n.size() - 4, 4, ".log") != 0) names.insert(n);
  }
  if (p != nullptr) pclose(p);
  return names;
}

sockaddr_un Addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  return a;
}

// A unix socket the test itself listens on at path (-1 on failure).
int ListenAt(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = Addr(path);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// A socket file nobody listens on (its process went away).
void MakeStaleSocket(const std::string& path) { close(ListenAt(path)); }

bool Connectable(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = Addr(path);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

bool WaitConnectable(const std::string& path, int timeout_ms = 10000) {
  for (int t = 0; t < timeout_ms; t += 10) {
    if (Connectable(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

bool Contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// A pool at path with volumes v1 and v2 (closed and unlocked on return).
void CreatePool(const std::string& path) {
  auto dev = volume::OpenFilePoolDevice(path, true, 64ull << 20);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  ASSERT_TRUE(volume::Pool::Format(dev->get(), 64 << 10, false).ok());
  auto pool = volume::Pool::Open(std::move(dev.value()));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  ASSERT_TRUE((*pool)->CreateVolume("v1", 16 << 20, false).ok());
  ASSERT_TRUE((*pool)->CreateVolume("v2", 16 << 20, false).ok());
}

constexpr int kExitWaitMs = 10000;
constexpr const char* kPrecious = "precious bytes, not a socket\n";

// Starts d (no sockets awaited) and expects it to fail at start-up: exit 1
// within 10 s. Returns its log.
std::string ExpectRefusal(NestordProcess& d, const std::vector<std::string>& args) {
  std::string err;
  EXPECT_TRUE(d.Start(args, {}, &err)) << err;
  int code = -1;
  bool exited = d.WaitExit(kExitWaitMs, &code);
  EXPECT_TRUE(exited) << "nestord still running after 10 s: " << d.Log();
  if (exited) {
    EXPECT_EQ(code, 1) << d.Log();
  }
  d.Kill();
  return d.Log();
}

TEST(Ownership, SecondDaemonOnTheSameSocketDirRefusesAndTouchesNothing) {
  NestordProcess a;
  std::string err;
  ASSERT_TRUE(a.Start({"--volume", "db0,size=16M,backend=mem"}, {"db0", "control.ctl"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(a.Socket("control.ctl")));
  FileId ctl = Id(a.Socket("control.ctl")), db0 = Id(a.Socket("db0"));
  std::set<std::string> before = Listing(a.dir());
  {
    NestordProcess b(a.dir(), "second.log");
    std::string log =
        ExpectRefusal(b, {"--volume", "db0,size=16M,backend=mem", "--volume", "db1,size=16M,backend=mem"});
    EXPECT_TRUE(Contains(log, a.dir())) << log;
    EXPECT_TRUE(Contains(log, "in use by pid")) << log;  // names the holder
    EXPECT_TRUE(Contains(log, "(nestord)")) << log;
  }
  EXPECT_EQ(Id(a.Socket("control.ctl")), ctl);
  EXPECT_EQ(Id(a.Socket("db0")), db0);
  EXPECT_EQ(Listing(a.dir()), before);
  // The first daemon is still reachable on both sockets.
  Rpc rpc(a.Socket("control.ctl"));
  ASSERT_TRUE(rpc.ok());
  auto list = rpc.Ok("export_list");
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["name"], "db0");
  EXPECT_TRUE(Connectable(a.Socket("db0")));
  EXPECT_TRUE(a.Stop()) << a.Log();
}

TEST(Ownership, SocketSomebodyListensOnIsNotReplaced) {
  NestordProcess d;
  int l = ListenAt(d.Socket("db0"));
  ASSERT_GE(l, 0);
  FileId mine = Id(d.Socket("db0"));
  std::string log = ExpectRefusal(d, {"--volume", "db0,size=16M,backend=mem"});
  EXPECT_TRUE(Contains(log, d.Socket("db0"))) << log;
  EXPECT_TRUE(Contains(log, "in use")) << log;
  EXPECT_EQ(Id(d.Socket("db0")), mine);
  EXPECT_TRUE(Connectable(d.Socket("db0")));  // still the test's listener
  close(l);

  // The same for a control socket given outside the socket directory.
  NestordProcess other;
  l = ListenAt(d.Socket("control.ctl"));
  ASSERT_GE(l, 0);
  mine = Id(d.Socket("control.ctl"));
  log = ExpectRefusal(other, {"--volume", "db0,size=16M,backend=mem", "--control-socket", d.Socket("control.ctl")});
  EXPECT_TRUE(Contains(log, d.Socket("control.ctl"))) << log;
  EXPECT_TRUE(Contains(log, "in use")) << log;
  EXPECT_EQ(Id(d.Socket("control.ctl")), mine);
  EXPECT_FALSE(Id(other.Socket("db0")).exists) << "its own socket is cleaned up";
  close(l);
}

TEST(Ownership, StaleSocketsAreReplaced) {
  NestordProcess d;
  MakeStaleSocket(d.Socket("db0"));
  MakeStaleSocket(d.Socket("control.ctl"));
  ASSERT_TRUE(Id(d.Socket("db0")).socket);
  std::string err;
  ASSERT_TRUE(d.Start({"--volume", "db0,size=16M,backend=mem"}, {}, &err)) << err;
  EXPECT_TRUE(WaitConnectable(d.Socket("db0"))) << d.Log();
  EXPECT_TRUE(WaitConnectable(d.Socket("control.ctl"))) << d.Log();
  EXPECT_TRUE(d.Stop()) << d.Log();
  EXPECT_FALSE(Id(d.Socket("db0")).exists) << "nestord removes the sockets it bound";
  EXPECT_FALSE(Id(d.Socket("control.ctl")).exists);
}

TEST(Ownership, FileWhereASocketShouldGoIsNeverDeletedAtStartUp) {
  NestordProcess d;
  WriteFile(d.Socket("db0"), kPrecious);
  std::string log = ExpectRefusal(d, {"--volume", "db0,size=16M,backend=mem"});
  EXPECT_TRUE(Contains(log, d.Socket("db0"))) << log;
  EXPECT_TRUE(Contains(log, "not a socket")) << log;
  EXPECT_EQ(ReadAll(d.Socket("db0")), kPrecious);
  unlink(d.Socket("db0").c_str());

  NestordProcess e;
  WriteFile(e.Socket("control.ctl"), kPrecious);
  log = ExpectRefusal(e, {"--volume", "db0,size=16M,backend=mem"});
  EXPECT_TRUE(Contains(log, e.Socket("control.ctl"))) << log;
  EXPECT_EQ(ReadAll(e.Socket("control.ctl")), kPrecious);
  EXPECT_FALSE(Id(e.Socket("db0")).exists) << "its own socket is cleaned up";
}

TEST(Ownership, FileThatTookTheSocketsPlaceSurvivesShutdown) {
  NestordProcess d;
  std::string err;
  ASSERT_TRUE(d.Start({"--volume", "db0,size=16M,backend=mem"}, {"db0", "control.ctl"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(d.Socket("control.ctl")));
  ASSERT_EQ(unlink(d.Socket("db0").c_str()), 0);
  WriteFile(d.Socket("db0"), kPrecious);
  EXPECT_TRUE(d.Stop()) << d.Log();
  EXPECT_EQ(ReadAll(d.Socket("db0")), kPrecious);
  EXPECT_FALSE(Id(d.Socket("control.ctl")).exists);
}

TEST(Ownership, ExportCreateAndDeleteNeverDeleteAFile) {
  NestordProcess d;
  std::string pool = d.dir() + "/pool.img";
  CreatePool(pool);
  std::string err;
  ASSERT_TRUE(d.Start({"--pool", pool}, {"control.ctl"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(d.Socket("control.ctl")));
  Rpc rpc(d.Socket("control.ctl"));
  ASSERT_TRUE(rpc.ok());

  // A file where v1's socket would go: export_create refuses, keeps it.
  WriteFile(d.Socket("v1"), kPrecious);
  auto r = rpc.Call("export_create", {{"name", "v1"}});
  ASSERT_TRUE(r.contains("error")) << r.dump();
  EXPECT_EQ(r["error"]["data"]["errno"], "EEXIST") << r.dump();
  std::string msg = r["error"]["message"];
  EXPECT_TRUE(Contains(msg, d.Socket("v1")) && Contains(msg, "not a socket")) << msg;
  EXPECT_EQ(ReadAll(d.Socket("v1")), kPrecious);
  EXPECT_EQ(rpc.Err("export_delete", {{"name", "v1"}}), "ENOENT");
  EXPECT_EQ(ReadAll(d.Socket("v1")), kPrecious);
  EXPECT_TRUE(rpc.Ok("export_list").empty());

  // Someone listening where v2's socket would go: refused (EBUSY).
  int l = ListenAt(d.Socket("v2"));
  ASSERT_GE(l, 0);
  FileId theirs = Id(d.Socket("v2"));
  EXPECT_EQ(rpc.Err("export_create", {{"name", "v2"}}), "EBUSY");
  EXPECT_EQ(Id(d.Socket("v2")), theirs);
  close(l);
  // Now stale: replaced.
  rpc.Ok("export_create", {{"name", "v2"}});
  EXPECT_TRUE(Connectable(d.Socket("v2")));
  // A file took the place of v2's socket: export_delete leaves it.
  ASSERT_EQ(unlink(d.Socket("v2").c_str()), 0);
  WriteFile(d.Socket("v2"), kPrecious);
  rpc.Ok("export_delete", {{"name", "v2"}});
  EXPECT_EQ(ReadAll(d.Socket("v2")), kPrecious);

  EXPECT_TRUE(d.Stop()) << d.Log();
  EXPECT_EQ(ReadAll(d.Socket("v1")), kPrecious);
  EXPECT_EQ(ReadAll(d.Socket("v2")), kPrecious);
}

TEST(Ownership, PoolServedByAnotherDaemonIsRefusedAsARawFile) {
  NestordProcess a;
  std::string pool = a.dir() + "/pool.img";
  CreatePool(pool);
  std::string err;
  ASSERT_TRUE(a.Start({"--pool", pool}, {"control.ctl"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(a.Socket("control.ctl")));
  // The control socket is bound before the pool is opened: an answer means
  // nestord is past its start-up writes.
  ASSERT_TRUE(Rpc(a.Socket("control.ctl")).Call("pool_info").contains("result"));
  std::string bytes = ReadAll(pool);
  {
    NestordProcess b;
    std::string log = ExpectRefusal(b, {"--volume", "x,size=16M,backend=file:" + pool});
    EXPECT_TRUE(Contains(log, pool)) << log;
    EXPECT_TRUE(Contains(log, "in use")) << log;
  }
  EXPECT_EQ(ReadAll(pool), bytes) << "the served pool was modified";
  Rpc rpc(a.Socket("control.ctl"));
  ASSERT_TRUE(rpc.ok());
  EXPECT_EQ(rpc.Ok("pool_info")["volumes"], 2);
  EXPECT_TRUE(a.Stop()) << a.Log();
}

TEST(Ownership, PoolSignatureRefusedAsARawFileUnlessForced) {
  NestordProcess a;
  std::string pool = a.dir() + "/pool.img";
  CreatePool(pool);
  std::string bytes = ReadAll(pool);
  std::string log = ExpectRefusal(a, {"--volume", "x,size=16M,backend=file:" + pool});
  EXPECT_TRUE(Contains(log, pool)) << log;
  EXPECT_TRUE(Contains(log, "nestor pool")) << log;
  EXPECT_TRUE(Contains(log, "force")) << log;
  EXPECT_EQ(ReadAll(pool), bytes);

  NestordProcess b;
  std::string err;
  ASSERT_TRUE(b.Start({"--volume", "x,size=16M,readonly,force,backend=file:" + pool}, {"x"}, &err)) << err;
  EXPECT_TRUE(WaitConnectable(b.Socket("x"))) << b.Log();
  EXPECT_TRUE(b.Stop()) << b.Log();
  EXPECT_EQ(ReadAll(pool), bytes);
}

TEST(Ownership, RawFileServedByOneDaemonIsLockedAgainstOthers) {
  NestordProcess a;
  std::string raw = a.dir() + "/disk.img";
  WriteFile(raw, std::string(1 << 20, 'r'));
  std::string err;
  ASSERT_TRUE(a.Start({"--volume", "x,size=1M,backend=file:" + raw}, {"x"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(a.Socket("x")));
  for (const char* extra : {"", ",readonly"}) {
    NestordProcess b;
    std::string log = ExpectRefusal(b, {"--volume", std::string("y,size=1M,backend=file:") + raw + extra});
    EXPECT_TRUE(Contains(log, raw)) << log;
    EXPECT_TRUE(Contains(log, "in use")) << log;
  }
  // The offline tool's way in (nestor pool create/info) is refused too.
  auto dev = volume::OpenFilePoolDevice(raw, true, 1 << 20);
  EXPECT_EQ(dev.status().err(), EBUSY) << dev.status().ToString();
  EXPECT_TRUE(Contains(dev.status().message(), raw)) << dev.status().ToString();
  dev = Status::Invalid("closed");
  // Forced: served anyway (the operator's call).
  {
    NestordProcess c;
    ASSERT_TRUE(c.Start({"--volume", "y,size=1M,force,backend=file:" + raw}, {"y"}, &err)) << err;
    EXPECT_TRUE(WaitConnectable(c.Socket("y"))) << c.Log();
    EXPECT_TRUE(c.Stop()) << c.Log();
  }
  EXPECT_TRUE(a.Stop()) << a.Log();
  EXPECT_EQ(ReadAll(raw), std::string(1 << 20, 'r'));

  // Readers share: two read-only daemons at once.
  NestordProcess r1, r2;
  ASSERT_TRUE(r1.Start({"--volume", "x,size=1M,readonly,backend=file:" + raw}, {"x"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(r1.Socket("x"))) << r1.Log();
  ASSERT_TRUE(r2.Start({"--volume", "x,size=1M,readonly,backend=file:" + raw}, {"x"}, &err)) << err;
  EXPECT_TRUE(WaitConnectable(r2.Socket("x"))) << r2.Log();
  EXPECT_TRUE(r2.Running()) << r2.Log();
  EXPECT_TRUE(r1.Stop()) << r1.Log();
  EXPECT_TRUE(r2.Stop()) << r2.Log();
}

TEST(Ownership, RestartRightAfterSigkillWithRequestsInFlight) {
  NestordProcess d;
  std::string raw = d.dir() + "/disk.img";
  // Every request waits 300 ms inside nestord (io_uring linked timeout).
  const std::vector<std::string> args = {"--volume", "x,size=16M,delay_us=300000,backend=file:" + raw};
  std::string err;
  ASSERT_TRUE(d.Start(args, {"x", "control.ctl"}, &err)) << err;
  ASSERT_TRUE(WaitConnectable(d.Socket("x")));
  client::Options o;
  o.socket_path = d.Socket("x");
  o.polled = false;
  o.buffer_bytes = 1 << 20;
  o.timeout_ms = 1000;
  auto dev = client::Device::Connect(o);
  ASSERT_TRUE(dev.ok()) << dev.status().message();
  void* buf = (*dev)->AllocBuffer(64 << 10);
  ASSERT_NE(buf, nullptr);
  std::memset(buf, 0x5a, 64 << 10);
  std::vector<client::Request> reqs(16);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].op = client::Op::kWrite;
    reqs[i].offset = i * (64 << 10);
    reqs[i].len = 64 << 10;
    reqs[i].buf = buf;
  }
  ASSERT_EQ((*dev)->queue(0).Submit(reqs), static_cast<int>(reqs.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // all of them held in nestord
  d.Kill();                                                    // SIGKILL, reaped
  ASSERT_TRUE(d.Start(args, {}, &err)) << err;
  EXPECT_TRUE(WaitConnectable(d.Socket("x"))) << d.Log();
  EXPECT_TRUE(WaitConnectable(d.Socket("control.ctl"))) << d.Log();
  EXPECT_TRUE(d.Running()) << d.Log();
  dev->reset();
  EXPECT_TRUE(d.Stop()) << d.Log();
}

}  // namespace
}  // namespace nestor::testing
