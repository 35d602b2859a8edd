// SIGHUP: what a running nestord can change without a restart. The options
// are parsed again (the same command line, --config read again) and
// compared with the ones it runs with; PlanReload says what to apply and
// what needs a restart (docs/usage.md, "Running under systemd").
//
// Reloadable: --log-level, --log-format, and the QoS limits
// (read_iops=, write_iops=, read_bps=, write_bps=) of a --volume that
// stays. A limit is applied only where the file changed it, so a limit set
// at runtime by `nestorctl qos set` survives an unrelated reload.
// Everything else is reported, not applied.
//
// Thread: the main (signal) thread. Errors: none; the plan lists what it
// cannot apply.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/log.h"
#include "daemon/options.h"
#include "virtio/qos.h"

namespace nestor::daemon {

struct ReloadPlan {
  std::optional<LogLevel> log_level;  // set when it changed
  std::optional<bool> log_json;
  std::vector<std::pair<std::string, virtio::QosLimits>> qos;  // --volume NAME's new limits
  // One entry per setting that changed but needs a restart, e.g.
  // "--reactors (1 -> 2)"; the running value stays.
  std::vector<std::string> needs_restart;
};

ReloadPlan PlanReload(const Options& running, const Options& fresh);

}  // namespace nestor::daemon
