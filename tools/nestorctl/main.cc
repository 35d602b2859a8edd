// nestorctl: the operator CLI over nestord's JSON-RPC control socket
// (docs/rpc.md, "nestorctl"). Every subcommand is one RPC call:
//
//   nestorctl [-s SOCKET] [--json] pool info                 pool_info
//   nestorctl volume create NAME --size SIZE [--preallocate] volume_create
//   nestorctl volume delete NAME [--force]                   volume_delete
//   nestorctl volume resize NAME --size SIZE [--force]       volume_resize
//   nestorctl volume list                                    volume_list
//   nestorctl volume clone SNAP NAME [--export [EXPORT FLAGS]] volume_clone
//   nestorctl volume inflate NAME                            volume_inflate
//   nestorctl volume decouple NAME                           volume_decouple
//   nestorctl snapshot create VOLUME NAME                    snapshot_create
//   nestorctl snapshot delete NAME [--force]                 snapshot_delete
//   nestorctl snapshot list                                  snapshot_list
//   nestorctl export create NAME [--queues N] [--readonly] [--frontends N]   export_create
//             [--socket-owner U] [--socket-group G] [--socket-mode MODE]
//             [--allow-uid U,...] [--allow-gid G,...]
//   nestorctl export delete NAME [--force]                   export_delete
//   nestorctl export list                                    export_list
//   nestorctl qos set NAME [--read-iops N] [--write-iops N]
//                          [--read-bps SIZE] [--write-bps SIZE]  qos_set
//   nestorctl qos get NAME                                   qos_get
//   nestorctl reactor list                                   reactor_list
//   nestorctl stats [NAME]                                   stats_get
//   nestorctl status                                         status
//   nestorctl call METHOD [JSON-PARAMS]                      any method
//
// The socket is -s/--socket, else $NESTOR_CONTROL_SOCKET, else
// /run/nestor/control.ctl. Human tables by default; --json (before or
// after the subcommand) prints the method's result as JSON. Errors go to
// stderr as "nestorctl: <message>" with the exit code of kExitCodeHelp.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string_view>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "base/size.h"
#include "common/cli.h"
#include "nestorctl/format.h"
#include "nestorctl/rpc_client.h"
#include "base/version.h"
#include "volume/format.h"

namespace nestor::ctl {
namespace {

constexpr char kDefaultSocket[] = "/run/nestor/control.ctl";
// volume inflate/decouple copy data in the call: their default --timeout.
constexpr double kCopyTimeoutS = 3600;

const char kSynopsis[] =
    "Commands (global options -s, --json, --timeout go anywhere):\n"
    "  nestorctl [-s SOCKET] [--json] pool info\n"
    "  nestorctl volume create NAME --size SIZE [--preallocate]\n"
    "  nestorctl volume delete NAME [--force]\n"
    "  nestorctl volume resize NAME --size SIZE [--force]\n"
    "  nestorctl volume list\n"
    "  nestorctl volume clone SNAPSHOT NAME [--export [--queues N] [--readonly] [--socket-owner U] ...]\n"
    "  nestorctl volume inflate NAME\n"
    "  nestorctl volume decouple NAME\n"
    "  nestorctl snapshot create VOLUME NAME\n"
    "  nestorctl snapshot delete NAME [--force]\n"
    "  nestorctl snapshot list\n"
    "  nestorctl export create NAME [--queues N] [--readonly] [--frontends N [--shared-writers]]\n"
    "                           [--socket-owner U] [--socket-group G] [--socket-mode MODE]\n"
    "                           [--allow-uid U,...] [--allow-gid G,...]\n"
    "  nestorctl export delete NAME [--force]\n"
    "  nestorctl export list\n"
    "  nestorctl qos set NAME [--read-iops N] [--write-iops N] [--read-bps SIZE] [--write-bps SIZE]\n"
    "  nestorctl qos get NAME\n"
    "  nestorctl reactor list\n"
    "  nestorctl stats [NAME]\n"
    "  nestorctl status\n"
    "  nestorctl call METHOD [JSON-PARAMS]      # any method, raw JSON result\n"
    "SIZE: bytes, or with a K/M/G/T/P/E suffix (binary units), e.g. 20G.\n";

// --json: errors go to stderr as one JSON object too (docs/rpc.md).
bool g_json_errors = false;

// Prints an error (plain, or JSON with --json) and returns `exit`. `error`
// is nestord's JSON-RPC error object when it sent one.
int Fail(int exit, const std::string& message, const ordered_json& error = nullptr) {
  if (!g_json_errors) {
    std::fprintf(stderr, "nestorctl: %s\n", message.c_str());
    return exit;
  }
  ordered_json e = error.is_object() ? error : ordered_json{{"message", message}};
  e["exit"] = exit;
  std::fprintf(stderr, "%s\n",
               ordered_json{{"error", e}}.dump(-1, ' ', false, ordered_json::error_handler_t::replace).c_str());
  return exit;
}

int Usage(const std::string& message) { return Fail(kExitUsage, message); }

// ParseSize for an option value; false after printing the error.
bool SizeArg(const char* option, const std::string& text, uint64_t* out) {
  auto s = ParseSize(text);
  if (!s.ok()) {
    Usage(std::string(option) + ": " + s.status().message());
    return false;
  }
  *out = *s;
  return true;
}

// A plain decimal count (IOPS); false after printing the error.
bool CountArg(const char* option, const std::string& text, uint64_t* out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  if (ec != std::errc() || p != text.data() + text.size() || text.empty()) {
    Usage(std::string(option) + ": bad number '" + text + "'");
    return false;
  }
  return true;
}

// A user or group for the RPC: an id (all digits) as a number, else the
// name as a string (nestord resolves it).
ordered_json IdJson(const std::string& text) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc() && p == text.data() + text.size() && !text.empty()) return v;
  return text;
}

