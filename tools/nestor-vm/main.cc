// nestor-vm: boots a function VM on nestor volumes with the low-overhead
// recipe. See docs/function-vms.md.
//
// Exit codes: QEMU's exit status (128+N if it died of signal N), 124 when
// --timeout stopped it, 127 if QEMU could not be executed, 2 for a bad
// command line or a refused configuration (overlapping CPUs, no free
// hugepages, missing socket), 1 for other start-up failures, 0 after
// --dry-run. With --clone-of, a failed clean-up turns a QEMU status of 0
// into 1; a clone that cannot be created is 1 too (nothing started).
//
// Pinning: QEMU is started under the affinity mask of --cpus (set in the
// child before exec, so every QEMU thread inherits it); once QEMU has
// created its vCPU threads (named "CPU n/TCG|KVM" thanks to
// -name ...,debug-threads=on), vCPU n is re-pinned to the single CPU
// cpus[n % len]. QEMU's other threads (main loop, vhost-user, RCU, workers)
// stay on the whole --cpus list; none of them ever runs on --reactor-cpus.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "nestor-vm/clone.h"
#include "nestor-vm/host.h"
#include "nestor-vm/net.h"
#include "nestor-vm/options.h"
#include "nestor-vm/qemu_command.h"

namespace nestor::vm {
namespace {

using Clock = std::chrono::steady_clock;

void PrintPlan(const VmOptions& o) {
  if (o.cpus.empty()) {
    std::fprintf(stderr, "nestor-vm: pinning: none (QEMU runs on any CPU)\n");
  } else {
    std::fprintf(stderr, "nestor-vm: pinning: QEMU threads on CPUs %s%s%s\n", FormatCpuList(o.cpus).c_str(),
                 o.reactor_cpus.empty() ? "" : ", reactor CPUs ",
                 o.reactor_cpus.empty() ? "" : (FormatCpuList(o.reactor_cpus) + " left to nestord").c_str());
    for (int n = 0; n < o.vcpus; ++n) {
      std::fprintf(stderr, "nestor-vm: pinning: vCPU %d -> CPU %d\n", n,
                   o.cpus[static_cast<size_t>(n) % o.cpus.size()]);
    }
  }
  std::fprintf(stderr, "nestor-vm: %zu disk%s x %d queues (%d interrupt-driven + %d poll)%s%s\n", o.sockets.size(),
               o.sockets.size() == 1 ? "" : "s", o.NumQueues(), o.vcpus, o.PollQueues(),
               o.hugepages ? ", hugepage-backed memory" : "", o.idle_poll ? ", idle=poll" : "");
  for (const std::string& line : DescribeNets(o)) std::fprintf(stderr, "nestor-vm: %s\n", line.c_str());
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// The signals nestor-vm handles itself: blocked from the start of a real
// run (before a --clone-of clone exists) and taken with sigtimedwait, so a
// SIGINT/SIGTERM/SIGHUP at any moment still ends in the clean-up.
sigset_t WatchedSignals() {
  sigset_t watched;
  sigemptyset(&watched);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&watched, s);
  return watched;
}

// A stop signal that arrived while nothing could be forwarded (0: none).
int TakePendingStopSignal() {
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  timespec zero{0, 0};
  siginfo_t info;
  int sig = sigtimedwait(&stop, &info, &zero);
  return sig > 0 ? sig : 0;
}

// Runs QEMU to its end. WATCHED is blocked in this process; OLD is the
// mask QEMU starts with.
int Launch(const VmOptions& o, const std::vector<std::string>& args, const sigset_t& watched, const sigset_t& old) {
  std::vector<char*> argv;
  for (const std::string& s : args) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);

