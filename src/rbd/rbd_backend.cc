// The RBD block backend (rbd.h): an io::BlockBackend over one librbd image.
//
// A request's path: the reactor calls RbdChannel::Submit, which starts the
// matching rbd_aio_* call with the request's own iovecs. librbd completes
// it on one of its threads (OnRbdDone): the result goes into the request,
// the request onto the channel's lock-free completed list, and, if that
// list was empty, a count into the channel's eventfd. The reactor's
// io_uring has a read of that eventfd armed while requests are out; its
// completion (OnWake) takes the list and the reactor runs each request's
// done callback. No lock on either side, no allocation of ours per I/O
// (librbd allocates its completion).
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"
#include "io/uring.h"
#include "rbd/rbd.h"
#include "reactor/guest_fault.h"

namespace nestor::rbd {
namespace {

// IoRequest fields this backend uses as its scratch (io/backend.h):
//   hook_ctx  the channel (set at submit, read by librbd's callback)
//   sub_op    librbd's result (written by the callback, read by the reactor
//             after the list hand-off)
//   bounce    the next request on a completed list
io::IoRequest*& Next(io::IoRequest* r) { return *reinterpret_cast<io::IoRequest**>(&r->bounce); }

class RbdChannel final : public io::IoChannel {
 public:
  RbdChannel(rbd_image_t image, io::IoUring* ring, UniqueFd efd, std::string name)
      : image_(image), ring_(ring), efd_(std::move(efd)), name_(std::move(name)) {
    wake_.hook = &RbdChannel::OnWake;
    wake_.hook_ctx = this;
  }
  ~RbdChannel() override {
    // The owner waited for pending() == 0: no request is out, no read armed.
    if (pending() != 0) NLOG_ERROR("rbd {}: channel closed with {} request(s) out", name_, pending());
  }

  void Submit(io::IoRequest* req) override {
    req->hook = nullptr;  // done runs from Drain, not from the ring
    req->hook_ctx = this;
    Next(req) = nullptr;
    rbd_completion_t c = nullptr;
    int r = rbd_aio_create_completion(req, &RbdChannel::OnRbdDone, &c);
    if (r == 0) {
      // librbd copies a write's data out of guest memory inside
      // rbd_aio_writev, on this thread (rados_cluster.cc makes sure it
      // copies). A frontend that shrank that memory makes the copy fault;
      // unwinding out of librbd would leak its copies of the segments
      // before the lost one (up to the request's 64 MiB) and the
      // completion, each time the frontend reconnects and does it again
      // (Hostile.Rbd3, ceph.07). Instead the lost pages read as zeros and
      // the write goes on, as librbd's own threads do: the frontend's own
      // volume gets zeros where it destroyed its data, nobody else
      // notices. (Any other librbd call that touched guest memory here
      // would get the same.)
      reactor::NoUnwindScope no_unwind;
      r = Start(req, c);
    }
    if (r < 0) {
      if (c != nullptr) rbd_aio_release(c);
      req->done(req, r);  // not started: completes inline, like a mem channel
      return;
    }
    ++issued_;
    Arm();
  }

  const io::IoStats& stats() const override { return stats_; }

  // A guest fault unwound the done callback of req (Drain's frame with it):
  // the requests Drain had not run yet wait in ready_. Wake ourselves, so
  // that the next reap runs them and the owner's pending() drains.
  void Abandon(io::IoRequest* req) override {
    Next(req) = nullptr;  // (bounce is our link, not a buffer to free)
    if (ready_ == nullptr && issued_ == completed_) return;
    Arm();
    uint64_t one = 1;
    ssize_t n = write(efd_.get(), &one, sizeof(one));
    (void)n;
  }

