#include "control/rpc_server.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

namespace nestor::control {
namespace {

Json Error(const Json& id, int code, const std::string& msg, Json data = nullptr) {
  Json e = {{"code", code}, {"message", msg}};
  if (!data.is_null()) e["data"] = std::move(data);
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", e}};
}

bool ValidId(const Json& id) { return id.is_string() || id.is_number() || id.is_null(); }

// The members a request may have; anything else is an invalid request.
std::string UnknownMember(const Json& req) {
  for (const auto& [k, v] : req.items()) {
    if (k != "jsonrpc" && k != "id" && k != "method" && k != "params") return k;
  }
  return "";
}

// How deep a request's arrays and objects may nest. Copying, comparing and
// dumping a JSON value recurse once per level, so a 1 MiB line of '['
// would overflow the control thread's stack; no method takes more than 3.
constexpr int kMaxDepth = 64;

// Whether the JSON text nests deeper than kMaxDepth (brackets inside
// strings do not count). Cheap: one pass, no allocation.
bool TooDeep(const std::string& line) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : line) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace

Json RpcError(const Json& id, int code, const std::string& msg) { return Error(id, code, msg); }

const char* ErrnoName(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOSPC: return "ENOSPC";
    case EBUSY: return "EBUSY";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EUCLEAN: return "EUCLEAN";
    case EINVAL: return "EINVAL";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EROFS: return "EROFS";
    case EPERM: return "EPERM";
    case EIO: return "EIO";
    default: {
      const char* name = strerrorname_np(err);  // EACCES, EADDRINUSE, ...
      return name != nullptr ? name : "EIO";
    }
  }
}

RpcServer::~RpcServer() { Stop(); }

Status RpcServer::Bind() {
  if (listener_.listening()) return Status::Ok();
  return listener_.Listen(path_, 64, 0600);  // owner only, from the first instant
}

Status RpcServer::Start() {
  NESTOR_RETURN_IF_ERROR(Bind());
  stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return Status::FromErrno("eventfd");
  thread_ = std::thread([this] { Run(); });
  NLOG_INFO("control socket {}", path_);
  return Status::Ok();
}

void RpcServer::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t unused = write(stop_fd_.get(), &one, sizeof(one));
    (void)unused;
    thread_.join();
  }
  listener_.Close();
}

std::string RpcServer::Handle(const std::string& line) {
  if (TooDeep(line)) {
    std::string why = "invalid request: nested deeper than " + std::to_string(kMaxDepth) + " levels";
    return Error(nullptr, -32600, why).dump();
  }
  Json req = Json::parse(line, nullptr, false);
  if (req.is_discarded()) return Error(nullptr, -32700, "parse error: the line is not JSON").dump();
  if (!req.is_array()) {
    std::optional<Json> reply = Dispatch(req);
    return reply ? reply->dump() : "";
  }
  if (req.empty()) return Error(nullptr, -32600, "invalid request: empty batch").dump();
  if (req.size() > limits_.max_batch) {
    return Error(nullptr, -32600,
                 "invalid request: batch of " + std::to_string(req.size()) + " requests, at most " +
                     std::to_string(limits_.max_batch))
        .dump();
  }
  Json replies = Json::array();
  for (const Json& r : req) {
    std::optional<Json> reply = Dispatch(r);
    if (reply) replies.push_back(std::move(*reply));
  }
  return replies.empty() ? "" : replies.dump();
}

std::optional<Json> RpcServer::Dispatch(const Json& req) {
  if (!req.is_object()) return Error(nullptr, -32600, "invalid request: not an object");
  bool notification = !req.contains("id");
  Json id = notification ? Json(nullptr) : req["id"];
  if (!ValidId(id)) return Error(nullptr, -32600, "invalid request: id must be a string, a number or null");
  if (req.value("jsonrpc", Json()) != "2.0" || !req.contains("method") || !req["method"].is_string()) {
    return Error(id, -32600, "invalid request: need {\"jsonrpc\":\"2.0\",\"method\":...,\"id\":...}");
  }
  if (std::string k = UnknownMember(req); !k.empty()) {
    return Error(id, -32600, "invalid request: unknown member '" + k + "'");
  }
  Json reply;
  auto it = methods_.find(req["method"].get<std::string>());
  if (it == methods_.end()) {
    reply = Error(id, -32601, "unknown method " + req["method"].get<std::string>());
  } else {
    reply = Call(id, it->second, req.contains("params") ? req["params"] : Json::object());
  }
  if (notification) return std::nullopt;  // JSON-RPC 2.0: never answered, even on error
  return reply;
}

Json RpcServer::Call(const Json& id, const Entry& e, const Json& params) {
  std::string field;
  Status st = CheckParams(params, e.spec, &field);
  if (!st.ok()) {
    return Error(id, -32602, "invalid params: " + st.message(), {{"errno", "EINVAL"}, {"field", field}});
  }
  Result<Json> r = Status::IoError("unreachable");
  try {
    r = e.method(params);
  } catch (const Json::exception& ex) {  // a spec that misses a check: still the caller's params
    return Error(id, -32602, std::string("invalid params: ") + ex.what(), {{"errno", "EINVAL"}});
  }
  if (!r.ok() && r.status().err() == EINVAL) {
    return Error(id, -32602, "invalid params: " + r.status().message(), {{"errno", "EINVAL"}});
  }
  if (!r.ok()) return Error(id, -r.status().err(), r.status().message(), {{"errno", ErrnoName(r.status().err())}});
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", r.value()}};
}

}  // namespace nestor::control
