// BackendChannel: one session's backend-to-frontend request channel
// (VHOST_USER_PROTOCOL_F_BACKEND_REQ): the socket the frontend handed over
// with SET_BACKEND_REQ_FD. nestord sends one request on it,
// CONFIG_CHANGE_MSG (the volume grew: the frontend re-reads the config
// with GET_CONFIG on the main socket and tells the guest).
//
// Thread: the session's thread only. Never blocks: the socket is
// non-blocking, a request that does not fit is dropped with a log line,
// and the frontend's acknowledgement (REPLY_ACK) is awaited by the
// session's poll loop (fd(), PollTimeoutMs(), OnReadable(), OnTimer()),
// which keeps answering the main socket meanwhile (QEMU's GET_CONFIG
// arrives there before its ack). An ack not seen within kAckTimeout is
// logged and forgotten. Errors: a channel the frontend closed or broke
// (not a reply, short send) is closed and logged; the session goes on.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "base/fd.h"
#include "base/status.h"
#include "vhost/message.h"

namespace nestor::vhost {

class BackendChannel {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kAckTimeout{5000};

  // Takes the frontend's socket (SET_BACKEND_REQ_FD): must be a unix
  // stream socket; made non-blocking. reply_ack: requests ask for an ack.
  [[nodiscard]] Status Adopt(UniqueFd fd, bool reply_ack);
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }  // -1 without a channel (poll skips it)

  // Sends CONFIG_CHANGE_MSG now, or says why not (logged by the caller).
  [[nodiscard]] Status NotifyConfigChange(Clock::time_point now);

  // The socket is readable: takes the replies that arrived, logs failures.
  void OnReadable(const std::string& who);
  // Milliseconds until the oldest unacknowledged request expires; -1: none.
  int PollTimeoutMs(Clock::time_point now) const;
  // Forgets (and logs) requests whose ack did not come within kAckTimeout.
  void OnTimer(Clock::time_point now, const std::string& who);

  uint32_t pending() const { return pending_; }
  uint64_t acked() const { return acked_; }

 private:
  void Close(const std::string& who, const Status& why);

  UniqueFd fd_;
  bool reply_ack_ = false;
  uint32_t pending_ = 0;  // sent with NEED_REPLY, not yet answered
  Clock::time_point deadline_{};
  uint64_t acked_ = 0;
  BackendReplyReader reader_;
};

}  // namespace nestor::vhost
