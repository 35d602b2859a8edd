// Fuzz target virtio_chain: descriptor chain walking (SplitQueue: head and
// next ranges, loops, indirect tables, readable-after-writable, translation
// across regions and at the top of the address space, iovec overflow) and
// virtio-blk request decoding and execution (DecodeBlkRequest, BlkQueue
// with a memory backend), over a split ring in fake guest memory.
//
// Input: the 16-byte ring header of fake_guest.h (queue size, features,
// base index, where desc/avail/used sit in region 0, avail.idx bumps
// between poll rounds), then the guest memory image (regions R0, R1, R2 in
// that order; the rings, indirect tables, request headers and buffers are
// all in it). Seeds: fuzz/seeds/virtio_seeds.py.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "base/log.h"
#include "fake_guest.h"

using namespace nestor;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Bad chains are logged (rate-limited per queue): quiet unless asked.
  if (std::getenv("NESTOR_LOG") == nullptr) SetLogLevel(static_cast<LogLevel>(4));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::ByteReader in(data, size);
  auto h = in.Get<fuzz::RingHeader>();
  fuzz::FakeGuest guest(h, in.pos(), in.left());
  (void)fuzz::DriveQueue(fuzz::QueueConfig(guest, h), h);
  return 0;
}
