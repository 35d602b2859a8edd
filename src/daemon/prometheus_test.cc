#include "daemon/prometheus.h"

#include <gtest/gtest.h>

namespace nestor::daemon {
namespace {

TEST(Prometheus, SecondsHistogram) {
  HistogramData h;
  h.Record(900);             // 0.9 us
  h.Record(3'000, 2);        // 3 us
  h.Record(2'000'000);       // 2 ms
  h.Record(20'000'000'000);  // 20 s: only +Inf
  std::string out;
  AppendSecondsHistogram(&out, "nestor_x_seconds", R"(volume="db")", h);
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"1e-06\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"2.5e-06\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"5e-06\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"0.001\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"0.0025\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"10\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_bucket{volume=\"db\",le=\"+Inf\"} 5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_count{volume=\"db\"} 5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("nestor_x_seconds_sum{volume=\"db\"} 20.002006900\n"), std::string::npos) << out;
}

TEST(Prometheus, EmptyAndUnlabelled) {
  std::string out;
  AppendSecondsHistogram(&out, "h", "", HistogramData());
  EXPECT_NE(out.find("h_bucket{le=\"1e-06\"} 0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_count{} 0\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace nestor::daemon
