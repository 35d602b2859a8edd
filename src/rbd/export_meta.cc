// The stored export's text form (export_meta.h).
#include "rbd/export_meta.h"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <sstream>
#include <string_view>
#include <vector>

#include "volume/limits.h"

namespace nestor::rbd {
namespace {

std::string Ids(const std::vector<uint32_t>& ids) {
  std::string s;
  for (uint32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s.empty() ? "-" : s;
}

bool ParseU64(std::string_view t, uint64_t* out) {
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), *out);
  return ec == std::errc() && end == t.data() + t.size() && !t.empty();
}

// "-" (none) or a comma-separated list of ids.
bool ParseIds(std::string_view t, std::vector<uint32_t>* out) {
  out->clear();
  if (t == "-") return true;
  if (t.empty()) return false;
  for (;;) {
    auto comma = t.find(',');
    uint64_t v = 0;
    if (!ParseU64(t.substr(0, comma), &v) || v > UINT32_MAX) return false;
    out->push_back(static_cast<uint32_t>(v));
    if (comma == std::string_view::npos) break;
    t.remove_prefix(comma + 1);
  }
  return out->size() <= volume::ExportAccess::kMaxAllowIds;
}

}  // namespace

std::string EncodeExport(const volume::ExportSettings& s) {
  const volume::ExportAccess& a = s.access;
  std::ostringstream o;
  o << "v1 queues=" << s.queues << " readonly=" << (s.read_only ? 1 : 0) << " read_iops=" << s.read_iops
    << " write_iops=" << s.write_iops << " read_bps=" << s.read_bps << " write_bps=" << s.write_bps
    << " socket_uid=" << a.socket_uid << " socket_gid=" << a.socket_gid << " socket_mode=" << a.socket_mode
    << " allow_uids=" << Ids(a.allow_uids) << " allow_gids=" << Ids(a.allow_gids) << " frontends=" << s.frontends
    << " shared_writers=" << (s.shared_writers ? 1 : 0);
  return o.str();
}

Result<volume::ExportSettings> DecodeExport(const std::string& text) {
  volume::ExportSettings s;
  volume::ExportAccess& a = s.access;
  std::istringstream in(text);
  std::string word;
  in >> word;
  if (word != "v1") return Status::Error(EUCLEAN, "stored export '" + text + "': unknown version");
  // key -> the field and its largest value (0777 for the mode; kUnset is
  // allowed for the three access fields: not configured).
  struct Num {
    const char* key;
    uint64_t* u64;
    uint32_t* u32;
    uint64_t min, max;
  };
  uint64_t queues = s.queues, readonly = 0, frontends = 1, shared_writers = 0;
  const Num nums[] = {
      {"frontends", &frontends, nullptr, 1, volume::kMaxFrontends},
      {"shared_writers", &shared_writers, nullptr, 0, 1},
      {"queues", &queues, nullptr, 1, 64},
      {"readonly", &readonly, nullptr, 0, 1},
      {"read_iops", &s.read_iops, nullptr, 0, UINT64_MAX},
      {"write_iops", &s.write_iops, nullptr, 0, UINT64_MAX},
      {"read_bps", &s.read_bps, nullptr, 0, UINT64_MAX},
      {"write_bps", &s.write_bps, nullptr, 0, UINT64_MAX},
      {"socket_uid", nullptr, &a.socket_uid, 0, UINT32_MAX},
      {"socket_gid", nullptr, &a.socket_gid, 0, UINT32_MAX},
      {"socket_mode", nullptr, &a.socket_mode, 0, 0777},
  };
  while (in >> word) {
    auto eq = word.find('=');
    std::string key = word.substr(0, eq);
    std::string_view val = eq == std::string::npos ? std::string_view() : std::string_view(word).substr(eq + 1);
    bool ok = true;  // (an unknown key, from a newer nestor, is ignored)
    if (key == "allow_uids") {
      ok = ParseIds(val, &a.allow_uids);
    } else if (key == "allow_gids") {
      ok = ParseIds(val, &a.allow_gids);
    } else {
      for (const Num& n : nums) {
        if (key != n.key) continue;
        uint64_t v = 0;
        bool unset = n.u32 != nullptr && ParseU64(val, &v) && v == volume::ExportAccess::kUnset;
        ok = ParseU64(val, &v) && ((v >= n.min && v <= n.max) || unset);
        if (!ok) break;
        if (n.u64 != nullptr) *n.u64 = v;
        if (n.u32 != nullptr) *n.u32 = static_cast<uint32_t>(v);
      }
    }
    if (!ok) return Status::Error(EUCLEAN, "stored export '" + text + "': bad " + key);
  }
  s.queues = static_cast<uint16_t>(queues);
  s.read_only = readonly == 1;
  s.frontends = static_cast<uint16_t>(frontends);
  s.shared_writers = shared_writers == 1;
  if (!volume::ValidateFrontends(s.frontends, s.read_only, s.shared_writers).ok()) {
    return Status::Error(EUCLEAN,
                         "stored export '" + text + "': frontends > 1 on a writable export without shared_writers");
  }
  return s;
}

}  // namespace nestor::rbd