  const pid_t self = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "nestor-vm: fork: %s\n", strerror(errno));
    return 1;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    // QEMU must not outlive a nestor-vm that was killed (SIGKILL cannot be forwarded).
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != self) _exit(1);
    if (!o.cpus.empty()) {
      Status st = SetAffinity(0, o.cpus);
      if (!st.ok()) {
        std::fprintf(stderr, "nestor-vm: %s\n", st.ToString().c_str());
        _exit(1);
      }
    }
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "nestor-vm: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  std::fprintf(stderr, "nestor-vm: QEMU pid %d%s\n", pid,
               o.cpus.empty() ? "" : (" on CPUs " + FormatCpuList(o.cpus)).c_str());

  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(o.timeout_sec);
  const auto pin_deadline = start + std::chrono::seconds(30);
  VcpuPinner pinner(pid, o.vcpus, o.cpus);
  bool pin_warned = o.cpus.empty();
  bool timed_out = false;
  Clock::time_point kill_at{};
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    auto now = Clock::now();
    if (!pin_warned) {
      pinner.Poll();
      if (pinner.Done()) {
        pin_warned = true;
      } else if (now > pin_deadline) {
        std::fprintf(stderr, "nestor-vm: warning: found %zu of %d vCPU threads after 30 s; the rest are not pinned\n",
                     pinner.pinned(), o.vcpus);
        pin_warned = true;
      }
    }
    if (o.timeout_sec > 0 && !timed_out && now >= deadline) {
      std::fprintf(stderr, "nestor-vm: --timeout %d s reached: stopping QEMU\n", o.timeout_sec);
      kill(pid, SIGTERM);
      timed_out = true;
      kill_at = now + std::chrono::seconds(5);
    }
    if (timed_out && now >= kill_at) {
      kill(pid, SIGKILL);
      kill_at = now + std::chrono::hours(1);
    }
    // Wake up every 20 ms while looking for vCPU threads, else every 200 ms.
    timespec tick{0, pin_warned ? 200'000'000L : 20'000'000L};
    siginfo_t info;
    int sig = sigtimedwait(&watched, &info, &tick);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      std::fprintf(stderr, "nestor-vm: %s: forwarding to QEMU\n", strsignal(sig));
      kill(pid, sig);
    }
  }
  int rc = ExitCodeOf(status);
  std::fprintf(stderr, "nestor-vm: QEMU exited (%s %d) after %.1f s\n", WIFSIGNALED(status) ? "signal" : "status",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
               std::chrono::duration<double>(Clock::now() - start).count());
  return timed_out ? 124 : rc;
}

int Main(int argc, char** argv) {
  auto parsed = ParseArgs(argc, argv);
  if (!parsed.ok()) {
    if (parsed.status().err() == 0) return 0;  // --help
    if (!parsed.status().message().empty()) {
      std::fprintf(stderr, "nestor-vm: %s\n", parsed.status().message().c_str());
    }
    return kExitUsage;
  }
  VmOptions o = std::move(*parsed);
  std::vector<std::string> warnings;
  Status st = Validate(&o, ProbeHost(o), &warnings);
  for (const std::string& w : warnings) std::fprintf(stderr, "nestor-vm: warning: %s\n", w.c_str());
  if (!st.ok()) {
    std::fprintf(stderr, "nestor-vm: refused: %s\n", st.message().c_str());
    return kExitUsage;
  }
  if (o.dry_run) {
    if (!o.clone_of.empty()) {
      o.sockets.insert(o.sockets.begin(), PlannedCloneSocket(o));
      std::fprintf(stderr,
                   "nestor-vm: clone: would call volume_clone %s on %s, boot with the clone as disk 0 (%s), and "
                   "when QEMU exits call export_delete%s\n",
                   CloneParams(o).dump().c_str(), o.control_socket.c_str(), o.sockets[0].c_str(),
                   o.keep ? " (and keep the clone: --keep)" : " and volume_delete");
    }
    PrintPlan(o);
    std::fputs(FormatCommand(BuildQemuArgv(o)).c_str(), stdout);
    return 0;
  }

  const sigset_t watched = WatchedSignals();
  sigset_t old;
  sigprocmask(SIG_BLOCK, &watched, &old);
  CloneLifecycle clone(o);
  if (!o.clone_of.empty()) {
    auto sock = clone.Create();
    if (!sock.ok()) {
      std::fprintf(stderr, "nestor-vm: %s\n", sock.status().message().c_str());
      if (Status rm = clone.Remove(); !rm.ok()) std::fprintf(stderr, "nestor-vm: %s\n", rm.message().c_str());
      return 1;
    }
    o.sockets.insert(o.sockets.begin(), *sock);
  }
  std::vector<std::string> args = BuildQemuArgv(o);
  PrintPlan(o);
  int rc;
  if (int sig = TakePendingStopSignal(); sig != 0) {
    std::fprintf(stderr, "nestor-vm: %s before QEMU started: not starting it\n", strsignal(sig));
    rc = 128 + sig;
  } else {
    rc = Launch(o, args, watched, old);
  }
  if (Status rm = clone.Remove(); !rm.ok()) {
    std::fprintf(stderr, "nestor-vm: clean-up failed: %s\n", rm.message().c_str());
    if (rc == 0) rc = 1;
  }
  return rc;
}

}  // namespace
}  // namespace nestor::vm

int main(int argc, char** argv) { return nestor::vm::Main(argc, argv); }
