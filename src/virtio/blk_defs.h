// virtio-blk wire definitions (VIRTIO 1.x, section 5.2): request header,
// request types, status codes, feature bits, discard/write-zeroes segment
// and the device configuration space.
//
// Thread: any; pure definitions shared by the device (src/virtio/blk.*)
// and the driver (src/client/). All fields little-endian.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nestor::virtio {

constexpr uint32_t kSectorSize = 512;
constexpr int kSectorShift = 9;

enum BlkType : uint32_t {
  kBlkIn = 0,
  kBlkOut = 1,
  kBlkFlush = 4,
  kBlkGetId = 8,
  kBlkGetLifetime = 10,
  kBlkDiscard = 11,
  kBlkWriteZeroes = 13,
  kBlkSecureErase = 14,
};

enum BlkStatus : uint8_t { kBlkOk = 0, kBlkIoErr = 1, kBlkUnsupp = 2 };

constexpr uint32_t kBlkIdBytes = 20;

struct BlkReqHeader {
  uint32_t type;    // BlkType
  uint32_t ioprio;  // reserved
  uint64_t sector;  // first 512-byte sector
};
static_assert(sizeof(BlkReqHeader) == 16);

struct BlkDiscardWriteZeroes {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;  // bit 0: unmap (WRITE_ZEROES only)
};
static_assert(sizeof(BlkDiscardWriteZeroes) == 16);
constexpr uint32_t kBlkWriteZeroesUnmap = 1;

// Feature bits.
constexpr int kBlkFSizeMax = 1;
constexpr int kBlkFSegMax = 2;
constexpr int kBlkFGeometry = 4;
constexpr int kBlkFRo = 5;
constexpr int kBlkFBlkSize = 6;
constexpr int kBlkFFlush = 9;
constexpr int kBlkFTopology = 10;
constexpr int kBlkFConfigWce = 11;
constexpr int kBlkFMq = 12;
constexpr int kBlkFDiscard = 13;
constexpr int kBlkFWriteZeroes = 14;

#pragma pack(push, 1)
struct BlkConfig {
  uint64_t capacity;  // in 512-byte sectors
  uint32_t size_max;  // max bytes in one segment
  uint32_t seg_max;   // max segments per request
  struct {
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors;
  } geometry;
  uint32_t blk_size;  // logical block size
  struct {
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
  } topology;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
  uint8_t zoned[24];  // virtio_blk_zoned_characteristics, unused
};
#pragma pack(pop)
static_assert(offsetof(BlkConfig, blk_size) == 20);
static_assert(offsetof(BlkConfig, writeback) == 32);
static_assert(offsetof(BlkConfig, num_queues) == 34);
static_assert(offsetof(BlkConfig, max_write_zeroes_seg) == 52);
static_assert(offsetof(BlkConfig, write_zeroes_may_unmap) == 56);
static_assert(offsetof(BlkConfig, max_secure_erase_sectors) == 60);
static_assert(sizeof(BlkConfig) == 96);

}  // namespace nestor::virtio