  uint32_t pending() const override {
    // Requests whose done has not run, plus the armed eventfd read (its
    // completion points at wake_). Once every done has run, a librbd thread
    // may still be between its push and its last count (a few instructions
    // and the eventfd write): wait for those here, where the owner asks
    // before letting the channel go, not on the data path.
    uint64_t undone = issued_ - completed_;
    if (undone == 0) {
      while (callbacks_.load(std::memory_order_acquire) != issued_) sched_yield();
    }
    return static_cast<uint32_t>(undone + (armed_ ? 1 : 0));
  }

 private:
  int Start(io::IoRequest* req, rbd_completion_t c) {
    switch (req->op) {
      case io::IoOp::kRead: return rbd_aio_readv(image_, req->iov, req->iovcnt, req->offset, c);
      case io::IoOp::kWrite: return rbd_aio_writev(image_, req->iov, req->iovcnt, req->offset, c);
      case io::IoOp::kFlush: return rbd_aio_flush(image_, c);
      case io::IoOp::kDiscard: return rbd_aio_discard(image_, req->offset, req->length, c);
      case io::IoOp::kWriteZeroes:
        // (Without unmap the range must stay allocated; RBD has no such
        // promise to give: thin either way. Zeros are what the guest reads.)
        return rbd_aio_write_zeroes(image_, req->offset, req->length, c, 0, 0);
    }
    return -EINVAL;
  }

  // librbd's thread. After the eventfd write this thread must not touch
  // the channel again except for the final count, which releases it.
  static void OnRbdDone(rbd_completion_t c, void* arg) {
    auto* req = static_cast<io::IoRequest*>(arg);
    auto* ch = static_cast<RbdChannel*>(req->hook_ctx);
    ssize_t r = rbd_aio_get_return_value(c);
    rbd_aio_release(c);
    req->sub_op = r < 0 ? static_cast<int>(r) : static_cast<int>(std::min<ssize_t>(r, INT_MAX));
    io::IoRequest* head = ch->called_back_.load(std::memory_order_relaxed);
    do {
      Next(req) = head;
    } while (!ch->called_back_.compare_exchange_weak(head, req, std::memory_order_release, std::memory_order_relaxed));
    if (head == nullptr) {
      uint64_t one = 1;
      ssize_t n = write(ch->efd_.get(), &one, sizeof(one));
      (void)n;  // an eventfd write only fails on overflow, which needs 2^64 wakes
    }
    ch->callbacks_.fetch_add(1, std::memory_order_release);
  }

  // Keeps a read of the eventfd in the reactor's ring while requests are out.
  void Arm() {
    if (armed_ || ring_ == nullptr) return;
    armed_ = true;
    io_uring_prep_read(ring_->GetSqe(&wake_), efd_.get(), &efd_count_, sizeof(efd_count_), 0);
  }

  static void OnWake(io::IoRequest* wake, int res) {
    auto* ch = static_cast<RbdChannel*>(wake->hook_ctx);
    ch->armed_ = false;
    if (res < 0 && res != -EAGAIN && res != -EINTR) {
      NLOG_ERROR("rbd {}: eventfd read failed: {}", ch->name_, strerror(-res));
    }
    ch->Drain();
  }

  // Runs the done callbacks of every request librbd has called back for.
  void Drain() {
    // The list is newest first: reverse it (oldest first) onto the end of
    // ready_ (which holds what a fault left, see below).
    io::IoRequest* got = called_back_.exchange(nullptr, std::memory_order_acquire);
    io::IoRequest* fifo = nullptr;
    io::IoRequest* last = got;
    while (got != nullptr) {
      io::IoRequest* next = Next(got);
      Next(got) = fifo;
      fifo = got;
      got = next;
    }
    if (fifo != nullptr) {
      if (ready_tail_ != nullptr) {
        Next(ready_tail_) = fifo;
      } else {
        ready_ = fifo;
      }
      ready_tail_ = last;
    }
    // One at a time from the member list: a guest fault in a done callback
    // unwinds this frame, and the rest are still here for the next wake.
    while (ready_ != nullptr) {
      io::IoRequest* req = ready_;
      ready_ = Next(req);
      if (ready_ == nullptr) ready_tail_ = nullptr;
      Next(req) = nullptr;
      ++completed_;
      io::tls_completing = req;
      req->done(req, req->sub_op);
    }
    io::tls_completing = &wake_;
    if (issued_ != completed_) Arm();
  }

