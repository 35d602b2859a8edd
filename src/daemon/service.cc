#include "daemon/service.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstdint>

#include "base/log.h"

namespace nestor::daemon {
namespace {

void Send(const std::string& message) {
  int r = sd_notify(0, message.c_str());
  if (r < 0) NLOG_DEBUG("sd_notify: {}", r);
}

}  // namespace

void NotifyReady(const std::string& status) { Send("READY=1\nSTATUS=" + status); }

void NotifyReloading() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
  Send("RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=" + std::to_string(usec));
}

void NotifyStopping() { Send("STOPPING=1\nSTATUS=draining the queues and stopping"); }

void NotifyStatus(const std::string& status) { Send("STATUS=" + status); }

std::chrono::milliseconds WatchdogInterval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(usec / 2000 > 0 ? usec / 2000 : 1);
}

void NotifyWatchdog() { Send("WATCHDOG=1"); }

}  // namespace nestor::daemon
