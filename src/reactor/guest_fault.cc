#include "reactor/guest_fault.h"

#include <signal.h>

#include <cstring>

#include "io/uring.h"

namespace nestor::reactor {

thread_local sigjmp_buf* tls_fault_jmp = nullptr;
thread_local Poller* tls_active_poller = nullptr;

namespace {

void OnSigbus(int sig, siginfo_t*, void*) {
  sigjmp_buf* jb = tls_fault_jmp;
  bool guest_work = tls_active_poller != nullptr || io::tls_completing != nullptr;
  if (jb != nullptr && guest_work) siglongjmp(*jb, 1);
  // Not a recoverable guest-memory access: die as SIGBUS would.
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

void InstallGuestFaultHandler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = OnSigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, nullptr);
}

void UnblockGuestFaults() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace nestor::reactor
