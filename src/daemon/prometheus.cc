#include "daemon/prometheus.h"

#include <fmt/format.h>

#include <cstdint>

namespace nestor::daemon {

void AppendSecondsHistogram(std::string* out, std::string_view name, std::string_view labels, const HistogramData& h) {
  const std::string sep = labels.empty() ? "" : ",";
  const std::vector<uint64_t>& buckets = h.buckets();
  uint64_t cumulative = 0;
  size_t b = 0;
  for (double le : kLatencyBucketsSeconds) {
    const auto le_ns = static_cast<uint64_t>(le * 1e9 + 0.5);
    for (; b < buckets.size() && Histogram::BucketHigh(static_cast<int>(b)) <= le_ns; ++b) cumulative += buckets[b];
    *out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, le, cumulative);
  }
  *out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, h.count());
  *out += fmt::format("{}_sum{{{}}} {:.9f}\n", name, labels, static_cast<double>(h.sum()) / 1e9);
  *out += fmt::format("{}_count{{{}}} {}\n", name, labels, h.count());
}

}  // namespace nestor::daemon
