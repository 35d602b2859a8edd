#include "volume/format.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "base/crc32c.h"

namespace nestor::volume {
namespace {

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, arm64)
  out->append(b, sizeof(T));
}

template <typename T>
void PutAt(uint8_t* p, size_t* off, T v) {
  std::memcpy(p + *off, &v, sizeof(T));
  *off += sizeof(T);
}

template <typename T>
T GetAt(const uint8_t* p, size_t* off) {
  T v;
  std::memcpy(&v, p + *off, sizeof(T));
  *off += sizeof(T);
  return v;
}

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// CRC-32C of p[0, len) with the 4-byte checksum field at crc_at read as
// zeros: the checksum every header stores over itself. No copy.
uint32_t CrcWithHole(const uint8_t* p, size_t len, size_t crc_at) {
  static const uint8_t kZero[4] = {};
  uint32_t crc = Crc32c(p, crc_at);
  crc = Crc32c(kZero, 4, crc);
  return Crc32c(p + crc_at + 4, len - crc_at - 4, crc);
}

void StoreCrc(uint8_t* p, size_t len, size_t crc_at) {
  uint32_t crc = CrcWithHole(p, len, crc_at);
  std::memcpy(p + crc_at, &crc, 4);
}

// The regions follow each other inside the device, computed without
// wrapping (a checksummed superblock can still be hand-made).
bool LayoutIsSane(const Superblock& sb) {
  if (sb.cluster_size < kBlock || (sb.cluster_size & (sb.cluster_size - 1)) != 0) return false;
  if (sb.ckpt_offset[0] != kBlock || sb.ckpt_bytes < kBlock || sb.log_bytes < 2 * kMaxLogEntryBytes ||
      sb.log_bytes % kBlock != 0 || sb.data_offset % sb.cluster_size != 0) {
    return false;
  }
  uint64_t ckpt1 = 0, log = 0, log_end = 0, data_bytes = 0, data_end = 0;
  if (__builtin_add_overflow(kBlock, sb.ckpt_bytes, &ckpt1) || sb.ckpt_offset[1] != ckpt1) return false;
  if (__builtin_add_overflow(ckpt1, sb.ckpt_bytes, &log) || sb.log_offset != log) return false;
  if (__builtin_add_overflow(log, sb.log_bytes, &log_end) || sb.data_offset < log_end) return false;
  if (__builtin_mul_overflow(sb.data_clusters, uint64_t{sb.cluster_size}, &data_bytes)) return false;
  if (__builtin_add_overflow(sb.data_offset, data_bytes, &data_end)) return false;
  return data_end <= sb.device_bytes;
}

}  // namespace

Status Corruption(const std::string& what) { return Status::Error(EUCLEAN, "corrupt pool: " + what); }

Result<Superblock> PlanLayout(uint64_t device_bytes, uint32_t cluster_size) {
  if (cluster_size < kBlock || (cluster_size & (cluster_size - 1)) != 0 || cluster_size > (64u << 20)) {
    return Status::Invalid("cluster size must be a power of two between 4 KiB and 64 MiB");
  }
  Superblock sb;
  sb.cluster_size = cluster_size;
  sb.device_bytes = device_bytes / kBlock * kBlock;
  uint64_t max_clusters = sb.device_bytes / cluster_size;
  uint64_t volume_bytes = uint64_t{kMaxVolumes} * kMaxImageRecordBytes + kBlock;  // + the NoteMark, with room
  sb.ckpt_bytes = kBlock + RoundUp(volume_bytes + max_clusters * kMapRecordBytes, kBlock);
  sb.ckpt_offset[0] = kBlock;
  sb.ckpt_offset[1] = sb.ckpt_offset[0] + sb.ckpt_bytes;
  sb.log_offset = sb.ckpt_offset[1] + sb.ckpt_bytes;
  sb.log_bytes = std::clamp<uint64_t>(sb.device_bytes / 256 / kBlock * kBlock, 4ull << 20, 256ull << 20);
  sb.data_offset = RoundUp(sb.log_offset + sb.log_bytes, cluster_size);
  if (sb.data_offset >= sb.device_bytes) {
    return Status::Invalid("device too small: metadata alone needs " + std::to_string(sb.data_offset) + " bytes");
  }
  sb.data_clusters = (sb.device_bytes - sb.data_offset) / cluster_size;
  if (sb.data_clusters == 0) return Status::Invalid("device too small for one data cluster");
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, sb.uuid, sizeof(sb.uuid)) != static_cast<ssize_t>(sizeof(sb.uuid))) {
    if (fd >= 0) close(fd);
    return Status::FromErrno("reading /dev/urandom");
  }
  close(fd);
  sb.uuid[6] = static_cast<uint8_t>((sb.uuid[6] & 0x0F) | 0x40);  // RFC 4122 v4
  sb.uuid[8] = static_cast<uint8_t>((sb.uuid[8] & 0x3F) | 0x80);
  sb.created_unix = static_cast<uint64_t>(time(nullptr));
  return sb;
}

