#include "base/size.h"

#include <fmt/format.h>

#include <charconv>
#include <string>

namespace nestor {

Result<uint64_t> ParseSize(std::string_view text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data()) {
    return Status::Invalid("bad size '" + std::string(text) + "'");
  }
  std::string_view suffix(ptr, text.data() + text.size() - ptr);
  if (suffix.ends_with("iB")) suffix.remove_suffix(2);
  else if (suffix.size() == 2 && suffix.ends_with("B")) suffix.remove_suffix(1);
  int shift = 0;
  if (suffix.empty() || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "k") shift = 10;
  else if (suffix == "M" || suffix == "m") shift = 20;
  else if (suffix == "G" || suffix == "g") shift = 30;
  else if (suffix == "T" || suffix == "t") shift = 40;
  else return Status::Invalid("bad size suffix in '" + std::string(text) + "'");
  if (shift > 0 && (value >> (64 - shift)) != 0) {
    return Status::Invalid("size '" + std::string(text) + "' overflows");
  }
  return value << shift;
}

Result<std::vector<int>> ParseCpuList(std::string_view text) {
  std::vector<int> cpus;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t dash = item.find('-');
    int lo = 0, hi = 0;
    auto parse = [](std::string_view s, int* out) {
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
      return ec == std::errc() && p == s.data() + s.size() && !s.empty() && *out >= 0 && *out < 4096;
    };
    bool good = dash == std::string_view::npos
                    ? parse(item, &lo) && (hi = lo, true)
                    : parse(item.substr(0, dash), &lo) && parse(item.substr(dash + 1), &hi);
    if (!good || hi < lo) return Status::Invalid("bad CPU list item '" + std::string(item) + "'");
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
  }
  if (cpus.empty()) return Status::Invalid("empty CPU list");
  return cpus;
}

}  // namespace nestor

namespace nestor {

std::string HumanSize(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + "B";
  static const char kUnits[] = "KMGTPE";
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f}{}", v, kUnits[unit]);
}

}  // namespace nestor
