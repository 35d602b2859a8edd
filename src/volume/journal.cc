#include "volume/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "base/crc32c.h"
#include "base/log.h"

namespace nestor::volume {
namespace {

constexpr uint64_t kJournalMagic = 0x4c4e524a4f53454eull;  // "NESOJRNL"
constexpr uint32_t kEntryMagic = 0x4e524a4e;               // "NJRN"
constexpr size_t kHeaderBytes = 128;
constexpr size_t kBootIdBytes = 64;
constexpr size_t kEntryHeaderBytes = 32;
constexpr size_t kMaxEntryPayload = 16u << 20;

// File header: magic u64, pool_id u64, generation u64, first_note u64,
// boot_id[64] (zero padded), ..., crc u32 at 124 over bytes 0..123.
struct FileHeader {
  uint64_t pool_id = 0, generation = 0, first_note = 0;
  std::string boot_id;
};

void EncodeHeader(const FileHeader& h, uint8_t out[kHeaderBytes]) {
  std::memset(out, 0, kHeaderBytes);
  std::memcpy(out, &kJournalMagic, 8);
  std::memcpy(out + 8, &h.pool_id, 8);
  std::memcpy(out + 16, &h.generation, 8);
  std::memcpy(out + 24, &h.first_note, 8);
  std::memcpy(out + 32, h.boot_id.data(), std::min(h.boot_id.size(), kBootIdBytes));
  uint32_t crc = Crc32c(out, kHeaderBytes - 4);
  std::memcpy(out + kHeaderBytes - 4, &crc, 4);
}

bool DecodeHeader(const uint8_t* in, size_t len, FileHeader* h) {
  if (len < kHeaderBytes) return false;
  uint64_t magic;
  uint32_t crc;
  std::memcpy(&magic, in, 8);
  std::memcpy(&crc, in + kHeaderBytes - 4, 4);
  if (magic != kJournalMagic || crc != Crc32c(in, kHeaderBytes - 4)) return false;
  std::memcpy(&h->pool_id, in + 8, 8);
  std::memcpy(&h->generation, in + 16, 8);
  std::memcpy(&h->first_note, in + 24, 8);
  const char* b = reinterpret_cast<const char*>(in + 32);
  h->boot_id.assign(b, strnlen(b, kBootIdBytes));
  return true;
}

struct Entry {
  uint64_t base_seq = 0;
  uint64_t first = 0;
  uint32_t count = 0;
  const uint8_t* records = nullptr;
  uint32_t bytes = 0;
};

// Entries of one file, in order, up to the first damaged one.
std::vector<Entry> DecodeEntries(const std::string& file) {
  std::vector<Entry> out;
  const auto* p = reinterpret_cast<const uint8_t*>(file.data());
  for (size_t off = kHeaderBytes; off + kEntryHeaderBytes <= file.size();) {
    uint32_t magic, crc, count, bytes;
    uint64_t first, base_seq;
    std::memcpy(&magic, p + off, 4);
    std::memcpy(&crc, p + off + 4, 4);
    std::memcpy(&first, p + off + 8, 8);
    std::memcpy(&count, p + off + 16, 4);
    std::memcpy(&bytes, p + off + 20, 4);
    std::memcpy(&base_seq, p + off + 24, 8);
    if (magic != kEntryMagic || bytes > kMaxEntryPayload || off + kEntryHeaderBytes + bytes > file.size()) break;
    if (Crc32c(p + off + 8, kEntryHeaderBytes - 8 + bytes) != crc) break;
    out.push_back({base_seq, first, count, p + off + kEntryHeaderBytes, bytes});
    off += kEntryHeaderBytes + bytes;
  }
  return out;
}

std::string ReadFile(int fd) {
  std::string s;
  char buf[1 << 16];
  for (off_t off = 0;;) {
    ssize_t n = pread(fd, buf, sizeof(buf), off);
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return s;
}

Status WriteAll(int fd, const void* buf, size_t len, uint64_t off) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno("write journal");
    p += n;
    off += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

std::string CurrentBootId() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

Result<std::unique_ptr<Journal>> Journal::Open(const std::string& dir, const uint8_t uuid[16], uint64_t pool_id,
                                               std::string boot_id, bool read_only) {
  if (boot_id.empty()) boot_id = CurrentBootId();
  if (boot_id.empty()) return Status::Error(ENOTSUP, "cannot read this boot's id (/proc/sys/kernel/random/boot_id)");
  if (!read_only) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return Status::Error(ec.value(),
                           "create journal directory " + dir + ": " + ec.message() + " (see --journal-dir)");
    }
  }
  std::unique_ptr<Journal> j(new Journal());
  j->pool_id_ = pool_id;
  j->boot_id_ = std::move(boot_id);
  for (int i = 0; i < 2; ++i) {
    j->path_[i] = dir + "/journal-" + UuidString(uuid) + "." + std::to_string(i);
    int flags = read_only ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_CLOEXEC;
    j->fd_[i].Reset(open(j->path_[i].c_str(), flags, 0600));
    if (!j->fd_[i].valid() && read_only && errno == ENOENT) continue;
    if (!j->fd_[i].valid()) return Status::FromErrno("open journal " + j->path_[i] + " (see --journal-dir)");
  }
  if (read_only && !j->fd_[0].valid() && !j->fd_[1].valid()) return std::unique_ptr<Journal>();
  return j;
}

Status Journal::Replay(uint64_t hardened, uint64_t loaded_seq, const std::function<Status(const Record&)>& fn,
                       uint64_t* last) {
  *last = hardened;
  struct File {
    FileHeader h;
    std::string bytes;
  };
  std::vector<File> files;
  for (int i = 0; i < 2; ++i) {
    if (!fd_[i].valid()) continue;
    File f;
    f.bytes = ReadFile(fd_[i].get());
    if (!DecodeHeader(reinterpret_cast<const uint8_t*>(f.bytes.data()), f.bytes.size(), &f.h)) continue;
    if (f.h.pool_id != pool_id_) continue;
    if (f.h.boot_id != boot_id_) {
      NLOG_INFO("journal {}: from an earlier boot, ignored (after a reboot only committed state counts)", path_[i]);
      continue;
    }
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.h.generation < b.h.generation; });
  uint64_t next = hardened + 1, replayed = 0;
  for (const File& f : files) {
    for (const Entry& e : DecodeEntries(f.bytes)) {
      if (e.first + e.count <= next) continue;  // committed already
      if (e.first > next) return Status::Ok();  // a gap: nothing after it was acknowledged
      if (e.base_seq > loaded_seq) {
        return Status::Error(EUCLEAN, "journal " + path_[0] + " holds changes made after commit " +
                                          std::to_string(e.base_seq) + ", but the pool's last commit is " +
                                          std::to_string(loaded_seq) +
                                          ": the pool is older than its journal (restored from a copy?). Move the "
                                          "journal files away to open the pool as it is");
      }
      uint64_t note = e.first;
      Status st = ForEachRecord(e.records, e.bytes, [&](const Record& r) -> Status {
        if (note++ < next) return Status::Ok();
        ++replayed;
        return fn(r);
      });
      if (!st.ok()) return st;
      next = e.first + e.count;
      *last = next - 1;
    }
  }
  if (replayed > 0) NLOG_INFO("journal: replayed {} change(s) not yet committed when the last process ended", replayed);
  return Status::Ok();
}

