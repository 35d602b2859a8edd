#include "control/rpc_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "base/log.h"

namespace nestor::control {
namespace {

Json Error(const Json& id, int code, const std::string& msg, const char* errno_name = nullptr) {
  Json e = {{"code", code}, {"message", msg}};
  if (errno_name != nullptr) e["data"] = {{"errno", errno_name}};
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", e}};
}

struct Client {
  UniqueFd fd;
  std::string in;
  std::chrono::steady_clock::time_point last;  // last complete request (or accept)
};

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
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
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

// Best effort, never blocking: the refused client may not be reading.
void SendAndClose(UniqueFd fd, const std::string& line) {
  ssize_t unused = send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  (void)unused;
}

}  // namespace

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
    case EIO: return "EIO";
    default: return "EIO";
  }
}

RpcServer::~RpcServer() { Stop(); }

Status RpcServer::Bind() {
  if (listener_.listening()) return Status::Ok();
  return listener_.Listen(path_, 16, 0600);  // owner only, from the first instant
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

void RpcServer::Run() {
  pthread_setname_np(pthread_self(), "control");
  std::vector<Client> clients;
  for (;;) {
    std::vector<pollfd> pfds = {{stop_fd_.get(), POLLIN, 0}, {listener_.fd(), POLLIN, 0}};
    for (auto& c : clients) pfds.push_back({c.fd.get(), POLLIN, 0});
    // Wake for the first idle deadline.
    auto now = std::chrono::steady_clock::now();
    int timeout = -1;
    for (auto& c : clients) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.last + idle_ - now).count();
      timeout = timeout < 0 ? static_cast<int>(std::max<int64_t>(left, 0)) : std::min(timeout, static_cast<int>(std::max<int64_t>(left, 0)));
    }
    if (poll(pfds.data(), pfds.size(), timeout) < 0) continue;
    if (pfds[0].revents) break;
    for (size_t i = 0; i < clients.size(); ++i) {
      if (!pfds[i + 2].revents) continue;
      Client& c = clients[i];
      char buf[65536];
      ssize_t n = read(c.fd.get(), buf, sizeof(buf));
      if (n <= 0) {
        c.fd.Reset(-1);
        continue;
      }
      c.in.append(buf, static_cast<size_t>(n));
      size_t nl;
      while (c.fd.valid() && (nl = c.in.find('\n')) != std::string::npos) {
        if (nl > kMaxRequest) break;  // too long, even though complete: closed below
        c.last = std::chrono::steady_clock::now();
        std::string reply = Handle(c.in.substr(0, nl)) + "\n";
        c.in.erase(0, nl + 1);
        // Replies are small; a client that does not read gets cut off
        // after 5 s rather than stalling the control thread for ever.
        size_t off = 0;
        while (off < reply.size()) {
          pollfd w{c.fd.get(), POLLOUT, 0};
          if (poll(&w, 1, 5000) <= 0) break;
          ssize_t k = send(c.fd.get(), reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
          if (k <= 0) break;
          off += static_cast<size_t>(k);
        }
        if (off < reply.size()) c.fd.Reset(-1);
      }
      if (c.fd.valid() && c.in.size() > kMaxRequest) {
        NLOG_WARN("control: request over {} bytes, closing the connection", kMaxRequest);
        SendAndClose(std::move(c.fd), Error(nullptr, -32600, "request over " + std::to_string(kMaxRequest) +
                                                                 " bytes").dump() + "\n");
      }
    }
    now = std::chrono::steady_clock::now();
    for (Client& c : clients) {
      if (c.fd.valid() && now - c.last >= idle_) {
        NLOG_INFO("control: closing a connection idle for {} ms", idle_.count());
        c.fd.Reset(-1);
      }
    }
    std::erase_if(clients, [](const Client& c) { return !c.fd.valid(); });
    if (pfds[1].revents & POLLIN) {
      UniqueFd fd(accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd.valid() && clients.size() < kMaxClients) {
        clients.push_back(Client{std::move(fd), {}, std::chrono::steady_clock::now()});
      } else if (fd.valid()) {
        NLOG_WARN("control: refusing a connection: {} already open", kMaxClients);
        SendAndClose(std::move(fd), Error(nullptr, -32000, "too many connections (" +
                                                                std::to_string(kMaxClients) + " open)").dump() + "\n");
      }
    }
  }
}

std::string RpcServer::Handle(const std::string& line) {
  if (TooDeep(line)) {
    std::string why = "invalid request: nested deeper than " + std::to_string(kMaxDepth) + " levels";
    return Error(nullptr, -32600, why).dump();
  }
  Json req = Json::parse(line, nullptr, false);
  if (req.is_discarded()) return Error(nullptr, -32700, "parse error").dump();
  return Dispatch(req).dump();
}

Json RpcServer::Dispatch(const Json& req) {
  Json id = req.is_object() && req.contains("id") ? req["id"] : Json(nullptr);
  // find, not value(): value() throws when "jsonrpc" is there but not a string.
  auto version = req.is_object() ? req.find("jsonrpc") : req.end();
  if (!req.is_object() || version == req.end() || *version != "2.0" || !req.contains("method") ||
      !req["method"].is_string()) {
    return Error(id, -32600, "invalid request: need {\"jsonrpc\":\"2.0\",\"method\":...,\"id\":...}");
  }
  auto it = methods_.find(req["method"].get<std::string>());
  if (it == methods_.end()) return Error(id, -32601, "unknown method " + req["method"].get<std::string>());
  Json params = req.contains("params") ? req["params"] : Json::object();
  if (!params.is_object()) return Error(id, -32602, "params must be an object");
  Result<Json> r = Status::IoError("unreachable");
  try {
    r = it->second(params);
  } catch (const Json::exception& e) {  // a parameter of the wrong type
    return Error(id, -32602, std::string("invalid params: ") + e.what());
  }
  if (!r.ok()) return Error(id, -r.status().err(), r.status().message(), ErrnoName(r.status().err()));
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", r.value()}};
}

}  // namespace nestor::control
