#include "nestorctl/rpc_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "base/exit_code.h"
#include "base/fd.h"

namespace nestor::ctl {

const char kExitCodeHelp[] =
    "Exit codes:\n"
    "  0   success\n"
    "  2   usage error or invalid parameters (EINVAL, JSON-RPC errors)\n"
    "  3   not found (ENOENT: no such volume or export)\n"
    "  4   already exists (EEXIST: name taken, already exported)\n"
    "  5   no space (ENOSPC: pool full, too many volumes)\n"
    "  6   busy (EBUSY: exported or connected, use --force)\n"
    "  7   would discard data (ENOTEMPTY: shrinking below written data without --force)\n"
    "  8   corrupt pool (EUCLEAN)\n"
    "  9   other error (EOPNOTSUPP: nestord runs without --pool, ...)\n"
    "  10  cannot reach nestord (no socket, refused, timeout, malformed reply)\n";

namespace {

using Clock = std::chrono::steady_clock;

// Deeper replies are refused (nestord's never nest beyond a few levels).
constexpr int kMaxDepth = 64;

int ExitForErrno(int err) { return ExitCodeForErrno(err); }

int ErrnoFromName(std::string_view name) {
  static const struct {
    const char* name;
    int err;
  } kNames[] = {
      {"EINVAL", EINVAL},   {"ENOENT", ENOENT},         {"EEXIST", EEXIST},
      {"ENOSPC", ENOSPC},   {"EBUSY", EBUSY},           {"ENOTEMPTY", ENOTEMPTY},
      {"EUCLEAN", EUCLEAN}, {"EOPNOTSUPP", EOPNOTSUPP}, {"ENOTSUP", ENOTSUP},
      {"EIO", EIO},         {"EPERM", EPERM},           {"EACCES", EACCES},
  };
  for (const auto& n : kNames) {
    if (name == n.name) return n.err;
  }
  return 0;
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

// 1: ready, 0: deadline passed, -1: poll failed (errno).
int WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, RemainingMs(deadline));
    if (n > 0) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

RpcOutcome Unreachable(std::string message) {
  RpcOutcome o;
  o.exit = kExitUnreachable;
  o.message = std::move(message);
  return o;
}

std::string Errno() { return std::strerror(errno); }

// Connects the non-blocking socket `fd` to `path` before the deadline;
// "" on success, else why not.
std::string Connect(int fd, const std::string& path, Clock::time_point deadline) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return "empty socket path";
  if (path.size() >= sizeof(addr.sun_path)) return "socket path too long (max 107 bytes)";
  std::memcpy(addr.sun_path, path.data(), path.size());
  for (;;) {
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) return "";
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {  // the listen backlog is full: retry until the deadline
      int left = RemainingMs(deadline);
      if (left == 0) return "timed out connecting (nestord's control socket is saturated)";
      usleep(static_cast<useconds_t>(std::min(left, 10)) * 1000);
      continue;
    }
    if (errno != EINPROGRESS) return Errno();
    int r = WaitFor(fd, POLLOUT, deadline);
    if (r == 0) return "timed out connecting";
    if (r < 0) return Errno();
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return Errno();
    return err == 0 ? "" : std::strerror(err);
  }
}

std::string SendAll(int fd, std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return "sending the request: " + Errno();
    int r = WaitFor(fd, POLLOUT, deadline);
    if (r == 0) return "timed out sending the request";
    if (r < 0) return Errno();
  }
  return "";
}

// Reads up to the first newline (excluded) into *line; a last line without
// a newline before EOF is accepted. "" on success, else why not; *too_long
// when the line exceeds kMaxReplyBytes.
std::string ReadLine(int fd, Clock::time_point deadline, std::string* line, bool* too_long) {
  std::string buf;
  char chunk[65536];
  for (;;) {
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      size_t old = buf.size();
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl = buf.find('\n', old);
      if (nl != std::string::npos) {
        buf.resize(nl);
        *line = std::move(buf);
        return "";
      }
      if (buf.size() > kMaxReplyBytes) {
        *too_long = true;
        return "longer than 16 MiB";
      }
      continue;
    }
    if (n == 0) {
      if (buf.empty()) return "nestord closed the connection without replying";
      *line = std::move(buf);
      return "";
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return "reading the reply: " + Errno();
    int r = WaitFor(fd, POLLIN, deadline);
    if (r == 0) return "timed out waiting for the reply";
    if (r < 0) return Errno();
  }
}

}  // namespace

