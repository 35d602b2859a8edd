// PlanReload (SIGHUP) and --config: what a reload applies, what it reports
// as needing a restart, and the config file's syntax and precedence.
#include "daemon/reload.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace nestor::daemon {
namespace {

Result<Options> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "nestord");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return ParseOptions(static_cast<int>(argv.size()), argv.data(), /*reloading=*/true);
}

Options MustParse(std::vector<std::string> args) {
  auto o = Parse(std::move(args));
  EXPECT_TRUE(o.ok()) << o.status().message();
  return o.ok() ? *o : Options{};
}

class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    char tmpl[] = "/tmp/nestord-conf-XXXXXX";
    int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Reload, NothingChanged) {
  Options o = MustParse({"--socket-dir", "/tmp/x", "--volume", "a,size=1M,read_iops=10"});
  ReloadPlan plan = PlanReload(o, o);
  EXPECT_FALSE(plan.log_level.has_value());
  EXPECT_FALSE(plan.log_json.has_value());
  EXPECT_TRUE(plan.qos.empty());
  EXPECT_TRUE(plan.needs_restart.empty());
}

TEST(Reload, LogAndQosApply) {
  Options was = MustParse({"--socket-dir", "/tmp/x", "--volume", "a,size=1M,read_iops=10", "--volume", "b,size=1M"});
  Options now = MustParse({"--socket-dir", "/tmp/x", "--volume", "a,size=1M,read_iops=20,write_bps=1M", "--volume",
                           "b,size=1M", "--log-level", "debug", "--log-format", "json"});
  ReloadPlan plan = PlanReload(was, now);
  ASSERT_TRUE(plan.log_level.has_value());
  EXPECT_EQ(*plan.log_level, LogLevel::kDebug);
  EXPECT_EQ(plan.log_json, std::optional<bool>(true));
  ASSERT_EQ(plan.qos.size(), 1u);  // only the volume whose limits changed
  EXPECT_EQ(plan.qos[0].first, "a");
  EXPECT_EQ(plan.qos[0].second.read_iops, 20u);
  EXPECT_EQ(plan.qos[0].second.write_bps, 1u << 20);
  EXPECT_TRUE(plan.needs_restart.empty());
}

TEST(Reload, FixedSettingsAreReported) {
  Options was = MustParse({"--socket-dir", "/tmp/x", "--volume", "a,size=1M", "--volume", "b,size=1M"});
  Options now = MustParse(
      {"--socket-dir", "/tmp/y", "--reactors", "2", "--volume", "a,size=2M,read_iops=5", "--volume", "c,size=1M"});
  ReloadPlan plan = PlanReload(was, now);
  std::string all;
  for (const std::string& s : plan.needs_restart) all += s + "\n";
  EXPECT_NE(all.find("--socket-dir (/tmp/x -> /tmp/y)"), std::string::npos) << all;
  EXPECT_NE(all.find("--reactors (1 -> 2)"), std::string::npos) << all;
  EXPECT_NE(all.find("--volume a (only read_iops="), std::string::npos) << all;  // the size changed
  EXPECT_NE(all.find("--volume b (removed"), std::string::npos) << all;
  EXPECT_NE(all.find("--volume c (added"), std::string::npos) << all;
  EXPECT_NE(all.find("--control-socket (/tmp/x/control.ctl -> /tmp/y/control.ctl)"), std::string::npos) << all;
  EXPECT_EQ(plan.needs_restart.size(), 6u) << all;
  ASSERT_EQ(plan.qos.size(), 1u);  // a's limits still apply
  EXPECT_EQ(plan.qos[0].second.read_iops, 5u);
}

TEST(Config, FileAndCommandLine) {
  ConfigFile f(
      "# nestord.conf\n"
      "socket-dir = \"/run/nestor-test\"\n"
      "volume = [\"a,size=1M\", \"b,size=2M,read_iops=100\"]\n"
      "reactors = 2\n"
      "log-level = \"warn\"\n"
      "export-all = true\n"
      "pool = \"/var/lib/nestor/pool\"\n");
  Options o = MustParse({"--config", f.path(), "--reactors", "1"});
  EXPECT_EQ(o.config_file, f.path());
  EXPECT_EQ(o.socket_dir, "/run/nestor-test");
  ASSERT_EQ(o.volumes.size(), 2u);
  EXPECT_EQ(o.volumes[1].qos.read_iops, 100u);
  EXPECT_EQ(o.reactors, 1);  // the command line wins
  EXPECT_EQ(o.log_level, LogLevel::kWarn);
  EXPECT_TRUE(o.export_all);
}

TEST(Config, ErrorsNameTheProblem) {
  auto missing = Parse({"--config", "/nonexistent/nestord.conf"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/nestord.conf"), std::string::npos)
      << missing.status().message();
  ConfigFile unknown("socket-dir = \"/tmp/x\"\nvolume = [\"a,size=1M\"]\nreactor = 2\n");
  auto u = Parse({"--config", unknown.path()});
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.status().message().find("reactor"), std::string::npos) << u.status().message();
  // CLI11 would keep the first of two lines and skip the other.
  for (const char* key : {"volume = [\"b,size=1M\"]", "log-level = \"debug\""}) {
    ConfigFile twice(std::string("socket-dir = \"/tmp/x\"\nvolume = [\"a,size=1M\"]\nlog-level = \"warn\"\n") +
                     "reactors = 1\n" + key + "\n");
    auto t = Parse({"--config", twice.path()});
    ASSERT_FALSE(t.ok()) << key;
    EXPECT_NE(t.status().message().find("is set twice"), std::string::npos) << t.status().message();
  }
  ConfigFile garbage("socket-dir = \"/tmp/x\"\nvolume = [\"a,size=1M\"]\nthis is not an option\n");
  auto g = Parse({"--config", garbage.path()});
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("--config " + garbage.path()), std::string::npos) << g.status().message();
  ConfigFile bad_volume("socket-dir = \"/tmp/x\"\nvolume = [\"a,size=1Q\"]\n");
  auto b = Parse({"--config", bad_volume.path()});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("--volume a,size=1Q"), std::string::npos) << b.status().message();
}

}  // namespace
}  // namespace nestor::daemon