void EncodeSuperblock(const Superblock& sb, uint8_t out[kBlock]) {
  std::memset(out, 0, kBlock);
  size_t off = 0;
  PutAt(out, &off, sb.magic);
  PutAt(out, &off, sb.version);
  PutAt(out, &off, uint32_t{0});  // crc, filled below
  PutAt(out, &off, sb.cluster_size);
  PutAt(out, &off, uint32_t{0});  // reserved
  std::memcpy(out + off, sb.uuid, 16);
  off += 16;
  PutAt(out, &off, sb.device_bytes);
  PutAt(out, &off, sb.ckpt_offset[0]);
  PutAt(out, &off, sb.ckpt_offset[1]);
  PutAt(out, &off, sb.ckpt_bytes);
  PutAt(out, &off, sb.log_offset);
  PutAt(out, &off, sb.log_bytes);
  PutAt(out, &off, sb.data_offset);
  PutAt(out, &off, sb.data_clusters);
  PutAt(out, &off, sb.created_unix);
  StoreCrc(out, kBlock, 12);
}

bool HasPoolSignature(const uint8_t* head, size_t len) {
  if (len < sizeof(uint64_t)) return false;
  size_t off = 0;
  return GetAt<uint64_t>(head, &off) == kSuperMagic;
}

Result<Superblock> DecodeSuperblock(const uint8_t in[kBlock]) {
  Superblock sb;
  size_t off = 0;
  sb.magic = GetAt<uint64_t>(in, &off);
  if (sb.magic != kSuperMagic) return Status::Error(ENODEV, "not a nestor pool (no superblock magic)");
  sb.version = GetAt<uint32_t>(in, &off);
  uint32_t crc = GetAt<uint32_t>(in, &off);
  if (CrcWithHole(in, kBlock, 12) != crc) return Corruption("superblock checksum mismatch");
  if (sb.version < kOldestFormatVersion || sb.version > kFormatVersion) {
    return Status::Error(ENOTSUP, "pool format version " + std::to_string(sb.version) +
                                      " is not supported (this nestor reads versions " +
                                      std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion) +
                                      ")");
  }
  sb.cluster_size = GetAt<uint32_t>(in, &off);
  off += 4;
  std::memcpy(sb.uuid, in + off, 16);
  off += 16;
  sb.device_bytes = GetAt<uint64_t>(in, &off);
  sb.ckpt_offset[0] = GetAt<uint64_t>(in, &off);
  sb.ckpt_offset[1] = GetAt<uint64_t>(in, &off);
  sb.ckpt_bytes = GetAt<uint64_t>(in, &off);
  sb.log_offset = GetAt<uint64_t>(in, &off);
  sb.log_bytes = GetAt<uint64_t>(in, &off);
  sb.data_offset = GetAt<uint64_t>(in, &off);
  sb.data_clusters = GetAt<uint64_t>(in, &off);
  sb.created_unix = GetAt<uint64_t>(in, &off);
  if (!LayoutIsSane(sb)) return Corruption("superblock layout is inconsistent");
  return sb;
}

uint64_t PoolId(const Superblock& sb) {
  uint64_t id;
  std::memcpy(&id, sb.uuid, 8);
  return id;
}

std::string UuidString(const uint8_t u[16]) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += hex[u[i] >> 4];
    s += hex[u[i] & 15];
  }
  return s;
}

