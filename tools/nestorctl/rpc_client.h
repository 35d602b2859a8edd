// One JSON-RPC 2.0 call over nestord's control socket (docs/rpc.md): connect
// to the unix socket, write the request as one line, read one reply line.
//
// Thread: any; one call per RpcCall, blocking, bounded by `timeout_ms` in
// total (connect, write, read). Errors are returned, never thrown.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace nestor::ctl {

using nlohmann::ordered_json;

// The exit codes of nestorctl (docs/rpc.md, "nestorctl").
enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 2,         // usage error, EINVAL, JSON-RPC protocol errors
  kExitNotFound = 3,      // ENOENT
  kExitExists = 4,        // EEXIST
  kExitNoSpace = 5,       // ENOSPC
  kExitBusy = 6,          // EBUSY
  kExitWouldDiscard = 7,  // ENOTEMPTY
  kExitCorrupt = 8,       // EUCLEAN
  kExitOther = 9,         // any other error (EOPNOTSUPP, EIO, internal, ...)
  kExitUnreachable = 10,  // no socket, refused, timeout, malformed reply
};

// For --help.
extern const char kExitCodeHelp[];

// A call's outcome: exactly one of `result` (exit == kExitOk) or an error
// (`exit` != 0, `message` for stderr).
struct RpcOutcome {
  int exit = kExitOk;
  std::string message;
  ordered_json result;
  ordered_json error;  // nestord's JSON-RPC error object, when it sent one
};

// The exit code for a JSON-RPC error object: data.errno's name when it is
// given and known, else the code (-errno, or a JSON-RPC protocol code).
int ExitCodeForError(const ordered_json& error);

// Sends {"jsonrpc":"2.0","id":1,"method":method[,"params":params]}; params
// are omitted when `params` is null or an empty object.
RpcOutcome RpcCall(const std::string& socket_path, const std::string& method, const ordered_json& params,
                   int timeout_ms);

// Largest reply line accepted.
constexpr size_t kMaxReplyBytes = 16u << 20;

}  // namespace nestor::ctl