Status Journal::StartFile(int i, uint64_t first_note) {
  if (ftruncate(fd_[i].get(), 0) != 0) return Status::FromErrno("truncate journal " + path_[i]);
  FileHeader h{pool_id_, ++generation_, first_note, boot_id_};
  uint8_t hdr[kHeaderBytes];
  EncodeHeader(h, hdr);
  NESTOR_RETURN_IF_ERROR(WriteAll(fd_[i].get(), hdr, kHeaderBytes, 0));
  active_ = i;
  offset_ = kHeaderBytes;
  last_note_[i] = first_note - 1;
  return Status::Ok();
}

void Journal::Remove() {
  for (int i = 0; i < 2; ++i) {
    if (!path_[i].empty()) unlink(path_[i].c_str());
    fd_[i].Reset();
  }
}

Status Journal::Reset(uint64_t next) {
  if (ftruncate(fd_[1 - active_].get(), 0) != 0) return Status::FromErrno("truncate journal");
  last_note_[1 - active_] = 0;
  return StartFile(active_, next);
}

Status Journal::Append(uint64_t first, uint32_t count, const std::string& records, uint64_t hardened,
                       uint64_t base_seq) {
  if (records.size() > kMaxEntryPayload) return Status::Error(ENOSPC, "journal entry too large");
  if (offset_ + kEntryHeaderBytes + records.size() > kFileBytes) {
    int other = 1 - active_;
    if (last_note_[other] > hardened) return Status::Error(ENOSPC, "journal full: commits are behind");
    NESTOR_RETURN_IF_ERROR(StartFile(other, first));
  }
  std::string e(kEntryHeaderBytes + records.size(), '\0');
  auto* p = reinterpret_cast<uint8_t*>(e.data());
  uint32_t bytes = static_cast<uint32_t>(records.size());
  std::memcpy(p, &kEntryMagic, 4);
  std::memcpy(p + 8, &first, 8);
  std::memcpy(p + 16, &count, 4);
  std::memcpy(p + 20, &bytes, 4);
  std::memcpy(p + 24, &base_seq, 8);
  std::memcpy(p + kEntryHeaderBytes, records.data(), records.size());
  uint32_t crc = Crc32c(p + 8, kEntryHeaderBytes - 8 + records.size());
  std::memcpy(p + 4, &crc, 4);
  NESTOR_RETURN_IF_ERROR(WriteAll(fd_[active_].get(), e.data(), e.size(), offset_));
  offset_ += e.size();
  last_note_[active_] = first + count - 1;
  return Status::Ok();
}

}  // namespace nestor::volume