void AppendRecord(const Record& r, std::string* out) {
  Put(out, static_cast<uint8_t>(r.type));
  Put(out, r.volume);
  switch (r.type) {
    case RecordType::kVolumeCreate:
      Put(out, r.a);
      Put(out, r.b);
      Put(out, static_cast<uint8_t>(r.name.size()));
      out->append(r.name);
      break;
    case RecordType::kVolumeDelete:
    case RecordType::kExportClear: break;
    case RecordType::kVolumeResize:
    case RecordType::kVolumeReserve:
    case RecordType::kNoteMark: Put(out, r.a); break;
    case RecordType::kExportSet:
      Put(out, r.a);
      for (uint64_t q : r.qos) Put(out, q);
      break;
    case RecordType::kExportSetAccess: {
      // 52 bytes + 4 per id: at most 84 with kMaxAllowIds ids (docs/on-disk-format.md).
      const ExportAccess& x = r.access;
      Put(out, static_cast<uint32_t>(r.a));
      for (uint64_t q : r.qos) Put(out, q);
      Put(out, x.socket_uid);
      Put(out, x.socket_gid);
      Put(out, static_cast<uint16_t>(x.socket_mode == ExportAccess::kUnset ? 0xFFFF : x.socket_mode & 0777));
      size_t nu = std::min<size_t>(x.allow_uids.size(), 15), ng = std::min<size_t>(x.allow_gids.size(), 15);
      Put(out, static_cast<uint8_t>(nu | ng << 4));
      for (size_t i = 0; i < nu; ++i) Put(out, x.allow_uids[i]);
      for (size_t i = 0; i < ng; ++i) Put(out, x.allow_gids[i]);
      break;
    }
    case RecordType::kMap:
      Put(out, r.a);
      Put(out, r.b);
      Put(out, static_cast<uint32_t>(r.count));
      break;
    case RecordType::kUnmap:
      Put(out, r.a);
      Put(out, static_cast<uint32_t>(r.count));
      break;
    case RecordType::kSnapshotCreate:
      Put(out, static_cast<uint32_t>(r.a));
      Put(out, static_cast<uint8_t>(r.name.size()));
      out->append(r.name);
      break;
    case RecordType::kVolumeClone:
      Put(out, static_cast<uint32_t>(r.a));
      Put(out, r.b);
      Put(out, static_cast<uint8_t>(r.name.size()));
      out->append(r.name);
      break;
    case RecordType::kImageLink:
      Put(out, static_cast<uint32_t>(r.a));
      Put(out, static_cast<uint8_t>(r.b));
      break;
  }
}

bool RecordAllowed(RecordType type, uint32_t version) {
  switch (type) {
    case RecordType::kSnapshotCreate:
    case RecordType::kVolumeClone:
    case RecordType::kImageLink: return version >= 2;
    default: return true;
  }
}

uint32_t ImageCapacity(const Superblock& sb) {
  uint64_t room = sb.ckpt_bytes - kBlock;
  uint64_t maps = sb.data_clusters * kMapRecordBytes + 64;  // + the NoteMark
  if (room <= maps) return 0;
  return static_cast<uint32_t>(std::min<uint64_t>(kMaxVolumes, (room - maps) / kMaxImageRecordBytes));
}

