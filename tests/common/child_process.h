// Test helper: launches one background program for a test and keeps it
// bounded. ChildProcess forks and execs an argv with stdout+stderr appended
// to a log file, bounded either by PR_SET_PDEATHSIG (it dies with the test)
// or by running under `timeout -k K T` (its own process group); waits for
// socket paths to appear (noticing an early exit, log in the error);
// Running/Stop/Kill/WaitExit/Log; the destructor kills and reaps it.
// TempDir is a private temporary directory removed by its destructor.
// The launchers of nestord (tests/daemon/nestord_process.h,
// tests/hostile/daemon.h) and qemu-storage-daemon
// (tests/client/qsd_process.h) are thin wrappers on these.
//
// Thread: the thread that called Start owns the instance (PR_SET_PDEATHSIG
// fires when that thread exits); Log() is safe from any thread.
// Errors: Start and WaitForPaths return false and fill *err (with the log
// when the program has run); the others report through their result.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace nestor::testing {

// The whole of a file, or "" if it cannot be read.
inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A fresh directory $TMPDIR/<prefix>.XXXXXX (default /tmp), removed with
// its contents by the destructor. A default-constructed TempDir owns none.
class TempDir {
 public:
  TempDir() = default;
  explicit TempDir(const std::string& prefix) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/" + prefix + ".XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, std::string())) {}
  TempDir& operator=(TempDir&& o) noexcept {
    if (this != &o) {
      Remove();
      path_ = std::exchange(o.path_, std::string());
    }
    return *this;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { Remove(); }

  // "" if mkdtemp failed (or none is owned).
  const std::string& path() const { return path_; }
  bool ok() const { return !path_.empty(); }

 private:
  void Remove() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    path_.clear();
  }
  std::string path_;
};

class ChildProcess {
 public:
  struct Options {
    std::vector<std::string> argv;  // argv[0] is looked up in PATH
    std::string log_path;           // stdout and stderr are appended here
    std::string name;               // for messages; default argv[0]'s basename
    // > 0: run as `timeout -k kill_after_s timeout_s argv...`; `timeout`
    // leads its own process group, so the program outlives no test by more
    // than timeout_s + kill_after_s seconds.
    int timeout_s = 0;
    int kill_after_s = 5;
    // PR_SET_PDEATHSIG(SIGKILL): the program dies with the starting thread.
    bool die_with_parent = false;
  };

  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Kill(); }

  // Forks and execs (a running instance is killed first).
  bool Start(Options opts, std::string* err) {
    Kill();
    status_ = -1;
    opts_ = std::move(opts);
    if (opts_.argv.empty()) {
      *err = "empty argv";
      return false;
    }
    if (opts_.name.empty()) opts_.name = std::filesystem::path(opts_.argv[0]).filename().string();
    std::vector<std::string> argv_s;
    if (opts_.timeout_s > 0) {
      argv_s = {"timeout", "-k", std::to_string(opts_.kill_after_s), std::to_string(opts_.timeout_s)};
    }
    argv_s.insert(argv_s.end(), opts_.argv.begin(), opts_.argv.end());
    std::vector<char*> argv;  // built before fork: the child only execs
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) {
      *err = "fork failed: " + std::string(strerror(errno));
      return false;
    }
    if (pid_ == 0) {
      if (opts_.die_with_parent) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);  // the parent died before prctl
      }
      int fd = open(opts_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execvp(argv[0], argv.data());
      _exit(127);
    }
    return true;
  }

  // The forked process (`timeout` when wrapped), -1 when none runs.
  pid_t pid() const { return pid_; }
  // Started and not yet reaped (it may have exited unobserved).
  bool active() const { return pid_ > 0; }
  // Wait status of the last exit observed, -1 if none.
  int status() const { return status_; }
  bool ExitedZero() const { return status_ != -1 && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }
  const std::string& name() const { return opts_.name; }

  // Whether it still runs; reaps it (recording status()) if it exited.
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = status;
      return false;
    }
    return true;
  }

  // Polls (<= timeout_ms) until every path exists (as a socket if
  // sockets_only) and `ready` (if given) holds. False, with the log in
  // *err, if the program exits first or time runs out (it keeps running).
  bool WaitForPaths(const std::vector<std::string>& paths, int timeout_ms, bool sockets_only, std::string* err,
                    const std::function<bool()>& ready = {}) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string missing;
    for (;;) {
      missing.clear();
      for (const std::string& p : paths) {
        struct stat st {};
        if (stat(p.c_str(), &st) != 0 || (sockets_only && !S_ISSOCK(st.st_mode))) missing += " " + p;
      }
      if (missing.empty() && (!ready || ready())) return true;
      if (!Running()) {
        *err = opts_.name + " exited early (" + Describe(status_) + "):\n" + Log();
        return false;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    *err = opts_.name + ": not ready within " + std::to_string(timeout_ms) + " ms" +
           (missing.empty() ? std::string() : "; missing" + missing) + ":\n" + Log();
    return false;
  }

  // Sends sig (to `timeout`'s whole process group too if whole_group) and
  // waits up to wait_ms for the exit, then Kill(). True if it exited in
  // time (or had already exited); status() tells how.
  bool Stop(int sig, int wait_ms, bool whole_group = false) {
    if (pid_ <= 0) return true;
    if (whole_group && opts_.timeout_s > 0) kill(-pid_, sig);
    kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (Running()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        Kill();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  // SIGKILL (the process group too under `timeout`) and reap.
  void Kill() {
    if (pid_ <= 0) return;
    if (opts_.timeout_s > 0) kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status = 0;
    if (waitpid(pid_, &status, 0) == pid_) status_ = status;
    pid_ = -1;
  }

  // Waits up to timeout_ms for it to exit on its own: true with its exit
  // code (128 + signal if killed) in *code, false if still running or
  // never started.
  bool WaitExit(int timeout_ms, int* code) {
    for (int waited = 0; Running(); waited += 10) {
      if (waited >= timeout_ms) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (status_ == -1) return false;
    *code = WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
    return true;
  }

  std::string Log() const { return ReadWholeFile(opts_.log_path); }

  // "exited with status N" / "killed by signal N (NAME)" for a wait status.
  static std::string Describe(int status) {
    if (status == -1) return "not started";
    if (WIFSIGNALED(status)) return KilledBy(WTERMSIG(status));
    if (!WIFEXITED(status)) return "unknown wait status";
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  }
  static std::string KilledBy(int sig) {
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }

 private:
  Options opts_;
  pid_t pid_ = -1;
  int status_ = -1;
};

}  // namespace nestor::testing
