// Split virtqueue layout (VIRTIO 1.x, section 2.7): descriptor, available
// and used ring structures, flags and the EVENT_IDX notification rule.
//
// Thread: any; pure definitions. Both the backend (src/virtio/virtqueue.*)
// and the user-space driver (src/client/) use these. All fields are
// little-endian; nestor runs only on little-endian hosts (static_assert).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace nestor::virtio {

static_assert(std::endian::native == std::endian::little, "nestor needs a little-endian host");

constexpr uint16_t kDescFlagNext = 1;
constexpr uint16_t kDescFlagWrite = 2;
constexpr uint16_t kDescFlagIndirect = 4;

constexpr uint16_t kAvailFlagNoInterrupt = 1;
constexpr uint16_t kUsedFlagNoNotify = 1;

constexpr uint32_t kMaxQueueSize = 32768;

struct Desc {
  uint64_t addr;   // guest physical address of the buffer
  uint32_t len;    // buffer length in bytes
  uint16_t flags;  // kDescFlag*
  uint16_t next;   // index of the next descriptor when flags has kDescFlagNext
};
static_assert(sizeof(Desc) == 16);

struct AvailRing {
  uint16_t flags;   // kAvailFlagNoInterrupt
  uint16_t idx;     // free-running index of the next slot the driver fills
  uint16_t ring[];  // NOLINT: flexible array; N entries then used_event
};

struct UsedElem {
  uint32_t id;   // head descriptor index of the completed chain
  uint32_t len;  // bytes written into device-writable buffers
};
static_assert(sizeof(UsedElem) == 8);

struct UsedRing {
  uint16_t flags;   // kUsedFlagNoNotify
  uint16_t idx;     // free-running index of the next slot the device fills
  UsedElem ring[];  // NOLINT: flexible array; N entries then avail_event
};

// Sizes in bytes of the three ring areas for a queue of n entries,
// including the EVENT_IDX trailer fields.
constexpr size_t DescTableBytes(uint32_t n) { return 16ull * n; }
constexpr size_t AvailRingBytes(uint32_t n) { return 6ull + 2ull * n; }
constexpr size_t UsedRingBytes(uint32_t n) { return 6ull + 8ull * n; }

// used_event lives after the avail ring entries; avail_event after the
// used ring entries.
inline uint16_t* UsedEventPtr(AvailRing* avail, uint32_t n) { return &avail->ring[n]; }
inline uint16_t* AvailEventPtr(UsedRing* used, uint32_t n) { return reinterpret_cast<uint16_t*>(&used->ring[n]); }

// EVENT_IDX rule: after moving an index from old_idx to new_idx, notify
// only if event_idx lies in [old_idx, new_idx).
inline bool NeedEvent(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
  return static_cast<uint16_t>(new_idx - event_idx - 1) < static_cast<uint16_t>(new_idx - old_idx);
}

// Core feature bits.
constexpr int kFeatureIndirectDesc = 28;
constexpr int kFeatureEventIdx = 29;
constexpr int kFeatureVersion1 = 32;
constexpr int kFeatureAccessPlatform = 33;
constexpr int kFeatureRingPacked = 34;

constexpr uint64_t Bit(int n) { return 1ull << n; }

}  // namespace nestor::virtio
