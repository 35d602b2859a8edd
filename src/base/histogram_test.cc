#include "base/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>

namespace nestor {
namespace {

TEST(Histogram, BucketsCoverEveryValueContiguously) {
  EXPECT_EQ(Histogram::BucketOf(0), 0);
  EXPECT_EQ(Histogram::BucketOf(15), 15);
  EXPECT_EQ(Histogram::BucketOf(16), 16);
  EXPECT_EQ(Histogram::BucketOf(31), 31);
  EXPECT_EQ(Histogram::BucketOf(32), 32);
  EXPECT_EQ(Histogram::BucketOf(33), 32);
  EXPECT_EQ(Histogram::BucketOf(UINT64_MAX), Histogram::kBuckets - 1);
  for (int b = 0; b < Histogram::kBuckets; ++b) {
    uint64_t lo = Histogram::BucketLow(b), hi = Histogram::BucketHigh(b);
    ASSERT_LE(lo, hi);
    EXPECT_EQ(Histogram::BucketOf(lo), b);
    EXPECT_EQ(Histogram::BucketOf(hi), b);
    if (b + 1 < Histogram::kBuckets) {
      EXPECT_EQ(Histogram::BucketLow(b + 1), hi + 1) << b;
    }
    // Width at most 1/16 of the bucket's smallest value.
    if (lo >= 16) {
      EXPECT_LE(hi - lo + 1, lo / 16) << b;
    }
  }
  EXPECT_EQ(Histogram::BucketHigh(Histogram::kBuckets - 1), UINT64_MAX);
}

// Percentiles against the exact order statistics of the samples.
void CheckAgainstSorted(std::vector<uint64_t> v) {
  Histogram h;
  for (uint64_t x : v) h.Record(x);
  HistogramData d;
  h.Collect(&d);
  std::sort(v.begin(), v.end());
  ASSERT_EQ(d.count(), v.size());
  EXPECT_EQ(d.max(), v.back());
  long double sum = 0;
  for (uint64_t x : v) sum += x;
  EXPECT_EQ(d.mean(), static_cast<uint64_t>(sum / v.size()));
  for (double q : {0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0}) {
    size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
    uint64_t exact = v[std::max<size_t>(rank, 1) - 1];
    uint64_t got = d.Percentile(q);
    // Same bucket: within half a bucket (1/32 of the value) of the exact one.
    double tol = std::max(1.0, static_cast<double>(exact) / 16.0);
    EXPECT_NEAR(static_cast<double>(got), static_cast<double>(exact), tol) << "q=" << q;
    EXPECT_EQ(Histogram::BucketOf(got), Histogram::BucketOf(exact)) << "q=" << q;
  }
}

TEST(Histogram, PercentilesMatchSortedSamplesUniform) {
  std::mt19937_64 rng(1);
  std::vector<uint64_t> v(100000);
  for (auto& x : v) x = rng() % 1'000'000;
  CheckAgainstSorted(v);
}

TEST(Histogram, PercentilesMatchSortedSamplesLogNormalWithTail) {
  std::mt19937_64 rng(2);
  std::lognormal_distribution<double> ln(9.0, 1.0);  // ~8 us median
  std::vector<uint64_t> v(200000);
  for (auto& x : v) x = static_cast<uint64_t>(ln(rng));
  for (int i = 0; i < 300; ++i) v[i] = 50'000'000 + i;  // a 0.15 % tail at 50 ms
  CheckAgainstSorted(v);
}

TEST(Histogram, SmallValuesAreExact) {
  std::vector<uint64_t> v;
  for (uint64_t i = 0; i < 32; ++i) v.push_back(i);
  Histogram h;
  for (uint64_t x : v) h.Record(x);
  HistogramData d;
  h.Collect(&d);
  EXPECT_EQ(d.Percentile(0.5), 15u);
  EXPECT_EQ(d.Percentile(1.0), 31u);
}

TEST(Histogram, EmptyAndMerge) {
  HistogramData d;
  EXPECT_EQ(d.Percentile(0.5), 0u);
  EXPECT_EQ(d.mean(), 0u);
  Histogram a, b;
  for (int i = 0; i < 1000; ++i) a.Record(1000);
  for (int i = 0; i < 1000; ++i) b.Record(100000);
  HistogramData m;
  a.Collect(&m);
  b.Collect(&m);
  EXPECT_EQ(m.count(), 2000u);
  EXPECT_NEAR(m.Percentile(0.25), 1000, 1000 / 32.0);
  EXPECT_NEAR(m.Percentile(0.75), 100000, 100000 / 32.0);
  EXPECT_EQ(m.mean(), 50500u);
  HistogramData m2;
  m2.Merge(m);
  m2.Merge(m);
  EXPECT_EQ(m2.count(), 4000u);
  EXPECT_EQ(m2.Percentile(0.75), m.Percentile(0.75));
}

TEST(Histogram, ConcurrentReaderSeesMonotonicCounts) {
  Histogram h;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t i = 0; i < 2'000'000; ++i) h.Record(i % 5000);
    stop = true;
  });
  uint64_t last = 0;
  while (!stop.load()) {
    HistogramData d;
    h.Collect(&d);
    EXPECT_GE(d.count(), last);
    last = d.count();
    (void)d.Percentile(0.99);
  }
  writer.join();
  HistogramData d;
  h.Collect(&d);
  EXPECT_EQ(d.count(), 2'000'000u);
}

}  // namespace
}  // namespace nestor