Status ForEachRecord(const uint8_t* buf, size_t len, const std::function<Status(const Record&)>& fn) {
  size_t off = 0;
  auto need = [&](size_t n) { return off + n <= len; };
  while (off < len) {
    if (!need(5)) return Corruption("truncated record header");
    Record r;
    uint8_t type = GetAt<uint8_t>(buf, &off);
    r.volume = GetAt<uint32_t>(buf, &off);
    r.type = static_cast<RecordType>(type);
    switch (r.type) {
      case RecordType::kVolumeCreate: {
        if (!need(17)) return Corruption("truncated volume record");
        r.a = GetAt<uint64_t>(buf, &off);
        r.b = GetAt<uint64_t>(buf, &off);
        uint8_t n = GetAt<uint8_t>(buf, &off);
        if (n > kMaxNameLen || !need(n)) return Corruption("bad volume name length");
        r.name.assign(reinterpret_cast<const char*>(buf + off), n);
        off += n;
        break;
      }
      case RecordType::kVolumeDelete:
      case RecordType::kExportClear: break;
      case RecordType::kExportSet:
        if (!need(40)) return Corruption("truncated export record");
        r.a = GetAt<uint64_t>(buf, &off);
        for (uint64_t& q : r.qos) q = GetAt<uint64_t>(buf, &off);
        break;
      case RecordType::kExportSetAccess: {
        if (!need(47)) return Corruption("truncated export record");
        r.a = GetAt<uint32_t>(buf, &off);
        for (uint64_t& q : r.qos) q = GetAt<uint64_t>(buf, &off);
        r.access.socket_uid = GetAt<uint32_t>(buf, &off);
        r.access.socket_gid = GetAt<uint32_t>(buf, &off);
        uint16_t mode = GetAt<uint16_t>(buf, &off);
        r.access.socket_mode = mode == 0xFFFF ? ExportAccess::kUnset : mode;
        uint8_t counts = GetAt<uint8_t>(buf, &off);
        size_t nu = counts & 15, ng = counts >> 4;
        if (!need(4 * (nu + ng))) return Corruption("truncated export record");
        for (size_t i = 0; i < nu; ++i) r.access.allow_uids.push_back(GetAt<uint32_t>(buf, &off));
        for (size_t i = 0; i < ng; ++i) r.access.allow_gids.push_back(GetAt<uint32_t>(buf, &off));
        break;
      }
      case RecordType::kVolumeResize:
      case RecordType::kVolumeReserve:
      case RecordType::kNoteMark:
        if (!need(8)) return Corruption("truncated record");
        r.a = GetAt<uint64_t>(buf, &off);
        break;
      case RecordType::kMap:
        if (!need(20)) return Corruption("truncated map record");
        r.a = GetAt<uint64_t>(buf, &off);
        r.b = GetAt<uint64_t>(buf, &off);
        r.count = GetAt<uint32_t>(buf, &off);
        break;
      case RecordType::kUnmap:
        if (!need(12)) return Corruption("truncated unmap record");
        r.a = GetAt<uint64_t>(buf, &off);
        r.count = GetAt<uint32_t>(buf, &off);
        break;
      case RecordType::kSnapshotCreate:
      case RecordType::kVolumeClone: {
        bool clone = r.type == RecordType::kVolumeClone;
        if (!need(clone ? 13 : 5)) return Corruption("truncated snapshot/clone record");
        r.a = GetAt<uint32_t>(buf, &off);
        if (clone) r.b = GetAt<uint64_t>(buf, &off);
        uint8_t n = GetAt<uint8_t>(buf, &off);
        if (n > kMaxNameLen || !need(n)) return Corruption("bad image name length");
        r.name.assign(reinterpret_cast<const char*>(buf + off), n);
        off += n;
        break;
      }
      case RecordType::kImageLink:
        if (!need(5)) return Corruption("truncated image link record");
        r.a = GetAt<uint32_t>(buf, &off);
        r.b = GetAt<uint8_t>(buf, &off);
        break;
      default: return Corruption("unknown record type " + std::to_string(type));
    }
    NESTOR_RETURN_IF_ERROR(fn(r));
  }
  return Status::Ok();
}

Status DecodeRecords(const uint8_t* buf, size_t len, std::vector<Record>* out) {
  return ForEachRecord(buf, len, [out](const Record& r) {
    out->push_back(r);
    return Status::Ok();
  });
}

namespace {
constexpr uint32_t kSealMagic = 0x4c41454e;  // "NEAL"

// The header CRC: the block with its crc field and the seal area zero (a
// pool written before seals existed has zeros there, so its CRC matches).
uint32_t CheckpointCrc(const uint8_t in[kBlock]) {
  uint8_t copy[kBlock];
  std::memcpy(copy, in, kBlock);
  std::memset(copy + kCkptSealAt, 0, kSealBytes);
  return CrcWithHole(copy, kBlock, 4);
}
}  // namespace

void EncodeCheckpointHeader(const CheckpointHeader& h, uint8_t out[kBlock], const Superblock* sb) {
  std::memset(out, 0, kBlock);
  size_t off = 0;
  PutAt(out, &off, h.magic);
  PutAt(out, &off, uint32_t{0});  // crc
  PutAt(out, &off, h.seq);
  PutAt(out, &off, h.log_head);
  PutAt(out, &off, h.payload_bytes);
  PutAt(out, &off, h.payload_crc);
  PutAt(out, &off, h.pool_id);
  if (sb != nullptr) {
    uint8_t block[kBlock];
    EncodeSuperblock(*sb, block);
    std::memcpy(out + kCkptSbCopyAt, block, kSbCopyBytes);
  }
  uint32_t crc = CheckpointCrc(out);
  std::memcpy(out + 4, &crc, 4);
}

Result<Superblock> SuperblockFromCheckpoint(const uint8_t in[kBlock]) {
  uint8_t block[kBlock] = {};
  std::memcpy(block, in + kCkptSbCopyAt, kSbCopyBytes);
  return DecodeSuperblock(block);
}

