#include "daemon/options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <set>

#include "base/size.h"
#include "daemon/access.h"
#include "rbd/rbd.h"
#include "volume/limits.h"
#include "base/version.h"
#include "volume/format.h"

namespace nestor::daemon {
namespace {

bool ParseInt(std::string_view s, int* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// A ':'-separated list of users or groups (names or ids), deduplicated.
Status ParseIdList(std::string_view value, std::string_view field, bool users, std::vector<uint32_t>* out) {
  if (value.empty()) return Status::Invalid(std::string(field) + ": give ids or names separated by ':'");
  while (true) {
    size_t colon = value.find(':');
    std::string_view one = value.substr(0, colon);
    auto id = users ? ResolveUser(one, field) : ResolveGroup(one, field);
    if (!id.ok()) return id.status();
    if (std::find(out->begin(), out->end(), *id) == out->end()) out->push_back(*id);
    if (colon == std::string_view::npos) return Status::Ok();
    value = value.substr(colon + 1);
  }
}

Status ApplyVolumeOption(VolumeSpec* v, std::string_view key, std::string_view value) {
  std::string item(key);
  std::replace(item.begin(), item.end(), '_', '-');  // socket_group= is socket-group=
  if (item == "socket-owner" || item == "socket-group") {
    bool owner = item == "socket-owner";
    std::string field = owner ? "socket-owner" : "socket-group";
    auto id = owner ? ResolveUser(value, field) : ResolveGroup(value, field);
    if (!id.ok()) return id.status();
    (owner ? v->access.socket_uid : v->access.socket_gid) = *id;
    return Status::Ok();
  }
  if (item == "socket-mode") {
    auto m = ParseSocketMode(value, "socket-mode");
    if (!m.ok()) return m.status();
    v->access.socket_mode = *m;
    return Status::Ok();
  }
  if (item == "allow-uid" || item == "allow-uids" || item == "allow-gid" || item == "allow-gids") {
    bool uids = item.starts_with("allow-uid");
    return ParseIdList(value, uids ? "allow-uid" : "allow-gid", uids,
                       uids ? &v->access.allow_uids : &v->access.allow_gids);
  }
  item = std::string(key);
  if (key == "size") {
    auto s = ParseSize(value);
    if (!s.ok()) return s.status();
    v->size = *s;
  } else if (key == "backend") {
    if (value == "mem" || value == "null") {
      v->backend = std::string(value);
    } else if (value.starts_with("file:") && value.size() > 5) {
      v->backend = "file";
      v->path = std::string(value.substr(5));
    } else if (value.starts_with("rbd:")) {
      auto spec = rbd::ParseImageSpec(value.substr(4));
      if (!spec.ok()) return spec.status();
      v->backend = "rbd";
      v->path = spec->ToString();
    } else {
      return Status::Invalid("backend must be mem, null, file:PATH or rbd:POOL/IMAGE");
    }
  } else if (key == "queues") {
    int q = 0;
    if (!ParseInt(value, &q) || q < 1 || q > 64) return Status::Invalid("queues must be 1..64");
    v->queues = static_cast<uint16_t>(q);
  } else if (key == "readonly" && value.empty()) {
    v->read_only = true;
  } else if (key == "force" && value.empty()) {
    v->force = true;
  } else if (key == "frontends") {
    int f = 0;
    if (!ParseInt(value, &f) || f < 1 || f > volume::kMaxFrontends) return Status::Invalid("frontends must be 1..64");
    v->frontends = static_cast<uint16_t>(f);
  } else if ((key == "shared-writers" || key == "shared_writers") && value.empty()) {
    v->shared_writers = true;
  } else if (key == "delay_us") {
    int d = 0;
    if (!ParseInt(value, &d) || d < 0 || d > 10'000'000) return Status::Invalid("delay_us must be 0..10000000");
    v->delay_us = static_cast<uint32_t>(d);
  } else if (key == "read_iops" || key == "write_iops" || key == "read_bps" || key == "write_bps") {
    auto n = ParseSize(value);  // bandwidth takes K/M/G suffixes; IOPS plain numbers
    if (!n.ok()) return Status::Invalid(item + " must be a number");
    uint64_t* f = key == "read_iops"    ? &v->qos.read_iops
                  : key == "write_iops" ? &v->qos.write_iops
                  : key == "read_bps"   ? &v->qos.read_bps
                                        : &v->qos.write_bps;
    *f = *n;
  } else if (key == "reactor") {
    while (!value.empty()) {
      size_t slash = value.find('/');
      int r = 0;
      if (!ParseInt(value.substr(0, slash), &r) || r < 0) return Status::Invalid("bad reactor list");
      v->queue_reactor.push_back(r);
      value = slash == std::string_view::npos ? std::string_view() : value.substr(slash + 1);
    }
  } else {
    return Status::Invalid("unknown volume option '" + item + "'");
  }
  return Status::Ok();
}

// CLI11 takes a key's first line and skips a later one (that is how the
// command line wins over the file), so a key set twice in the file would
// be half ignored without a word: refused instead, naming the key.
Status CheckConfigKeysOnce(const std::string& file, const CLI::App& app) {
  std::set<std::string> seen;
  for (const CLI::ConfigItem& item : app.get_config_formatter_base()->from_file(file)) {
    if (!seen.insert(item.fullname()).second) {
      return Status::Invalid("--config " + file + ": '" + item.fullname() +
                             "' is set twice (give each key once; a repeatable option takes a list: volume = "
                             "[\"a,...\", \"b,...\"])");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<VolumeSpec> ParseVolumeSpec(const std::string& text) {
  VolumeSpec v;
  std::string_view rest(text);
  size_t comma = rest.find(',');
  v.name = std::string(rest.substr(0, comma));
  // The same names as pool volumes: both become DIR/NAME.sock.
  Status named = volume::ValidateVolumeName(v.name);
  if (!named.ok()) return Status::Invalid("--volume " + text + ": " + named.message());
  rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  while (!rest.empty()) {
    comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    Status st = ApplyVolumeOption(&v, key, value);
    if (!st.ok()) return Status::Invalid("--volume " + text + ": " + st.message());
  }
  if (v.size == 0 && v.backend != "file" && v.backend != "rbd") {
    return Status::Invalid("--volume " + text + ": size= is required");
  }
  if (v.size != 0) {  // 0: a file's or an rbd image's own size
    Status sized = volume::ValidateExportSize(v.size);
    if (!sized.ok()) return Status::Invalid("--volume " + text + ": " + sized.message());
  }
  if (v.force && v.backend != "file") return Status::Invalid("--volume " + text + ": force needs backend=file");
  if (!v.queue_reactor.empty() && v.queue_reactor.size() != v.queues) {
    return Status::Invalid("--volume " + text + ": reactor= needs one entry per queue");
  }
  Status sharing = volume::ValidateFrontends(v.frontends, v.read_only, v.shared_writers);
  if (!sharing.ok()) return Status::Invalid("--volume " + text + ": " + sharing.message());
  Status access = volume::ValidateExportAccess(v.access);
  if (!access.ok()) return Status::Invalid("--volume " + text + ": " + access.message());
  return v;
}

Result<Options> ParseOptions(int argc, char** argv, bool reloading) {
  CLI::App app{"nestord: a polling vhost-user-blk storage controller"};
  app.set_version_flag("--version", VersionLine("nestord", volume::kFormatVersion), "print the version and exit");
  Options o;
  app.set_config("--config", "",
                 "read options from FILE too, one per line as `long-option-name = value` (TOML: strings quoted, "
                 "`volume = [\"a,size=1G\", \"b,size=2G\"]`, flags `true`); the command line wins. SIGHUP reads it "
                 "again (docs/usage.md, \"Running under systemd\")")
      ->check(CLI::ExistingFile);
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not ignored
  std::vector<std::string> volumes;
  std::string cpus, mode = "adaptive";
  app.add_option("--socket-dir", o.socket_dir,
                 "directory for the per-volume sockets DIR/NAME.sock; one nestord per directory (locked)")
      ->required();
  app.add_option(
      "--volume", volumes,
      "NAME,size=SIZE[,backend=mem|null|file:PATH|rbd:POOL/IMAGE][,queues=N][,readonly][,frontends=N[,shared-writers]]"
      "[,force][,reactor=R0/R1/..]"
      "[,delay_us=N][,socket-owner=U][,socket-group=G][,socket-mode=0660][,allow-uid=U:U..]"
      "[,allow-gid=G:G..]. file:PATH is locked (shared if readonly) like a pool: a file another "
      "process holds, or one carrying a nestor pool signature, is refused unless force. rbd:POOL/IMAGE "
      "is a Ceph RBD image (created with size= if missing, its exclusive lock taken unless readonly)");
  app.add_option("--ceph-conf", o.ceph_conf,
                 "rbd volumes: the cluster's ceph.conf (default: Ceph's own search, $CEPH_CONF or "
                 "/etc/ceph/ceph.conf)");
  app.add_option("--ceph-id", o.ceph_id, "rbd volumes: the cephx user, client.ID (default admin)");
  app.add_option("--ceph-op-timeout", o.ceph_op_timeout_s,
                 "rbd volumes: seconds after which a request to a cluster that stopped answering fails (EIO to "
                 "the guest) instead of hanging; 0 waits forever (default 30)")
      ->check(CLI::Range(0, 86400));
  std::string log_format = "text";
  app.add_option("--log-format", log_format,
                 "text (HH:MM:SS.micros LEVEL message, UTC) or json (one object per line: time, level, msg) "
                 "(default text)")
      ->check(CLI::IsMember({"text", "json"}));
  std::string log_level;
  app.add_option("--log-level", log_level, "debug | info | warn | error (default: $NESTOR_LOG, else info)")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  app.add_option("--pool", o.pool,
                 "serve every volume of the pool at PATH (see `nestor pool create`), or of the Ceph pool POOL "
                 "given as rbd:POOL (docs/ceph.md)");
  app.add_flag("--export-all", o.export_all,
               "export every volume of the pool, not only the stored exports (and store them)");
  CLI::Option* pool_queues =
      app.add_option("--pool-queues", o.pool_queues, "queues per volume exported by --export-all (default 1)")
          ->check(CLI::Range(1, 64));
  app.add_option("--control-socket", o.control_socket,
                 "JSON-RPC control socket (default <socket-dir>/control.ctl; see docs/rpc.md)");
  app.add_option("--metrics-port", o.metrics_port,
                 "serve Prometheus metrics at http://127.0.0.1:PORT/metrics (default: off)")
      ->check(CLI::Range(1, 65535));
  std::string journal_dir = o.journal_dir;
  app.add_option("--journal-dir", journal_dir,
                 "pool: directory on a tmpfs for the journal that makes every completed write survive a crash of "
                 "nestord without a sync per write (default /run/nestor/journal; 'none': writes are durable only once "
                 "committed, every --commit-ms or at FLUSH)");
  app.add_option("--commit-ms", o.commit_ms,
                 "pool: commit new mappings at least every MS milliseconds (default 100; FLUSH commits at once)")
      ->check(CLI::Range(1, 60000));
  app.add_option("--reactors", o.reactors, "number of reactor threads (default 1)")->check(CLI::Range(1, 256));
  app.add_option("--cpus", cpus, "CPU list to pin reactors to, e.g. 1 or 0-3 (default: not pinned)");
  app.add_option("--poll-mode", mode, "poll | interrupt | adaptive (default adaptive)");
  app.add_option("--idle-us", o.idle_us, "adaptive mode: idle microseconds before sleeping (default 50)");
  app.add_option("--queue-stop-timeout-ms", o.queue_stop_timeout_ms,
                 "how long a disconnect, memory change or shutdown waits for a queue's in-flight I/O before "
                 "giving the queue up (its memory stays mapped until the I/O ends; default 30000)")
      ->check(CLI::Range(10, 3'600'000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {  // the file's syntax or an unknown key
    std::string file = app.get_config_ptr()->count() > 0 ? app.get_config_ptr()->as<std::string>() : "";
    std::string message = "--config " + file + ": " + e.what();
    if (!reloading) fprintf(stderr, "nestord: %s\n", message.c_str());
    return Status::Invalid(reloading ? message : "");
  } catch (const CLI::ParseError& e) {
    if (reloading) return Status::Invalid(e.what());
    int rc = app.exit(e);
    return Status::Error(rc == 0 ? 0 : EINVAL, "");
  }
  if (CLI::Option* config = app.get_config_ptr(); config != nullptr && config->count() > 0) {
    o.config_file = config->as<std::string>();
    NESTOR_RETURN_IF_ERROR(CheckConfigKeysOnce(o.config_file, app));
  }
  o.log_level = LogLevelFromEnvironment();
  if (!log_level.empty()) (void)ParseLogLevel(log_level, &o.log_level);
  if (volumes.empty() && o.pool.empty()) return Status::Invalid("give --volume or --pool (see --help)");
  if (pool_queues->count() > 0 && !o.export_all) {
    return Status::Invalid(
        "--pool-queues applies to the volumes --export-all exports: give --export-all too (stored exports keep "
        "their own queues; nestorctl export create NAME --queues N)");
  }
  o.log_json = log_format == "json";
  if (o.control_socket.empty()) o.control_socket = o.socket_dir + "/control.ctl";
  o.journal_dir = journal_dir == "none" ? "" : journal_dir;
  auto m = reactor::ParsePollMode(mode);
  if (!m.ok()) return m.status();
  o.mode = *m;
  if (!cpus.empty()) {
    auto c = ParseCpuList(cpus);
    if (!c.ok()) return c.status();
    o.cpus = *c;
  }
  for (const std::string& text : volumes) {
    auto v = ParseVolumeSpec(text);
    if (!v.ok()) return v.status();
    for (int r : v->queue_reactor) {
      if (r >= o.reactors) return Status::Invalid("--volume " + text + ": reactor index out of range");
    }
    for (const VolumeSpec& other : o.volumes) {
      if (other.name == v->name) return Status::Invalid("duplicate volume name " + v->name);
    }
    o.volumes.push_back(*v);
  }
  return o;
}

}  // namespace nestor::daemon
