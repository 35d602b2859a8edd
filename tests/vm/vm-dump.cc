// nestor-vm-dump: copies a whole vhost-user-blk volume into an image file
// through libnestor (queue 0, synchronous reads), so the VM tests can check
// what a guest left on a volume through the backend itself rather than its
// backing file. With --load, the other way: writes an image file onto the
// volume (vm.13 loads a golden filesystem made on the host); chunks that
// are all zeros are skipped (a fresh thin volume reads zeros there and
// stays thin), then the volume is flushed.
//
// usage: nestor-vm-dump SOCKET OUT.img [CHUNK_BYTES]
//        nestor-vm-dump --load SOCKET IN.img [CHUNK_BYTES]
// CHUNK_BYTES defaults to 1 MiB (dump) and 64 KiB (load: one pool cluster).
// Prints the capacity and the byte count; exits 0 on success, 1 on any
// connect, read or write error (with the message on stderr), 2 on bad
// usage (and, with --load, an image larger than the volume).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "nestor/client.hpp"

namespace {

int Load(nestor::client::Device& dev, const char* sock, const char* path, size_t chunk) {
  const uint64_t cap = dev.info().capacity_bytes;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) {
    fprintf(stderr, "nestor-vm-dump: %s: %s\n", path, strerror(errno));
    return 1;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > cap) {
    fprintf(stderr, "nestor-vm-dump: %s has %llu bytes, the volume only %llu\n", path,
            static_cast<unsigned long long>(size), static_cast<unsigned long long>(cap));
    return 2;
  }
  std::vector<char> buf(chunk);
  auto& q = dev.queue(0);
  uint64_t written = 0;
  for (uint64_t off = 0; off < size; off += chunk) {
    size_t n = size - off < chunk ? static_cast<size_t>(size - off) : chunk;
    if (pread(fd, buf.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
      fprintf(stderr, "nestor-vm-dump: read %s: %s\n", path, errno ? strerror(errno) : "short read");
      return 1;
    }
    if (std::all_of(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n), [](char c) { return c == 0; })) continue;
    size_t len = (n + 511) / 512 * 512;  // a tail shorter than a sector is padded with zeros
    std::fill(buf.begin() + static_cast<ptrdiff_t>(n), buf.begin() + static_cast<ptrdiff_t>(len), 0);
    nestor::Status ws = q.Write(off, buf.data(), len);
    if (!ws.ok()) {
      fprintf(stderr, "nestor-vm-dump: write %zu bytes at %llu: %s\n", len, static_cast<unsigned long long>(off),
              ws.message().c_str());
      return 1;
    }
    written += len;
  }
  close(fd);
  nestor::Status fs = q.Flush();
  if (!fs.ok()) {
    fprintf(stderr, "nestor-vm-dump: flush: %s\n", fs.message().c_str());
    return 1;
  }
  printf("nestor-vm-dump: %s (%llu bytes) -> %s: %llu bytes written (all-zero chunks skipped), flushed\n", path,
         static_cast<unsigned long long>(size), sock, static_cast<unsigned long long>(written));
  return 0;
}

int Dump(nestor::client::Device& dev, const char* sock, const char* path, size_t chunk) {
  const uint64_t cap = dev.info().capacity_bytes;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "nestor-vm-dump: %s: %s\n", path, strerror(errno));
    return 1;
  }
  std::vector<char> buf(chunk);
  auto& q = dev.queue(0);
  for (uint64_t off = 0; off < cap; off += chunk) {
    size_t n = cap - off < chunk ? static_cast<size_t>(cap - off) : chunk;
    nestor::Status st = q.Read(off, buf.data(), n);
    if (!st.ok()) {
      fprintf(stderr, "nestor-vm-dump: read %zu bytes at %llu: %s\n", n, static_cast<unsigned long long>(off),
              st.message().c_str());
      return 1;
    }
    if (pwrite(fd, buf.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
      fprintf(stderr, "nestor-vm-dump: write %s: %s\n", path, strerror(errno));
      return 1;
    }
  }
  if (close(fd) < 0) {
    fprintf(stderr, "nestor-vm-dump: close %s: %s\n", path, strerror(errno));
    return 1;
  }
  printf("nestor-vm-dump: %s: %llu bytes (capacity) -> %s\n", sock, static_cast<unsigned long long>(cap), path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool load = argc > 1 && std::string_view(argv[1]) == "--load";
  if (load) {
    --argc;
    ++argv;
  }
  if (argc < 3 || argc > 4) {
    fprintf(stderr,
            "usage: nestor-vm-dump SOCKET OUT.img [CHUNK_BYTES]\n"
            "       nestor-vm-dump --load SOCKET IN.img [CHUNK_BYTES]\n");
    return 2;
  }
  size_t chunk = argc == 4 ? strtoull(argv[3], nullptr, 0) : load ? (64u << 10) : (1u << 20);
  if (chunk == 0 || chunk % 512) {
    fprintf(stderr, "nestor-vm-dump: chunk must be a non-zero multiple of 512\n");
    return 2;
  }
  nestor::client::Options o;
  o.socket_path = argv[1];
  o.num_queues = 1;
  o.polled = false;
  o.buffer_bytes = 4 * chunk;
  auto dev = nestor::client::Device::Connect(o);
  if (!dev.ok()) {
    fprintf(stderr, "nestor-vm-dump: connect %s: %s\n", argv[1], dev.status().message().c_str());
    return 1;
  }
  int rc = load ? Load(**dev, argv[1], argv[2], chunk) : Dump(**dev, argv[1], argv[2], chunk);
  (*dev)->Close();
  return rc;
}
