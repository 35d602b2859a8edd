// io_uring backend on a regular file or a block device. O_DIRECT where the
// file system allows it; a real flush (fdatasync); discard and write-zeroes
// through fallocate. Requests whose buffers do not meet O_DIRECT alignment
// go through a per-request aligned bounce buffer, counted in IoStats (the
// only allocation on the data path, and only for such requests). The file
// is flock'ed like a pool (io/backend.h, FileBackendOptions).
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>

#include <cstdlib>
#include <cstring>

#include "base/fd.h"
#include "base/file_lock.h"
#include "base/log.h"
#include "io/backend.h"
#include "io/uring.h"

namespace nestor::io {
namespace {

constexpr int kZeroRange = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
constexpr int kPunchHole = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

class FileChannel final : public IoChannel {
 public:
  FileChannel(int fd, IoUring* ring, uint32_t align, bool in_memory, uint32_t delay_us)
      : fd_(fd), ring_(ring), align_(align), in_memory_(in_memory && delay_us == 0) {
    delay_.tv_sec = delay_us / 1000000;
    delay_.tv_nsec = static_cast<long long>(delay_us % 1000000) * 1000;
    delayed_ = delay_us > 0;
  }

  void Submit(IoRequest* req) override {
    if (in_memory_) {
      SubmitInline(req);
      return;
    }
    req->hook = &FileChannel::OnComplete;
    req->hook_ctx = this;
    req->bounce = nullptr;
    if (delayed_) {  // fault injection: a timeout linked in front of the request
      io_uring_sqe* t = ring_->GetAuxSqe();
      io_uring_prep_timeout(t, &delay_, 0, IORING_TIMEOUT_ETIME_SUCCESS);
      t->flags |= IOSQE_IO_LINK;
    }
    switch (req->op) {
      case IoOp::kRead:
      case IoOp::kWrite: SubmitData(req); return;
      case IoOp::kFlush: io_uring_prep_fsync(ring_->GetSqe(req), fd_, IORING_FSYNC_DATASYNC); return;
      case IoOp::kDiscard: PrepFallocate(req, kPunchHole); return;
      case IoOp::kWriteZeroes: PrepFallocate(req, (req->unmap || no_zero_range_) ? kPunchHole : kZeroRange); return;
    }
  }
  const IoStats& stats() const override { return stats_; }

 private:
  // Memory-backed files (tmpfs, hugetlbfs, ramfs) complete at memory speed
  // in the submitting call; io_uring would punt them to a worker thread (a
  // context switch per I/O, and on a busy-polled CPU a wait for the
  // scheduler). So they run synchronously on the reactor, never blocking
  // on a device.
  void SubmitInline(IoRequest* req) {
    ssize_t res = 0;
    switch (req->op) {
      case IoOp::kRead: res = preadv2(fd_, req->iov, req->iovcnt, static_cast<off_t>(req->offset), 0); break;
      case IoOp::kWrite: res = pwritev2(fd_, req->iov, req->iovcnt, static_cast<off_t>(req->offset), 0); break;
      case IoOp::kFlush: res = fdatasync(fd_); break;
      case IoOp::kDiscard:
      case IoOp::kWriteZeroes:
        res = fallocate(fd_, kPunchHole, static_cast<off_t>(req->offset), static_cast<off_t>(req->length));
        break;
    }
    int result = res < 0 ? -errno : static_cast<int>(res);
    bool data = req->op == IoOp::kRead || req->op == IoOp::kWrite;
    if (data && result >= 0 && static_cast<uint64_t>(result) != req->length) result = -EIO;
    req->done(req, result);
  }

  void PrepFallocate(IoRequest* req, int mode) {
    req->sub_op = mode;
    io_uring_prep_fallocate(ring_->GetSqe(req), fd_, mode, req->offset, req->length);
  }

  bool NeedsBounce(const IoRequest* req) const {
    if (align_ == 0) return false;
    if ((req->offset | req->length) & (align_ - 1)) return true;
    for (int i = 0; i < req->iovcnt; ++i) {
      if ((reinterpret_cast<uintptr_t>(req->iov[i].iov_base) | req->iov[i].iov_len) & (align_ - 1)) {
        return true;
      }
    }
    return false;
  }

