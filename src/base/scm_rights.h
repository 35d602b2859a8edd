// SCM_RIGHTS framing: sending bytes with file descriptors attached, and
// receiving them, on a unix stream socket. The one copy of this code for
// nestord's vhost-user sessions, libnestor's connection and the hostile
// test frontend.
//
// Thread: any; the functions keep no state. Errors: Status with the errno
// of the failing send/recv (EINTR is retried); a received message never
// leaks an fd: every fd that arrives is owned by the caller's vector, also
// on error.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/status.h"

namespace nestor {

// Sends the bytes of iov[0..iovcnt) with `fds` attached to the first byte
// (MSG_NOSIGNAL). A short send is finished with plain sends (the fds went
// with the first byte). With no bytes at all, one empty sendmsg carries
// the fds (what a frontend that sends only fds does).
[[nodiscard]] Status SendWithFds(int sock, const iovec* iov, int iovcnt, std::span<const int> fds);

// One recvmsg of at most len bytes into buf (flags: e.g. MSG_WAITALL,
// MSG_DONTWAIT; MSG_CMSG_CLOEXEC is always added). Every fd that came
// with it is appended to *fds; room is made for max_fds, and *truncated
// tells whether the sender attached more (the kernel dropped the rest).
// Returns the bytes read; 0 means the peer closed the connection.
[[nodiscard]] Result<size_t> RecvWithFds(int sock, void* buf, size_t len, int flags, size_t max_fds,
                                         std::vector<UniqueFd>* fds, bool* truncated);

}  // namespace nestor
