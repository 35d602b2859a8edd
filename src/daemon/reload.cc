#include "daemon/reload.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <functional>

namespace nestor::daemon {
namespace {

// A setting that only a restart changes, shown as text for the log.
struct Fixed {
  const char* flag;
  std::function<std::string(const Options&)> show;
};

std::string Join(const std::vector<int>& v) { return fmt::format("{}", fmt::join(v, ",")); }

const std::vector<Fixed>& FixedSettings() {
  static const std::vector<Fixed> fixed = {
      {"--socket-dir", [](const Options& o) { return o.socket_dir; }},
      {"--pool", [](const Options& o) { return o.pool; }},
      {"--export-all", [](const Options& o) { return std::string(o.export_all ? "on" : "off"); }},
      {"--pool-queues", [](const Options& o) { return std::to_string(o.pool_queues); }},
      {"--commit-ms", [](const Options& o) { return std::to_string(o.commit_ms); }},
      {"--control-socket", [](const Options& o) { return o.control_socket; }},
      {"--metrics-port", [](const Options& o) { return std::to_string(o.metrics_port); }},
      {"--reactors", [](const Options& o) { return std::to_string(o.reactors); }},
      {"--cpus", [](const Options& o) { return Join(o.cpus); }},
      {"--poll-mode", [](const Options& o) { return std::string(reactor::PollModeName(o.mode)); }},
      {"--idle-us", [](const Options& o) { return std::to_string(o.idle_us); }},
      {"--queue-stop-timeout-ms", [](const Options& o) { return std::to_string(o.queue_stop_timeout_ms); }},
      {"--journal-dir", [](const Options& o) { return o.journal_dir.empty() ? std::string("none") : o.journal_dir; }},
      {"--ceph-conf", [](const Options& o) { return o.ceph_conf; }},
      {"--ceph-id", [](const Options& o) { return o.ceph_id; }},
      {"--ceph-op-timeout", [](const Options& o) { return std::to_string(o.ceph_op_timeout_s); }},
  };
  return fixed;
}

const VolumeSpec* FindVolume(const Options& o, const std::string& name) {
  for (const VolumeSpec& v : o.volumes) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

void PlanVolumes(const Options& running, const Options& fresh, ReloadPlan* plan) {
  for (const VolumeSpec& now : running.volumes) {
    const VolumeSpec* next = FindVolume(fresh, now.name);
    if (next == nullptr) {
      plan->needs_restart.push_back("--volume " + now.name + " (removed; `nestorctl export delete` ends an export)");
      continue;
    }
    VolumeSpec same_qos = *next;
    same_qos.qos = now.qos;
    if (!(same_qos == now)) {
      plan->needs_restart.push_back("--volume " + now.name +
                                    " (only read_iops=, write_iops=, read_bps=, write_bps= change on reload)");
    }
    if (!(next->qos == now.qos)) plan->qos.emplace_back(now.name, next->qos);
  }
  for (const VolumeSpec& next : fresh.volumes) {
    if (FindVolume(running, next.name) == nullptr) {
      plan->needs_restart.push_back("--volume " + next.name + " (added; `nestorctl export create` adds an export)");
    }
  }
}

}  // namespace

ReloadPlan PlanReload(const Options& running, const Options& fresh) {
  ReloadPlan plan;
  if (fresh.log_level != running.log_level) plan.log_level = fresh.log_level;
  if (fresh.log_json != running.log_json) plan.log_json = fresh.log_json;
  for (const Fixed& f : FixedSettings()) {
    std::string was = f.show(running), now = f.show(fresh);
    if (was != now) plan.needs_restart.push_back(fmt::format("{} ({} -> {})", f.flag, was, now));
  }
  PlanVolumes(running, fresh, &plan);
  return plan;
}

}  // namespace nestor::daemon
