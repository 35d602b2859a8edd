// Sanitizer builds (make test-asan / test-tsan, docs/testing.md): what the
// code and the tests need to know about them.
//
// Thread: any. Errors: none.
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NESTOR_SANITIZED 1
#endif
#if __has_feature(address_sanitizer)
#define NESTOR_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NESTOR_SANITIZED 1
#define NESTOR_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define NESTOR_SANITIZED 1
#endif

#ifdef NESTOR_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace nestor {

// True in ASan and TSan builds: code runs several times slower, so tests
// skip assertions on rates and latencies (never on correctness).
#ifdef NESTOR_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Marks a heap object that is leaked on purpose (and what it points to),
// so that LeakSanitizer does not report it: e.g. a queue handed to its
// reactor whose I/O never ends (vhost/session.cc).
inline void IntentionalLeak(const void* p) {
#ifdef NESTOR_ASAN
  __lsan_ignore_object(p);
#else
  (void)p;
#endif
}

}  // namespace nestor
