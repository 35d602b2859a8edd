// Session: online resize (the capacity a session offers, its wake-up
// eventfd and the backend channel). See session.h and
// docs/function-vms.md, "Online resize".
#include <poll.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"
#include "vhost/session.h"

namespace nestor::vhost {

void Session::NotifyCapacity() {
  uint64_t one = 1;
  if (wake_.valid() && write(wake_.get(), &one, sizeof(one)) < 0 && errno != EAGAIN) {
    NLOG_WARN("{}: cannot signal the resize: {}", name_, std::strerror(errno));
  }
}

Status Session::WaitForMessage() {
  for (;;) {
    int timeout = backend_.PollTimeoutMs(BackendChannel::Clock::now());
    pollfd p[3] = {{sock_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {backend_.fd(), POLLIN, 0}};
    int n = poll(p, 3, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("poll");
    }
    if (p[1].revents & POLLIN) NESTOR_RETURN_IF_ERROR(OnCapacityWake());
    if (p[2].revents != 0) backend_.OnReadable(name_);
    backend_.OnTimer(BackendChannel::Clock::now(), name_);
    if (p[0].revents != 0) return Status::Ok();  // a message, EOF or an error: ReadMessage says which
  }
}

Status Session::OnCapacityWake() {
  uint64_t count = 0;
  (void)!read(wake_.get(), &count, sizeof(count));
  uint64_t size = export_->config().backend->size_bytes();
  uint64_t sectors = size >> virtio::kSectorShift;
  if (sectors <= capacity_sectors_) return Status::Ok();  // nothing new for this frontend
  NESTOR_RETURN_IF_ERROR(RaiseCapacity(sectors));
  if (!backend_.valid()) {
    if (!told_no_channel_) {
      NLOG_INFO(
          "{}: volume grew to {} bytes; this frontend gave no backend channel (BACKEND_REQ not negotiated), so its "
          "guest keeps the old size until a new connection reads the config (logged once per session)",
          name_, size);
    }
    told_no_channel_ = true;
    return Status::Ok();
  }
  Status st = backend_.NotifyConfigChange(BackendChannel::Clock::now());
  if (st.ok()) {
    NLOG_INFO("{}: volume grew to {} bytes: config change sent to the frontend", name_, size);
  } else {
    NLOG_WARN("{}: volume grew to {} bytes but the frontend could not be told: {}", name_, size, st.message());
  }
  return Status::Ok();
}

Status Session::RaiseCapacity(uint64_t sectors) {
  if (sectors <= capacity_sectors_) return Status::Ok();
  for (Vring& v : vrings_) {
    if (!v.queue) continue;
    virtio::BlkQueue* q = v.queue.get();
    if (!v.reactor->CallFor([q, sectors] { q->SetCapacity(sectors); }, export_->config().stop_timeout)) {
      Orphan(v);
      return Status::Error(ETIMEDOUT, "reactor did not take the new capacity in time");
    }
  }
  capacity_sectors_ = sectors;
  seen_sectors_.store(sectors, std::memory_order_release);
  return Status::Ok();
}

Status Session::HandleSetBackendReqFd(Message& m) {
  if (!Negotiated(kProtoBackendReq)) return Status::Invalid("SET_BACKEND_REQ_FD not negotiated");
  if (m.hdr.size != 0) return Status::Invalid("SET_BACKEND_REQ_FD payload size");
  if (m.fds.size() != 1) return Status::Invalid("SET_BACKEND_REQ_FD needs exactly one fd");
  UniqueFd fd = std::move(m.fds[0]);
  m.fds.clear();
  return backend_.Adopt(std::move(fd), Negotiated(kProtoReplyAck));
}

}  // namespace nestor::vhost
