// Prometheus text exposition helpers for nestord's /metrics (metrics.h,
// Controller::PrometheusText): histograms in seconds from nestor's
// nanosecond latency histograms (base/histogram.h).
//
// Thread: any (pure functions). Errors: none.
#pragma once

#include <string>
#include <string_view>

#include "base/histogram.h"

namespace nestor::daemon {

// The upper bounds (`le`, seconds) of every latency histogram nestord
// exports, 1 us to 10 s; +Inf is added.
inline constexpr double kLatencyBucketsSeconds[] = {1e-6, 2.5e-6, 5e-6,   1e-5, 2.5e-5, 5e-5,  1e-4, 2.5e-4,
                                                    5e-4, 1e-3,   2.5e-3, 5e-3, 0.01,   0.025, 0.05, 0.1,
                                                    0.25, 0.5,    1,      2.5,  5,      10};

// Appends the sample lines of histogram `name` (no HELP/TYPE): cumulative
// NAME_bucket{LABELS,le="..."} for each bound and +Inf, NAME_sum (seconds)
// and NAME_count. `labels` is `key="value",...` or empty. A bucket of `h`
// (at most 1/16 of its values wide) counts under the first bound its upper
// end fits below, so a count may land one bound late, never early.
void AppendSecondsHistogram(std::string* out, std::string_view name, std::string_view labels, const HistogramData& h);

}  // namespace nestor::daemon
