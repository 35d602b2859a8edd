#include "io/uring.h"

#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/sanitizers.h"

namespace nestor::io {

Result<std::unique_ptr<IoUring>> IoUring::Create(unsigned entries, int reactor_cpu) {
  std::unique_ptr<IoUring> u(new IoUring());
  int rc = io_uring_queue_init(entries, &u->ring_, IORING_SETUP_SINGLE_ISSUER);
  if (rc == -EINVAL) rc = io_uring_queue_init(entries, &u->ring_, 0);
  if (rc < 0) return Status::Error(-rc, "io_uring_queue_init failed");
  u->inited_ = true;
  u->event_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!u->event_fd_.valid()) return Status::FromErrno("eventfd");
  rc = io_uring_register_eventfd(&u->ring_, u->event_fd_.get());
  if (rc < 0) return Status::Error(-rc, "io_uring_register_eventfd failed");
  if (reactor_cpu >= 0) {
    cpu_set_t others;
    CPU_ZERO(&others);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < ncpu && c < CPU_SETSIZE; ++c) {
      if (c != reactor_cpu) CPU_SET(c, &others);
    }
    if (CPU_COUNT(&others) > 0 && io_uring_register_iowq_aff(&u->ring_, sizeof(others), &others) < 0) {
      NLOG_WARN("io_uring: cannot set worker affinity; punted I/O may share CPU {}", reactor_cpu);
    }
  }
  return u;
}

IoUring::~IoUring() {
  if (inited_) io_uring_queue_exit(&ring_);
}

thread_local IoRequest* tls_completing = nullptr;

io_uring_sqe* IoUring::NextSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The submission queue is full: push it to the kernel. If the kernel
    // cannot take it (completion queue full), make room by reaping.
    if (io_uring_submit(&ring_) <= 0) Reap();
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

io_uring_sqe* IoUring::GetSqe(IoRequest* req) {
  io_uring_sqe* sqe = NextSqe();
  io_uring_sqe_set_data(sqe, req);
  ++in_flight_;
  return sqe;
}

io_uring_sqe* IoUring::GetAuxSqe() {
  io_uring_sqe* sqe = NextSqe();
  io_uring_sqe_set_data(sqe, nullptr);
  return sqe;
}

void IoUring::PostTo(IoUring* target, IoRequest* req, int res) {
  // The kernel orders what this thread wrote to *req before the target
  // reaps it; TSan cannot see that (Reap acquires).
  TsanRelease(req);
  io_uring_sqe* sqe = GetAuxSqe();
  io_uring_prep_msg_ring(sqe, target->ring_.ring_fd, static_cast<unsigned>(res), reinterpret_cast<uint64_t>(req), 0);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void IoUring::Submit() {
  // What the kernel does not take now (EBUSY/EAGAIN: completions must be
  // reaped first) stays queued and goes with the next call.
  if (io_uring_sq_ready(&ring_) == 0) return;
  int rc = io_uring_submit(&ring_);
  if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) NLOG_ERROR("io_uring_submit: {}", rc);
}

int IoUring::Reap() {
  // Copy a batch out and release its slots before dispatching, so that a
  // callback that submits (and may reap, see NextSqe) never sees an entry
  // twice.
  struct Done {
    IoRequest* req;
    int res;
  };
  int total = 0;
  for (;;) {
    io_uring_cqe* cqes[64];
    Done batch[64];
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, 64);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) {
      batch[i] = {static_cast<IoRequest*>(io_uring_cqe_get_data(cqes[i])), cqes[i]->res};
    }
    io_uring_cq_advance(&ring_, n);
    for (unsigned i = 0; i < n; ++i) {
      IoRequest* req = batch[i].req;
      if (req == nullptr) continue;  // an auxiliary SQE (GetAuxSqe)
      TsanAcquire(req);              // a PostTo from another ring (see there)
      --in_flight_;
      tls_completing = req;  // a fault in the callback is charged to req's owner
      if (req->hook != nullptr) {
        req->hook(req, batch[i].res);
      } else {
        req->done(req, batch[i].res);
      }
      tls_completing = nullptr;
    }
    total += static_cast<int>(n);
  }
  return total;
}

}  // namespace nestor::io
