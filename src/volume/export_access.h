// ExportAccess: who may attach to an export (stored with the export in the
// pool; docs/rpc.md, export_create). Plain numbers: the volume layer knows
// nothing of sockets; nestord applies them (vhost/blk_export.h).
//
// Thread: a value type, any thread. Errors: ValidateExportAccess returns
// EINVAL naming the field.
#pragma once

#include <cstdint>
#include <vector>

#include "base/status.h"

namespace nestor::volume {

struct ExportAccess {
  static constexpr uint32_t kUnset = UINT32_MAX;  // not configured: today's default
  // At most this many entries in allow_uids and allow_gids together: an
  // export record must fit the room a checkpoint slot keeps for it
  // (docs/on-disk-format.md, "Records").
  static constexpr size_t kMaxAllowIds = 8;

  uint32_t socket_uid = kUnset;   // the socket file's owner (kUnset: nestord's uid)
  uint32_t socket_gid = kUnset;   // its group (kUnset: nestord's gid)
  uint32_t socket_mode = kUnset;  // its permission bits, 0..0777 (kUnset: 0777 & ~umask)
  // Peers admitted at accept (SO_PEERCRED): uid in allow_uids or gid in
  // allow_gids. Both empty: every peer that can connect to the socket.
  std::vector<uint32_t> allow_uids, allow_gids;

  bool IsDefault() const {
    return socket_uid == kUnset && socket_gid == kUnset && socket_mode == kUnset && allow_uids.empty() &&
           allow_gids.empty();
  }
  bool operator==(const ExportAccess&) const = default;
};

// Mode within 0..0777 (or unset), ids not kUnset, lists within kMaxAllowIds.
Status ValidateExportAccess(const ExportAccess& a);

}  // namespace nestor::volume
