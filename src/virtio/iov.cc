#include "virtio/iov.h"

#include <algorithm>
#include <cstring>

namespace nestor::virtio {

size_t IovCopyOut(const iovec* iov, int n, void* dst, size_t len) {
  size_t done = 0;
  for (int i = 0; i < n && done < len; ++i) {
    size_t chunk = std::min(len - done, iov[i].iov_len);
    std::memcpy(static_cast<uint8_t*>(dst) + done, iov[i].iov_base, chunk);
    done += chunk;
  }
  return done;
}

int IovDropFront(iovec* iov, int n, size_t bytes) {
  int i = 0;
  while (i < n && bytes > 0) {
    if (iov[i].iov_len <= bytes) {
      bytes -= iov[i].iov_len;
      ++i;
    } else {
      iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + bytes;
      iov[i].iov_len -= bytes;
      bytes = 0;
    }
  }
  return i;
}

int IovDropBack(iovec* iov, int n, size_t bytes) {
  while (n > 0 && bytes > 0) {
    if (iov[n - 1].iov_len <= bytes) {
      bytes -= iov[n - 1].iov_len;
      --n;
    } else {
      iov[n - 1].iov_len -= bytes;
      bytes = 0;
    }
  }
  return n;
}

void IovZero(const iovec* iov, int n) {
  for (int i = 0; i < n; ++i) std::memset(iov[i].iov_base, 0, iov[i].iov_len);
}

bool IovAligned(const iovec* iov, int n, uint64_t align) {
  for (int i = 0; i < n; ++i) {
    if ((reinterpret_cast<uintptr_t>(iov[i].iov_base) | iov[i].iov_len) & (align - 1)) return false;
  }
  return true;
}

}  // namespace nestor::virtio
