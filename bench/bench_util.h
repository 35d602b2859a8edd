// Helpers shared by the in-process benchmarks (pool_open_bench,
// snapshot_bench): process CPU and memory figures, clocks, medians, the
// raw pool-file I/O they use to build pools directly, and their exit on an
// error, which removes the pool files they were building.
//
// Thread: any (the clean-up list: the main thread, and the signal handler).
// Errors: Status, or Die/Check, which report and exit 1.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/status.h"
#include "volume/aligned_buffer.h"
#include "volume/format.h"

namespace nestor::bench {

// A field of /proc/self/status in bytes ("VmRSS:   1234 kB").
inline uint64_t ProcStatusBytes(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t klen = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':') {
      return std::strtoull(line.c_str() + klen + 1, nullptr, 10) * 1024;
    }
  }
  return 0;
}

inline void ResetPeakRss() {
  int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!write(fd, "5", 1);  // 5: reset VmHWM to the current RSS
    close(fd);
  }
}

inline double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Writes `len` bytes at `off` through a plain (buffered) descriptor.
[[nodiscard]] inline Status WriteAllAt(int fd, uint64_t off, const void* buf, size_t len) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = pwrite(fd, p, std::min<size_t>(len, 64u << 20), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno("pwrite");
    p += n;
    off += static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

[[nodiscard]] inline Result<volume::Superblock> ReadSuperblockAt(int fd) {
  volume::AlignedBuffer b(volume::kBlock);
  if (pread(fd, b.data(), volume::kBlock, 0) != static_cast<ssize_t>(volume::kBlock)) {
    return Status::FromErrno("pread superblock");
  }
  return volume::DecodeSuperblock(b.data());
}

// ---- files removed on an error exit or SIGINT/SIGTERM ----
inline char g_cleanup[4][4096];  // fixed: the signal handler reads it
inline const char* g_program = "bench";

inline void AddCleanup(const std::string& path) {
  for (auto& p : g_cleanup) {
    if (p[0] == '\0') {
      std::snprintf(p, sizeof(p), "%s", path.c_str());
      return;
    }
  }
}

// Removes (and forgets) every file added.
inline void RemoveCleanups() {
  for (auto& p : g_cleanup) {
    if (p[0] != '\0') unlink(p);
    p[0] = '\0';
  }
}

inline void OnStopSignal(int sig) {
  for (auto& p : g_cleanup) {
    if (p[0] != '\0') unlink(p);
  }
  _exit(128 + sig);
}

// The program Die's messages name.
inline void SetProgram(const char* name) { g_program = name; }
// From here on SIGINT and SIGTERM remove the files and exit 128 + sig.
inline void RemoveCleanupsOnStopSignals() {
  signal(SIGINT, OnStopSignal);
  signal(SIGTERM, OnStopSignal);
}

[[noreturn]] inline void Die(const std::string& what, const Status& st) {
  std::fprintf(stderr, "%s: %s: %s\n", g_program, what.c_str(), st.ToString().c_str());
  RemoveCleanups();
  std::exit(1);
}

inline void Check(const std::string& what, const Status& st) {
  if (!st.ok()) Die(what, st);
}

inline void WriteAll(int fd, uint64_t off, const void* buf, size_t len, const std::string& path) {
  Check("pwrite " + path, WriteAllAt(fd, off, buf, len));
}

inline volume::Superblock ReadSuperblock(int fd, const std::string& path) {
  auto sb = ReadSuperblockAt(fd);
  if (!sb.ok()) Die("superblock of " + path, sb.status());
  return *sb;
}

}  // namespace nestor::bench
