#include "base/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>

namespace nestor {
namespace {

TEST(Crc32c, KnownVectors) {
  // RFC 3720 (iSCSI) test vectors.
  uint8_t zeros[32] = {};
  EXPECT_EQ(Crc32c(zeros, sizeof(zeros)), 0x8A9136AAu);
  uint8_t ones[32];
  std::memset(ones, 0xFF, sizeof(ones));
  EXPECT_EQ(Crc32c(ones, sizeof(ones)), 0x62A8AB43u);
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
}

TEST(Crc32c, Continues) {
  const char* s = "hello, nestor metadata";
  size_t n = std::strlen(s);
  EXPECT_EQ(Crc32c(s + 5, n - 5, Crc32c(s, 5)), Crc32c(s, n));
}

}  // namespace
}  // namespace nestor
