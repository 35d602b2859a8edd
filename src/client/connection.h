// VhostConnection: the frontend side of a vhost-user control socket.
// Sends requests (with fds as SCM_RIGHTS), receives and validates replies
// (flags, request code, exact payload size), and uses REPLY_ACK when it has
// been negotiated so that every message is confirmed.
//
// Thread: one thread at a time (the device's control thread); IsAlive() may
// be called from any thread. Every socket operation is bounded by the
// timeout given to Connect(). Errors: Status (ENOTCONN once the peer is gone,
// ETIMEDOUT, EPROTO for malformed replies, the backend's ack code as EIO).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/fd.h"
#include "base/status.h"

namespace nestor::client {

class VhostConnection {
 public:
  static Result<VhostConnection> Connect(const std::string& path, int timeout_ms);

  // After this, messages without a reply of their own carry NEED_REPLY and
  // wait for the u64 ack.
  void EnableReplyAck() { reply_ack_ = true; }

  // A message without a reply (acked if REPLY_ACK is on).
  Status Send(uint32_t request, const void* payload, size_t size, std::span<const int> fds = {});
  Status SendU64(uint32_t request, uint64_t value, std::span<const int> fds = {}) {
    return Send(request, &value, sizeof(value), fds);
  }
  // A message whose reply must carry exactly reply_size bytes.
  Status Call(uint32_t request, const void* payload, size_t size, void* reply, size_t reply_size);
  Result<uint64_t> CallU64(uint32_t request);

  // Non-blocking check: false once the peer closed or reset the socket.
  bool IsAlive() const;
  int fd() const { return fd_.get(); }
  void Close() { fd_.Reset(); }

 private:
  Status Write(uint32_t request, uint32_t flags, const void* payload, size_t size, std::span<const int> fds);
  Status ReadReply(uint32_t request, void* reply, size_t reply_size);
  Status ReadFull(void* buf, size_t len);

  UniqueFd fd_;
  bool reply_ack_ = false;
};

}  // namespace nestor::client
