#include "nestorctl/format.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <optional>

namespace nestor::ctl {
namespace {

std::optional<uint64_t> U64(const ordered_json& o, const char* key) {
  if (!o.is_object()) return std::nullopt;
  auto it = o.find(key);
  if (it == o.end()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) return static_cast<uint64_t>(it->get<int64_t>());
  return std::nullopt;
}

std::optional<double> Double(const ordered_json& o, const char* key) {
  if (!o.is_object()) return std::nullopt;
  auto it = o.find(key);
  if (it == o.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

const ordered_json& Field(const ordered_json& o, const char* key) {
  static const ordered_json kNull;
  if (!o.is_object()) return kNull;
  auto it = o.find(key);
  return it == o.end() ? kNull : *it;
}

std::string YesNo(const ordered_json& o, const char* key) {
  const ordered_json& v = Field(o, key);
  if (!v.is_boolean()) return "-";
  return v.get<bool>() ? "yes" : "no";
}

// Seconds with one decimal: "1.2s".
std::string SecondsField(const ordered_json& o, const char* key) {
  auto v = Double(o, key);
  return v ? fmt::format("{:.1f}s", *v) : "-";
}

// Nanoseconds shown as microseconds with one decimal.
std::string MicrosField(const ordered_json& o, const char* key) {
  auto v = Double(o, key);
  return v ? fmt::format("{:.1f}", *v / 1000.0) : "-";
}

// Clusters with their size: "2048 clusters (128.0M)".
std::string Clusters(const ordered_json& r, const char* key, std::optional<uint64_t> cluster_size) {
  auto n = U64(r, key);
  if (!n) return "-";
  std::string s = std::to_string(*n) + " clusters";
  if (cluster_size && (*cluster_size == 0 || *n <= UINT64_MAX / *cluster_size)) {
    s += " (" + HumanSize(*n * *cluster_size) + ")";
  }
  return s;
}

size_t DisplayWidth(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xc0) != 0x80;  // UTF-8: count code points
  return w;
}

// Limits that are set, compact: "wiops=5000,rbps=100.0M"; "-" if none.
std::string QosCompact(const ordered_json& qos) {
  if (!qos.is_object()) return "-";
  static const struct {
    const char* key;
    const char* label;
    bool bytes;
  } kLimits[] = {{"read_iops", "riops", false},
                 {"write_iops", "wiops", false},
                 {"read_bps", "rbps", true},
                 {"write_bps", "wbps", true}};
  std::string s;
  for (const auto& l : kLimits) {
    auto v = U64(qos, l.key);
    if (!v || *v == 0) continue;
    if (!s.empty()) s += ",";
    s += std::string(l.label) + "=" + (l.bytes ? HumanSize(*v) : std::to_string(*v));
  }
  return s.empty() ? "-" : s;
}

// Owner, group, mode and admitted peers, compact: "0:64055 0660" then
// " uids=1000,1001 gids=5" when restricted; "-" if nestord sent none.
std::string AccessCompact(const ordered_json& e) {
  auto uid = U64(e, "socket_owner");
  auto gid = U64(e, "socket_group");
  const ordered_json& mode = Field(e, "socket_mode");
  if (!uid || !gid || !mode.is_string()) return "-";
  std::string s = std::to_string(*uid) + ":" + std::to_string(*gid) + " " + mode.get<std::string>();
  for (const char* k : {"allow_uids", "allow_gids"}) {
    const ordered_json& ids = Field(e, k);
    if (!ids.is_array() || ids.empty()) continue;
    s += std::string(" ") + (k[6] == 'u' ? "uids=" : "gids=");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) s += ",";
      s += ids[i].is_number_unsigned() ? std::to_string(ids[i].get<uint64_t>()) : "?";
    }
  }
  return s;
}

}  // namespace

std::string SizeField(const ordered_json& o, const char* key) {
  auto v = U64(o, key);
  return v ? HumanSize(*v) : "-";
}

std::string IntField(const ordered_json& o, const char* key) {
  const ordered_json& v = Field(o, key);
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return "-";
}

std::string StrField(const ordered_json& o, const char* key) {
  const ordered_json& v = Field(o, key);
  if (v.is_string()) return v.get<std::string>();
  return "-";
}

Table::Table(std::vector<std::string> header, std::string align) : align_(std::move(align)) {
  rows_.push_back(std::move(header));
}

void Table::Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

std::string Table::Render(const std::string& indent) const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], DisplayWidth(row[i]));
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      size_t pad = width[i] - DisplayWidth(row[i]);
      bool right = i < align_.size() && align_[i] == 'r';
      bool last = i + 1 == row.size();
      if (i > 0) line += "  ";
      if (right) line.append(pad, ' ');
      line += row[i];
      if (!right && !last) line.append(pad, ' ');
    }
    out += line + "\n";
  }
  return out;
}

