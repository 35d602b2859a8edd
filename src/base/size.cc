#include "base/size.h"

#include <fmt/format.h>

#include <charconv>
#include <string>

namespace nestor {

namespace {

// The multiplier of a unit suffix ("", "B", "K", "KB", "KiB", ... "E":
// the units HumanSize prints), or 0 if it is not one.
uint64_t UnitOf(std::string_view suffix) {
  if (suffix.empty() || suffix == "B") return 1;
  if (suffix.size() == 3 && suffix.ends_with("iB"))
    suffix.remove_suffix(2);
  else if (suffix.size() == 2 && suffix.ends_with("B"))
    suffix.remove_suffix(1);
  if (suffix.size() != 1) return 0;
  switch (suffix[0]) {
    case 'K':
    case 'k': return uint64_t{1} << 10;
    case 'M':
    case 'm': return uint64_t{1} << 20;
    case 'G':
    case 'g': return uint64_t{1} << 30;
    case 'T':
    case 't': return uint64_t{1} << 40;
    case 'P':
    case 'p': return uint64_t{1} << 50;
    case 'E':
    case 'e': return uint64_t{1} << 60;
    default: return 0;
  }
}

}  // namespace

Result<uint64_t> ParseSize(std::string_view text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return Status::Invalid("size '" + std::string(text) + "' overflows 64 bits");
  }
  if (ec != std::errc() || ptr == text.data()) {
    return Status::Invalid("bad size '" + std::string(text) + "'");
  }
  uint64_t unit = UnitOf(std::string_view(ptr, text.data() + text.size() - ptr));
  if (unit == 0) {
    return Status::Invalid("bad size suffix in '" + std::string(text) +
                           "': use bytes or K, M, G, T, P, E (powers of 1024; also KB/KiB and so on)");
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(value, unit, &bytes)) {
    return Status::Invalid("size '" + std::string(text) + "' overflows 64 bits");
  }
  return bytes;
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
    bool good = dash == std::string_view::npos ? parse(item, &lo) && (hi = lo, true)
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
