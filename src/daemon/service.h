// The service manager's side of nestord: readiness, reload and stop
// notifications (sd_notify(3), systemd's Type=notify) and the watchdog.
// Without $NOTIFY_SOCKET every call does nothing, so nestord runs the same
// under systemd, under another supervisor and by hand.
//
// Thread: the main (signal) thread. Errors: none: a notification that
// cannot be sent is logged once at debug level and otherwise ignored (the
// service manager then sees a timeout, its own clear error).
#pragma once

#include <chrono>
#include <string>

namespace nestor::daemon {

// READY=1 with a STATUS= line: every export is up (start-up, or a reload
// finished).
void NotifyReady(const std::string& status);
// RELOADING=1 (SIGHUP received), with MONOTONIC_USEC as systemd asks.
void NotifyReloading();
// STOPPING=1 (SIGTERM/SIGINT received: draining).
void NotifyStopping();
// STATUS= only (e.g. why start-up failed).
void NotifyStatus(const std::string& status);

// The interval at which WATCHDOG=1 must be sent: half of $WATCHDOG_USEC
// (when it is meant for this process), or zero when there is no watchdog.
std::chrono::milliseconds WatchdogInterval();
void NotifyWatchdog();

}  // namespace nestor::daemon
