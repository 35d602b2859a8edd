// Volume limits: the one place that decides which volume names and sizes
// are acceptable. Pool::CreateVolume and Pool::ResizeVolume check every
// value here, so the front ends (the `nestor` tool, nestorctl through
// nestord's control socket, nestord's --volume) pass what the user typed
// and report the Status; none of them has rules of its own.
//
// Why these sizes (docs/volumes.md, "Limits"):
//   - a multiple of 4 KiB (the metadata I/O unit, and every guest block
//     size up to 4 KiB), at least 4 KiB;
//   - at most kMaxVolumeBytes = 2^62 bytes (4 EiB). Below INT64_MAX, so
//     every byte offset of a volume is a valid off_t/loff_t for guests and
//     tools; and far enough below UINT64_MAX that the size arithmetic of the
//     pool and the data path (size + cluster - 1, offset + length, cluster
//     index * cluster size, the extent map's UINT64_MAX/2 "to the end") can
//     never wrap. The on-disk records hold any such size (u64 bytes) and
//     any such cluster index (u64); counts are u32 and split into several
//     records.
//
// Thread: pure functions, any thread. Errors: [[nodiscard]] Status, EINVAL
// with a message that names the value and the limit it breaks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "volume/format.h"

namespace nestor::volume {

inline constexpr uint64_t kVolumeAlign = 4096;
inline constexpr uint64_t kMinVolumeBytes = kVolumeAlign;
inline constexpr uint64_t kMaxVolumeBytes = uint64_t{1} << 62;
// Plain backends exported by nestord --volume (mem, null, file): the virtio
// sector is their unit.
inline constexpr uint64_t kExportAlign = 512;

static_assert(kMaxVolumeBytes % kVolumeAlign == 0);
static_assert(kMaxVolumeBytes <= uint64_t{INT64_MAX}, "offsets must fit off_t");
static_assert(kMaxVolumeBytes <= UINT64_MAX - (uint64_t{64} << 20), "size + cluster - 1 must not wrap");
static_assert(kMaxVolumeBytes / kBlock < UINT64_MAX / 2, "cluster indexes stay below the extent map's 'to the end'");

// 1 to kMaxNameLen (63) of [A-Za-z0-9._-], not starting with '.' or '-'
// (the name is a socket file name, DIR/NAME.sock, and a command argument).
Status ValidateVolumeName(std::string_view name);
// A pool volume's size: kMinVolumeBytes .. kMaxVolumeBytes, a multiple of
// kVolumeAlign.
Status ValidateVolumeSize(uint64_t size);
// A plain backend's size (nestord --volume): 1 .. kMaxVolumeBytes, a
// multiple of kExportAlign.
Status ValidateExportSize(uint64_t size);

// Frontends one export serves at once: 1..kMaxFrontends, and more than one
// only read-only or with shared_writers (EINVAL naming the rule).
inline constexpr uint16_t kMaxFrontends = 64;
Status ValidateFrontends(uint16_t frontends, bool read_only, bool shared_writers);

// Clusters that hold `bytes` (rounded up), for any bytes: no wrap.
constexpr uint64_t ClustersForBytes(uint64_t bytes, uint64_t cluster_size) {
  return bytes / cluster_size + (bytes % cluster_size != 0 ? 1 : 0);
}

}  // namespace nestor::volume