int ExitCodeForError(const ordered_json& error) {
  if (!error.is_object()) return kExitOther;
  auto data = error.find("data");
  if (data != error.end() && data->is_object()) {
    auto name = data->find("errno");
    if (name != data->end() && name->is_string()) {
      int err = ErrnoFromName(name->get<std::string>());
      if (err != 0) return ExitForErrno(err);
    }
  }
  auto code = error.find("code");
  if (code == error.end() || !code->is_number_integer()) return kExitOther;
  int64_t c = code->get<int64_t>();
  switch (c) {
    case -32700:  // parse error
    case -32600:  // invalid request
    case -32601:  // method not found
    case -32602:  // invalid params
      return kExitUsage;
    case -32000:  // refused by a connection limit ("too many connections")
      return kExitUnreachable;
    default: break;
  }
  if (c < 0 && c > -4096) return ExitForErrno(static_cast<int>(-c));
  return kExitOther;
}

RpcOutcome RpcCall(const std::string& socket_path, const std::string& method, const ordered_json& params,
                   int timeout_ms) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  ordered_json request{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}};
  if (!params.is_null() && !(params.is_object() && params.empty())) request["params"] = params;
  std::string line = request.dump(-1, ' ', false, ordered_json::error_handler_t::replace) + "\n";

  const std::string where = "cannot reach nestord at " + socket_path + ": ";
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Unreachable("socket: " + Errno());
  std::string err = Connect(fd.get(), socket_path, deadline);
  if (!err.empty()) return Unreachable(where + err);
  err = SendAll(fd.get(), line, deadline);
  if (!err.empty()) return Unreachable(where + err);
  const std::string bad = "malformed reply from nestord to " + method + ": ";
  std::string reply_text;
  bool too_long = false;
  err = ReadLine(fd.get(), deadline, &reply_text, &too_long);
  if (!err.empty()) return Unreachable((too_long ? bad : where) + err);
  fd.Reset();
  ordered_json reply;
  try {
    reply = ordered_json::parse(reply_text, [](int depth, ordered_json::parse_event_t, ordered_json&) {
      if (depth > kMaxDepth) throw std::length_error("nested too deeply");
      return true;
    });
  } catch (const std::exception& e) {
    return Unreachable(bad + e.what());
  }
  if (!reply.is_object()) return Unreachable(bad + "not a JSON object");
  auto version = reply.find("jsonrpc");
  if (version == reply.end() || *version != "2.0") return Unreachable(bad + "no \"jsonrpc\":\"2.0\"");

  auto error = reply.find("error");
  if (error != reply.end()) {
    if (!error->is_object()) return Unreachable(bad + "\"error\" is not an object");
    RpcOutcome o;
    o.exit = ExitCodeForError(*error);
    o.error = *error;
    auto msg = error->find("message");
    if (msg != error->end() && msg->is_string() && !msg->get<std::string>().empty()) {
      o.message = msg->get<std::string>();
    } else {
      auto code = error->find("code");
      int64_t c = code != error->end() && code->is_number_integer() ? code->get<int64_t>() : 0;
      o.message = c < 0 && c > -4096 ? std::strerror(static_cast<int>(-c)) : "error " + std::to_string(c);
    }
    return o;
  }
  auto id = reply.find("id");
  if (id == reply.end() || *id != 1) return Unreachable(bad + "wrong id");
  auto result = reply.find("result");
  if (result == reply.end()) return Unreachable(bad + "neither \"result\" nor \"error\"");
  RpcOutcome o;
  o.result = std::move(*result);
  return o;
}

}  // namespace nestor::ctl
