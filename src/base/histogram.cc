#include "base/histogram.h"

#include <algorithm>
#include <cmath>

namespace nestor {

void Histogram::Collect(HistogramData* out) const {
  for (int b = 0; b < kBuckets; ++b) out->buckets_[b] += buckets_[b].load(std::memory_order_relaxed);
  out->count_ += count_.load(std::memory_order_relaxed);
  out->sum_ += sum_.load(std::memory_order_relaxed);
  out->max_ = std::max(out->max_, max_.load(std::memory_order_relaxed));
}

void HistogramData::Record(uint64_t v, uint64_t n) {
  buckets_[Histogram::BucketOf(v)] += n;
  count_ += n;
  sum_ += v * n;
  if (n) max_ = std::max(max_, v);
}

void HistogramData::Merge(const HistogramData& o) {
  for (int b = 0; b < Histogram::kBuckets; ++b) buckets_[b] += o.buckets_[b];
  count_ += o.count_;
  sum_ += o.sum_;
  max_ = std::max(max_, o.max_);
}

uint64_t HistogramData::Percentile(double q) const {
  // Concurrent collection may see counts ahead of buckets: walk the buckets'
  // own total.
  uint64_t total = 0;
  for (uint64_t c : buckets_) total += c;
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
  rank = std::clamp<uint64_t>(rank, 1, total);
  uint64_t seen = 0;
  for (int b = 0; b < Histogram::kBuckets; ++b) {
    seen += buckets_[b];
    if (seen >= rank) {
      uint64_t lo = Histogram::BucketLow(b), hi = Histogram::BucketHigh(b);
      uint64_t mid = lo + (hi - lo) / 2;
      return max_ ? std::min(mid, std::max(max_, lo)) : mid;
    }
  }
  return max_;
}

}  // namespace nestor
