#include "volume/limits.h"

#include <fmt/format.h>

#include "volume/export_access.h"

namespace nestor::volume {
namespace {

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

// The name as it can be shown in a message (control characters and bytes
// outside ASCII escaped, long names cut).
std::string Printable(std::string_view name) {
  std::string out;
  for (size_t i = 0; i < name.size() && i < 80; ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (name.size() > 80) out += "...";
  return out;
}

Status SizeInRange(uint64_t size, uint64_t align, uint64_t min, const char* what) {
  if (size < min) {
    return Status::Invalid(fmt::format("{} size {} is below the minimum of {} bytes", what, size, min));
  }
  if (size > kMaxVolumeBytes) {
    return Status::Invalid(
        fmt::format("size {} exceeds the maximum {} size of {} bytes (4 EiB)", size, what, kMaxVolumeBytes));
  }
  if (size % align != 0) {
    return Status::Invalid(fmt::format("{} size {} is not a multiple of {} bytes", what, size, align));
  }
  return Status::Ok();
}

}  // namespace

Status ValidateVolumeName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLen) {
    return Status::Invalid(fmt::format("volume name '{}' has {} characters: the limit is 1 to {}", Printable(name),
                                       name.size(), kMaxNameLen));
  }
  if (name[0] == '.' || name[0] == '-') {
    return Status::Invalid(fmt::format("volume name '{}' must not start with '.' or '-'", Printable(name)));
  }
  for (char c : name) {
    if (!NameChar(c)) {
      return Status::Invalid(fmt::format("volume name '{}': use letters, digits, '.', '_' and '-'", Printable(name)));
    }
  }
  return Status::Ok();
}

Status ValidateVolumeSize(uint64_t size) { return SizeInRange(size, kVolumeAlign, kMinVolumeBytes, "volume"); }

Status ValidateFrontends(uint16_t frontends, bool read_only, bool shared_writers) {
  if (frontends < 1 || frontends > kMaxFrontends) {
    return Status::Invalid("frontends must be 1.." + std::to_string(kMaxFrontends));
  }
  if (frontends > 1 && !read_only && !shared_writers) {
    return Status::Invalid(
        "several frontends may attach only to a read-only export, unless shared writers are asked for explicitly "
        "(then the guests must coordinate their writes, as on a shared SCSI disk)");
  }
  return Status::Ok();
}

Status ValidateExportSize(uint64_t size) { return SizeInRange(size, kExportAlign, kExportAlign, "volume"); }

Status ValidateExportAccess(const ExportAccess& a) {
  if (a.socket_mode != ExportAccess::kUnset && a.socket_mode > 0777) {
    return Status::Invalid(fmt::format("socket_mode {:#o} is not a permission mode (0 to 0777)", a.socket_mode));
  }
  for (uint32_t id : a.allow_uids) {
    if (id == ExportAccess::kUnset) return Status::Invalid("allow_uids: 4294967295 is not a uid");
  }
  for (uint32_t id : a.allow_gids) {
    if (id == ExportAccess::kUnset) return Status::Invalid("allow_gids: 4294967295 is not a gid");
  }
  if (a.allow_uids.size() + a.allow_gids.size() > ExportAccess::kMaxAllowIds) {
    return Status::Invalid(fmt::format("allow_uids and allow_gids hold {} ids together: the limit is {}",
                                       a.allow_uids.size() + a.allow_gids.size(), ExportAccess::kMaxAllowIds));
  }
  return Status::Ok();
}

}  // namespace nestor::volume
