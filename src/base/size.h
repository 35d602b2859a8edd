// Parsing of human sizes ("64M", "1G", "4096") and CPU lists ("0-3,6"),
// and the reverse for sizes ("1.5G").
// Thread: any. Errors are returned as Status, never thrown.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace nestor {

// Accepts a decimal number with an optional K/M/G/T suffix (binary units,
// optional trailing "iB" or "B"). Rejects overflow, empty and negative input.
Result<uint64_t> ParseSize(std::string_view text);
// "512B", "4.0K", "1.5G": one decimal, binary units (for tables).
std::string HumanSize(uint64_t bytes);

// Accepts "N", "A-B" and comma-separated combinations; rejects empty items,
// reversed ranges and CPUs >= 4096.
Result<std::vector<int>> ParseCpuList(std::string_view text);

}  // namespace nestor