  rbd_image_t image_;
  io::IoUring* ring_;
  UniqueFd efd_;
  std::string name_;
  io::IoStats stats_;
  io::IoRequest wake_;
  uint64_t efd_count_ = 0;
  bool armed_ = false;
  uint64_t issued_ = 0;     // reactor only
  uint64_t completed_ = 0;  // reactor only: done callbacks run
  io::IoRequest* ready_ = nullptr;
  io::IoRequest* ready_tail_ = nullptr;
  std::atomic<io::IoRequest*> called_back_{nullptr};  // pushed by librbd's threads, newest first
  std::atomic<uint64_t> callbacks_{0};
};

class RbdBackend final : public io::BlockBackend {
 public:
  RbdBackend(std::shared_ptr<RadosCluster> cluster, rados_ioctx_t ioctx, rbd_image_t image, ImageSpec spec,
             uint64_t size)
      : cluster_(std::move(cluster)), ioctx_(ioctx), image_(image), spec_(std::move(spec)), size_(size) {}
  ~RbdBackend() override {
    rbd_close(image_);  // releases the exclusive lock
    rados_ioctx_destroy(ioctx_);
  }
  uint64_t size_bytes() const override { return size_.load(std::memory_order_relaxed); }
  rbd_image_t image() const { return image_; }
  void set_size(uint64_t s) { size_.store(s, std::memory_order_relaxed); }
  std::string Describe() const override { return "rbd:" + spec_.ToString(); }
  Result<std::unique_ptr<io::IoChannel>> OpenChannel(io::IoUring* ring) override {
    if (ring == nullptr) return Status::Invalid("rbd:" + spec_.ToString() + ": a channel needs a reactor's ring");
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return Status::FromErrno("eventfd for rbd:" + spec_.ToString());
    return std::unique_ptr<io::IoChannel>(std::make_unique<RbdChannel>(image_, ring, UniqueFd(fd), spec_.ToString()));
  }

