// Log-linear latency histogram: values 0..15 exactly, then every power-of-two
// range [2^k, 2^(k+1)) (k = 4..63) split into 16 equal sub-buckets, so a
// bucket is at most 1/16 (6.25%) of its values wide; 976 buckets in all.
//
// Histogram is written by one thread (Record: relaxed loads and stores, no
// read-modify-write) and read by any (Collect): a reader may see a record
// half-applied (count without its bucket), never a torn value.
// HistogramData is a plain copy that readers merge and query.
//
// Thread: Histogram::Record single writer; Collect any. HistogramData: not
// shared. Errors: none.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <vector>

namespace nestor {

class HistogramData;

class Histogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr int kSub = 1 << kSubBits;                   // 16
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;  // 976

  static int BucketOf(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    int msb = 63 - std::countl_zero(v);
    int shift = msb - kSubBits;
    return (shift + 1) * kSub + static_cast<int>((v >> shift) & (kSub - 1));
  }
  // Smallest and largest value of bucket b.
  static uint64_t BucketLow(int b) {
    if (b < kSub) return static_cast<uint64_t>(b);
    int shift = b / kSub - 1;
    return static_cast<uint64_t>(kSub + b % kSub) << shift;
  }
  static uint64_t BucketHigh(int b) {
    if (b < kSub) return static_cast<uint64_t>(b);
    int shift = b / kSub - 1;
    return BucketLow(b) + ((uint64_t{1} << shift) - 1);
  }

  // Single writer.
  void Record(uint64_t v) {
    Bump(buckets_[BucketOf(v)], 1);
    Bump(count_, 1);
    Bump(sum_, v);
    if (v > max_.load(std::memory_order_relaxed)) max_.store(v, std::memory_order_relaxed);
  }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

  // Any thread: adds this histogram's current contents to *out.
  void Collect(HistogramData* out) const;

 private:
  static void Bump(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_{0};
  std::atomic<uint64_t> buckets_[kBuckets] = {};
};

// A plain (unshared) histogram: merged copies, percentiles.
class HistogramData {
 public:
  HistogramData() : buckets_(Histogram::kBuckets, 0) {}

  void Record(uint64_t v, uint64_t n = 1);
  void Merge(const HistogramData& o);

  uint64_t count() const { return count_; }
  uint64_t sum() const { return sum_; }
  uint64_t max() const { return max_; }
  uint64_t mean() const { return count_ ? sum_ / count_ : 0; }
  // The value at quantile q (0 < q <= 1): the midpoint of the bucket holding
  // the ceil(q * count)-th smallest value (clamped to max); 0 when empty.
  // Within half a bucket width (<= 1/32 of the value) of the exact sample.
  uint64_t Percentile(double q) const;
  const std::vector<uint64_t>& buckets() const { return buckets_; }

 private:
  friend class Histogram;
  uint64_t count_ = 0, sum_ = 0, max_ = 0;
  std::vector<uint64_t> buckets_;
};

}  // namespace nestor
