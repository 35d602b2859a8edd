#include "reactor/guest_fault.h"

#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>

#include "io/uring.h"

namespace nestor::reactor {

thread_local sigjmp_buf* tls_fault_jmp = nullptr;
thread_local Poller* tls_active_poller = nullptr;

namespace {

// base == 0: a free slot. A slot is published by its base (release) after
// len and page are set, and freed by clearing base.
struct GuestRange {
  std::atomic<uintptr_t> base{0};
  std::atomic<size_t> len{0};
  std::atomic<size_t> page{0};
};
GuestRange g_ranges[kMaxGuestRanges];
std::atomic<uint64_t> g_patched{0};

// Async-signal-safe: atomics and one mmap.
bool PatchWithZeroPage(uintptr_t addr) {
  for (GuestRange& r : g_ranges) {
    uintptr_t base = r.base.load(std::memory_order_acquire);
    if (base == 0 || addr < base) continue;
    size_t len = r.len.load(std::memory_order_relaxed);
    size_t page = r.page.load(std::memory_order_relaxed);
    if (addr - base >= len || page == 0) continue;
    uintptr_t start = base + (addr - base) / page * page;
    void* p = mmap(reinterpret_cast<void*>(start), page, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    g_patched.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

void OnSigbus(int sig, siginfo_t* info, void*) {
  sigjmp_buf* jb = tls_fault_jmp;
  bool guest_work = tls_active_poller != nullptr || io::tls_completing != nullptr;
  if (jb != nullptr && guest_work) siglongjmp(*jb, 1);
  // A thread that cannot unwind, on guest memory: retry on a zero page.
  if (jb == nullptr && info != nullptr && PatchWithZeroPage(reinterpret_cast<uintptr_t>(info->si_addr))) return;
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

bool RegisterGuestRange(void* base, size_t len, size_t page) {
  for (GuestRange& r : g_ranges) {
    if (r.base.load(std::memory_order_relaxed) != 0) continue;
    // Claim the slot with a placeholder base, fill it, then publish.
    uintptr_t expect = 0;
    if (!r.base.compare_exchange_strong(expect, UINTPTR_MAX, std::memory_order_acq_rel)) continue;
    r.len.store(len, std::memory_order_relaxed);
    r.page.store(page, std::memory_order_relaxed);
    r.base.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
    return true;
  }
  return false;
}

void UnregisterGuestRange(void* base) {
  for (GuestRange& r : g_ranges) {
    uintptr_t want = reinterpret_cast<uintptr_t>(base);
    if (r.base.compare_exchange_strong(want, 0, std::memory_order_acq_rel)) return;
  }
}

uint64_t GuestFaultsPatched() { return g_patched.load(std::memory_order_relaxed); }

void UnblockGuestFaults() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace nestor::reactor
