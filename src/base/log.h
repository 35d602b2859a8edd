// Logging: leveled, line-buffered messages to stderr.
//
// Thread: any (each message is one write(2), so lines do not interleave).
// Level is set at start-up (NESTOR_LOG=debug|info|warn|error or
// SetLogLevel) and may change at any time (nestord's SIGHUP), and so is the format: text ("HH:MM:SS.micros LEVEL msg",
// UTC) or JSON, one object per line for log shippers
// ({"time":"2026-12-07T20:22:03.123456Z","level":"info","msg":"..."}).
// Not for the per-I/O hot path except at debug level.
#pragma once

#include <fmt/format.h>

#include <time.h>

#include <string>
#include <string_view>

namespace nestor {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

enum class LogFormat { kText = 0, kJson = 1 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "debug", "info", "warn" or "error"; false for anything else.
bool ParseLogLevel(std::string_view name, LogLevel* level);
const char* LogLevelName(LogLevel level);
// NESTOR_LOG's level, or info when it is unset or not a level.
LogLevel LogLevelFromEnvironment();
void SetLogFormat(LogFormat format);
void LogLine(LogLevel level, std::string_view msg);
// One line as LogLine writes it (with its '\n'), at time `when` (UTC).
std::string FormatLogLine(LogFormat format, LogLevel level, std::string_view msg, const timespec& when);

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
