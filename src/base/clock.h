// Monotonic time helpers. Thread: any.
#pragma once

#include <time.h>

#include <cstdint>

namespace nestor {

inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

}  // namespace nestor
