#include "volume/allocator.h"

#include <gtest/gtest.h>

namespace nestor::volume {
namespace {

TEST(Allocator, SequentialFromHintAndFull) {
  Allocator a(130);
  uint64_t p;
  ASSERT_TRUE(a.Allocate(5, &p));
  EXPECT_EQ(p, 5u);
  ASSERT_TRUE(a.Allocate(5, &p));
  EXPECT_EQ(p, 6u);
  for (int i = 0; i < 128; ++i) ASSERT_TRUE(a.Allocate(0, &p));
  EXPECT_EQ(a.free_clusters(), 0u);
  EXPECT_FALSE(a.Allocate(0, &p));
  a.Free(64, 2);
  EXPECT_EQ(a.free_clusters(), 2u);
  ASSERT_TRUE(a.Allocate(100, &p));  // wraps around to the freed run
  EXPECT_EQ(p, 64u);
}

TEST(Allocator, MarkUsedDetectsDoubleOwnership) {
  Allocator a(64);
  EXPECT_TRUE(a.MarkUsed(0, 10));
  EXPECT_FALSE(a.MarkUsed(9, 2));
  EXPECT_FALSE(a.MarkUsed(60, 10));  // past the end
  EXPECT_TRUE(a.IsUsed(10));         // marked by the failed call
}

}  // namespace
}  // namespace nestor::volume
