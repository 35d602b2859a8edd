// RpcServer: JSON-RPC 2.0 over a unix socket, one request (or batch) per
// line (newline-delimited JSON), replies in order (docs/rpc.md).
//
// Thread: Start spawns one control thread that accepts connections and
// runs every method handler; Register before Start. Handlers may block
// (they run on the control thread, never on a reactor) but should not
// block for long: other RPC clients wait meanwhile. Errors: a handler
// returns Status (errno) -> JSON-RPC error {code: -errno, data.errno};
// EINVAL and params that do not match the method's ParamSpec -> -32602
// with data.field; malformed input gets the JSON-RPC codes; notifications
// (no "id") get no reply. Bounded (RpcLimits): connections (one more is
// told "too many connections" and closed, after the longest-idle one is
// closed if it has been idle a while), bytes per request line (exact),
// requests per batch, one unsent reply per client (it is not read from
// meanwhile), and a connection with no complete request (or that reads no
// reply) for `idle` is closed. Clients
// are served round robin, one request each per turn, with non-blocking
// sockets: a flooding or non-reading client cannot starve the others.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/status.h"
#include "base/unix_listener.h"
#include "control/params.h"

namespace nestor::control {

using Json = nlohmann::json;
using Method = std::function<Result<Json>(const Json& params)>;

struct RpcLimits {
  size_t max_clients = 128;
  std::chrono::milliseconds idle{5'000};        // no complete request for this long: closed
  std::chrono::milliseconds evict_idle{1'000};  // at max_clients, a client idle this long makes room
  size_t max_batch = 64;                        // requests in one batch
};

class RpcServer {
 public:
  static constexpr size_t kMaxRequest = 1 << 20;  // bytes per line, newline excluded

  explicit RpcServer(std::string path, RpcLimits limits = {}) : path_(std::move(path)), limits_(limits) {}
  ~RpcServer();
  // `params` is checked against spec before m runs (unknown keys, types,
  // ranges, required keys).
  void Register(const std::string& name, ParamSpec spec, Method m) { methods_[name] = {std::move(spec), std::move(m)}; }
  // Binds the socket (mode 0600). Replaces only a stale socket: EBUSY if
  // another process listens on the path, EEXIST if it is not a socket
  // (left alone). Start calls it if not done yet.
  [[nodiscard]] Status Bind();
  // Binds if needed and starts the thread.
  [[nodiscard]] Status Start();
  // Stops the thread; removes the socket if it is still the one bound.
  void Stop();
  const std::string& path() const { return path_; }

  const RpcLimits& limits() const { return limits_; }

  // One request line -> one reply line (without the newline), or "" when
  // nothing is to be sent (notifications only). Public for unit tests and
  // the fuzzer.
  std::string Handle(const std::string& line);

 private:
  struct Entry {
    ParamSpec spec;
    Method method;
  };
  void Run();
  // nullopt: a notification (no reply).
  std::optional<Json> Dispatch(const Json& req);
  Json Call(const Json& id, const Entry& e, const Json& params);

  std::string path_;
  RpcLimits limits_;
  std::map<std::string, Entry> methods_;
  UnixListener listener_;
  UniqueFd stop_fd_;
  std::thread thread_;
};

// A JSON-RPC error reply {"jsonrpc":"2.0","id":id,"error":{code,message}}.
Json RpcError(const Json& id, int code, const std::string& msg);

// "ENOENT" for 2, etc. (the errno names docs/rpc.md uses).
const char* ErrnoName(int err);

}  // namespace nestor::control
