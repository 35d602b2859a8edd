#include "volume/extent_map.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace nestor::volume {
namespace {

TEST(ExtentMap, MergesContiguousRuns) {
  ExtentMap m;
  m.Map(0, 100, 1);
  m.Map(1, 101, 1);
  m.Map(3, 103, 1);
  EXPECT_EQ(m.extent_count(), 2u);
  m.Map(2, 102, 1);  // fills the gap: one extent
  EXPECT_EQ(m.extent_count(), 1u);
  m.Map(4, 500, 2);  // virtually adjacent, physically not: separate
  EXPECT_EQ(m.extent_count(), 2u);
  uint64_t p, run;
  ASSERT_TRUE(m.Lookup(2, &p, &run));
  EXPECT_EQ(p, 102u);
  EXPECT_EQ(run, 2u);
  ASSERT_FALSE(m.Lookup(6, &p, &run));
  EXPECT_EQ(run, UINT64_MAX);
  EXPECT_EQ(m.mapped_clusters(), 6u);
  EXPECT_EQ(m.mapped_end(), 6u);
}

TEST(ExtentMap, UnmapSplitsAndReportsFreed) {
  ExtentMap m;
  m.Map(10, 0, 10);
  std::vector<Extent> freed;
  m.Unmap(12, 3, &freed);
  ASSERT_EQ(freed.size(), 1u);
  EXPECT_EQ(freed[0].p, 2u);
  EXPECT_EQ(freed[0].n, 3u);
  EXPECT_EQ(m.extent_count(), 2u);
  uint64_t p, run;
  ASSERT_FALSE(m.Lookup(13, &p, &run));
  EXPECT_EQ(run, 2u);  // next extent starts at 15
  ASSERT_TRUE(m.Lookup(15, &p, &run));
  EXPECT_EQ(p, 5u);
  EXPECT_EQ(run, 5u);
}

// Against a flat reference map under random maps and unmaps.
TEST(ExtentMap, MatchesReferenceModel) {
  std::mt19937_64 rng(7);
  ExtentMap m;
  std::map<uint64_t, uint64_t> ref;  // v -> p
  uint64_t next_p = 0;
  for (int i = 0; i < 20000; ++i) {
    uint64_t v = rng() % 512;
    uint64_t n = 1 + rng() % 8;
    if (rng() % 3 != 0) {
      bool hole = true;
      for (uint64_t k = v; k < v + n; ++k) hole &= ref.count(k) == 0;
      if (!hole) continue;
      uint64_t p = (rng() % 2) ? next_p : next_p + 1;
      next_p = p + n;
      m.Map(v, p, n);
      for (uint64_t k = 0; k < n; ++k) ref[v + k] = p + k;
    } else {
      std::vector<Extent> freed;
      m.Unmap(v, n, &freed);
      uint64_t freed_n = 0;
      for (const auto& e : freed) {
        for (uint64_t k = 0; k < e.n; ++k) ASSERT_EQ(ref.at(e.v + k), e.p + k);
        freed_n += e.n;
      }
      uint64_t want = 0;
      for (uint64_t k = v; k < v + n; ++k) want += ref.erase(k);
      ASSERT_EQ(freed_n, want);
    }
  }
  EXPECT_EQ(m.mapped_clusters(), ref.size());
  for (uint64_t k = 0; k < 520; ++k) {
    uint64_t p, run;
    bool mapped = m.Lookup(k, &p, &run);
    ASSERT_EQ(mapped, ref.count(k) == 1) << k;
    if (mapped) {
      ASSERT_EQ(p, ref[k]);
    }
  }
}

}  // namespace
}  // namespace nestor::volume
