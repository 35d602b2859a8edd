// Fuzz target pool_metadata: pool metadata decoding (src/volume/format.*)
// and Pool::Open / Check / Repair on a damaged pool (pool_load.cc, the
// process-crash journal in journal.*). Every input must end in a Status:
// no crash, hang or unbounded allocation.
//
// At start-up the harness builds one small valid pool (6 MiB, 4 KiB
// clusters; volumes with extents, an export, a checkpoint written by
// Repair, log entries behind it, a clean-shutdown seal) with a fixed uuid,
// so an input replays the same in every process. Each input runs on a
// copy-on-write view of that image (OverlayDevice): nothing is written to
// disk but journal mode's files, in a per-process temporary directory.
//
// Input: mode:u8, flags:u8, body (integers little-endian).
//   mode % 5 == 0  patch: body is patches {region:u8, offset:u24, len:u8,
//                  bytes[len]}; region % 5 picks the superblock, checkpoint
//                  slot 0, slot 1, the log ring or the data area (offset
//                  modulo its size). Then flags bits 4..7 recompute the
//                  CRCs, so the damage gets past them: bit 4 superblock,
//                  bit 5 checkpoint headers and payloads, bit 6 log
//                  entries, bit 7 seals.
//   mode % 5 == 1  checkpoint: body is a record stream (format.h), stored
//                  as a newer checkpoint in the inactive slot.
//   mode % 5 == 2  log: body is entries {flags:u8, len:u16, records[len]}
//                  appended behind the seed's log (entry flags: bits 0..3
//                  commit_index, bit 5 written at ring offset 0, bit 6 skip
//                  a seq, bit 7 bad CRC).
//   mode % 5 == 3  journal: body is entries {count:u8, flags:u8, len:u16,
//                  records[len]} in journal files of this boot (entry
//                  flags: bit 0 bad CRC, bit 1 a gap before it, bit 2
//                  overlaps the previous note, bit 3 written after a
//                  commit newer than the pool's, bit 4 the rest go to the
//                  second file).
//   mode % 5 == 4  decode: body[0] % 4 picks a decoder run on body[1..]:
//                  superblock, checkpoint header (+ its superblock copy and
//                  seal), record stream (must re-encode to the same bytes),
//                  log entry header + CRC.
// flags: bit 0 open read-only, bit 1 check mode (read-only), bit 2 Repair
// instead of Open, bit 3 after a successful read-write open: I/O on every
// volume (reads, first writes, a discard, a flush), then Check and a few
// control operations that commit (create, resize, delete, snapshot, clone,
// I/O through the clone, decouple, inflate, a space listing).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/crc32c.h"
#include "base/log.h"
#include "volume/format.h"
#include "volume/pool.h"
#include "volume/testing/borrowed_pool_device.h"
#include "volume/testing/sync_io.h"
#include "volume/testing/volatile_cache_device.h"

namespace nestor::volume {
namespace {

constexpr uint64_t kDeviceBytes = 6ull << 20;
constexpr uint32_t kCluster = 4096;
constexpr char kBootId[] = "fuzz-boot";

// ---- little-endian helpers ----
template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void StoreLe(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Reads the input front to back; past the end everything reads as zero.
struct Reader {
  const uint8_t* p;
  size_t n;
  bool empty() const { return n == 0; }
  uint8_t U8() { return Take(1) ? p[-1] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | U8() << 8); }
  uint32_t U24() { return U8() | U8() << 8 | static_cast<uint32_t>(U8()) << 16; }
  std::string Bytes(size_t len) {
    len = std::min(len, n);
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len;
    n -= len;
    return s;
  }
  bool Take(size_t k) {
    if (n < k) {
      n = 0;
      return false;
    }
    p += k;
    n -= k;
    return true;
  }
};

// A copy-on-write view of the seed image: reads see the image with this
// run's writes on top, in 4 KiB blocks. Its data channels complete inline.
class OverlayDevice final : public PoolDevice {
 public:
  explicit OverlayDevice(const std::vector<uint8_t>* base) : base_(base), data_(this) {}
  uint64_t size_bytes() const override { return base_->size(); }
  std::string Describe() const override { return "fuzz-image"; }
  Status ReadAt(uint64_t off, void* buf, size_t len) override {
    if (off > base_->size() || len > base_->size() - off) return Status::Invalid("read out of range");
    auto* out = static_cast<uint8_t*>(buf);
    while (len > 0) {
      uint64_t in = off % kBlock;
      size_t n = std::min<uint64_t>(len, kBlock - in);
      auto it = blocks_.find(off / kBlock);
      std::memcpy(out, it != blocks_.end() ? it->second.data() + in : base_->data() + off, n);
      out += n, off += n, len -= n;
    }
    return Status::Ok();
  }
  Status WriteAt(uint64_t off, const void* buf, size_t len) override {
    if (off > base_->size() || len > base_->size() - off) return Status::Invalid("write out of range");
    const auto* in = static_cast<const uint8_t*>(buf);
    while (len > 0) {
      uint64_t at = off % kBlock;
      size_t n = std::min<uint64_t>(len, kBlock - at);
      std::memcpy(Block(off / kBlock) + at, in, n);
      in += n, off += n, len -= n;
    }
    return Status::Ok();
  }
  Status Sync() override { return Status::Ok(); }
  io::BlockBackend* data() override { return &data_; }

