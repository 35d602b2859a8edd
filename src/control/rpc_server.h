// RpcServer: JSON-RPC 2.0 over a unix socket, one request per line
// (newline-delimited JSON), replies in order (docs/rpc.md).
//
// Thread: Start spawns one control thread that accepts connections and
// runs every method handler; Register before Start. Handlers may block
// (they run on the control thread, never on a reactor) but should not
// block for long: other RPC clients wait meanwhile. Errors: a handler
// returns Status (errno) -> JSON-RPC error {code: -errno, data.errno};
// malformed input gets the JSON-RPC codes; an oversized or broken
// connection is closed. Limits: 16 connections (one more is sent a
// JSON-RPC error "too many connections" and closed), 1 MiB per request, and
// a connection idle (no complete request) for `idle` is closed.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/status.h"
#include "base/unix_listener.h"

namespace nestor::control {

using Json = nlohmann::json;
using Method = std::function<Result<Json>(const Json& params)>;

class RpcServer {
 public:
  static constexpr size_t kMaxRequest = 1 << 20;
  static constexpr size_t kMaxClients = 16;

  static constexpr std::chrono::milliseconds kDefaultIdle{60'000};

  explicit RpcServer(std::string path, std::chrono::milliseconds idle = kDefaultIdle)
      : path_(std::move(path)), idle_(idle) {}
  ~RpcServer();
  void Register(const std::string& name, Method m) { methods_[name] = std::move(m); }
  // Binds the socket (mode 0600). Replaces only a stale socket: EBUSY if
  // another process listens on the path, EEXIST if it is not a socket
  // (left alone). Start calls it if not done yet.
  [[nodiscard]] Status Bind();
  // Binds if needed and starts the thread.
  [[nodiscard]] Status Start();
  // Stops the thread; removes the socket if it is still the one bound.
  void Stop();
  const std::string& path() const { return path_; }

  // One request line -> one reply line (without the newline). Public for
  // unit tests.
  std::string Handle(const std::string& line);

 private:
  void Run();
  Json Dispatch(const Json& req);

  std::string path_;
  std::chrono::milliseconds idle_;
  std::map<std::string, Method> methods_;
  UnixListener listener_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

// "ENOENT" for 2, etc. (the errno names docs/rpc.md uses).
const char* ErrnoName(int err);

}  // namespace nestor::control
