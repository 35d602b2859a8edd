// Recovery from faults on guest memory. A frontend can shrink the file
// behind memory it shared with us (a memfd or a tmpfs/hugetlbfs file);
// touching the lost pages raises SIGBUS, which would kill the daemon. On a
// reactor thread the fault instead unwinds (siglongjmp) to the reactor's
// loop, which breaks the queue that was running (its frontend is
// disconnected) and carries on serving everyone else.
//
// Thread: InstallGuestFaultHandler once at start-up (any thread); the
// thread-locals belong to each reactor thread. A SIGBUS on a thread with no
// recovery point (every non-reactor thread) keeps its default action.
// Control threads therefore never touch guest memory.
#pragma once

#include <setjmp.h>

namespace nestor::reactor {

class Poller;

// Recovery point of the calling reactor thread (nullptr: none).
extern thread_local sigjmp_buf* tls_fault_jmp;
// The poller whose work is running on this thread; set by pollers before
// they touch guest memory, so a fault is charged to the right frontend.
extern thread_local Poller* tls_active_poller;

void InstallGuestFaultHandler();
// After recovering: SIGBUS is still blocked (we left the handler by
// siglongjmp without restoring the mask); unblock it.
void UnblockGuestFaults();

}  // namespace nestor::reactor