 private:
  std::shared_ptr<RadosCluster> cluster_;  // outlives the image and its pool context
  rados_ioctx_t ioctx_;
  rbd_image_t image_;
  ImageSpec spec_;
  std::atomic<uint64_t> size_;
};

Status RbdError(int r, const std::string& what) { return Status::Error(-r, what + ": " + strerror(-r)); }

// Who holds an image's lock, as nestord records it in the image's metadata
// once it has the lock: the machine's boot (boot_id), the pid namespace,
// the pid, the cluster's name for the client and its address. Another nestord on the
// same boot and pid namespace can then tell a dead holder from a live one.
constexpr const char* kOwnerKey = "nestor.lock_owner";

std::string ReadSmallFile(const char* path) {
  char buf[128] = {};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string PidNamespace() {
  char link[64] = {};
  ssize_t n = readlink("/proc/self/ns/pid", link, sizeof(link) - 1);
  return n > 0 ? std::string(link, static_cast<size_t>(n)) : "";
}

std::string OwnerRecord(const RadosCluster& c, pid_t pid) {
  return "boot=" + ReadSmallFile("/proc/sys/kernel/random/boot_id") + " pidns=" + PidNamespace() +
         " pid=" + std::to_string(pid) + " client=client." +
         std::to_string(rados_get_instance_id(static_cast<rados_t>(c.handle()))) + " addr=" + c.Address();
}

// The recorded holder ran on this boot, in this pid namespace, and its
// process is gone (or is no longer a nestord): it is dead, and its lock
// would otherwise stall us for the cluster's watch timeout.
bool RecordedOwnerIsDeadHere(const std::string& rec, const std::string& owner) {
  auto field = [&](const std::string& key) {
    auto at = rec.find(key + "=");
    if (at == std::string::npos) return std::string();
    auto end = rec.find(' ', at);
    return rec.substr(at + key.size() + 1, end == std::string::npos ? std::string::npos : end - at - key.size() - 1);
  };
  // The lock owner is named by its client address (ip:port/nonce); the
  // cluster may print ours with a v1:/v2: list around it.
  std::string addr = field("addr");
  if (owner.empty() || addr.find(owner) == std::string::npos) return false;  // someone else's lock now
  if (field("boot") != ReadSmallFile("/proc/sys/kernel/random/boot_id") || field("pidns") != PidNamespace()) {
    return false;  // another machine or container: cannot tell
  }
  long pid = std::strtol(field("pid").c_str(), nullptr, 10);
  if (pid <= 0) return false;
  std::string comm = ReadSmallFile(("/proc/" + std::to_string(pid) + "/comm").c_str());
  std::string state = ReadSmallFile(("/proc/" + std::to_string(pid) + "/stat").c_str());
  bool zombie = state.find(") Z") != std::string::npos;
  return comm != "nestord" || zombie;
}

// A lock held by a nestord that died on this machine: break it (librbd
// blocklists the dead client first, so it can never write again) instead
// of waiting for the cluster to notice.
void BreakDeadLocalOwner(rbd_image_t image, const std::string& name) {
  rbd_lock_mode_t mode;
  char* owners[4] = {};
  size_t count = 4;
  if (rbd_lock_get_owners(image, &mode, owners, &count) < 0 || count == 0) return;
  std::string owner = owners[0];
  rbd_lock_get_owners_cleanup(owners, count);
  char rec[512] = {};
  size_t len = sizeof(rec);
  if (rbd_metadata_get(image, kOwnerKey, rec, &len) < 0) rec[0] = 0;
  bool dead = RecordedOwnerIsDeadHere(rec, owner);
  NLOG_INFO("rbd {}: lock held by {} (recorded holder: {}){}", name, owner, rec[0] ? rec : "none",
            dead ? ": dead, on this machine" : "");
  if (!dead) return;
  int r = rbd_lock_break(image, RBD_LOCK_MODE_EXCLUSIVE, owner.c_str());
  if (r < 0) {
    NLOG_WARN("rbd {}: breaking the lock of a dead nestord ({}): {}", name, owner, strerror(-r));
    return;
  }
  NLOG_WARN("rbd {}: broke the lock of a nestord that died on this machine ({}; {}), blocklisting it", name, owner,
            rec);
}

// Takes the exclusive lock for this client (see rbd.h).
Status LockImage(const RadosCluster& cluster, rbd_image_t image, const std::string& name) {
  BreakDeadLocalOwner(image, name);
  int r = rbd_lock_acquire(image, RBD_LOCK_MODE_EXCLUSIVE);
  if (r == 0) {
    std::string rec = OwnerRecord(cluster, getpid());
    int m = rbd_metadata_set(image, kOwnerKey, rec.c_str());
    if (m < 0) NLOG_WARN("rbd {}: recording the lock owner: {}", name, strerror(-m));
    return Status::Ok();
  }
  if (r == -EINVAL || r == -EOPNOTSUPP) {
    NLOG_WARN(
        "rbd {}: the image has no exclusive-lock feature: served without a lock (another writer would "
        "corrupt it)",
        name);
    return Status::Ok();
  }
  if (r == -EROFS || r == -EBUSY || r == -EAGAIN) {
    return Status::Error(EBUSY, "rbd image " + name +
                                    " is in use by another client (it holds the image's "
                                    "exclusive lock)");
  }
  return RbdError(r, "rbd image " + name + ": taking its exclusive lock");
}

}  // namespace

Result<std::unique_ptr<io::BlockBackend>> OpenRbdBackend(std::shared_ptr<RadosCluster> cluster, const ImageSpec& spec,
                                                         const RbdOpenOptions& o) {
  const std::string name = spec.ToString();
  if (o.size % 512 != 0) return Status::Invalid("rbd image " + name + ": size must be a multiple of 512");
  rados_ioctx_t ioctx = nullptr;
  int r = rados_ioctx_create(static_cast<rados_t>(cluster->handle()), spec.pool.c_str(), &ioctx);
  if (r < 0) {
    return r == -ENOENT ? Status::Error(ENOENT, "ceph pool '" + spec.pool + "' does not exist (rbd:" + name + ")")
                        : RbdError(r, "ceph pool '" + spec.pool + "' (rbd:" + name + ")");
  }
  rbd_image_t image = nullptr;
  const bool read_only = o.read_only || !o.snapshot.empty();
  const char* snap = o.snapshot.empty() ? nullptr : o.snapshot.c_str();
  r = read_only ? rbd_open_read_only(ioctx, spec.image.c_str(), &image, snap)
                : rbd_open(ioctx, spec.image.c_str(), &image, nullptr);
  if (r == -ENOENT && o.size > 0 && !read_only) {
    rbd_image_options_t opts;
    rbd_image_options_create(&opts);
    r = rbd_create4(ioctx, spec.image.c_str(), o.size, opts);
    rbd_image_options_destroy(opts);
    if (r < 0) {
      rados_ioctx_destroy(ioctx);
      return RbdError(r, "creating rbd image " + name);
    }
    NLOG_INFO("rbd {}: created ({} bytes)", name, o.size);
    r = rbd_open(ioctx, spec.image.c_str(), &image, nullptr);
  }
  if (r < 0) {
    rados_ioctx_destroy(ioctx);
    if (r == -ENOENT) {
      if (snap != nullptr) return Status::Error(ENOENT, "rbd snapshot " + name + "@" + o.snapshot + " does not exist");
      return Status::Error(ENOENT,
                           "rbd image " + name + " does not exist" + (read_only ? "" : " (give size= to create it)"));
    }
    return RbdError(r, "opening rbd image " + name);
  }
  auto fail = [&](Status st) -> Result<std::unique_ptr<io::BlockBackend>> {
    rbd_close(image);
    rados_ioctx_destroy(ioctx);
    return st;
  };
  if (!read_only) {
    Status st = LockImage(*cluster, image, name);
    if (!st.ok()) return fail(st);
  }
  uint64_t have = 0;
  r = rbd_get_size(image, &have);
  if (r < 0) return fail(RbdError(r, "rbd image " + name + ": size"));
  uint64_t size = o.size == 0 ? have : o.size;
  if (size == 0) return fail(Status::Invalid("rbd image " + name + " is empty; give a size"));
  if (have < size) {
    if (read_only) return fail(Status::Invalid("rbd image " + name + " is smaller than the volume size"));
    r = rbd_resize(image, size);
    if (r < 0) return fail(RbdError(r, "growing rbd image " + name));
    NLOG_INFO("rbd {}: grown from {} to {} bytes", name, have, size);
  }
  size -= size % 512;
  std::string shown = snap == nullptr ? name : name + "@" + o.snapshot;
  NLOG_INFO("backend rbd:{}: {} bytes{}", shown, size, read_only ? ", read-only" : "");
  ImageSpec as = spec;
  if (snap != nullptr) as.image += "@" + o.snapshot;
  return std::unique_ptr<io::BlockBackend>(std::make_unique<RbdBackend>(std::move(cluster), ioctx, image, as, size));
}

void* ImageOf(io::BlockBackend* b) {
  auto* r = dynamic_cast<RbdBackend*>(b);
  return r == nullptr ? nullptr : r->image();
}

void SetServedSize(io::BlockBackend* b, uint64_t size) {
  if (auto* r = dynamic_cast<RbdBackend*>(b)) r->set_size(size - size % 512);
}

}  // namespace nestor::rbd
