// Test helper: one nestord for the whole hostile suite, run as
// `timeout -k 5 120 nestord --socket-dir DIR ...` in a private temporary
// directory, stdout+stderr captured to DIR/nestord.log. `timeout` bounds
// the daemon even if the test process dies; Stop() sends SIGTERM (timeout
// forwards it) and reports nestord's exit status. The process handling is
// tests/common/child_process.h's; this adds nestord's own pid (the child
// of `timeout`) for Alive() and FdCount().
//
// Thread: the test's main thread (Alive/FdCount are safe from any thread).
// Errors: Start returns false and fills *err.
#pragma once

#include <dirent.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../common/child_process.h"

namespace nestor::hostile {

using nestor::testing::ChildProcess;

class Daemon {
 public:
  ~Daemon() { Stop(nullptr); }

  bool Start(const std::string& bin, const std::vector<std::string>& args, const std::vector<std::string>& volumes,
             std::string* err) {
    dir_ = nestor::testing::TempDir("nestor-hostile");
    if (!dir_.ok()) {
      *err = "mkdtemp failed";
      return false;
    }
    ChildProcess::Options o;
    o.argv = {bin, "--socket-dir", dir_.path()};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.log_path = dir_.path() + "/nestord.log";
    o.name = "nestord";
    o.timeout_s = 120;
    if (!proc_.Start(std::move(o), err)) return false;
    std::vector<std::string> paths;
    for (const std::string& v : volumes) paths.push_back(Socket(v));
    return proc_.WaitForPaths(paths, 10000, /*sockets_only=*/true, err, [this] {
      if (nestord_pid_ <= 0) nestord_pid_ = FindChild(proc_.pid());
      return nestord_pid_ > 0;
    });
  }

  // Why nestord is gone ("" while it runs).
  std::string death() const { return proc_.status() == -1 ? "" : Describe(proc_.status()); }

  std::string Socket(const std::string& volume) const { return dir_.path() + "/" + volume + ".sock"; }
  // nestord's default control socket (--socket-dir DIR: DIR/control.ctl).
  std::string ControlSocket() const { return dir_.path() + "/control.ctl"; }
  pid_t nestord_pid() const { return nestord_pid_; }

  // nestord (and the timeout wrapping it) still running.
  bool Alive() {
    if (!proc_.Running()) return false;
    return nestord_pid_ > 0 && kill(nestord_pid_, 0) == 0 && !IsZombie(nestord_pid_);
  }

  // Open file descriptors of nestord, or -1.
  int FdCount() const {
    if (nestord_pid_ <= 0) return -1;
    std::string path = "/proc/" + std::to_string(nestord_pid_) + "/fd";
    DIR* d = opendir(path.c_str());
    if (d == nullptr) return -1;
    int n = 0;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
    return n;
  }

  // SIGTERM, wait up to 15 s (then SIGKILL). Returns true if nestord exited
  // with status 0; *how describes the exit.
  bool Stop(std::string* how) {
    if (!proc_.active()) {
      if (how) *how = "already gone: " + death();
      return false;
    }
    if (!proc_.Stop(SIGTERM, 15000)) {  // timeout forwards SIGTERM to nestord
      if (nestord_pid_ > 0) kill(nestord_pid_, SIGKILL);
      if (how) *how = "did not exit within 15 s of SIGTERM (killed)";
      return false;
    }
    if (how) *how = Describe(proc_.status());
    return proc_.ExitedZero();
  }

  std::string Log() const { return nestor::testing::ReadWholeFile(dir_.path() + "/nestord.log"); }
  size_t LogSize() const { return Log().size(); }

 private:
  // `timeout` re-raises the signal that killed nestord (or exits 128+N).
  static std::string Describe(int status) {
    if (WIFEXITED(status)) {
      int code = WEXITSTATUS(status);
      if (code > 128 && code < 160) return "nestord " + ChildProcess::KilledBy(code - 128);
      if (code == 124) return "nestord ran past the 120 s timeout";
    }
    return "nestord " + ChildProcess::Describe(status);
  }
  static bool IsZombie(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(f, line);
    size_t p = line.rfind(')');
    return p == std::string::npos || p + 2 >= line.size() || line[p + 2] == 'Z' || line[p + 2] == 'X';
  }
  // The (single) child process of `parent`.
  static pid_t FindChild(pid_t parent) {
    DIR* d = opendir("/proc");
    if (d == nullptr) return -1;
    pid_t found = -1;
    while (dirent* e = readdir(d)) {
      char* end = nullptr;
      long pid = strtol(e->d_name, &end, 10);
      if (*end != '\0' || pid <= 0) continue;
      std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
      std::string line;
      std::getline(f, line);
      size_t p = line.rfind(')');
      if (p == std::string::npos) continue;
      std::istringstream rest(line.substr(p + 2));
      std::string state;
      long ppid = 0;
      rest >> state >> ppid;
      std::string comm = line.substr(line.find('(') + 1, p - line.find('(') - 1);
      if (ppid == parent && comm.rfind("nestord", 0) == 0) {
        found = static_cast<pid_t>(pid);
        break;
      }
    }
    closedir(d);
    return found;
  }

  nestor::testing::TempDir dir_;
  ChildProcess proc_;  // declared after the directory: it goes first
  pid_t nestord_pid_ = -1;
};

}  // namespace nestor::hostile
