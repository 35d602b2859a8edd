// Recovery from faults on guest memory. A frontend can shrink the file
// behind memory it shared with us (a memfd or a tmpfs/hugetlbfs file);
// touching the lost pages raises SIGBUS, which would kill the daemon. On a
// reactor thread the fault instead unwinds (siglongjmp) to the reactor's
// loop, which breaks the queue that was running (its frontend is
// disconnected) and carries on serving everyone else.
//
// Threads that cannot unwind (a library's, e.g. librbd's completion
// threads copying read data into the guest's buffers; a reactor inside a
// library call, NoUnwindScope) touch guest memory too: for a fault there
// inside a registered guest mapping, the handler maps a private zero page
// over the lost page and lets the access go on.
// The frontend that shrank its memory gets garbage in memory it no longer
// has; the daemon and everyone else carry on.
//
// Thread: InstallGuestFaultHandler once at start-up (any thread); the
// thread-locals belong to each reactor thread; Register/Unregister from
// any thread (a fixed table of atomics, read by the signal handler). A
// SIGBUS outside every registered mapping on a thread with no recovery
// point keeps its default action (the daemon dies: a real bug).
#pragma once

#include <setjmp.h>

#include <cstddef>
#include <cstdint>

namespace nestor::reactor {

class Poller;

// Recovery point of the calling reactor thread (nullptr: none).
extern thread_local sigjmp_buf* tls_fault_jmp;
// The poller whose work is running on this thread; set by pollers before
// they touch guest memory, so a fault is charged to the right frontend.
extern thread_local Poller* tls_active_poller;

void InstallGuestFaultHandler();

// Guest memory mapped at [base, base+len), in pages of `page` bytes
// (hugetlbfs: the huge page). At most kMaxGuestRanges at once; false if
// the table is full (such a mapping is then not patched on a fault).
constexpr size_t kMaxGuestRanges = 4096;
bool RegisterGuestRange(void* base, size_t len, size_t page);
// Before the range is unmapped.
void UnregisterGuestRange(void* base);
// Faults patched with a zero page so far (threads that cannot unwind,
// and reactors inside a NoUnwindScope).
uint64_t GuestFaultsPatched();

// While alive, a guest-memory fault on this reactor thread does not
// unwind: like a library's own thread, it gets the zero page and goes on.
// For calls into a library that touches guest memory on the calling
// thread (librbd's rbd_aio_writev copies the write's data there):
// unwinding out of the library would skip its clean-up, leaking what it
// had allocated (the half-built copy, up to a whole request) or leaving
// its locks held.
class NoUnwindScope {
 public:
  NoUnwindScope() : saved_(tls_fault_jmp) { tls_fault_jmp = nullptr; }
  ~NoUnwindScope() { tls_fault_jmp = saved_; }
  NoUnwindScope(const NoUnwindScope&) = delete;
  NoUnwindScope& operator=(const NoUnwindScope&) = delete;

 private:
  sigjmp_buf* saved_;
};

// After recovering: SIGBUS is still blocked (we left the handler by
// siglongjmp without restoring the mask); unblock it.
void UnblockGuestFaults();

}  // namespace nestor::reactor
