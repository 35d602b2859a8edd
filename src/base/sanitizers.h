// Which sanitizer this build runs under, for tests whose timing
// assertions (latency, QoS rates) do not hold under TSan's slowdown:
// they skip that assertion, never the test.
#pragma once

namespace nestor {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

}  // namespace nestor