void EncodeSeal(const Seal& s, uint8_t out[kBlock]) {
  uint8_t* p = out + kCkptSealAt;
  std::memset(p, 0, kSealBytes);
  size_t off = 0;
  PutAt(p, &off, kSealMagic);
  PutAt(p, &off, uint32_t{0});
  PutAt(p, &off, s.seq);
  PutAt(p, &off, s.log_head);
  PutAt(p, &off, s.pool_id);
  StoreCrc(p, kSealBytes, 4);
}

bool DecodeSeal(const uint8_t in[kBlock], Seal* out) {
  const uint8_t* p = in + kCkptSealAt;
  size_t off = 0;
  uint32_t magic = GetAt<uint32_t>(p, &off);
  uint32_t crc = GetAt<uint32_t>(p, &off);
  if (magic != kSealMagic || CrcWithHole(p, kSealBytes, 4) != crc) return false;
  out->seq = GetAt<uint64_t>(p, &off);
  out->log_head = GetAt<uint64_t>(p, &off);
  out->pool_id = GetAt<uint64_t>(p, &off);
  return true;
}

Result<CheckpointHeader> DecodeCheckpointHeader(const uint8_t in[kBlock]) {
  CheckpointHeader h;
  size_t off = 0;
  h.magic = GetAt<uint32_t>(in, &off);
  uint32_t crc = GetAt<uint32_t>(in, &off);
  if (h.magic != kCkptMagic) return Corruption("no checkpoint magic");
  if (CheckpointCrc(in) != crc) return Corruption("checkpoint header checksum mismatch");
  h.seq = GetAt<uint64_t>(in, &off);
  h.log_head = GetAt<uint64_t>(in, &off);
  h.payload_bytes = GetAt<uint64_t>(in, &off);
  h.payload_crc = GetAt<uint32_t>(in, &off);
  h.pool_id = GetAt<uint64_t>(in, &off);
  return h;
}

std::string EncodeLogEntry(uint64_t seq, uint32_t records, const std::string& payload, uint64_t pool_id,
                           uint8_t commit_index) {
  std::string e(PaddedLogEntryBytes(payload.size()), '\0');
  auto* p = reinterpret_cast<uint8_t*>(e.data());
  size_t off = 0;
  PutAt(p, &off, kLogMagic);
  PutAt(p, &off, uint32_t{0});
  PutAt(p, &off, seq);
  PutAt(p, &off, static_cast<uint32_t>(payload.size()));
  PutAt(p, &off, (records & kMaxLogEntryRecords) | uint32_t{commit_index} << 24);
  PutAt(p, &off, pool_id);
  std::memcpy(p + kLogHeaderBytes, payload.data(), payload.size());
  StoreCrc(p, kLogHeaderBytes + payload.size(), 4);
  return e;
}

Result<LogEntryHeader> DecodeAnyLogEntryHeader(const uint8_t* in, size_t avail, uint64_t pool_id) {
  LogEntryHeader h;
  size_t off = 0;
  h.magic = GetAt<uint32_t>(in, &off);
  h.crc = GetAt<uint32_t>(in, &off);
  h.seq = GetAt<uint64_t>(in, &off);
  h.payload_bytes = GetAt<uint32_t>(in, &off);
  uint32_t word = GetAt<uint32_t>(in, &off);
  h.records = word & kMaxLogEntryRecords;
  h.commit_index = static_cast<uint8_t>(word >> 24);
  h.pool_id = GetAt<uint64_t>(in, &off);
  if (h.magic != kLogMagic || h.pool_id != pool_id) return Status::Error(ENOENT, "no log entry");
  if (h.payload_bytes > kMaxLogEntryBytes || PaddedLogEntryBytes(h.payload_bytes) > avail) {
    return Status::Error(ENOENT, "log entry length out of range");
  }
  return h;
}

Result<LogEntryHeader> DecodeLogEntryHeader(const uint8_t* in, size_t avail, uint64_t want_seq, uint64_t pool_id) {
  auto h = DecodeAnyLogEntryHeader(in, avail, pool_id);
  if (h.ok() && h->seq != want_seq) return Status::Error(ENOENT, "log entry from an older lap");
  return h;
}

Status VerifyLogEntry(const LogEntryHeader& h, const uint8_t* entry) {
  // A torn entry ends the log: it was never acknowledged.
  if (CrcWithHole(entry, kLogHeaderBytes + h.payload_bytes, 4) != h.crc) {
    return Status::Error(ENOENT, "torn log entry");
  }
  return Status::Ok();
}

}  // namespace nestor::volume