 private:
  class Channel final : public io::IoChannel {
   public:
    explicit Channel(OverlayDevice* dev) : dev_(dev) {}
    void Submit(io::IoRequest* req) override { req->done(req, Execute(*req)); }
    const io::IoStats& stats() const override { return stats_; }

   private:
    int Execute(const io::IoRequest& req) {
      if (req.op == io::IoOp::kFlush) return 0;
      uint64_t off = req.offset;
      if (req.op == io::IoOp::kDiscard || req.op == io::IoOp::kWriteZeroes) {
        std::vector<uint8_t> zeros(req.length);
        return dev_->WriteAt(off, zeros.data(), zeros.size()).ok() ? 0 : -EINVAL;
      }
      for (int i = 0; i < req.iovcnt; ++i) {
        const iovec& v = req.iov[i];
        Status st = req.op == io::IoOp::kRead ? dev_->ReadAt(off, v.iov_base, v.iov_len)
                                              : dev_->WriteAt(off, v.iov_base, v.iov_len);
        if (!st.ok()) return -EINVAL;
        off += v.iov_len;
      }
      return static_cast<int>(req.length);
    }
    OverlayDevice* dev_;
    io::IoStats stats_;
  };
  class Data final : public io::BlockBackend {
   public:
    explicit Data(OverlayDevice* dev) : dev_(dev) {}
    uint64_t size_bytes() const override { return dev_->size_bytes(); }
    std::string Describe() const override { return "fuzz-image data"; }
    Result<std::unique_ptr<io::IoChannel>> OpenChannel(io::IoUring*) override {
      return std::unique_ptr<io::IoChannel>(new Channel(dev_));
    }

   private:
    OverlayDevice* dev_;
  };

