// The export settings a Ceph pool stores in an image's metadata
// (rbd_pool.h: key "nestor.export", or "nestor.export@SNAP" for a
// snapshot's): one line of words, "v1" then key=value pairs, e.g.
//   v1 queues=2 readonly=0 read_iops=0 write_iops=0 read_bps=0 write_bps=0
//      socket_uid=4294967295 socket_gid=4294967295 socket_mode=4294967295
//      allow_uids=- allow_gids=1000,1001
// (one line; 4294967295: not set). Anyone with write access to the pool
// can change it, so DecodeExport trusts nothing: every value is checked
// against the limits export_create enforces.
//
// Thread: pure functions, any thread. Errors: DecodeExport returns EUCLEAN
// naming the bad key (or the version); unknown keys (from a newer nestor)
// are ignored.
#pragma once

#include <string>

#include "base/status.h"
#include "volume/volume.h"

namespace nestor::rbd {

std::string EncodeExport(const volume::ExportSettings& s);
Result<volume::ExportSettings> DecodeExport(const std::string& text);

}  // namespace nestor::rbd
