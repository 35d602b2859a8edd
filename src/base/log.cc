#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <string>

namespace nestor {
namespace {

constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
constexpr const char* kJsonNames[] = {"debug", "info", "warn", "error"};
std::atomic<LogLevel> g_level{LogLevelFromEnvironment()};
std::atomic<LogFormat> g_format{LogFormat::kText};

// A JSON string's body: quotes, backslashes and control characters escaped.
void AppendJsonEscaped(std::string* out, std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20 || u == 0x7f) {
      *out += fmt::format("\\u{:04x}", u);
    } else {
      out->push_back(c);
    }
  }
}

}  // namespace

bool ParseLogLevel(std::string_view name, LogLevel* level) {
  for (int i = 0; i < 4; ++i) {
    if (name == kJsonNames[i]) {
      *level = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

const char* LogLevelName(LogLevel level) { return kJsonNames[static_cast<int>(level)]; }

LogLevel LogLevelFromEnvironment() {
  const char* env = std::getenv("NESTOR_LOG");
  LogLevel level = LogLevel::kInfo;
  if (env != nullptr) (void)ParseLogLevel(env, &level);
  return level;
}

void SetLogLevel(LogLevel level) { g_level.store(level); }
LogLevel GetLogLevel() { return g_level.load(std::memory_order_relaxed); }

void SetLogFormat(LogFormat format) { g_format.store(format); }

std::string FormatLogLine(LogFormat format, LogLevel level, std::string_view msg, const timespec& when) {
  tm tmv{};
  gmtime_r(&when.tv_sec, &tmv);
  if (format == LogFormat::kText) {
    return fmt::format("{:02}:{:02}:{:02}.{:06} {:5} {}\n", tmv.tm_hour, tmv.tm_min, tmv.tm_sec, when.tv_nsec / 1000,
                       kNames[static_cast<int>(level)], msg);
  }
  std::string line = fmt::format(R"({{"time":"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z","level":"{}","msg":")",
                                 tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec,
                                 when.tv_nsec / 1000, kJsonNames[static_cast<int>(level)]);
  AppendJsonEscaped(&line, msg);
  line += "\"}\n";
  return line;
}

void LogLine(LogLevel level, std::string_view msg) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::string line = FormatLogLine(g_format.load(std::memory_order_relaxed), level, msg, ts);
  ssize_t unused = write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace nestor
