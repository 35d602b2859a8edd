#include "control/rpc_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "base/fd.h"

namespace nestor::control {
namespace {

TEST(RpcServer, DispatchesAndMapsErrors) {
  RpcServer s("/nonexistent");
  s.Register("echo", [](const Json& p) -> Result<Json> { return p; });
  s.Register("missing", [](const Json&) -> Result<Json> { return Status::Error(ENOENT, "no volume 'x'"); });
  s.Register("typed", [](const Json& p) -> Result<Json> { return Json(p.at("n").get<int>() + 1); });
  auto r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}})"));
  EXPECT_EQ(r["result"]["a"], 1);
  EXPECT_EQ(r["id"], 1);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":"x","method":"missing"})"));
  EXPECT_EQ(r["error"]["code"], -ENOENT);
  EXPECT_EQ(r["error"]["data"]["errno"], "ENOENT");
  EXPECT_EQ(r["id"], "x");
  r = Json::parse(s.Handle("{not json"));
  EXPECT_EQ(r["error"]["code"], -32700);
  r = Json::parse(s.Handle(R"({"id":2,"method":"echo"})"));
  EXPECT_EQ(r["error"]["code"], -32600);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":3,"method":"nope"})"));
  EXPECT_EQ(r["error"]["code"], -32601);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":4,"method":"typed","params":{"n":"str"}})"));
  EXPECT_EQ(r["error"]["code"], -32602);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":5,"method":"echo","params":[1]})"));
  EXPECT_EQ(r["error"]["code"], -32602);
}

// A "jsonrpc" member that is not a string is an invalid request, not an
// exception out of Handle (which ended nestord: found by fuzz/rpc.cc).
TEST(RpcServer, NonStringVersionIsAnInvalidRequest) {
  RpcServer s("/nonexistent");
  s.Register("echo", [](const Json& p) -> Result<Json> { return p; });
  for (const char* line : {R"({"jsonrpc":2,"id":1,"method":"echo"})", R"({"jsonrpc":null,"id":1,"method":"echo"})",
                           R"({"jsonrpc":["2.0"],"id":1,"method":"echo"})"}) {
    auto r = Json::parse(s.Handle(line));
    EXPECT_EQ(r["error"]["code"], -32600) << line;
    EXPECT_EQ(r["id"], 1) << line;
  }
}

// Deep nesting is refused before parsing: copying or dumping a value
// recurses once per level, and a 1 MiB line of '[' overflowed the control
// thread's stack (found by fuzzing; the id is echoed, so it is copied).
TEST(RpcServer, DeepNestingIsAnInvalidRequest) {
  RpcServer s("/nonexistent");
  s.Register("echo", [](const Json& p) -> Result<Json> { return p; });
  const size_t n = 400'000;
  std::string deep_id = R"({"jsonrpc":"2.0","method":"echo","id":)" + std::string(n, '[') + std::string(n, ']') + "}";
  auto r = Json::parse(s.Handle(deep_id));
  EXPECT_EQ(r["error"]["code"], -32600);
  EXPECT_TRUE(r["id"].is_null());
  std::string deep_params = R"({"jsonrpc":"2.0","method":"echo","id":1,"params":{"a":)" + std::string(n, '{') + "}}";
  EXPECT_EQ(Json::parse(s.Handle(deep_params))["error"]["code"], -32600);
  // 64 levels are fine, and brackets inside strings do not count.
  std::string ok = R"({"jsonrpc":"2.0","method":"echo","id":1,"params":{"a":)" + std::string(62, '[') +
                   std::string(62, ']') + R"(,"s":")" + std::string(1000, '[') + R"("}})";
  r = Json::parse(s.Handle(ok));
  EXPECT_EQ(r["result"]["s"].get<std::string>().size(), 1000u);
}

UniqueFd Connect(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) fd.Reset();
  return fd;
}

// What the server sends before it closes (or "" on timeout / nothing).
std::string ReadUntilClosed(int fd, int timeout_ms) {
  std::string out;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return out + "<timeout>";
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// Issue #11: idle clients cannot lock the control plane out, and the one
// too many is told why instead of a reset.
TEST(RpcServer, IdleClientsAreClosedAndTheOneTooManyIsTold) {
  std::string dir = std::filesystem::temp_directory_path() / ("rpc-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  RpcServer s(dir + "/c.ctl", std::chrono::milliseconds(1000));
  s.Register("echo", [](const Json& p) -> Result<Json> { return p; });
  ASSERT_TRUE(s.Start().ok());
  std::vector<UniqueFd> idle;
  for (size_t i = 0; i < RpcServer::kMaxClients; ++i) idle.push_back(Connect(s.path()));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  UniqueFd extra = Connect(s.path());
  ASSERT_TRUE(extra.valid());
  std::string told = ReadUntilClosed(extra.get(), 2000);
  EXPECT_NE(told.find("too many connections"), std::string::npos) << told;
  // The idle ones are closed after the idle limit; then the plane is usable.
  EXPECT_EQ(ReadUntilClosed(idle[0].get(), 2000), "");
  UniqueFd ok = Connect(s.path());
  std::string req = R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}})" "\n";
  ASSERT_EQ(write(ok.get(), req.data(), req.size()), static_cast<ssize_t>(req.size()));
  char buf[256] = {};
  pollfd p{ok.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);
  ASSERT_GT(read(ok.get(), buf, sizeof(buf) - 1), 0);
  EXPECT_NE(std::string(buf).find("\"result\":{\"a\":1}"), std::string::npos) << buf;
  // A complete line over the limit is refused too (it used to be served).
  std::string big = R"({"jsonrpc":"2.0","id":2,"method":"echo","params":{"p":")" +
                    std::string(RpcServer::kMaxRequest, 'x') + "\"}}\n";
  std::thread writer([&] {
    size_t off = 0;
    while (off < big.size()) {
      ssize_t k = send(ok.get(), big.data() + off, big.size() - off, MSG_NOSIGNAL);
      if (k <= 0) break;
      off += static_cast<size_t>(k);
    }
  });
  std::string reply = ReadUntilClosed(ok.get(), 5000);
  writer.join();
  EXPECT_NE(reply.find("request over"), std::string::npos) << reply.substr(0, 200);
  EXPECT_EQ(reply.find("\"result\""), std::string::npos);
  s.Stop();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nestor::control
