// Fuzz target rpc: JSON-RPC parsing and dispatch (control/rpc_server.*)
// against a real daemon::Controller (daemon/controller.*) serving a small
// pool: every method of docs/rpc.md, with exports that create real vhost
// sockets. Every request line must get one reply line that is valid JSON;
// nothing may crash, hang or leak.
//
// Set-up (once per process): a temporary directory on /dev/shm (tmpfs, so
// the pool's syncs are cheap) holding an 8 MiB pool with 4 KiB clusters,
// one reactor in interrupt mode and the Controller on them; the methods
// are registered on an RpcServer that is never bound: the harness calls
// RpcServer::Handle(line), the entry point the control thread uses.
//
// Input: request lines separated by '\n' (at most 64 per input). A line
// that starts with '{' or '[' goes to Handle as it is. Any other line is
// shorthand: its first byte picks a method (byte % 18, in the order of
// kMethods) and the rest of the line is the params JSON, wrapped into
// {"jsonrpc":"2.0","id":N,"method":M,"params":REST} (so the fuzzer reaches
// the methods without having to spell their names).
//
// Between inputs the harness deletes every export and volume (through the
// same RPC methods, with force), so each input starts from an empty pool;
// every 500 inputs, or if that clean-up fails, it rebuilds the controller
// and the pool from scratch, so no state accumulates.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/log.h"
#include "control/rpc_server.h"
#include "daemon/controller.h"
#include "daemon/options.h"
#include "reactor/reactor.h"
#include "volume/pool.h"

namespace nestor::daemon {
namespace {

using control::Json;

// New methods go at the end: a shorthand byte below the old count keeps
// naming the same method, so the corpus keeps its meaning.
constexpr const char* kMethods[] = {"pool_info",       "volume_create",   "volume_delete", "volume_resize",
                                    "volume_list",     "export_create",   "export_delete", "export_list",
                                    "qos_set",         "qos_get",         "reactor_list",  "stats_get",
                                    "snapshot_create", "snapshot_delete", "snapshot_list", "volume_clone",
                                    "volume_inflate",  "volume_decouple", "status"};
constexpr size_t kMaxLines = 64;
constexpr int kRebuildEvery = 500;

struct Harness {
  std::string dir;
  std::string pool_path;
  std::unique_ptr<reactor::Reactor> reactor;
  std::unique_ptr<Controller> ctl;
  std::unique_ptr<control::RpcServer> rpc;
  int runs = 0;
};
Harness* g = nullptr;

void Die(const std::string& what) {
  fprintf(stderr, "rpc harness: %s\n", what.c_str());
  abort();
}

void FormatPool() {
  std::filesystem::remove(g->pool_path);
  auto dev = volume::OpenFilePoolDevice(g->pool_path, true, 8ull << 20);
  if (!dev.ok()) Die("pool device: " + dev.status().ToString());
  Status st = volume::Pool::Format(dev->get(), 4096, true);
  if (!st.ok()) Die("pool format: " + st.ToString());
}

void StartController() {
  FormatPool();
  Options o;
  o.socket_dir = g->dir;
  o.pool = g->pool_path;
  o.journal_dir = "";  // none: the pool's own commits only
  o.control_socket = g->dir + "/control.ctl";
  o.queue_stop_timeout_ms = 1000;
  g->ctl = std::make_unique<Controller>(o, std::vector<reactor::Reactor*>{g->reactor.get()});
  g->rpc = std::make_unique<control::RpcServer>(o.control_socket);
  g->ctl->RegisterMethods(g->rpc.get());
  Status st = g->ctl->Start();
  if (!st.ok()) Die("controller start: " + st.ToString());
}

void StopController() {
  g->rpc.reset();
  g->ctl.reset();  // ends the exports, closes (commits) the pool
}

// One line through Handle; the reply must be one line of JSON.
// The reply: an object, an array of objects (a batch), or nothing (only
// notifications: null).
Json Call(const std::string& line) {
  std::string reply = g->rpc->Handle(line);
  if (reply.empty()) return nullptr;
  if (reply.find('\n') != std::string::npos) Die("reply spans lines: " + reply);
  Json r = Json::parse(reply, nullptr, false);
  if (r.is_discarded() || !(r.is_object() || r.is_array())) Die("reply is not a JSON object or array: " + reply);
  if (r.is_array()) {
    for (const Json& e : r) {
      if (!e.is_object()) Die("batch reply holds a non-object: " + reply);
    }
  }
  return r;
}

Json CallMethod(const std::string& method, const Json& params) {
  return Call(Json{{"jsonrpc", "2.0"}, {"id", 0}, {"method", method}, {"params", params}}.dump());
}

// Names of the result array's entries (export_list, volume_list).
std::vector<std::string> Names(const Json& reply) {
  std::vector<std::string> out;
  if (!reply.contains("result") || !reply["result"].is_array()) return out;
  for (const Json& e : reply["result"]) {
    if (e.is_object() && e.contains("name") && e["name"].is_string()) out.push_back(e["name"].get<std::string>());
  }
  return out;
}

// Back to an empty pool with no exports; false if that did not work.
bool CleanUp() {
  for (const std::string& n : Names(CallMethod("export_list", Json::object()))) {
    CallMethod("export_delete", {{"name", n}, {"force", true}});
  }
  // Clones before their snapshots: repeat while a pass deletes something
  // (each pass removes at least the leaves of the image tree).
  for (size_t before = SIZE_MAX;;) {
    auto names = Names(CallMethod("volume_list", Json::object()));
    if (names.empty() || names.size() >= before) break;
    before = names.size();
    for (const std::string& n : names) CallMethod("volume_delete", {{"name", n}, {"force", true}});
  }
  return Names(CallMethod("export_list", Json::object())).empty() &&
         Names(CallMethod("volume_list", Json::object())).empty();
}

std::string Expand(const std::string& line, size_t id) {
  if (!line.empty() && (line[0] == '{' || line[0] == '[')) return line;
  const char* method = kMethods[(line.empty() ? 0 : static_cast<uint8_t>(line[0])) % std::size(kMethods)];
  std::string params = line.size() > 1 ? line.substr(1) : "{}";
  return R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":")" + method + R"(","params":)" + params + "}";
}

void Run(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  size_t start = 0;
  for (size_t n = 0; n < kMaxLines && start <= in.size(); ++n) {
    size_t nl = in.find('\n', start);
    std::string line = in.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    Call(Expand(line, n));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  if (!CleanUp() || ++g->runs % kRebuildEvery == 0) {
    StopController();
    StartController();
  }
}

}  // namespace
}  // namespace nestor::daemon

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace nestor::daemon;
  if (getenv("NESTOR_FUZZ_LOG") == nullptr) {  // every export and commit logs at info
    nestor::SetLogLevel(static_cast<nestor::LogLevel>(static_cast<int>(nestor::LogLevel::kError) + 1));
  }
  g = new Harness;
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  std::string tmpl = std::string(base) + "/nestor-fuzz-rpc.XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) Die("mkdtemp");
  g->dir = tmpl;
  g->pool_path = g->dir + "/pool.img";
  nestor::reactor::ReactorOptions ro;
  ro.mode = nestor::reactor::PollMode::kInterrupt;  // asleep while the harness works
  g->reactor = std::make_unique<nestor::reactor::Reactor>(ro);
  if (!g->reactor->Start().ok()) Die("reactor start");
  StartController();
  atexit([] {
    StopController();
    (void)g->reactor->Stop();
    std::error_code ec;
    std::filesystem::remove_all(g->dir, ec);
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nestor::daemon::Run(data, size);
  return 0;
}
