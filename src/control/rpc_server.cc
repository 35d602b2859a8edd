#include "control/rpc_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
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
};

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

Status RpcServer::Start() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof(addr.sun_path)) return Status::Invalid("control socket path too long: " + path_);
  std::strcpy(addr.sun_path, path_.c_str());
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status::Invalid(path_ + " exists and is not a socket");
    unlink(path_.c_str());
  }
  listen_fd_.Reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_.valid()) return Status::FromErrno("socket");
  mode_t old = umask(0077);  // owner only, from the first instant
  int rc = bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (rc != 0) return Status::FromErrno("bind " + path_);
  if (chmod(path_.c_str(), 0600) != 0) return Status::FromErrno("chmod " + path_);
  if (listen(listen_fd_.get(), 16) != 0) return Status::FromErrno("listen " + path_);
  stop_fd_.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return Status::FromErrno("eventfd");
  thread_ = std::thread([this] { Run(); });
  NLOG_INFO("control socket {}", path_);
  return Status::Ok();
}

void RpcServer::Stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  ssize_t unused = write(stop_fd_.get(), &one, sizeof(one));
  (void)unused;
  thread_.join();
  unlink(path_.c_str());
}

void RpcServer::Run() {
  pthread_setname_np(pthread_self(), "control");
  std::vector<Client> clients;
  for (;;) {
    std::vector<pollfd> pfds = {{stop_fd_.get(), POLLIN, 0}, {listen_fd_.get(), POLLIN, 0}};
    for (auto& c : clients) pfds.push_back({c.fd.get(), POLLIN, 0});
    if (poll(pfds.data(), pfds.size(), -1) < 0) continue;
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
        c.fd.Reset(-1);
      }
    }
    std::erase_if(clients, [](const Client& c) { return !c.fd.valid(); });
    if (pfds[1].revents & POLLIN) {
      UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd.valid() && clients.size() < kMaxClients) {
        clients.push_back(Client{std::move(fd), {}});
      } else if (fd.valid()) {
        NLOG_WARN("control: refusing a connection: {} already open", kMaxClients);
      }
    }
  }
}

std::string RpcServer::Handle(const std::string& line) {
  Json req = Json::parse(line, nullptr, false);
  if (req.is_discarded()) return Error(nullptr, -32700, "parse error").dump();
  return Dispatch(req).dump();
}

Json RpcServer::Dispatch(const Json& req) {
  Json id = req.is_object() && req.contains("id") ? req["id"] : Json(nullptr);
  if (!req.is_object() || req.value("jsonrpc", "") != "2.0" || !req.contains("method") ||
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
