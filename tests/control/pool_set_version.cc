// control-pool-set-version: rewrites the format version of a pool file's
// superblock (and of the superblock copy in each intact checkpoint slot
// header, keeping the clean-shutdown seal), with their checksums. No
// nestor writes version 1 pools anymore: the upgrade test makes one from
// a freshly created, empty pool (whose metadata version 1 reads as well).
//
//   control-pool-set-version POOL VERSION
//
// Exit codes: 0 done, 1 an error (on stderr), 2 usage.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/fd.h"
#include "volume/format.h"

using namespace nestor;

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "control-pool-set-version: %s\n", what.c_str());
  return 1;
}

bool ReadBlock(int fd, uint64_t off, uint8_t* b) {
  return pread(fd, b, volume::kBlock, static_cast<off_t>(off)) == static_cast<ssize_t>(volume::kBlock);
}

bool WriteBlock(int fd, uint64_t off, const uint8_t* b) {
  return pwrite(fd, b, volume::kBlock, static_cast<off_t>(off)) == static_cast<ssize_t>(volume::kBlock);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: control-pool-set-version POOL VERSION\n");
    return 2;
  }
  uint32_t version = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
  UniqueFd fd(open(argv[1], O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return Fail(std::string("open ") + argv[1] + ": " + std::strerror(errno));
  alignas(4096) static uint8_t block[volume::kBlock];
  if (!ReadBlock(fd.get(), 0, block)) return Fail("read the superblock");
  auto sb = volume::DecodeSuperblock(block);
  if (!sb.ok()) return Fail("superblock: " + sb.status().ToString());
  sb->version = version;
  std::memset(block, 0, sizeof(block));
  volume::EncodeSuperblock(*sb, block);
  if (!WriteBlock(fd.get(), 0, block)) return Fail("write the superblock");
  int slots = 0;
  for (uint64_t off : sb->ckpt_offset) {
    if (!ReadBlock(fd.get(), off, block)) return Fail("read a checkpoint header");
    auto h = volume::DecodeCheckpointHeader(block);
    if (!h.ok()) continue;  // an unused slot
    bool had_copy = volume::SuperblockFromCheckpoint(block).ok();
    uint8_t seal[volume::kSealBytes];
    std::memcpy(seal, block + volume::kCkptSealAt, sizeof(seal));
    std::memset(block, 0, sizeof(block));
    volume::EncodeCheckpointHeader(*h, block, had_copy ? &*sb : nullptr);
    std::memcpy(block + volume::kCkptSealAt, seal, sizeof(seal));
    if (!WriteBlock(fd.get(), off, block)) return Fail("write a checkpoint header");
    ++slots;
  }
  if (fsync(fd.get()) != 0) return Fail("fsync");
  std::printf("%s: format version %u (superblock and %d checkpoint header(s))\n", argv[1], version, slots);
  return 0;
}
