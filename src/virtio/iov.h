// Small iovec helpers used when decoding requests. Thread: any.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace nestor::virtio {

// Copies up to len bytes from the front of iov[0..n) into dst; returns the
// number copied.
size_t IovCopyOut(const iovec* iov, int n, void* dst, size_t len);

// Drops `bytes` from the front of the iovec list in place. Returns the new
// first index (entries before it are consumed); iov[result] may be shortened.
int IovDropFront(iovec* iov, int n, size_t bytes);

// Drops `bytes` from the back; returns the new count.
int IovDropBack(iovec* iov, int n, size_t bytes);

// Fills the iovec list with zeros.
void IovZero(const iovec* iov, int n);

// True when every base and length is a multiple of align.
bool IovAligned(const iovec* iov, int n, uint64_t align);

}  // namespace nestor::virtio
