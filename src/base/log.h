// Logging: leveled, line-buffered messages to stderr.
//
// Thread: any (each message is one write(2), so lines do not interleave).
// Level is set once at start-up (NESTOR_LOG=debug|info|warn|error or
// SetLogLevel). Not for the per-I/O hot path except at debug level.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace nestor {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void LogLine(LogLevel level, std::string_view msg);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < GetLogLevel()) return;
  LogLine(level, fmt::format(f, std::forward<Args>(args)...));
}

#define NLOG_DEBUG(...) ::nestor::Log(::nestor::LogLevel::kDebug, __VA_ARGS__)
#define NLOG_INFO(...) ::nestor::Log(::nestor::LogLevel::kInfo, __VA_ARGS__)
#define NLOG_WARN(...) ::nestor::Log(::nestor::LogLevel::kWarn, __VA_ARGS__)
#define NLOG_ERROR(...) ::nestor::Log(::nestor::LogLevel::kError, __VA_ARGS__)

}  // namespace nestor
