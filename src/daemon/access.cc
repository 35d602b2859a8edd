#include "daemon/access.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>
#include <type_traits>
#include <vector>

namespace nestor::daemon {
namespace {

bool Decimal(std::string_view s, uint32_t* out) {
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v >= UINT32_MAX) return false;  // -1 is no id
  *out = static_cast<uint32_t>(v);
  return true;
}

std::string Quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out + "'";
}

// Looks name up with getpwnam_r / getgrnam_r (growing the buffer on
// ERANGE). Returns 0 and sets *id when found, ENOENT when not, else errno.
template <typename Entry, typename Fn>
int Lookup(const std::string& name, Fn fn, uint32_t* id) {
  std::vector<char> buf(1024);
  for (;;) {
    Entry e{};
    Entry* found = nullptr;
    int rc = fn(name.c_str(), &e, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 4);
      continue;
    }
    if (rc == 0 && found == nullptr) return ENOENT;
    if (rc != 0) return rc;
    if constexpr (std::is_same_v<Entry, passwd>) {
      *id = found->pw_uid;
    } else {
      *id = found->gr_gid;
    }
    return 0;
  }
}

template <typename Entry, typename Fn>
Result<uint32_t> Resolve(std::string_view text, std::string_view field, const char* what, Fn fn) {
  std::string f(field);
  if (text.empty()) return Status::Invalid(f + ": empty " + what + " name");
  if (text.find('\0') != std::string_view::npos) return Status::Invalid(f + ": a NUL in the " + what + " name");
  uint32_t id = 0;
  int rc = Lookup<Entry>(std::string(text), fn, &id);
  if (rc == 0) return id;
  if (Decimal(text, &id)) return id;
  if (rc == ENOENT) return Status::Invalid(f + ": no " + what + " " + Quoted(text));
  return Status::Error(rc, f + ": looking up " + what + " " + Quoted(text) + " failed");
}

}  // namespace

Result<uint32_t> ResolveUser(std::string_view text, std::string_view field) {
  return Resolve<passwd>(text, field, "user", getpwnam_r);
}

Result<uint32_t> ResolveGroup(std::string_view text, std::string_view field) {
  return Resolve<group>(text, field, "group", getgrnam_r);
}

Result<uint32_t> ParseSocketMode(std::string_view text, std::string_view field) {
  std::string_view digits = text.starts_with("0o") ? text.substr(2) : text;
  uint32_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, 8);
  if (digits.empty() || digits.size() > 5 || ec != std::errc() || p != digits.data() + digits.size() || v > 0777) {
    return Status::Invalid(std::string(field) + ": " + Quoted(text) +
                           " is not an octal permission mode from 0 to 0777 (e.g. \"0660\")");
  }
  return v;
}

}  // namespace nestor::daemon
