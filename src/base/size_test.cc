#include "base/size.h"

#include <gtest/gtest.h>

namespace nestor {

TEST(ParseSize, Units) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64M"), 64ull << 20);
  EXPECT_EQ(*ParseSize("1GiB"), 1ull << 30);
  EXPECT_EQ(*ParseSize("2KB"), 2048u);
  EXPECT_FALSE(ParseSize("").ok());
  EXPECT_FALSE(ParseSize("-1").ok());
  EXPECT_FALSE(ParseSize("12X").ok());
  EXPECT_FALSE(ParseSize("99999999999T").ok());
}

// Suffix multiplication and the number itself must not wrap (issue #10).
TEST(ParseSize, RejectsOverflowAtTheBoundary) {
  EXPECT_EQ(*ParseSize("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(ParseSize("18446744073709551616").ok());
  EXPECT_EQ(*ParseSize("16777215T"), 16777215ull << 40);
  EXPECT_FALSE(ParseSize("16777216T").ok());  // 2^64
  EXPECT_EQ(*ParseSize("17179869183G"), 17179869183ull << 30);
  EXPECT_FALSE(ParseSize("17179869184G").ok());
  EXPECT_FALSE(ParseSize("18014398509481984K").ok());  // 2^54 KiB = 2^64
  auto st = ParseSize("16777216TiB").status();
  EXPECT_EQ(st.err(), EINVAL);
  EXPECT_NE(st.message().find("overflows"), std::string::npos) << st.ToString();
}

TEST(ParseSize, SuffixForms) {
  EXPECT_EQ(*ParseSize("4096B"), 4096u);
  EXPECT_EQ(*ParseSize("1k"), 1024u);
  EXPECT_EQ(*ParseSize("1KiB"), 1024u);
  EXPECT_EQ(*ParseSize("1TB"), 1ull << 40);
  EXPECT_FALSE(ParseSize("4096BB").ok());
  EXPECT_FALSE(ParseSize("4096iB").ok());
  EXPECT_EQ(*ParseSize("1P"), 1ull << 50);
  EXPECT_EQ(*ParseSize("2EiB"), 2ull << 60);
  EXPECT_FALSE(ParseSize("16E").ok());  // 2^64
  EXPECT_FALSE(ParseSize("1Z").ok());
  EXPECT_FALSE(ParseSize("1.5G").ok());
  EXPECT_FALSE(ParseSize("G").ok());
}

// What HumanSize prints, ParseSize reads (issue #16: sizes were accepted
// up to T but printed up to E), and a bad suffix names the good ones.
TEST(ParseSize, ReadsEverySuffixHumanSizePrints) {
  for (int shift = 10; shift <= 60; shift += 10) {
    std::string printed = HumanSize(uint64_t{1} << shift);  // "1.0K" .. "1.0E"
    ASSERT_EQ(printed.substr(0, 4), "1.0" + printed.substr(3, 1)) << printed;
    auto back = ParseSize("1" + printed.substr(3));
    ASSERT_TRUE(back.ok()) << printed << ": " << back.status().ToString();
    EXPECT_EQ(*back, uint64_t{1} << shift) << printed;
  }
  auto st = ParseSize("12X").status();
  EXPECT_NE(st.message().find("K, M, G, T, P, E"), std::string::npos) << st.ToString();
}

TEST(ParseCpuList, Ranges) {
  EXPECT_EQ(*ParseCpuList("0-2,5"), (std::vector<int>{0, 1, 2, 5}));
  EXPECT_FALSE(ParseCpuList("3-1").ok());
  EXPECT_FALSE(ParseCpuList("1,,2").ok());
  EXPECT_FALSE(ParseCpuList("").ok());
}

}  // namespace nestor
