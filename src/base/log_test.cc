// Log lines: the text form operators read and the JSON form log shippers
// parse (--log-format json): one valid object per line, whatever the
// message holds.
#include "base/log.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace nestor {
namespace {

const timespec kWhen{1796674923, 123456789};  // 2026-12-07T20:22:03.123456Z

TEST(LogLine, Text) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, LogLevel::kWarn, "pool full", kWhen), "20:22:03.123456 WARN  pool full\n");
}

TEST(LogLine, JsonIsOneValidObjectPerLine) {
  const std::string msgs[] = {"plain",
                              "quote \" backslash \\ tab \t newline \n cr \r",
                              std::string("nul \0 end", 9),
                              "\x01\x1f\x7f",
                              "utf-8 \xc3\xa9",
                              ""};
  for (const std::string& m : msgs) {
    std::string line = FormatLogLine(LogFormat::kJson, LogLevel::kError, m, kWhen);
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << "a raw newline inside: " << line;
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j["msg"], m);
    EXPECT_EQ(j["level"], "error");
    EXPECT_EQ(j["time"], "2026-12-07T20:22:03.123456Z");
  }
}

}  // namespace
}  // namespace nestor