  void SubmitData(IoRequest* req) {
    bool write = req->op == IoOp::kWrite;
    if (!NeedsBounce(req)) {
      io_uring_sqe* sqe = ring_->GetSqe(req);
      if (write) {
        io_uring_prep_writev(sqe, fd_, req->iov, req->iovcnt, req->offset);
      } else {
        io_uring_prep_readv(sqe, fd_, req->iov, req->iovcnt, req->offset);
      }
      return;
    }
    // Unaligned for O_DIRECT: widen to aligned bounds through a bounce buffer.
    // Only whole-sector requests reach us, and align_ is a sector multiple,
    // so a write that is not align_-aligned in offset or length would need a
    // read-modify-write; we refuse those (EINVAL) rather than risk a torn block.
    if ((req->offset | req->length) & (align_ - 1)) {
      req->done(req, -EINVAL);
      return;
    }
    void* buf = nullptr;
    if (posix_memalign(&buf, 4096, req->length) != 0) {
      req->done(req, -ENOMEM);
      return;
    }
    ++stats_.bounced;
    req->bounce = buf;
    if (write) CopyIov(req, true);
    io_uring_sqe* sqe = ring_->GetSqe(req);
    if (write) {
      io_uring_prep_write(sqe, fd_, buf, req->length, req->offset);
    } else {
      io_uring_prep_read(sqe, fd_, buf, req->length, req->offset);
    }
  }

  static void CopyIov(IoRequest* req, bool to_bounce) {
    auto* b = static_cast<uint8_t*>(req->bounce);
    for (int i = 0; i < req->iovcnt; ++i) {
      if (to_bounce) {
        std::memcpy(b, req->iov[i].iov_base, req->iov[i].iov_len);
      } else {
        std::memcpy(req->iov[i].iov_base, b, req->iov[i].iov_len);
      }
      b += req->iov[i].iov_len;
    }
  }

  static void OnComplete(IoRequest* req, int res) {
    auto* self = static_cast<FileChannel*>(req->hook_ctx);
    req->hook = nullptr;
    bool data = req->op == IoOp::kRead || req->op == IoOp::kWrite;
    if (req->op == IoOp::kWriteZeroes && req->sub_op == kZeroRange && (res == -EOPNOTSUPP || res == -EINVAL)) {
      // tmpfs and some file systems lack ZERO_RANGE: punching reads back zeros too.
      self->no_zero_range_ = true;
      req->hook = &FileChannel::OnComplete;
      self->PrepFallocate(req, kPunchHole);
      return;
    }
    if (req->bounce != nullptr) {
      if (res == static_cast<int>(req->length) && req->op == IoOp::kRead) CopyIov(req, false);
      free(req->bounce);
      req->bounce = nullptr;
    }
    if (data && res >= 0 && static_cast<uint64_t>(res) != req->length) res = -EIO;  // short transfer
    req->done(req, res);
  }

  int fd_;
  IoUring* ring_;
  uint32_t align_;  // 0: no O_DIRECT, no alignment needed
  bool in_memory_;  // tmpfs/hugetlbfs/ramfs: synchronous, inline
  bool delayed_ = false;
  __kernel_timespec delay_{};
  bool no_zero_range_ = false;
  IoStats stats_;
};

class FileBackend final : public BlockBackend {
 public:
  FileBackend(UniqueFd fd, UniqueFd lock_fd, std::string path, uint64_t size, uint32_t align, bool in_memory,
              uint32_t delay_us)
      : fd_(std::move(fd)),
        lock_fd_(std::move(lock_fd)),
        path_(std::move(path)),
        size_(size),
        align_(align),
        in_memory_(in_memory),
        delay_us_(delay_us) {}
  uint64_t size_bytes() const override { return size_; }
  uint32_t block_size() const override { return align_ > 512 ? align_ : 512; }
  std::string Describe() const override {
    if (delay_us_ > 0) return "file:" + path_ + " (io_uring, injected delay " + std::to_string(delay_us_) + " us)";
    if (in_memory_) return "file:" + path_ + " (memory file system, inline)";
    return "file:" + path_ + (align_ ? " (O_DIRECT, io_uring)" : " (buffered, io_uring)");
  }
  Result<std::unique_ptr<IoChannel>> OpenChannel(IoUring* ring) override {
    if (ring == nullptr) return Status::Invalid("file backend needs an io_uring");
    return std::unique_ptr<IoChannel>(new FileChannel(fd_.get(), ring, align_, in_memory_, delay_us_));
  }

