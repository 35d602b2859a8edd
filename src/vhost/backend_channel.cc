#include "vhost/backend_channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>

#include "base/log.h"

namespace nestor::vhost {

Status BackendChannel::Adopt(UniqueFd fd, bool reply_ack) {
  struct stat st {};
  int type = 0;
  socklen_t len = sizeof(type);
  if (fstat(fd.get(), &st) != 0 || !S_ISSOCK(st.st_mode) ||
      getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
    return Status::Invalid("SET_BACKEND_REQ_FD: the fd is not a stream socket");
  }
  int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) return Status::FromErrno("fcntl backend channel");
  fd_ = std::move(fd);
  reply_ack_ = reply_ack;
  pending_ = 0;
  reader_ = BackendReplyReader();
  return Status::Ok();
}

Status BackendChannel::NotifyConfigChange(Clock::time_point now) {
  if (!fd_.valid()) return Status::Error(ENOTCONN, "no backend channel");
  Status st = SendBackendRequest(fd_.get(), kBackendConfigChangeMsg, reply_ack_);
  if (!st.ok()) {
    if (st.err() != EAGAIN) fd_.Reset();  // out of step or gone: never used again
    return st;
  }
  if (reply_ack_) {
    if (pending_ == 0) deadline_ = now + kAckTimeout;
    ++pending_;
  }
  return Status::Ok();
}

void BackendChannel::Close(const std::string& who, const Status& why) {
  NLOG_WARN("{}: closing the backend channel: {}", who, why.message());
  fd_.Reset();
  pending_ = 0;
}

void BackendChannel::OnReadable(const std::string& who) {
  if (!fd_.valid()) return;
  Status st = reader_.ReadAvailable(fd_.get());
  BackendReply r;
  while (reader_.Next(&r)) {
    if (pending_ == 0) {
      NLOG_WARN("{}: backend channel: reply to request {} nobody waits for (a late ack?)", who, r.request);
      continue;
    }
    --pending_;
    deadline_ = Clock::now() + kAckTimeout;  // the next one's turn
    if (r.request != kBackendConfigChangeMsg || r.value != 0) {
      NLOG_WARN("{}: the frontend answered config change with request {} status {} (failed)", who, r.request, r.value);
    } else {
      ++acked_;
      NLOG_INFO("{}: the frontend acknowledged the config change", who);
    }
  }
  if (!st.ok()) Close(who, st);
}

int BackendChannel::PollTimeoutMs(Clock::time_point now) const {
  if (pending_ == 0) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline_ - now).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, kAckTimeout.count()));
}

void BackendChannel::OnTimer(Clock::time_point now, const std::string& who) {
  if (pending_ == 0 || now < deadline_) return;
  NLOG_WARN(
      "{}: the frontend did not acknowledge {} config change(s) within {} ms (stuck?); the session goes on, "
      "the guest may see the new size late or at its next connection",
      who, pending_, kAckTimeout.count());
  pending_ = 0;
}

}  // namespace nestor::vhost