// What one subcommand sends, and how its result reads for a human.
struct Call {
  std::string method;
  ordered_json params = ordered_json::object();
  std::function<bool(const ordered_json&)> print;  // false: unexpected result shape
};

// The flags of `export create`, also taken by `volume clone --export`.
struct ExportFlags {
  int queues = 0;
  bool readonly = false;
  int frontends = 0;
  bool shared_writers = false;
  std::string socket_owner, socket_group, socket_mode;
  std::vector<std::string> allow_uids, allow_gids;

  void Add(CLI::App* app) {
    app->add_option("--queues", queues, "virtqueues, 1..64 (default 1)")->type_name("N");
    app->add_flag("--readonly", readonly, "refuse writes");
    app->add_option("--frontends", frontends,
                    "frontends (VMs, clients) attached at once, 1..64 (default 1); more than one needs --readonly "
                    "or --shared-writers")
        ->type_name("N");
    app->add_flag("--shared-writers", shared_writers,
                  "let several frontends write (the guests must coordinate, as on a shared SCSI disk)");
    app->add_option("--socket-owner", socket_owner, "owner of the socket file: user name or uid")->type_name("U");
    app->add_option("--socket-group", socket_group, "group of the socket file: group name or gid")->type_name("G");
    app->add_option("--socket-mode", socket_mode, "permission bits of the socket file, octal, e.g. 0660")
        ->type_name("MODE");
    app->add_option("--allow-uid", allow_uids,
                    "admit only these peers (with --allow-gid: either list): user names or uids")
        ->type_name("U,...")
        ->delimiter(',');
    app->add_option("--allow-gid", allow_gids, "admit peers whose group (gid) is one of these")
        ->type_name("G,...")
        ->delimiter(',');
  }
  // The first of them given on `app`, or "" if none.
  static std::string FirstGiven(CLI::App* app) {
    for (const char* o : {"--queues", "--readonly", "--frontends", "--shared-writers", "--socket-owner",
                          "--socket-group", "--socket-mode", "--allow-uid", "--allow-gid"}) {
      if (app->count(o) != 0) return o;
    }
    return "";
  }
  // export_create's params (without the name).
  void ToParams(CLI::App* app, ordered_json* params) const {
    if (app->count("--queues") != 0) (*params)["queues"] = queues;  // nestord checks the range
    if (readonly) (*params)["readonly"] = true;
    if (app->count("--frontends") != 0) (*params)["frontends"] = frontends;  // nestord checks the range
    if (shared_writers) (*params)["shared_writers"] = true;
    if (app->count("--socket-owner") != 0) (*params)["socket_owner"] = IdJson(socket_owner);
    if (app->count("--socket-group") != 0) (*params)["socket_group"] = IdJson(socket_group);
    if (app->count("--socket-mode") != 0) (*params)["socket_mode"] = socket_mode;
    if (!allow_uids.empty()) {
      (*params)["allow_uids"] = ordered_json::array();
      for (const std::string& u : allow_uids) (*params)["allow_uids"].push_back(IdJson(u));
    }
    if (!allow_gids.empty()) {
      (*params)["allow_gids"] = ordered_json::array();
      for (const std::string& g : allow_gids) (*params)["allow_gids"].push_back(IdJson(g));
    }
  }
};

