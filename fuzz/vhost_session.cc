// Fuzz target vhost_session: vhost-user message framing (ReadMessage: fds
// by SCM_RIGHTS, version and size checks) and the whole backend session
// (vhost::Session: features, memory table and ADD/REM_MEM_REG, vring
// setup, queue start and stop on a real reactor, call-fd swaps, config
// space, GET/SET_INFLIGHT_FD, REPLY_ACK), fed a sequence of messages with
// real fds over a socketpair, exactly as BlkExport hands a connection to a
// session.
//
// Input:
//   u16 image_len, then image_len bytes: the contents every memfd starts
//       with (guest memory: rings and requests; or an inflight region)
//   then records, until the input ends (at most 64):
//     u8  nfds      low 4 bits: how many fds ride with the message (0..15)
//     u8  spec[nfds] one per fd: bits 0-1 kind
//                     0 memfd of ((spec >> 2) & 15) + 1 pages, filled with the image
//                     1 eventfd, counter (spec >> 2) & 1, non-blocking if spec & 8
//                     2 /dev/null
//                     3 the read end of a pipe
//     u32 request, u32 flags, u32 size   the vhost-user header, sent as is
//     payload: min(size, 1024, what is left) bytes, sent after the header
// Every message goes out (header, payload and fds in one sendmsg) before
// the session runs on this thread; then the frontend side is shut down, so
// the session ends at EOF. Seeds: fuzz/seeds/vhost_seeds.py.
//
// Per process: one reactor (interrupt mode) and one export (2 queues, a
// 1 MiB memory volume). Per run: the socketpair, the fds and the session;
// a run that leaves an fd open, frontend memory mapped or a queue orphaned
// traps.
#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/log.h"
#include "fake_guest.h"
#include "io/backend.h"
#include "reactor/reactor.h"
#include "vhost/blk_export.h"
#include "vhost/mem_table.h"
#include "vhost/session.h"
#include "vhost/wire.h"

using namespace nestor;

namespace {

constexpr size_t kMaxRecords = 64;
constexpr size_t kMaxSentPayload = 1024;
constexpr size_t kMaxImage = 64 * 1024;

vhost::BlkExport* Export() {
  static vhost::BlkExport* exp = [] {
    reactor::ReactorOptions ro;
    ro.mode = reactor::PollMode::kInterrupt;
    auto* r = new reactor::Reactor(ro);
    if (!r->Start().ok()) __builtin_trap();
    vhost::ExportConfig cfg;
    cfg.name = "fuzz";
    cfg.num_queues = 2;
    auto backend = io::OpenMemBackend(1 << 20);
    if (!backend.ok()) __builtin_trap();
    cfg.backend = std::move(backend.value());
    cfg.stop_timeout = std::chrono::milliseconds(5000);
    return new vhost::BlkExport(std::move(cfg), {r});
  }();
  return exp;
}

int OpenFdCount() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) __builtin_trap();
  int n = 0;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

UniqueFd MakeFd(uint8_t spec, const uint8_t* image, size_t image_len) {
  switch (spec & 3) {
    case 0: {
      UniqueFd fd(memfd_create("fuzz-guest", MFD_CLOEXEC));
      size_t size = (((spec >> 2) & 15) + 1) * 4096;
      if (!fd.valid() || ftruncate(fd.get(), static_cast<off_t>(size)) != 0) __builtin_trap();
      size_t n = std::min(size, image_len);
      if (n > 0 && pwrite(fd.get(), image, n, 0) != static_cast<ssize_t>(n)) __builtin_trap();
      return fd;
    }
    case 1: return UniqueFd(eventfd((spec >> 2) & 1, EFD_CLOEXEC | ((spec & 8) ? EFD_NONBLOCK : 0)));
    case 2: return UniqueFd(open("/dev/null", O_RDWR | O_CLOEXEC));
    default: {
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) __builtin_trap();
      close(p[1]);
      return UniqueFd(p[0]);
    }
  }
}

// Sends one frame without blocking; false if the socket is full (the run
// then stops adding messages).
bool SendFrame(int sock, const std::vector<uint8_t>& bytes, const std::vector<UniqueFd>& fds) {
  iovec iov{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<size_t>(fds.size(), 1)), 0);
  if (!fds.empty()) {
    mh.msg_control = control.data();
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    for (size_t i = 0; i < fds.size(); ++i) {
      int fd = fds[i].get();
      std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
    }
  }
  return sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

// Reads and drops every reply, closing the fds they carry (GET_INFLIGHT_FD).
void DrainReplies(int sock) {
  for (;;) {
    uint8_t buf[4096];
    char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{buf, sizeof(buf)};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    for (cmsghdr* c = n >= 0 ? CMSG_FIRSTHDR(&mh) : nullptr; c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        close(fd);
      }
    }
    if (n <= 0) return;
    // NESTOR_LOG=debug shows the replies (for checking seeds).
    for (ssize_t off = 0; GetLogLevel() == LogLevel::kDebug && off + 12 <= n;) {
      vhost::MsgHeader h;
      std::memcpy(&h, buf + off, sizeof(h));
      uint64_t first = 0;
      std::memcpy(&first, buf + off + 12, std::min<size_t>(8, std::max<ssize_t>(0, n - off - 12)));
      NLOG_DEBUG("reply {} size {} first u64 {:#x}", vhost::RequestName(h.request), h.size, first);
      off += 12 + h.size;
    }
  }
}

// Writes the input's records to sock, as a frontend would.
void SendRecords(fuzz::ByteReader& in, int sock, const uint8_t* image, size_t image_len) {
  for (size_t r = 0; r < kMaxRecords && in.left() > 0; ++r) {
    size_t nfds = in.Get<uint8_t>() & 15;
    std::vector<UniqueFd> fds;
    for (size_t i = 0; i < nfds; ++i) fds.push_back(MakeFd(in.Get<uint8_t>(), image, image_len));
    auto hdr = in.Get<vhost::MsgHeader>();
    size_t plen = std::min({static_cast<size_t>(hdr.size), kMaxSentPayload, in.left()});
    std::vector<uint8_t> bytes(sizeof(hdr) + plen);
    std::memcpy(bytes.data(), &hdr, sizeof(hdr));
    in.Read(bytes.data() + sizeof(hdr), plen);
    if (!SendFrame(sock, bytes, fds)) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (std::getenv("NESTOR_LOG") == nullptr) SetLogLevel(static_cast<LogLevel>(4));
  (void)Export();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fds_before = OpenFdCount();
  fuzz::ByteReader in(data, size);
  size_t image_len = std::min<size_t>({in.Get<uint16_t>(), in.left(), kMaxImage});
  const uint8_t* image = in.pos();
  fuzz::ByteReader records(in.pos() + image_len, in.left() - image_len);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) __builtin_trap();
  UniqueFd frontend(sv[0]);
  SendRecords(records, frontend.get(), image, image_len);
  shutdown(frontend.get(), SHUT_WR);
  {
    vhost::Session session(UniqueFd(sv[1]), Export());
    session.Run();
  }
  DrainReplies(frontend.get());
  frontend.Reset();
  // The session gave back everything the frontend lent it.
  if (vhost::MemTable::TotalMappedBytes() != 0) __builtin_trap();
  if (vhost::Session::OrphanedQueues() != 0) __builtin_trap();
  if (OpenFdCount() != fds_before) __builtin_trap();
  return 0;
}
