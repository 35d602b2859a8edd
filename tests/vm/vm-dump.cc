// nestor-vm-dump: copies a whole vhost-user-blk volume into an image file
// through libnestor (queue 0, synchronous reads), so the VM tests can check
// what a guest left on a volume through the backend itself rather than its
// backing file.
//
// usage: nestor-vm-dump SOCKET OUT.img [CHUNK_BYTES]
// Prints the capacity and the byte count; exits 0 on success, 1 on any
// connect or read error (with the message on stderr), 2 on bad usage.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nestor/client.hpp"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s SOCKET OUT.img [CHUNK_BYTES]\n", argv[0]);
    return 2;
  }
  size_t chunk = argc == 4 ? strtoull(argv[3], nullptr, 0) : (1u << 20);
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
  const uint64_t cap = (*dev)->info().capacity_bytes;
  int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "nestor-vm-dump: %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  std::vector<char> buf(chunk);
  auto& q = (*dev)->queue(0);
  for (uint64_t off = 0; off < cap; off += chunk) {
    size_t n = cap - off < chunk ? static_cast<size_t>(cap - off) : chunk;
    nestor::Status st = q.Read(off, buf.data(), n);
    if (!st.ok()) {
      fprintf(stderr, "nestor-vm-dump: read %zu bytes at %llu: %s\n", n, static_cast<unsigned long long>(off),
              st.message().c_str());
      return 1;
    }
    if (pwrite(fd, buf.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) {
      fprintf(stderr, "nestor-vm-dump: write %s: %s\n", argv[2], strerror(errno));
      return 1;
    }
  }
  if (close(fd) < 0) {
    fprintf(stderr, "nestor-vm-dump: close %s: %s\n", argv[2], strerror(errno));
    return 1;
  }
  (*dev)->Close();
  printf("nestor-vm-dump: %s: %llu bytes (capacity) -> %s\n", argv[1], static_cast<unsigned long long>(cap), argv[2]);
  return 0;
}
