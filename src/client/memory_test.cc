#include "client/memory.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace nestor::client {
namespace {

TEST(SharedRegion, CreateMapsAndContains) {
  auto r = SharedRegion::Create(10000, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size() % 4096, 0u);
  EXPECT_GE(r->size(), 10000u);
  EXPECT_GE(r->fd(), 0);
  std::memset(r->base(), 0xab, r->size());
  EXPECT_TRUE(r->Contains(r->base(), r->size()));
  EXPECT_TRUE(r->Contains(r->base() + 10, 0));
  EXPECT_FALSE(r->Contains(r->base() + 1, r->size()));
  EXPECT_FALSE(r->Contains(r->base() - 1, 1));
  EXPECT_FALSE(r->Contains(r->base() + r->size(), 1));
}

TEST(BufferAllocator, AlignsReusesAndCoalesces) {
  std::vector<uint8_t> mem(1 << 20);
  BufferAllocator a;
  a.Init(mem.data(), mem.size());
  const size_t total = a.free_bytes();
  void* p = a.Alloc(100, 4096);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
  void* q = a.Alloc(5000, 64);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(a.Alloc(0, 64), nullptr);
  EXPECT_EQ(a.Alloc(64, 3), nullptr);
  EXPECT_EQ(a.Alloc(2 << 20, 64), nullptr);
  EXPECT_TRUE(a.Free(p));
  EXPECT_FALSE(a.Free(p));  // double free detected
  EXPECT_TRUE(a.Free(q));
  EXPECT_EQ(a.free_bytes(), total);
  void* all = a.Alloc(total, 64);  // fully coalesced again
  EXPECT_NE(all, nullptr);
}

TEST(BufferAllocator, RandomChurnKeepsAccounting) {
  std::vector<uint8_t> mem(4 << 20);
  BufferAllocator a;
  a.Init(mem.data(), mem.size());
  const size_t total = a.free_bytes();
  std::mt19937 rng(7);
  std::vector<std::pair<uint8_t*, size_t>> live;
  for (int i = 0; i < 5000; ++i) {
    if (live.empty() || rng() % 2) {
      size_t len = 1 + rng() % 40000;
      auto* p = static_cast<uint8_t*>(a.Alloc(len, size_t{1} << (rng() % 13)));
      if (!p) continue;
      for (auto& [o, l] : live) ASSERT_TRUE(p + len <= o || o + l <= p) << "overlap";
      live.emplace_back(p, len);
    } else {
      size_t k = rng() % live.size();
      ASSERT_TRUE(a.Free(live[k].first));
      live.erase(live.begin() + static_cast<long>(k));
    }
  }
  for (auto& [p, l] : live) ASSERT_TRUE(a.Free(p));
  EXPECT_EQ(a.free_bytes(), total);
}

}  // namespace
}  // namespace nestor::client