 private:
  UniqueFd fd_;
  UniqueFd lock_fd_;  // holds the file's flock (invalid: the caller holds it)
  std::string path_;
  uint64_t size_;
  uint32_t align_;
  bool in_memory_;
  uint32_t delay_us_;
};

bool OnMemoryFileSystem(int fd) {
  struct statfs sfs {};
  if (fstatfs(fd, &sfs) != 0) return false;
  return sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC || sfs.f_type == HUGETLBFS_MAGIC;
}

// O_DIRECT alignment for fd: the logical block size of a block device, else
// the file system's direct-I/O alignment (statx DIOALIGN) or 512.
uint32_t DirectAlignment(int fd, bool is_block) {
  if (is_block) {
    int lbs = 0;
    if (ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 0) return static_cast<uint32_t>(lbs);
    return 512;
  }
#ifdef STATX_DIOALIGN
  struct statx stx {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
      stx.stx_dio_offset_align > 0) {
    return std::max<uint32_t>(stx.stx_dio_offset_align, stx.stx_dio_mem_align);
  }
#endif
  return 512;
}

}  // namespace

Result<std::unique_ptr<BlockBackend>> OpenFileBackend(const std::string& path, uint64_t size,
                                                      const FileBackendOptions& opts) {
  bool read_only = opts.read_only;
  int flags = (read_only ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC;
  UniqueFd fd(open(path.c_str(), flags | O_DIRECT, 0644));
  bool direct = fd.valid();
  if (!direct && errno == EINVAL) fd.Reset(open(path.c_str(), flags, 0644));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  UniqueFd lock_fd;
  if (opts.lock != FileBackendOptions::Lock::kCallerHolds) {
    // The lock lives on an open file of its own: io_uring may keep the data
    // descriptor's file referenced past this process's exit (requests still
    // being cancelled), and a nestord restarted at once must find it free.
    lock_fd.Reset(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!lock_fd.valid()) return Status::FromErrno("open " + path);
    struct stat data_st {
    }, lock_st{};
    if (fstat(fd.get(), &data_st) != 0 || fstat(lock_fd.get(), &lock_st) != 0) {
      return Status::FromErrno("fstat " + path);
    }
    if (data_st.st_dev != lock_st.st_dev || data_st.st_ino != lock_st.st_ino) {
      return Status::Error(EAGAIN, path + " was replaced while being opened");
    }
    Status locked = LockFile(lock_fd.get(), read_only, path);
    if (!locked.ok() && !(locked.err() == EBUSY && opts.lock == FileBackendOptions::Lock::kForce)) return locked;
    if (!locked.ok()) NLOG_WARN("{}; serving it unlocked (forced)", locked.message());
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  bool is_block = S_ISBLK(st.st_mode);
  if (!is_block && !S_ISREG(st.st_mode)) return Status::Invalid(path + ": not a file or block device");
  if (opts.check) NESTOR_RETURN_IF_ERROR(opts.check(fd.get()));
  uint64_t have = static_cast<uint64_t>(st.st_size);
  if (is_block && ioctl(fd.get(), BLKGETSIZE64, &have) != 0) return Status::FromErrno("BLKGETSIZE64");
  if (size == 0) size = have;
  if (size == 0) return Status::Invalid(path + ": empty; give a size");
  if (have < size) {
    if (is_block || read_only) {
      return Status::Invalid(path + " is smaller than the volume size");
    }
    if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return Status::FromErrno("ftruncate " + path);
  }
  uint32_t align = direct ? DirectAlignment(fd.get(), is_block) : 0;
  bool in_memory = !is_block && OnMemoryFileSystem(fd.get());
  auto backend =
      std::make_unique<FileBackend>(std::move(fd), std::move(lock_fd), path, size, align, in_memory, opts.delay_us);
  NLOG_INFO("backend {}: {} bytes", backend->Describe(), size);
  return std::unique_ptr<BlockBackend>(std::move(backend));
}

}  // namespace nestor::io