void PrintJson(const ordered_json& j) {
  std::string s = j.dump(2, ' ', false, ordered_json::error_handler_t::replace);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

bool PrintPoolInfo(const ordered_json& r) {
  if (!r.is_object()) return false;
  auto cs = U64(r, "cluster_size");
  auto line = [](const char* label, const std::string& value) { std::printf("%-15s %s\n", label, value.c_str()); };
  if (StrField(r, "kind") == "rbd") {  // a Ceph pool (docs/ceph.md)
    line("path:", StrField(r, "path"));
    line("kind:", "ceph pool " + StrField(r, "pool"));
    line("volumes:", IntField(r, "volumes") + " images, " + IntField(r, "snapshots") + " snapshots");
    line("stored:", SizeField(r, "stored_bytes") + " in " + IntField(r, "objects") + " objects");
    line("cluster:", SizeField(r, "cluster_bytes") + " raw, " + SizeField(r, "cluster_free_bytes") + " free");
    return true;
  }
  auto size = U64(r, "size");
  line("path:", StrField(r, "path"));
  line("uuid:", StrField(r, "uuid"));
  line("format version:", IntField(r, "format_version"));
  line("size:", size ? fmt::format("{} ({} bytes)", HumanSize(*size), *size) : "-");
  line("cluster size:", SizeField(r, "cluster_size"));
  line("data:", Clusters(r, "data_clusters", cs));
  line("used:", Clusters(r, "used_clusters", cs));
  line("free:", Clusters(r, "free_clusters", cs));
  line("reserved:", Clusters(r, "reserved_unused_clusters", cs) + " promised, not yet written");
  line("volumes:", IntField(r, "volumes"));
  line("extents:", IntField(r, "extents"));
  line("commit seq:", IntField(r, "commit_seq") + " (" + IntField(r, "commits") + " commits)");
  line("log used:", SizeField(r, "log_used_bytes"));
  return true;
}

std::string ImageType(const ordered_json& v) {
  const ordered_json& snap = Field(v, "snapshot");
  const ordered_json& parent = Field(v, "parent");
  if (snap.is_boolean() && snap.get<bool>()) return "snapshot";
  if (parent.is_string()) return "clone";
  if (snap.is_boolean() || parent.is_null()) return "volume";
  return "-";
}

bool PrintVolumeList(const ordered_json& r) {
  if (!r.is_array()) return false;
  Table t({"NAME", "TYPE", "PARENT", "SIZE", "ALLOCATED", "SHARED", "FREES", "RESERVED", "EXTENTS", "EXPORTED"},
          "lllrrrrrrl");
  for (const auto& v : r) {
    t.Add({StrField(v, "name"), ImageType(v), StrField(v, "parent"), SizeField(v, "size"),
           SizeField(v, "allocated_bytes"), SizeField(v, "shared_bytes"), SizeField(v, "delete_frees_bytes"),
           SizeField(v, "reserved_bytes"), IntField(v, "extents"), YesNo(v, "exported")});
  }
  std::fputs(t.Render().c_str(), stdout);
  return true;
}

bool PrintSnapshotList(const ordered_json& r) {
  if (!r.is_array()) return false;
  Table t({"NAME", "PARENT", "SIZE", "ALLOCATED", "SHARED", "FREES", "EXPORTED", "CLONES"}, "llrrrrll");
  for (const auto& v : r) {
    const ordered_json& children = Field(v, "children");
    std::string clones = children.is_array() ? "" : "-";
    for (const auto& c : children) {
      if (!clones.empty()) clones += ",";
      clones += c.is_string() ? c.get<std::string>() : "?";
    }
    t.Add({StrField(v, "name"), StrField(v, "parent"), SizeField(v, "size"), SizeField(v, "allocated_bytes"),
           SizeField(v, "shared_bytes"), SizeField(v, "delete_frees_bytes"), YesNo(v, "exported"),
           clones.empty() ? "-" : clones});
  }
  std::fputs(t.Render().c_str(), stdout);
  return true;
}

bool PrintExportList(const ordered_json& r) {
  if (!r.is_array()) return false;
  Table t({"NAME", "QUEUES", "RO", "SESSIONS", "QOS", "ACCESS", "SOCKET"}, "lrlrlll");
  for (const auto& e : r) {
    t.Add({StrField(e, "name"), IntField(e, "queues"), YesNo(e, "readonly"), IntField(e, "sessions"),
           QosCompact(Field(e, "qos")), AccessCompact(e), StrField(e, "socket")});
  }
  std::fputs(t.Render().c_str(), stdout);
  return true;
}

bool PrintReactorList(const ordered_json& r) {
  if (!r.is_array()) return false;
  Table t({"ID", "CPU", "MODE", "BUSY", "IDLE", "SLEEP", "EFFICIENCY", "REQUESTS"}, "rrlrrrrr");
  for (const auto& x : r) {
    auto cpu = Field(x, "cpu");
    auto eff = Double(x, "poll_efficiency");
    t.Add({IntField(x, "id"), cpu.is_number_integer() && cpu.get<int64_t>() >= 0 ? IntField(x, "cpu") : "-",
           StrField(x, "mode"), SecondsField(x, "busy_s"), SecondsField(x, "idle_s"), SecondsField(x, "sleep_s"),
           eff ? fmt::format("{:.1f}%", *eff * 100.0) : "-", IntField(x, "requests")});
  }
  std::fputs(t.Render().c_str(), stdout);
  return true;
}

bool PrintStatus(const ordered_json& r) {
  if (!r.is_object()) return false;
  auto line = [](const char* label, const std::string& value) { std::printf("%-10s %s\n", label, value.c_str()); };
  auto up = Double(r, "uptime_s");
  line("nestord:", StrField(r, "version") + " (pool format " + IntField(r, "pool_format") + "), pid " +
                       IntField(r, "pid") + ", up " + (up ? fmt::format("{:.0f} s", *up) : "-"));
  line("reactors:", IntField(r, "reactors") + ", " + StrField(r, "poll_mode"));
  const ordered_json& pool = Field(r, "pool");
  if (!pool.is_object()) {
    line("pool:", "none");
  } else if (StrField(pool, "kind") == "rbd") {
    line("pool:", StrField(pool, "path") + ": " + IntField(pool, "volumes") + " images, " +
                      SizeField(pool, "stored_bytes") + " stored, cluster " + SizeField(pool, "cluster_free_bytes") +
                      " free");
  } else {
    line("pool:", StrField(pool, "path") + ": " + IntField(pool, "volumes") + " volumes, " +
                      SizeField(pool, "used_bytes") + " used of " + SizeField(pool, "size_bytes") + ", " +
                      SizeField(pool, "free_bytes") + " free");
  }
  const ordered_json& exports = Field(r, "exports");
  std::string names;
  if (exports.is_array()) {
    for (const auto& e : exports) names += (names.empty() ? "" : ", ") + (e.is_string() ? e.get<std::string>() : "?");
  }
  line("exports:", std::to_string(exports.is_array() ? exports.size() : 0) + (names.empty() ? "" : " (" + names + ")") +
                       ", " + IntField(r, "sessions") + " connected");
  const ordered_json& warnings = Field(r, "warnings");
  if (!warnings.is_array() || warnings.empty()) {
    line("warnings:", "none");
  } else {
    for (const auto& w : warnings) line("warning:", w.is_string() ? w.get<std::string>() : w.dump());
  }
  return true;
}

bool PrintStats(const ordered_json& r) {
  const ordered_json& vols = Field(r, "volumes");
  if (!vols.is_array()) return false;
  if (vols.empty()) {
    std::printf("no exported volumes\n");
    return true;
  }
  bool first = true;
  for (const auto& v : vols) {
    if (!first) std::printf("\n");
    first = false;
    std::printf("%s\n", StrField(v, "name").c_str());
    std::printf("  ops          read %s  write %s  flush %s  discard %s  write_zeroes %s\n",
                IntField(v, "read_ops").c_str(), IntField(v, "write_ops").c_str(), IntField(v, "flush_ops").c_str(),
                IntField(v, "discard_ops").c_str(), IntField(v, "write_zeroes_ops").c_str());
    std::printf("  bytes        read %s  write %s\n", SizeField(v, "read_bytes").c_str(),
                SizeField(v, "write_bytes").c_str());
    std::printf("  errors       %s  throttled %s", IntField(v, "errors").c_str(), IntField(v, "throttled").c_str());
    if (Field(v, "refused_connections").is_number()) {
      std::printf("  refused_connections %s", IntField(v, "refused_connections").c_str());
    }
    std::printf("\n");
    const ordered_json& lat = Field(v, "latency_ns");
    std::printf("  latency µs   mean %s  p50 %s  p99 %s  p99.9 %s\n", MicrosField(lat, "mean").c_str(),
                MicrosField(lat, "p50").c_str(), MicrosField(lat, "p99").c_str(), MicrosField(lat, "p999").c_str());
    const ordered_json& queues = Field(v, "queues");
    if (!queues.is_array() || queues.empty()) {
      std::printf("  no live queues\n");
      continue;
    }
    Table t({"SESSION", "QUEUE", "REACTOR", "REQUESTS", "IN_FLIGHT", "KICKS", "CALLS"}, "lrrrrrr");
    for (const auto& q : queues) {
      t.Add({StrField(q, "session"), IntField(q, "index"), IntField(q, "reactor"), IntField(q, "requests"),
             IntField(q, "in_flight"), IntField(q, "kicks"), IntField(q, "calls")});
    }
    std::fputs(t.Render("  ").c_str(), stdout);
  }
  return true;
}

std::string QosText(const ordered_json& qos) {
  std::string s;
  for (const char* key : {"read_iops", "write_iops", "read_bps", "write_bps"}) {
    auto v = U64(qos, key);
    bool bytes = std::string_view(key).ends_with("bps");
    std::string value = !v ? "-" : *v == 0 ? "unlimited" : bytes ? HumanSize(*v) + "/s" : std::to_string(*v);
    if (!s.empty()) s += ", ";
    s += std::string(key) + " " + value;
  }
  return s;
}

}  // namespace nestor::ctl
