#include "nestor-vm/clone.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <thread>

#include "nestorctl/rpc_client.h"
#include "volume/limits.h"

namespace nestor::vm {
namespace {

using nlohmann::ordered_json;

// volume_clone and the deletes are instant in nestord; the bound covers a
// busy control plane.
constexpr int kRpcTimeoutMs = 30'000;

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool IsSocket(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string Dump(const ordered_json& j) { return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace); }

// "cannot reach nestord at S: ..." gets a hint; nestord's own errors are
// kept as they are.
std::string Explain(const ctl::RpcOutcome& r) {
  if (r.exit == ctl::kExitUnreachable) return r.message + " (is nestord running? pass its --control SOCKET)";
  return r.message;
}

// The volume_list entry of NAME, or null.
ordered_json FindVolume(const std::string& control, const std::string& name) {
  ctl::RpcOutcome r = ctl::RpcCall(control, "volume_list", nullptr, kRpcTimeoutMs);
  if (r.exit != ctl::kExitOk) return nullptr;
  const ordered_json* list = &r.result;
  if (list->is_object() && list->contains("volumes")) list = &(*list)["volumes"];
  if (!list->is_array()) return nullptr;
  for (const ordered_json& v : *list) {
    if (v.is_object() && v.value("name", "") == name) return v;
  }
  return nullptr;
}

uint64_t U64(const ordered_json& v, const char* key) {
  auto it = v.find(key);
  return it != v.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

}  // namespace

std::string DefaultCloneName(std::string_view snapshot, std::string_view vm_name, pid_t pid) {
  std::string name;
  for (char c : vm_name) name += NameChar(c) ? c : '-';
  std::string suffix = fmt::format("-{}", static_cast<long>(pid));
  // Keep at least 16 characters of the snapshot's name.
  const size_t limit = volume::kMaxNameLen;
  if (name.size() + suffix.size() + 1 + 16 > limit) name.resize(limit - suffix.size() - 1 - 16);
  suffix = "-" + name + suffix;
  std::string snap(snapshot.substr(0, limit - suffix.size()));
  return snap + suffix;
}

ordered_json CloneParams(const VmOptions& o) {
  return ordered_json{{"snapshot", o.clone_of}, {"name", o.clone_name}, {"export", {{"queues", o.NumQueues()}}}};
}

std::string PlannedCloneSocket(const VmOptions& o) {
  std::string dir = ".";
  size_t slash = o.control_socket.rfind('/');
  if (slash == 0) {
    dir = "";
  } else if (slash != std::string::npos) {
    dir = o.control_socket.substr(0, slash);
  }
  return dir + "/" + o.clone_name + ".sock";
}

std::string SocketFromCloneResult(const ordered_json& result) {
  if (!result.is_object()) return "";
  for (const char* key : {"export", "exported"}) {
    auto e = result.find(key);
    if (e != result.end() && e->is_object()) {
      auto s = e->find("socket");
      if (s != e->end() && s->is_string()) return s->get<std::string>();
    }
  }
  auto s = result.find("socket");
  if (s != result.end() && s->is_string()) return s->get<std::string>();
  return "";
}

std::string DefaultControlSocket() {
  const char* env = std::getenv("NESTOR_CONTROL_SOCKET");
  return env && *env ? env : "/run/nestor/control.ctl";
}

Result<std::string> CloneLifecycle::Create() {
  const auto t0 = std::chrono::steady_clock::now();
  ordered_json params = CloneParams(o_);
  ctl::RpcOutcome r = ctl::RpcCall(o_.control_socket, "volume_clone", params, kRpcTimeoutMs);
  if (r.exit != ctl::kExitOk) {
    std::string why = Explain(r);
    if (r.exit == ctl::kExitNotFound) why += fmt::format(" (nestorctl snapshot list shows the snapshots)");
    return Status::Error(EIO, fmt::format("cannot clone snapshot '{}' as '{}': {}", o_.clone_of, o_.clone_name, why));
  }
  created_ = true;
  std::string sock = SocketFromCloneResult(r.result);
  if (sock.empty()) sock = PlannedCloneSocket(o_);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "nestor-vm: clone '%s' of snapshot '%s' created and exported at %s (%.1f ms)\n",
               o_.clone_name.c_str(), o_.clone_of.c_str(), sock.c_str(), ms);
  for (int i = 0; i < 1000 && !IsSocket(sock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!IsSocket(sock)) {
    return Status::Error(EIO, fmt::format("nestord exported clone '{}' but {} is not a socket after 10 s (result {})",
                                          o_.clone_name, sock, Dump(r.result)));
  }
  return sock;
}

Status CloneLifecycle::Remove() {
  if (!created_) return Status::Ok();
  const std::string& name = o_.clone_name;
  // QEMU has exited; nestord may not have seen the disconnect yet: force.
  ctl::RpcOutcome r =
      ctl::RpcCall(o_.control_socket, "export_delete", ordered_json{{"name", name}, {"force", true}}, kRpcTimeoutMs);
  if (r.exit != ctl::kExitOk && r.exit != ctl::kExitNotFound) {
    return Status::Error(EIO, fmt::format("export_delete of clone '{}': {}", name, Explain(r)));
  }
  if (o_.keep) {
    created_ = false;
    std::fprintf(stderr,
                 "nestor-vm: clone '%s' unexported and kept (--keep); delete it with: nestorctl volume delete %s\n",
                 name.c_str(), name.c_str());
    return Status::Ok();
  }
  ordered_json v = FindVolume(o_.control_socket, name);
  r = ctl::RpcCall(o_.control_socket, "volume_delete", ordered_json{{"name", name}, {"force", true}}, kRpcTimeoutMs);
  if (r.exit != ctl::kExitOk && r.exit != ctl::kExitNotFound) {
    return Status::Error(EIO, fmt::format("volume_delete of clone '{}': {}", name, Explain(r)));
  }
  created_ = false;
  if (v.is_object() && v.contains("delete_frees_bytes")) {
    std::fprintf(stderr, "nestor-vm: clone '%s' deleted (it held %llu bytes of its own: %llu bytes freed)\n",
                 name.c_str(), static_cast<unsigned long long>(U64(v, "allocated_bytes")),
                 static_cast<unsigned long long>(U64(v, "delete_frees_bytes")));
  } else if (v.is_object() && v.contains("allocated_bytes")) {
    // A Ceph pool (docs/ceph.md) knows what an image holds, not what
    // deleting it frees: no "0 bytes freed".
    std::fprintf(stderr, "nestor-vm: clone '%s' deleted (it held %llu bytes of its own)\n", name.c_str(),
                 static_cast<unsigned long long>(U64(v, "allocated_bytes")));
  } else {
    std::fprintf(stderr, "nestor-vm: clone '%s' deleted\n", name.c_str());
  }
  return Status::Ok();
}

}  // namespace nestor::vm
