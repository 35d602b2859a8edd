// Export access settings as the operator gives them (nestord --volume,
// export_create): user and group names or ids, socket modes. Names are
// resolved here, once, when the export is created; the pool stores the
// numbers (volume/export_access.h).
//
// Thread: any (getpwnam_r/getgrnam_r). Errors: EINVAL with a message that
// starts with the field's name, e.g. "socket_group: no group 'kvm'".
#pragma once

#include <cstdint>
#include <string_view>

#include "base/status.h"

namespace nestor::daemon {

// A user name, or a decimal uid (a name that is all digits wins, as with
// chown). A uid need not have a passwd entry.
Result<uint32_t> ResolveUser(std::string_view text, std::string_view field);
// A group name or a decimal gid, likewise.
Result<uint32_t> ResolveGroup(std::string_view text, std::string_view field);
// Octal permission bits, "0660" or "660" (or "0o660"), 0 to 0777.
Result<uint32_t> ParseSocketMode(std::string_view text, std::string_view field);

}  // namespace nestor::daemon