// "export db0 created: /run/nestor/db0.sock (2 queues, read-only)"
void PrintExportCreated(const std::string& name, const ordered_json& r) {
  std::string q = IntField(r, "queues");
  int frontends = r.is_object() ? r.value("frontends", 1) : 1;
  std::string shared = frontends > 1 ? ", up to " + std::to_string(frontends) + " frontends" : "";
  std::printf("export %s created: %s (%s queue%s%s%s)\n", name.c_str(), StrField(r, "socket").c_str(), q.c_str(),
              q == "1" ? "" : "s", r.is_object() && r.value("readonly", false) ? ", read-only" : "", shared.c_str());
}

int Main(int argc, char** argv) {
  CLI::App app{"nestorctl: control a running nestord over its JSON-RPC socket (docs/rpc.md)", "nestorctl"};
  app.set_version_flag("--version", VersionLine("nestorctl", volume::kFormatVersion), "print the version and exit");
  app.fallthrough();  // global options after the subcommand too
  app.require_subcommand(1);

  std::string socket;
  bool json = false;
  double timeout_s = 10;
  app.add_option("-s,--socket", socket,
                 std::string("nestord's control socket (default: $NESTOR_CONTROL_SOCKET, else ") + kDefaultSocket + ")")
      ->type_name("PATH");
  app.add_flag("--json", json, "print the method's result as JSON (before or after the subcommand)");
  app.add_option("--timeout", timeout_s,
                 "seconds to wait for nestord, per call (default 10; volume inflate/decouple: 3600)")
      ->type_name("SECONDS");

  std::string name, source, size_text, method, params_text;
  std::string read_iops, write_iops, read_bps, write_bps;
  ExportFlags export_flags;
  bool force = false, preallocate = false, clone_export = false;

  CLI::App* pool = app.add_subcommand("pool", "the pool nestord serves (--pool)");
  pool->require_subcommand(1);
  CLI::App* pool_info = pool->add_subcommand("info", "size, usage and metadata counters of the pool");

  CLI::App* vol = app.add_subcommand("volume", "create, delete, resize and list the pool's volumes");
  vol->require_subcommand(1);
  CLI::App* vol_create = vol->add_subcommand("create", "create a thin volume (or a fully reserved one)");
  vol_create->add_option("NAME", name, "volume name")->required();
  vol_create->add_option("--size", size_text, "volume size, a multiple of 4K, e.g. 20G")->type_name("SIZE")->required();
  vol_create->add_flag("--preallocate", preallocate, "reserve all of the volume's space in the pool now");
  CLI::App* vol_delete = vol->add_subcommand("delete", "delete a volume and free its space");
  vol_delete->add_option("NAME", name, "volume name")->required();
  vol_delete->add_flag("--force", force, "delete even while exported (its clients are disconnected)");
  CLI::App* vol_resize = vol->add_subcommand("resize", "grow or shrink a volume");
  vol_resize->add_option("NAME", name, "volume name")->required();
  vol_resize->add_option("--size", size_text, "new size, a multiple of 4K")->type_name("SIZE")->required();
  vol_resize->add_flag("--force", force, "shrink even below written data, discarding it");
  CLI::App* vol_list =
      vol->add_subcommand("list", "list the pool's volumes, snapshots and clones, with parents and space");
  CLI::App* vol_clone = vol->add_subcommand(
      "clone", "create a writable clone of a snapshot (instant; it reads through to the snapshot until written)");
  vol_clone->add_option("SNAPSHOT", source, "the snapshot to clone")->required();
  vol_clone->add_option("NAME", name, "name of the new clone")->required();
  vol_clone->add_flag("--export", clone_export,
                      "export the clone too, in the same call (the export flags of 'export create' apply; if the "
                      "export fails, the clone is deleted again)");
  export_flags.Add(vol_clone);
  CLI::App* vol_inflate =
      vol->add_subcommand("inflate", "copy into a clone everything it reads from its snapshots, then drop its parent");
  vol_inflate->add_option("NAME", name, "the clone")->required();
  CLI::App* vol_decouple = vol->add_subcommand(
      "decouple", "copy into a clone what its parent snapshot holds itself, then take the grandparent as parent");
  vol_decouple->add_option("NAME", name, "the clone")->required();

  CLI::App* snap = app.add_subcommand("snapshot", "read-only point-in-time images of volumes");
  snap->require_subcommand(1);
  CLI::App* snap_create = snap->add_subcommand(
      "create",
      "snapshot a volume or clone, also while it is exported and under I/O (the volume becomes a clone of it)");
  snap_create->add_option("VOLUME", source, "the volume or clone to snapshot")->required();
  snap_create->add_option("NAME", name, "name of the new snapshot")->required();
  CLI::App* snap_delete = snap->add_subcommand(
      "delete", "delete a snapshot (refused while it has clones: delete, inflate or decouple them)");
  snap_delete->add_option("NAME", name, "snapshot name")->required();
  snap_delete->add_flag("--force", force, "delete even while exported (its clients are disconnected)");
  CLI::App* snap_list = snap->add_subcommand("list", "list the snapshots with their clones and space");

  CLI::App* exp = app.add_subcommand("export", "serve volumes as vhost-user-blk sockets");
  exp->require_subcommand(1);
  CLI::App* exp_create = exp->add_subcommand("create", "export a volume as <socket-dir>/NAME.sock");
  exp_create->add_option("NAME", name, "volume name (a snapshot: with --readonly)")->required();
  export_flags.Add(exp_create);
  CLI::App* exp_delete = exp->add_subcommand("delete", "stop exporting a volume (its data stays)");
  exp_delete->add_option("NAME", name, "volume name")->required();
  exp_delete->add_flag("--force", force, "delete even while a client is connected (it is disconnected)");
  CLI::App* exp_list = exp->add_subcommand("list", "list the exports");

  CLI::App* qos = app.add_subcommand("qos", "per-export rate limits");
  qos->require_subcommand(1);
  CLI::App* qos_set = qos->add_subcommand("set", "change limits (0 = unlimited; omitted = unchanged)");
  qos_set->add_option("NAME", name, "export name")->required();
  qos_set->add_option("--read-iops", read_iops, "read operations per second")->type_name("N");
  qos_set->add_option("--write-iops", write_iops, "write operations per second")->type_name("N");
  qos_set->add_option("--read-bps", read_bps, "read bytes per second, e.g. 100M")->type_name("SIZE");
  qos_set->add_option("--write-bps", write_bps, "write bytes per second, e.g. 100M")->type_name("SIZE");
  CLI::App* qos_get = qos->add_subcommand("get", "show an export's limits");
  qos_get->add_option("NAME", name, "export name")->required();

  CLI::App* reactor = app.add_subcommand("reactor", "the polling threads");
  reactor->require_subcommand(1);
  CLI::App* reactor_list = reactor->add_subcommand("list", "time split, poll efficiency and requests per reactor");

  CLI::App* stats = app.add_subcommand("stats", "I/O counters and latency per exported volume and queue");
  stats->add_option("NAME", name, "one volume (default: every export)");

  CLI::App* status = app.add_subcommand(
      "status", "the daemon at a glance: version, uptime, reactors, pool, exports, warnings (exit 0 either way)");

  CLI::App* call = app.add_subcommand("call", "call any method; prints the raw JSON result");
  call->add_option("METHOD", method, "method name, e.g. volume_list")->required();
  call->add_option("JSON-PARAMS", params_text, "params, a JSON object");

  // Set last: subcommands would inherit it.
  app.footer(std::string(kSynopsis) + "\n" + kExitCodeHelp + "\nThe socket is -s/--socket, else " +
             "$NESTOR_CONTROL_SOCKET, else " + kDefaultSocket + ".");

  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") g_json_errors = true;  // before parsing: its errors too
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::string sub = cli::SubcommandError(app, argc, argv, {"-s", "--socket", "--timeout"});
    return Usage((sub.empty() ? std::string(e.what()) : sub) + (g_json_errors ? "" : "\n(see nestorctl --help)"));
  }

  if (!(timeout_s >= 0.001 && timeout_s <= 3600)) return Usage("--timeout: give 0.001 to 3600 seconds");

  Call c;
  auto confirm = [](std::function<void(const ordered_json&)> f) {
    return [f](const ordered_json& r) {
      f(r);
      return true;
    };
  };
  uint64_t size = 0;
  if (*pool_info) {
    c = {"pool_info", {}, PrintPoolInfo};
  } else if (*vol_create) {
    if (!SizeArg("--size", size_text, &size)) return kExitUsage;
    c = {"volume_create", {{"name", name}, {"size", size}}, confirm([&](const ordered_json& r) {
           std::string s = SizeField(r, "size");
           std::printf("volume %s created (%s%s)\n", name.c_str(), s == "-" ? HumanSize(size).c_str() : s.c_str(),
                       preallocate ? ", preallocated" : "");
         })};
    if (preallocate) c.params["preallocate"] = true;
  } else if (*vol_delete) {
    c = {"volume_delete", {{"name", name}}, confirm([&](const ordered_json&) {
           std::printf("volume %s deleted\n", name.c_str());
         })};
    if (force) c.params["force"] = true;
  } else if (*vol_resize) {
    if (!SizeArg("--size", size_text, &size)) return kExitUsage;
    c = {"volume_resize", {{"name", name}, {"size", size}}, confirm([&](const ordered_json& r) {
           std::string s = SizeField(r, "size");
           std::printf("volume %s resized to %s\n", name.c_str(), s == "-" ? HumanSize(size).c_str() : s.c_str());
         })};
    if (force) c.params["force"] = true;
  } else if (*vol_list) {
    c = {"volume_list", {}, PrintVolumeList};
  } else if (*vol_clone) {
    std::string stray = ExportFlags::FirstGiven(vol_clone);
    if (!clone_export && !stray.empty()) return Usage("volume clone: " + stray + " needs --export");
    c = {"volume_clone", {{"snapshot", source}, {"name", name}}, confirm([&](const ordered_json& r) {
           std::printf("clone %s of %s created\n", name.c_str(), source.c_str());
           if (r.is_object() && r.contains("export")) PrintExportCreated(name, r["export"]);
         })};
    if (clone_export) {
      c.params["export"] = ordered_json::object();
      export_flags.ToParams(vol_clone, &c.params["export"]);
    }
  } else if (*vol_inflate || *vol_decouple) {
    bool inflate = vol_inflate->parsed();
    c = {inflate ? "volume_inflate" : "volume_decouple", {{"name", name}}, confirm([&, inflate](const ordered_json& r) {
           const ordered_json& parent = r.is_object() && r.contains("parent") ? r["parent"] : ordered_json();
           std::string now = parent.is_string() ? "its parent is now " + parent.get<std::string>() : "it has no parent";
           std::printf("volume %s %s: %s\n", name.c_str(), inflate ? "inflated" : "decoupled", now.c_str());
         })};
    // They copy data: allow them more than the usual 10 s unless told.
    if (app.count("--timeout") == 0) timeout_s = kCopyTimeoutS;
  } else if (*snap_create) {
    c = {"snapshot_create", {{"volume", source}, {"name", name}}, confirm([&](const ordered_json& r) {
           // A local pool's source becomes a clone of its snapshot (it is
           // among the snapshot's children); a Ceph pool's stays as it was.
           bool now_clone = false;
           if (r.is_object() && r.contains("children") && r["children"].is_array()) {
             for (const auto& child : r["children"]) now_clone = now_clone || child == source;
           }
           std::printf("snapshot %s of %s created%s\n", name.c_str(), source.c_str(),
                       now_clone ? (" (" + source + " is now a clone of it)").c_str() : "");
         })};
  } else if (*snap_delete) {
    c = {"snapshot_delete", {{"name", name}}, confirm([&](const ordered_json&) {
           std::printf("snapshot %s deleted\n", name.c_str());
         })};
    if (force) c.params["force"] = true;
  } else if (*snap_list) {
    c = {"snapshot_list", {}, PrintSnapshotList};
  } else if (*exp_create) {
    c = {"export_create", {{"name", name}}, confirm([&](const ordered_json& r) { PrintExportCreated(name, r); })};
    export_flags.ToParams(exp_create, &c.params);
  } else if (*exp_delete) {
    c = {"export_delete", {{"name", name}}, confirm([&](const ordered_json&) {
           std::printf("export %s deleted\n", name.c_str());
         })};
    if (force) c.params["force"] = true;
  } else if (*exp_list) {
    c = {"export_list", {}, PrintExportList};
  } else if (*qos_set) {
    c = {"qos_set", {{"name", name}}, confirm([&](const ordered_json& r) {
           std::printf("qos %s set: %s\n", name.c_str(), QosText(r).c_str());
         })};
    struct {
      const char* option;
      const std::string& text;
      const char* key;
      bool bytes;
    } limits[] = {{"--read-iops", read_iops, "read_iops", false},
                  {"--write-iops", write_iops, "write_iops", false},
                  {"--read-bps", read_bps, "read_bps", true},
                  {"--write-bps", write_bps, "write_bps", true}};
    for (const auto& l : limits) {
      if (qos_set->count(l.option) == 0) continue;
      uint64_t v = 0;
      if (!(l.bytes ? SizeArg(l.option, l.text, &v) : CountArg(l.option, l.text, &v))) return kExitUsage;
      c.params[l.key] = v;
    }
    if (c.params.size() == 1)
      return Usage("qos set: give at least one of --read-iops, --write-iops, --read-bps, --write-bps");
  } else if (*qos_get) {
    c = {"qos_get", {{"name", name}}, confirm([&](const ordered_json& r) {
           std::printf("qos %s: %s\n", name.c_str(), QosText(r).c_str());
         })};
  } else if (*reactor_list) {
    c = {"reactor_list", {}, PrintReactorList};
  } else if (*stats) {
    c = {"stats_get", {}, PrintStats};
    if (!name.empty()) c.params["name"] = name;
  } else if (*status) {
    c = {"status", {}, PrintStatus};
  } else if (*call) {
    c.method = method;
    c.params = nullptr;
    if (!params_text.empty()) {
      try {
        c.params = ordered_json::parse(params_text);
      } catch (const std::exception& e) {
        return Usage("JSON-PARAMS: " + std::string(e.what()));
      }
      if (!c.params.is_object()) return Usage("JSON-PARAMS must be a JSON object");
    }
    json = true;
  } else {
    return kExitUsage;  // unreachable: a subcommand is required
  }

  if (socket.empty()) {
    const char* env = std::getenv("NESTOR_CONTROL_SOCKET");
    socket = env != nullptr && *env != '\0' ? env : kDefaultSocket;
  }
  int timeout_ms = static_cast<int>(std::ceil(timeout_s * 1000));
  RpcOutcome out = RpcCall(socket, c.method, c.params, timeout_ms);
  if (out.exit != kExitOk) return Fail(out.exit, out.message, out.error);
  if (json) {
    PrintJson(out.result);
  } else if (!c.print(out.result)) {
    return Fail(kExitUnreachable,
                "malformed reply from nestord to " + c.method + ": unexpected result " +
                    out.result.dump(-1, ' ', false, ordered_json::error_handler_t::replace).substr(0, 200));
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    return Fail(kExitOther, "writing the output failed");
  }
  return kExitOk;
}

}  // namespace
}  // namespace nestor::ctl

int main(int argc, char** argv) { return nestor::ctl::Main(argc, argv); }
