// PoolDevice over a regular file or a block device: metadata through its
// own O_DIRECT descriptor (pread/pwrite + fdatasync), data through the
// io_uring file backend on the same file.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fd.h"
#include "base/file_lock.h"
#include "volume/pool_device.h"

namespace nestor::volume {
namespace {

class FilePoolDevice final : public PoolDevice {
 public:
  FilePoolDevice(UniqueFd fd, std::string path, uint64_t size, std::unique_ptr<io::BlockBackend> data)
      : fd_(std::move(fd)), path_(std::move(path)), size_(size), data_(std::move(data)) {}
  uint64_t size_bytes() const override { return size_; }
  std::string Describe() const override { return path_; }
  Status ReadAt(uint64_t off, void* buf, size_t len) override { return Transfer(off, buf, len, false); }
  Status WriteAt(uint64_t off, const void* buf, size_t len) override {
    return Transfer(off, const_cast<void*>(buf), len, true);
  }
  Status Sync() override {
    if (fdatasync(fd_.get()) != 0) return Status::FromErrno("fdatasync " + path_);
    return Status::Ok();
  }
  io::BlockBackend* data() override { return data_.get(); }

 private:
  Status Transfer(uint64_t off, void* buf, size_t len, bool write) {
    if (off > size_ || len > size_ - off) return Status::Invalid("metadata I/O beyond the end of " + path_);
    auto* p = static_cast<uint8_t*>(buf);
    while (len > 0) {
      ssize_t n = write ? pwrite(fd_.get(), p, len, static_cast<off_t>(off))
                        : pread(fd_.get(), p, len, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno((write ? "pwrite " : "pread ") + path_);
      if (n == 0) return Status::IoError("unexpected end of " + path_);
      p += n;
      off += static_cast<uint64_t>(n);
      len -= static_cast<size_t>(n);
    }
    return Status::Ok();
  }

  UniqueFd fd_;
  std::string path_;
  uint64_t size_;
  std::unique_ptr<io::BlockBackend> data_;
};

}  // namespace

namespace {

Result<std::unique_ptr<PoolDevice>> Open(const std::string& path, bool create, uint64_t size, bool read_only,
                                         bool lock) {
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (create && !read_only) flags |= O_CREAT;
  UniqueFd fd(open(path.c_str(), flags | O_DIRECT, 0600));
  if (!fd.valid() && errno == EINVAL) fd.Reset(open(path.c_str(), flags, 0600));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  // One owner at a time: nestord (pool or raw file: backend) and the
  // offline tool exclude each other.
  if (lock) NESTOR_RETURN_IF_ERROR(LockFile(fd.get(), read_only, path));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  uint64_t have = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd.get(), BLKGETSIZE64, &have) != 0) return Status::FromErrno("BLKGETSIZE64 " + path);
  } else if (!S_ISREG(st.st_mode)) {
    return Status::Invalid(path + ": not a file or block device");
  }
  if (size == 0) size = have;
  if (size == 0) return Status::Invalid(path + ": empty; give a size");
  if (have < size) {
    if (!create || S_ISBLK(st.st_mode)) return Status::Invalid(path + " is smaller than " + std::to_string(size));
    if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return Status::FromErrno("ftruncate " + path);
  }
  io::FileBackendOptions data_opts;
  data_opts.read_only = read_only;
  data_opts.lock = io::FileBackendOptions::Lock::kCallerHolds;  // fd_ holds it
  // The data path reopens the path: it must be the file fd locked.
  data_opts.check = [&st, &path](int data_fd) {
    struct stat data_st {};
    if (fstat(data_fd, &data_st) != 0) return Status::FromErrno("fstat " + path);
    if (data_st.st_dev != st.st_dev || data_st.st_ino != st.st_ino) {
      return Status::Error(EAGAIN, path + " was replaced while being opened");
    }
    return Status::Ok();
  };
  auto data = io::OpenFileBackend(path, size, data_opts);
  if (!data.ok()) return data.status();
  return std::unique_ptr<PoolDevice>(new FilePoolDevice(std::move(fd), path, size, std::move(data.value())));
}

}  // namespace

Result<std::unique_ptr<PoolDevice>> OpenFilePoolDevice(const std::string& path, bool create, uint64_t size,
                                                       bool read_only) {
  return Open(path, create, size, read_only, true);
}

Result<std::unique_ptr<PoolDevice>> OpenFilePoolDeviceUnlocked(const std::string& path) {
  return Open(path, false, 0, true, false);
}

}  // namespace nestor::volume