  uint8_t* Block(uint64_t b) {
    auto [it, fresh] = blocks_.try_emplace(b);
    if (fresh) it->second.assign(base_->begin() + b * kBlock, base_->begin() + (b + 1) * kBlock);
    return it->second.data();
  }
  const std::vector<uint8_t>* base_;
  std::unordered_map<uint64_t, std::vector<uint8_t>> blocks_;
  Data data_;
};

// What the harness knows about the seed image.
struct Seed {
  std::vector<uint8_t> image;
  Superblock sb;
  int active = 0;        // the active checkpoint slot
  uint64_t seq = 0;      // the last committed entry
  uint64_t log_end = 0;  // where the next log entry would go
  uint64_t notes = 0;    // the last NoteMark
  std::string journal_dir;
};
Seed* g_seed = nullptr;

void Must(const Status& st, const char* what) {
  if (st.ok()) return;
  fprintf(stderr, "pool_metadata seed: %s: %s\n", what, st.ToString().c_str());
  abort();
}

// Rewrites the superblock and slot 0 with a fixed uuid and time (Format
// takes them from /dev/urandom and the clock).
void FixIdentity(PoolDevice* dev) {
  std::vector<uint8_t> block(kBlock);
  Must(dev->ReadAt(0, block.data(), kBlock), "read superblock");
  auto sb = DecodeSuperblock(block.data());
  Must(sb.status(), "decode superblock");
  for (int i = 0; i < 16; ++i) sb->uuid[i] = static_cast<uint8_t>(0x10 + i);
  sb->created_unix = 1700000000;
  EncodeSuperblock(*sb, block.data());
  Must(dev->WriteAt(0, block.data(), kBlock), "write superblock");
  CheckpointHeader h;
  h.pool_id = PoolId(*sb);
  h.payload_crc = Crc32c("", 0);
  EncodeCheckpointHeader(h, block.data(), &*sb);
  Must(dev->WriteAt(sb->ckpt_offset[0], block.data(), kBlock), "write checkpoint");
  Must(dev->Sync(), "sync");
}

void WriteVolume(Pool* pool, const std::string& name, std::initializer_list<uint64_t> offsets, bool discard = false) {
  auto b = pool->OpenVolume(name);
  Must(b.status(), "open volume");
  auto ch = (*b)->OpenChannel(nullptr);
  Must(ch.status(), "open channel");
  std::vector<uint8_t> buf(kCluster, 0xA5);
  for (uint64_t off : offsets) {
    io::IoOp op = discard ? io::IoOp::kDiscard : io::IoOp::kWrite;
    int rc = testing::SyncIo(ch->get(), op, off, discard ? nullptr : buf.data(), kCluster);
    if (rc < 0) Must(Status::Error(-rc, "volume I/O"), name.c_str());
  }
  if (testing::SyncIo(ch->get(), io::IoOp::kFlush, 0, nullptr, 0) != 0) Must(Status::IoError("flush"), "flush");
}

std::unique_ptr<Pool> OpenSeedPool(PoolDevice* dev) {
  auto pool = Pool::Open(std::make_unique<testing::BorrowedPoolDevice>(dev));
  Must(pool.status(), "open");
  return std::move(*pool);
}

std::vector<uint8_t> BuildImage() {
  testing::VolatileCacheDevice dev(kDeviceBytes, 1);
  Must(Pool::Format(&dev, kCluster, false), "format");
  FixIdentity(&dev);
  {
    auto pool = OpenSeedPool(&dev);
    Must(pool->CreateVolume("alpha", 1 << 20, false).status(), "create alpha");
    Must(pool->CreateVolume("beta", 64 << 10, true).status(), "create beta");
    Must(pool->CreateVolume("gamma", 512 << 10, false).status(), "create gamma");
    WriteVolume(pool.get(), "alpha", {0, 4096, 8192, 65536, 512 << 10});
    WriteVolume(pool.get(), "gamma", {0, 12288});
    ExportSettings s;
    s.queues = 2;
    s.read_iops = 1000;
    s.write_bps = 1 << 20;
    Must(pool->SetExport("beta", s), "export beta");
    Must(pool->ResizeVolume("gamma", 1 << 20, false), "resize gamma");
  }
  // A checkpoint holding everything so far; the log follows it.
  Must(Pool::Repair(std::make_unique<testing::BorrowedPoolDevice>(&dev), PoolOptions{}).status(), "repair");
  {
    auto pool = OpenSeedPool(&dev);
    WriteVolume(pool.get(), "alpha", {4096}, true);
    WriteVolume(pool.get(), "alpha", {256 << 10, (256 << 10) + 4096});
    Must(pool->DeleteVolume("gamma"), "delete gamma");
    Must(pool->CreateVolume("delta", 128 << 10, false).status(), "create delta");
    WriteVolume(pool.get(), "delta", {0});
  }
  return dev.current_image();
}

// The active slot, the log's end and the last NoteMark of the seed.
void Survey(Seed* s) {
  const uint8_t* img = s->image.data();
  auto sb = DecodeSuperblock(img);
  Must(sb.status(), "survey superblock");
  s->sb = *sb;
  uint64_t pool_id = PoolId(s->sb);
  CheckpointHeader h[2];
  for (int i = 0; i < 2; ++i) {
    auto d = DecodeCheckpointHeader(img + s->sb.ckpt_offset[i]);
    if (d.ok()) h[i] = *d;
  }
  s->active = h[1].seq > h[0].seq ? 1 : 0;
  const CheckpointHeader& a = h[s->active];
  auto notes = [s](const Record& r) {
    if (r.type == RecordType::kNoteMark) s->notes = r.a;
    return Status::Ok();
  };
  Must(ForEachRecord(img + s->sb.ckpt_offset[s->active] + kBlock, a.payload_bytes, notes), "survey checkpoint");
  uint64_t pos = a.log_head, seq = a.seq;
  for (;;) {
    const uint8_t* e = img + s->sb.log_offset + pos;
    auto eh = DecodeLogEntryHeader(e, s->sb.log_bytes - pos, seq + 1, pool_id);
    if (!eh.ok() || !VerifyLogEntry(*eh, e).ok()) break;
    Must(ForEachRecord(e + kLogHeaderBytes, eh->payload_bytes, notes), "survey log");
    pos += PaddedLogEntryBytes(eh->payload_bytes);
    ++seq;
  }
  s->seq = seq;
  s->log_end = pos;
}

// ---- CRC fix-ups for patch mode (over the seed's layout) ----
uint32_t CrcWithHole(const uint8_t* p, size_t len, size_t at) {
  static const uint8_t kZero[4] = {};
  uint32_t crc = Crc32c(p, at);
  crc = Crc32c(kZero, 4, crc);
  return Crc32c(p + at + 4, len - at - 4, crc);
}

void FixSuperblock(PoolDevice* dev, uint64_t at) {
  std::vector<uint8_t> b(kBlock);
  if (!dev->ReadAt(at, b.data(), kBlock).ok()) return;
  StoreLe(b.data() + 12, CrcWithHole(b.data(), kBlock, 12));
  (void)dev->WriteAt(at, b.data(), kBlock);
}

void FixCheckpoint(PoolDevice* dev, int slot, bool fix_sb_copy) {
  const Superblock& sb = g_seed->sb;
  std::vector<uint8_t> b(kBlock);
  if (!dev->ReadAt(sb.ckpt_offset[slot], b.data(), kBlock).ok()) return;
  if (fix_sb_copy) {
    std::vector<uint8_t> sbb(kBlock, 0);
    std::memcpy(sbb.data(), b.data() + kCkptSbCopyAt, kSbCopyBytes);
    uint32_t crc = CrcWithHole(sbb.data(), kBlock, 12);
    StoreLe(b.data() + kCkptSbCopyAt + 12, crc);
  }
  uint64_t payload = Load<uint64_t>(b.data() + 24);
  if (payload <= sb.ckpt_bytes - kBlock) {
    std::vector<uint8_t> p(payload);
    if (dev->ReadAt(sb.ckpt_offset[slot] + kBlock, p.data(), payload).ok()) {
      StoreLe(b.data() + 32, Crc32c(p.data(), payload));
    }
  }
  std::vector<uint8_t> c = b;
  std::memset(c.data() + kCkptSealAt, 0, kSealBytes);
  StoreLe(b.data() + 4, CrcWithHole(c.data(), kBlock, 4));
  (void)dev->WriteAt(sb.ckpt_offset[slot], b.data(), kBlock);
}

void FixSeal(PoolDevice* dev, int slot) {
  std::vector<uint8_t> b(kBlock);
  uint64_t at = g_seed->sb.ckpt_offset[slot];
  if (!dev->ReadAt(at, b.data(), kBlock).ok()) return;
  StoreLe(b.data() + kCkptSealAt + 4, CrcWithHole(b.data() + kCkptSealAt, kSealBytes, 4));
  (void)dev->WriteAt(at, b.data(), kBlock);
}

void FixLog(PoolDevice* dev) {
  const Superblock& sb = g_seed->sb;
  for (uint64_t pos = 0; pos < sb.log_bytes; pos += kBlock) {
    uint8_t head[kLogHeaderBytes];
    if (!dev->ReadAt(sb.log_offset + pos, head, sizeof(head)).ok()) return;
    if (Load<uint32_t>(head) != kLogMagic) continue;
    uint32_t payload = Load<uint32_t>(head + 16);
    if (payload > kMaxLogEntryBytes || kLogHeaderBytes + payload > sb.log_bytes - pos) continue;
    std::vector<uint8_t> e(kLogHeaderBytes + payload);
    if (!dev->ReadAt(sb.log_offset + pos, e.data(), e.size()).ok()) return;
    uint32_t crc = CrcWithHole(e.data(), e.size(), 4);
    (void)dev->WriteAt(sb.log_offset + pos + 4, &crc, 4);
  }
}

void ApplyPatches(Reader in, uint8_t flags, PoolDevice* dev) {
  const Superblock& sb = g_seed->sb;
  const uint64_t base[5] = {0, sb.ckpt_offset[0], sb.ckpt_offset[1], sb.log_offset, sb.data_offset};
  const uint64_t size[5] = {kBlock, sb.ckpt_bytes, sb.ckpt_bytes, sb.log_bytes, kDeviceBytes - sb.data_offset};
  while (!in.empty()) {
    uint8_t region = in.U8() % 5;
    uint64_t off = in.U24() % size[region];
    std::string bytes = in.Bytes(in.U8());
    bytes.resize(std::min<uint64_t>(bytes.size(), size[region] - off));
    (void)dev->WriteAt(base[region] + off, bytes.data(), bytes.size());
  }
  if (flags & 0x20) {
    FixCheckpoint(dev, 0, flags & 0x10);
    FixCheckpoint(dev, 1, flags & 0x10);
  }
  if (flags & 0x10) FixSuperblock(dev, 0);
  if (flags & 0x40) FixLog(dev);
  if (flags & 0x80) {
    FixSeal(dev, 0);
    FixSeal(dev, 1);
  }
}

// Checkpoint mode: the body as the payload of a newer checkpoint.
void WriteCheckpoint(Reader in, PoolDevice* dev) {
  const Superblock& sb = g_seed->sb;
  std::string payload = in.Bytes(sb.ckpt_bytes - kBlock);
  int slot = 1 - g_seed->active;
  CheckpointHeader h;
  h.seq = g_seed->seq + 1;
  h.log_head = g_seed->log_end;
  h.payload_bytes = payload.size();
  h.payload_crc = Crc32c(payload.data(), payload.size());
  h.pool_id = PoolId(sb);
  std::vector<uint8_t> block(kBlock);
  EncodeCheckpointHeader(h, block.data(), &sb);
  (void)dev->WriteAt(sb.ckpt_offset[slot], block.data(), kBlock);
  (void)dev->WriteAt(sb.ckpt_offset[slot] + kBlock, payload.data(), payload.size());
}

// Log mode: the body's entries behind the seed's last one.
void AppendLogEntries(Reader in, PoolDevice* dev) {
  const Superblock& sb = g_seed->sb;
  uint64_t pos = g_seed->log_end, seq = g_seed->seq + 1;
  while (!in.empty()) {
    uint8_t flags = in.U8();
    std::string records = in.Bytes(in.U16());
    std::vector<Record> decoded;
    (void)DecodeRecords(reinterpret_cast<const uint8_t*>(records.data()), records.size(), &decoded);
    if (flags & 0x40) ++seq;
    std::string e = EncodeLogEntry(seq++, static_cast<uint32_t>(decoded.size()), records, PoolId(sb), flags & 0x0f);
    if (flags & 0x80) e[4] = static_cast<char>(e[4] ^ 0x5a);
    if ((flags & 0x20) || pos + e.size() > sb.log_bytes) pos = 0;
    if (e.size() > sb.log_bytes) return;
    (void)dev->WriteAt(sb.log_offset + pos, e.data(), e.size());
    pos += e.size();
  }
}

// Journal mode: files of this boot holding the body's entries.
void WriteJournal(Reader in) {
  const Seed& s = *g_seed;
  std::string file[2];
  uint64_t next = s.notes + 1;
  for (int i = 0; i < 2; ++i) {
    uint8_t h[128] = {};
    StoreLe<uint64_t>(h, 0x4c4e524a4f53454eull);
    StoreLe<uint64_t>(h + 8, PoolId(s.sb));
    StoreLe<uint64_t>(h + 16, 1 + i);
    StoreLe<uint64_t>(h + 24, next);
    std::memcpy(h + 32, kBootId, sizeof(kBootId) - 1);
    StoreLe<uint32_t>(h + 124, Crc32c(h, 124));
    file[i].assign(reinterpret_cast<const char*>(h), sizeof(h));
  }
  int cur = 0;
  while (!in.empty()) {
    uint8_t count = in.U8(), flags = in.U8();
    std::string records = in.Bytes(in.U16());
    if (flags & 0x10) cur = 1;
    uint64_t first = next + ((flags & 2) ? 1 : 0) - ((flags & 4) && next > 1 ? 1 : 0);
    uint8_t e[32] = {};
    StoreLe<uint32_t>(e, 0x4e524a4e);
    StoreLe<uint64_t>(e + 8, first);
    StoreLe<uint32_t>(e + 16, count);
    StoreLe<uint32_t>(e + 20, static_cast<uint32_t>(records.size()));
    StoreLe<uint64_t>(e + 24, s.seq + ((flags & 8) ? 1 : 0));
    std::string entry(reinterpret_cast<const char*>(e), sizeof(e));
    entry += records;
    uint32_t crc = Crc32c(entry.data() + 8, entry.size() - 8) ^ ((flags & 1) ? 1u : 0u);
    std::memcpy(entry.data() + 4, &crc, 4);
    file[cur] += entry;
    next = first + count;
  }
  for (int i = 0; i < 2; ++i) {
    std::string path = s.journal_dir + "/journal-" + UuidString(s.sb.uuid) + "." + std::to_string(i);
    FILE* f = fopen(path.c_str(), "wb");
    if (f == nullptr) abort();
    fwrite(file[i].data(), 1, file[i].size(), f);
    fclose(f);
  }
}

void RemoveJournal() {
  for (int i = 0; i < 2; ++i) {
    unlink((g_seed->journal_dir + "/journal-" + UuidString(g_seed->sb.uuid) + "." + std::to_string(i)).c_str());
  }
}

// Decode mode: the decoders on raw bytes.
void Decode(Reader in) {
  uint8_t which = in.U8() % 4;
  std::vector<uint8_t> buf(std::max<uint64_t>(PaddedLogEntryBytes(in.n), kBlock), 0);
  std::memcpy(buf.data(), in.p, in.n);
  switch (which) {
    case 0: (void)DecodeSuperblock(buf.data()); break;
    case 1: {
      (void)DecodeCheckpointHeader(buf.data());
      (void)SuperblockFromCheckpoint(buf.data());
      Seal seal;
      (void)DecodeSeal(buf.data(), &seal);
      break;
    }
    case 2: {
      std::vector<Record> recs;
      if (!DecodeRecords(in.p, in.n, &recs).ok()) break;
      std::string again;
      for (const Record& r : recs) AppendRecord(r, &again);
      if (again.size() != in.n || std::memcmp(again.data(), in.p, in.n) != 0) {
        fprintf(stderr, "records do not re-encode to the bytes they were decoded from\n");
        abort();
      }
      break;
    }
    case 3: {
      auto h = DecodeAnyLogEntryHeader(buf.data(), buf.size(), Load<uint64_t>(buf.data() + 24));
      if (h.ok()) (void)VerifyLogEntry(*h, buf.data());
      break;
    }
  }
}

// I/O on every volume of the loaded state: reads of its first and last
// clusters (mapped or holes), first writes (allocations), a discard, a
// flush (a commit). Results are whatever they are; nothing may crash.
void VolumeIo(Pool* pool) {
  std::vector<uint8_t> buf(2 * kCluster, 0x5a);
  for (const VolumeInfo& info : pool->ListVolumes()) {
    auto b = pool->OpenVolume(info.name);
    if (!b.ok()) continue;
    auto ch = (*b)->OpenChannel(nullptr);
    if (!ch.ok()) continue;
    uint64_t size = (*b)->size_bytes();
    uint64_t last = size >= buf.size() ? size - buf.size() : 0;
    uint64_t len = std::min<uint64_t>(buf.size(), size);
    for (uint64_t off : {uint64_t{0}, last}) {
      (void)testing::SyncIo(ch->get(), io::IoOp::kRead, off, buf.data(), len);
      (void)testing::SyncIo(ch->get(), io::IoOp::kWrite, off, buf.data(), std::min<uint64_t>(len, 512));
    }
    if (size >= 2 * kCluster) (void)testing::SyncIo(ch->get(), io::IoOp::kDiscard, kCluster, nullptr, kCluster);
    (void)testing::SyncIo(ch->get(), io::IoOp::kFlush, 0, nullptr, 0);
  }
}

// A few control operations on an opened pool: each commits.
void Exercise(Pool* pool) {
  VolumeIo(pool);
  (void)pool->Check();
  (void)pool->Info();
  auto vols = pool->ListVolumes();
  (void)pool->CreateVolume("fz", 64 << 10, false);
  if (!vols.empty()) {
    (void)pool->ResizeVolume(vols[0].name, vols[0].size + (64 << 10), false);
    (void)pool->SetExport(vols[0].name, ExportSettings{});
  }
  (void)pool->DeleteVolume("fz");
  if (vols.size() > 1) (void)pool->DeleteVolume(vols.back().name);
  // Snapshots and clones of whatever the input left (the image tree may be
  // damaged: every step must end in a Status).
  if (!vols.empty()) {
    (void)pool->CreateSnapshot(vols[0].name, "fz-s");
    (void)pool->CloneVolume("fz-s", "fz-c");
    VolumeIo(pool);
    (void)pool->ListVolumes(true);
    (void)pool->DecoupleVolume("fz-c");
    (void)pool->InflateVolume(vols[0].name);
    (void)pool->Check();
    (void)pool->DeleteVolume("fz-s");
    (void)pool->DeleteVolume("fz-c");
    (void)pool->DeleteVolume("fz-s");
  }
  (void)pool->Commit();
}

void Run(const uint8_t* data, size_t size) {
  Reader in{data, size};
  uint8_t mode = in.U8() % 5, flags = in.U8();
  if (mode == 4) return Decode(in);
  auto dev = std::make_unique<OverlayDevice>(&g_seed->image);
  PoolOptions opts;
  opts.read_only = (flags & 1) || (flags & 2);
  opts.check_mode = flags & 2;
  switch (mode) {
    case 0: ApplyPatches(in, flags, dev.get()); break;
    case 1: WriteCheckpoint(in, dev.get()); break;
    case 2: AppendLogEntries(in, dev.get()); break;
    case 3:
      WriteJournal(in);
      opts.journal_dir = g_seed->journal_dir;
      opts.boot_id = kBootId;
      break;
  }
  if (flags & 4) {
    (void)Pool::Repair(std::move(dev), opts);
  } else {
    auto pool = Pool::Open(std::move(dev), opts);
    if (pool.ok()) {
      if (getenv("NESTOR_FUZZ_LOG") != nullptr) {
        for (const VolumeInfo& v : (*pool)->ListVolumes()) fprintf(stderr, "volume %u %s\n", v.id, v.name.c_str());
      }
      (void)(*pool)->Check();
      (void)(*pool)->ListVolumes();
      if ((flags & 8) && !opts.read_only) Exercise(pool->get());
    }
  }
  if (mode == 3) RemoveJournal();
}

}  // namespace
}  // namespace nestor::volume

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace nestor::volume;
  // Damage is logged at warn/error on every input: keep the fuzzer's
  // output readable (NESTOR_FUZZ_LOG=1 shows it).
  if (getenv("NESTOR_FUZZ_LOG") == nullptr) {
    nestor::SetLogLevel(static_cast<nestor::LogLevel>(static_cast<int>(nestor::LogLevel::kError) + 1));
  }
  g_seed = new Seed;
  char dir[] = "/tmp/nestor-fuzz-pool.XXXXXX";
  if (mkdtemp(dir) == nullptr) abort();
  g_seed->journal_dir = dir;
  g_seed->image = BuildImage();
  Survey(g_seed);
  if (getenv("NESTOR_FUZZ_LOG") != nullptr) {
    fprintf(stderr, "seed: active slot %d, seq %llu, log end %llu, notes %llu, log at %llu, slots at %llu %llu\n",
            g_seed->active, static_cast<unsigned long long>(g_seed->seq),
            static_cast<unsigned long long>(g_seed->log_end), static_cast<unsigned long long>(g_seed->notes),
            static_cast<unsigned long long>(g_seed->sb.log_offset),
            static_cast<unsigned long long>(g_seed->sb.ckpt_offset[0]),
            static_cast<unsigned long long>(g_seed->sb.ckpt_offset[1]));
  }
  atexit([] {
    RemoveJournal();
    rmdir(g_seed->journal_dir.c_str());
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nestor::volume::Run(data, size);
  return 0;
}
