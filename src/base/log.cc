#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <string>

namespace nestor {
namespace {

LogLevel InitialLevel() {
  const char* env = std::getenv("NESTOR_LOG");
  if (env == nullptr) return LogLevel::kInfo;
  std::string_view v(env);
  if (v == "debug") return LogLevel::kDebug;
  if (v == "warn") return LogLevel::kWarn;
  if (v == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<LogLevel> g_level{InitialLevel()};
constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};

}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(level); }
LogLevel GetLogLevel() { return g_level.load(std::memory_order_relaxed); }

void LogLine(LogLevel level, std::string_view msg) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tmv{};
  gmtime_r(&ts.tv_sec, &tmv);
  std::string line = fmt::format("{:02}:{:02}:{:02}.{:06} {:5} {}\n", tmv.tm_hour, tmv.tm_min, tmv.tm_sec,
                                 ts.tv_nsec / 1000, kNames[static_cast<int>(level)], msg);
  ssize_t unused = write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace nestor
