// Sanitizer builds (make test-asan / test-tsan, docs/testing.md): what the
// code and the tests need to know about them.
//
// kSanitized: true in ASan and TSan builds. Code runs several times slower
// there, so tests skip assertions on rates and latencies (never on data or
// behaviour).
//
// IntentionalLeak: a heap object leaked on purpose (and what it points
// to), so that LeakSanitizer does not report it.
//
// TsanRelease / TsanAcquire: happens-before that TSan cannot see because
// the kernel carries it (io_uring's IORING_OP_MSG_RING hands a request from
// one reactor's ring to another's). The sender releases the address it
// passes, the receiver acquires it. No-ops outside TSan builds.
//
// Thread: any. Errors: none.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define NESTOR_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NESTOR_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) && !defined(NESTOR_TSAN)
#define NESTOR_TSAN 1
#endif
#if __has_feature(address_sanitizer) && !defined(NESTOR_ASAN)
#define NESTOR_ASAN 1
#endif
#endif

#ifdef NESTOR_ASAN
#include <sanitizer/lsan_interface.h>
#endif
#ifdef NESTOR_TSAN
extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#endif

namespace nestor {

#if defined(NESTOR_ASAN) || defined(NESTOR_TSAN)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

#ifdef NESTOR_TSAN
inline constexpr bool kThreadSanitizer = true;
inline void TsanRelease(void* addr) { __tsan_release(addr); }
inline void TsanAcquire(void* addr) { __tsan_acquire(addr); }
#else
inline constexpr bool kThreadSanitizer = false;
inline void TsanRelease(void*) {}
inline void TsanAcquire(void*) {}
#endif

// E.g. a queue handed to its reactor whose I/O never ends (vhost/session.cc).
inline void IntentionalLeak(const void* p) {
#ifdef NESTOR_ASAN
  __lsan_ignore_object(p);
#else
  (void)p;
#endif
}

}  // namespace nestor
