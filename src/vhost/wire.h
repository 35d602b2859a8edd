// vhost-user wire format (QEMU docs/interop/vhost-user.rst): message codes,
// header flags, protocol feature bits and payload structures.
//
// Thread: any; pure definitions shared by the backend (src/vhost/) and the
// user-space frontend (src/client/). Header and payload integers are in host
// byte order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nestor::vhost {

enum Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSendRarp = 19,
  kNetSetMtu = 20,
  kSetBackendReqFd = 21,
  kIotlbMsg = 22,
  kSetVringEndian = 23,
  kGetConfig = 24,
  kSetConfig = 25,
  kGetInflightFd = 31,
  kSetInflightFd = 32,
  kGetMaxMemSlots = 36,
  kAddMemReg = 37,
  kRemMemReg = 38,
  kSetStatus = 39,
  kGetStatus = 40,
};

const char* RequestName(uint32_t request);

// Requests the backend sends on the backend channel (BACKEND_REQ; the
// socket the frontend gave with SET_BACKEND_REQ_FD). Their numbering is
// separate from the frontend's requests above.
enum BackendRequest : uint32_t {
  kBackendIotlbMsg = 1,
  kBackendConfigChangeMsg = 2,  // no payload: the frontend re-reads the config (GET_CONFIG)
  kBackendVringHostNotifierMsg = 3,
};

constexpr uint32_t kVersion = 1;
constexpr uint32_t kVersionMask = 3;
constexpr uint32_t kFlagReply = 1u << 2;
constexpr uint32_t kFlagNeedReply = 1u << 3;

constexpr int kFeatureProtocolFeatures = 30;  // VHOST_USER_F_PROTOCOL_FEATURES
constexpr int kFeatureLogAll = 26;

enum ProtocolFeature : int {
  kProtoMq = 0,
  kProtoLogShmfd = 1,
  kProtoReplyAck = 3,
  kProtoBackendReq = 5,
  kProtoConfig = 9,
  kProtoBackendSendFd = 10,
  kProtoInflightShmfd = 12,
  kProtoResetDevice = 13,
  kProtoInbandNotifications = 14,
  kProtoConfigureMemSlots = 15,
  kProtoStatus = 16,
};

constexpr size_t kMaxFds = 8;
constexpr uint32_t kMaxMemRegions = 8;      // SET_MEM_TABLE limit
constexpr uint32_t kMaxMemSlots = 32;       // what we answer to GET_MAX_MEM_SLOTS
constexpr uint32_t kMaxQueueSize = 1024;    // largest ring we accept (QEMU's maximum)
constexpr uint64_t kVringIndexMask = 0xff;  // SET_VRING_KICK/CALL/ERR u64 payload
constexpr uint64_t kVringNoFdMask = 1ull << 8;

struct MsgHeader {
  uint32_t request;
  uint32_t flags;
  uint32_t size;  // payload bytes that follow
};
static_assert(sizeof(MsgHeader) == 12);

struct VringState {
  uint32_t index;
  uint32_t num;
};

struct VringAddr {
  uint32_t index;
  uint32_t flags;
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

struct MemRegion {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};
static_assert(sizeof(MemRegion) == 32);

struct MemTableHeader {
  uint32_t nregions;
  uint32_t padding;
  // followed by nregions x MemRegion
};

struct SingleMemRegion {
  uint64_t padding;
  MemRegion region;
};
static_assert(sizeof(SingleMemRegion) == 40);

struct ConfigHeader {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
  // followed by size bytes
};
constexpr uint32_t kMaxConfigBytes = 256;

struct InflightDesc {
  uint64_t mmap_size;
  uint64_t mmap_offset;
  uint16_t num_queues;
  uint16_t queue_size;
  uint32_t padding;
};
static_assert(sizeof(InflightDesc) == 24);

// The largest payload any message we accept may carry.
constexpr uint32_t kMaxPayload = sizeof(ConfigHeader) + kMaxConfigBytes;
static_assert(kMaxPayload >= sizeof(MemTableHeader) + kMaxMemRegions * sizeof(MemRegion));

}  // namespace nestor::vhost
