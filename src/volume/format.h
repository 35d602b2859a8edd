// On-disk format of a pool (docs/on-disk-format.md is the prose version):
//
//   [0, 4K)          superblock (written once, at format)
//   [ckpt0, +ckpt)   checkpoint slot 0 \  the full state, ping-pong:
//   [ckpt1, +ckpt)   checkpoint slot 1 /  the valid one with the higher seq wins
//   [log, +log)      metadata log ring: checksummed entries of records
//   [data, end)      data clusters
//
// Metadata is a stream of records (volume created/deleted/resized, extent
// mapped/unmapped). A checkpoint is the record stream that rebuilds the
// whole state; a log entry is the records of one commit. All integers are
// little-endian; every header carries a CRC-32C.
//
// Thread: pure functions, any thread. Errors: Decode* return Status
// Corruption-style errors (EUCLEAN) with the reason.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "volume/export_access.h"

namespace nestor::volume {

inline constexpr uint64_t kSuperMagic = 0x4c504f5453454e4eull;  // "NNESTOPL"
// Version 2 adds snapshots and clones (record types 11-13). Version 1
// pools are opened and served as they are; they take no snapshots until
// `nestor pool upgrade` (Pool::Upgrade) rewrites their superblock.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestFormatVersion = 1;
inline constexpr uint32_t kCkptMagic = 0x504b434eu;  // "NCKP"
inline constexpr uint32_t kLogMagic = 0x474f4c4eu;   // "NLOG"
inline constexpr uint32_t kMaxVolumes = 1024;        // images: volumes, snapshots and clones
inline constexpr uint32_t kMaxNameLen = 63;
inline constexpr uint64_t kBlock = 4096;  // metadata I/O unit

struct Superblock {
  uint64_t magic = kSuperMagic;
  uint32_t version = kFormatVersion;
  uint32_t cluster_size = 0;  // bytes, power of two, >= 4096
  uint8_t uuid[16] = {};
  uint64_t device_bytes = 0;  // size at format
  uint64_t ckpt_offset[2] = {};
  uint64_t ckpt_bytes = 0;  // per slot
  uint64_t log_offset = 0;
  uint64_t log_bytes = 0;
  uint64_t data_offset = 0;
  uint64_t data_clusters = 0;
  uint64_t created_unix = 0;
};

// Lays out a pool of `device_bytes` with `cluster_size` clusters.
Result<Superblock> PlanLayout(uint64_t device_bytes, uint32_t cluster_size);
void EncodeSuperblock(const Superblock& sb, uint8_t out[kBlock]);
Result<Superblock> DecodeSuperblock(const uint8_t in[kBlock]);
// True if the first bytes of a file or device (len >= 8) start with a pool
// superblock's magic, checksum or not: such a file is a pool (or what is
// left of one) and must not be served as a raw volume.
bool HasPoolSignature(const uint8_t* head, size_t len);
std::string UuidString(const uint8_t uuid[16]);
uint64_t PoolId(const Superblock& sb);

// ---- records ----
enum class RecordType : uint8_t {
  kVolumeCreate = 1,   // id, size, reserved, name
  kVolumeDelete = 2,   // id (frees all its clusters)
  kVolumeResize = 3,   // id, size
  kMap = 4,            // id, vcluster, pcluster, count
  kUnmap = 5,          // id, vcluster, count (frees what was mapped there)
  kVolumeReserve = 6,  // id, reserved clusters (space guarantee)
  kExportSet = 7,      // id, queues | readonly << 16, qos[4] (the volume is exported)
  kExportClear = 8,    // id (no longer exported)
  kNoteMark = 9,       // volume 0, notes: data-path records this state includes (journal.h)
  // An ExportSet with access settings (socket owner, group, mode, admitted
  // peers): written instead of kExportSet only when they are not the
  // defaults, so pools that do not use them stay readable by older nestor.
  kExportSetAccess = 10,  // id, queues | readonly << 16 (u32), qos[4], access
  // ---- version 2: snapshots and clones (docs/on-disk-format.md) ----
  // Snapshot `id` named `name` of volume `a`: the new read-only image
  // takes over the volume's map and parent; the volume becomes a clone of
  // it with an empty map.
  kSnapshotCreate = 11,  // id, a = source volume, name
  // Clone `id` named `name` of snapshot `a`, `b` bytes: a writable volume
  // with an empty map whose holes read through to the snapshot.
  kVolumeClone = 12,  // id, a = parent snapshot, b = size, name
  // The image's parent (a = 0: none) and flags (b, kImageSnapshot):
  // checkpoints state every image's link this way; inflate and decouple
  // change a clone's parent with it.
  kImageLink = 13,  // id, a = parent, b = flags
};
inline constexpr uint64_t kImageSnapshot = 1;  // kImageLink flag: a read-only snapshot
// Whether records of `type` may appear in a pool of format `version`.
bool RecordAllowed(RecordType type, uint32_t version);

struct Record {
  RecordType type = RecordType::kMap;
  uint32_t volume = 0;
  uint64_t a = 0;         // vcluster | size | reserved | source/parent id
  uint64_t b = 0;         // pcluster | reserved (create) | size (clone) | flags (link)
  uint64_t count = 0;     // clusters (map/unmap)
  std::string name;       // create
  uint64_t qos[4] = {};   // export: read_iops, write_iops, read_bps, write_bps
  ExportAccess access{};  // kExportSetAccess
};

void AppendRecord(const Record& r, std::string* out);
// Decodes the records of buf one at a time, handing each to fn (a
// checkpoint of millions of extents is applied without a copy of it all);
// stops at a malformed record or at fn's first error.
Status ForEachRecord(const uint8_t* buf, size_t len, const std::function<Status(const Record&)>& fn);
Status DecodeRecords(const uint8_t* buf, size_t len, std::vector<Record>* out);
inline constexpr size_t kMapRecordBytes = 1 + 4 + 8 + 8 + 4;  // on disk, per extent
// The largest records a checkpoint holds per image: its VolumeCreate, an
// export (kExportSetAccess with every id) and its kImageLink.
inline constexpr size_t kMaxCreateRecordBytes = 1 + 4 + 8 + 8 + 1 + kMaxNameLen;
inline constexpr size_t kImageLinkBytes = 1 + 4 + 4 + 1;
inline constexpr size_t kMaxImageRecordBytes = 2 * kMaxCreateRecordBytes + kImageLinkBytes;
// How many images (volumes, snapshots, clones) a pool's checkpoint slot has
// room for beside one map record per data cluster: kMaxVolumes for a pool
// formatted as version 2, a little less for one upgraded from version 1
// (its slots were sized for two records per volume).
uint32_t ImageCapacity(const Superblock& sb);

// ---- checkpoint slot header (first 4K of a slot; payload follows) ----
struct CheckpointHeader {
  uint32_t magic = kCkptMagic;
  uint64_t seq = 0;            // commit sequence this state includes
  uint64_t log_head = 0;       // byte offset in the log ring of the next entry
  uint64_t payload_bytes = 0;  // record stream length
  uint32_t payload_crc = 0;
  uint64_t pool_id = 0;  // ties the slot to this pool (uuid prefix)
};
// The header block also carries, at kCkptSbCopyAt, a copy of the first
// kSbCopyBytes of the encoded superblock (the rest of a superblock block is
// zero), covered by the header's CRC: the superblock survives damage as
// long as one slot header is intact. With sb == nullptr no copy is stored.
inline constexpr size_t kCkptSbCopyAt = 1024;
inline constexpr size_t kSbCopyBytes = 128;
void EncodeCheckpointHeader(const CheckpointHeader& h, uint8_t out[kBlock], const Superblock* sb = nullptr);
Result<CheckpointHeader> DecodeCheckpointHeader(const uint8_t in[kBlock]);
// The superblock copy of a valid header block (DecodeSuperblock's errors).
Result<Superblock> SuperblockFromCheckpoint(const uint8_t in[kBlock]);

// The clean-shutdown seal, in the active slot's header block at
// kCkptSealAt (outside the header's CRC, which treats it as zero): the
// pool closed cleanly with its log ending at entry `seq`, so a log that
// ends earlier is damaged, even at its last entry. Cleared when the pool
// is opened for writing.
inline constexpr size_t kCkptSealAt = 2048;
inline constexpr size_t kSealBytes = 512;
struct Seal {
  uint64_t seq = 0;       // the last committed entry
  uint64_t log_head = 0;  // where the next entry would have gone
  uint64_t pool_id = 0;
};
void EncodeSeal(const Seal& s, uint8_t out[kBlock]);  // into a header block
// The seal of a header block, if one is there and intact.
bool DecodeSeal(const uint8_t in[kBlock], Seal* out);

// ---- log entry: 32-byte header + records, padded to kBlock ----
struct LogEntryHeader {
  uint32_t magic = kLogMagic;
  uint32_t crc = 0;  // over the header (crc field zero) and the payload
  uint64_t seq = 0;
  uint32_t payload_bytes = 0;
  uint32_t records = 0;      // on disk: the low 24 bits of the records word
  uint8_t commit_index = 0;  // on disk: its top 8 bits (see below)
  uint64_t pool_id = 0;      // uuid prefix: entries of an older pool never replay
};
inline constexpr size_t kLogHeaderBytes = 32;
inline constexpr size_t kMaxLogEntryBytes = 1 << 20;
inline constexpr uint32_t kMaxLogEntryRecords = (1u << 24) - 1;  // 1 MiB holds < 2^18 records
// commit_index: the entry's position among the entries of its commit (0
// for the first, saturating at 255). Entries of one commit are written
// before one Sync, so after a crash any of them may be torn while a later
// one of the same commit is intact; an intact entry of a *later* commit
// (seq - commit_index > the damaged seq) proves the damaged entry had been
// synced: that is corruption, not a torn tail.
// Builds a whole entry (header + payload + zero padding to kBlock).
std::string EncodeLogEntry(uint64_t seq, uint32_t records, const std::string& payload, uint64_t pool_id,
                           uint8_t commit_index = 0);
// Decodes the header at `in` (at least kBlock bytes available; `avail` is
// how many) if magic and pool id match and the length fits. Any seq.
Result<LogEntryHeader> DecodeAnyLogEntryHeader(const uint8_t* in, size_t avail, uint64_t pool_id);
// As DecodeAnyLogEntryHeader, and seq must be want_seq. The total padded
// size is PaddedLogEntryBytes(payload_bytes); VerifyLogEntry checks the CRC.
Result<LogEntryHeader> DecodeLogEntryHeader(const uint8_t* in, size_t avail, uint64_t want_seq, uint64_t pool_id);
Status VerifyLogEntry(const LogEntryHeader& h, const uint8_t* entry);
inline uint64_t PaddedLogEntryBytes(uint64_t payload) {
  return (kLogHeaderBytes + payload + kBlock - 1) / kBlock * kBlock;
}

Status Corruption(const std::string& what);

}  // namespace nestor::volume
