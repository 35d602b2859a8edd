// CRC-32C (Castagnoli), the checksum of every on-disk metadata structure.
// Thread: any (pure function). Uses the SSE4.2 instruction when the CPU has
// it, a table otherwise; both give the same values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nestor {

// crc: a previous result to continue from (0 to start).
uint32_t Crc32c(const void* data, size_t len, uint32_t crc = 0);

}  // namespace nestor
