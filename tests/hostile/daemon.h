// Test helper: one nestord for the whole hostile suite, run as
// `timeout -k 5 120 nestord --socket-dir DIR ...` in a private temporary
// directory, stdout+stderr captured to DIR/nestord.log. `timeout` bounds
// the daemon even if the test process dies; Stop() sends SIGTERM (timeout
// forwards it) and reports nestord's exit status.
//
// Thread: the test's main thread (Alive/FdCount are safe from any thread).
// Errors: Start returns false and fills *err.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nestor::hostile {

class Daemon {
 public:
  ~Daemon() {
    Stop(nullptr);
    if (!dir_.empty()) {
      std::string cmd = "rm -rf '" + dir_ + "'";
      int unused = system(cmd.c_str());
      (void)unused;
    }
  }

  bool Start(const std::string& bin, const std::vector<std::string>& args,
             const std::vector<std::string>& volumes, std::string* err) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nestor-hostile.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      *err = "mkdtemp failed";
      return false;
    }
    dir_ = tmpl;
    log_ = dir_ + "/nestord.log";
    std::vector<std::string> argv_s = {"timeout", "-k", "5", "120", bin, "--socket-dir", dir_};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ < 0) {
      *err = "fork failed";
      return false;
    }
    if (pid_ == 0) {
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!TimeoutAlive()) {
        *err = "nestord exited early:\n" + Log();
        return false;
      }
      if (nestord_pid_ <= 0) nestord_pid_ = FindChild(pid_);
      bool all = nestord_pid_ > 0;
      for (const std::string& v : volumes) {
        struct stat st {};
        all = all && stat(Socket(v).c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
      }
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    *err = "nestord sockets did not appear within 10 s:\n" + Log();
    return false;
  }

  // Why nestord is gone ("" while it runs).
  std::string death() const { return death_; }

  std::string Socket(const std::string& volume) const { return dir_ + "/" + volume + ".sock"; }
  pid_t nestord_pid() const { return nestord_pid_; }

  // nestord (and the timeout wrapping it) still running.
  bool Alive() {
    if (!TimeoutAlive()) return false;
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
    if (pid_ <= 0) {
      if (how) *how = "already gone: " + death_;
      return false;
    }
    kill(pid_, SIGTERM);  // timeout forwards it to nestord
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 1500 && !exited; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!exited) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      if (nestord_pid_ > 0) kill(nestord_pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      if (how) *how = "did not exit within 15 s of SIGTERM (killed)";
      pid_ = -1;
      return false;
    }
    pid_ = -1;
    if (how) *how = Describe(status);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

  std::string Log() const {
    std::ifstream f(log_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  size_t LogSize() const { return Log().size(); }

 private:
  bool TimeoutAlive() {
    if (pid_ <= 0) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      death_ = Describe(status);
      return false;
    }
    return true;
  }
  // `timeout` re-raises the signal that killed nestord (or exits 128+N).
  static std::string Describe(int status) {
    if (WIFSIGNALED(status)) {
      int sig = WTERMSIG(status);
      return "nestord killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
    }
    if (!WIFEXITED(status)) return "unknown wait status";
    int code = WEXITSTATUS(status);
    if (code > 128 && code < 160) {
      int sig = code - 128;
      return "nestord killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
    }
    if (code == 124) return "nestord ran past the 120 s timeout";
    return "nestord exited with status " + std::to_string(code);
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

  std::string dir_;
  std::string log_;
  pid_t pid_ = -1;
  pid_t nestord_pid_ = -1;
  std::string death_;
};

}  // namespace nestor::hostile
