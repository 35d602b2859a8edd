// Test helper: a blocking JSON-RPC 2.0 client for nestord's control socket
// (docs/rpc.md), one request line out, one reply line in.
//
// Thread: one test thread per instance. Errors: Call returns a null Json
// when the socket fails; Ok() fails the current test on an error reply.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

namespace nestor::testing {

class Rpc {
 public:
  using Json = nlohmann::json;

  explicit Rpc(const std::string& path, int timeout_s = 30) : path_(path), timeout_s_(timeout_s) { Open(); }
  ~Rpc() { close(fd_); }
  Rpc(const Rpc&) = delete;
  Rpc& operator=(const Rpc&) = delete;

  bool ok() const { return ok_; }
  // The whole reply object.
  Json Call(const std::string& method, const Json& params = Json::object()) {
    Json req = {{"jsonrpc", "2.0"}, {"id", ++id_}, {"method", method}, {"params", params}};
    std::string line = req.dump() + "\n";
    // nestord closes a connection idle for a few seconds (docs/rpc.md):
    // then the send fails (EPIPE, nothing was delivered) and we reconnect.
    if (send(fd_, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
      close(fd_);
      Open();
      if (send(fd_, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) return nullptr;
    }
    std::string in;
    char c;
    while (read(fd_, &c, 1) == 1 && c != '\n') in += c;
    return Json::parse(in, nullptr, false);
  }
  // The result, failing the test on an error reply.
  Json Ok(const std::string& method, const Json& params = Json::object()) {
    Json r = Call(method, params);
    EXPECT_TRUE(r.is_object() && r.contains("result")) << method << ": " << r.dump();
    return r.is_object() && r.contains("result") ? r["result"] : Json();
  }
  // The errno name of an error reply ("" if it succeeded).
  std::string Err(const std::string& method, const Json& params = Json::object()) {
    Json r = Call(method, params);
    if (!r.is_object() || !r.contains("error")) return "";
    return r["error"].value("data", Json::object()).value("errno", std::to_string(r["error"]["code"].get<int>()));
  }

 private:
  void Open() {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{timeout_s_, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }

  std::string path_;
  int timeout_s_;
  int fd_ = -1;
  bool ok_ = false;
  int id_ = 0;
};

}  // namespace nestor::testing
