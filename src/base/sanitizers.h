// Sanitizer helpers.
//
// kThreadSanitizer: for tests whose timing assertions (latency, QoS rates)
// do not hold under TSan's slowdown; they skip that assertion, never the
// test.
//
// TsanRelease / TsanAcquire: happens-before that TSan cannot see because
// the kernel carries it (io_uring's IORING_OP_MSG_RING hands a request from
// one reactor's ring to another's). The sender releases the address it
// passes, the receiver acquires it. No-ops outside TSan builds.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define NESTOR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NESTOR_TSAN 1
#endif
#endif

#ifdef NESTOR_TSAN
extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#endif

namespace nestor {

#ifdef NESTOR_TSAN
inline constexpr bool kThreadSanitizer = true;
inline void TsanRelease(void* addr) { __tsan_release(addr); }
inline void TsanAcquire(void* addr) { __tsan_acquire(addr); }
#else
inline constexpr bool kThreadSanitizer = false;
inline void TsanRelease(void*) {}
inline void TsanAcquire(void*) {}
#endif

}  // namespace nestor
