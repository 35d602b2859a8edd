// Test helper: runs nestord (path from env NESTORD) in a private temporary
// directory, waits for its sockets, and always reaps it: the destructor
// kills it, and PR_SET_PDEATHSIG kills it if the test process dies first.
// Stop() sends SIGTERM and reports whether nestord exited cleanly (0).
// A second instance may share a first one's directory (its own log file;
// the directory stays the first one's to remove).
//
// Thread: the test's. Errors: Start returns false and fills *err.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nestor::testing {

class NestordProcess {
 public:
  NestordProcess() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nestord-test.XXXXXX";
    if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
  }
  // Runs in an existing directory (not removed), logging to DIR/log_name.
  NestordProcess(std::string dir, std::string log_name)
      : dir_(std::move(dir)), log_name_(std::move(log_name)), owns_dir_(false) {}
  ~NestordProcess() {
    Kill();
    if (owns_dir_ && !dir_.empty()) {
      std::string cmd = "rm -rf '" + dir_ + "'";
      int unused = system(cmd.c_str());
      (void)unused;
    }
  }

  const std::string& dir() const { return dir_; }
  // A volume's socket; a name ending in ".ctl" (the control socket) is
  // taken as is.
  std::string Socket(const std::string& volume) const {
    bool ctl = volume.size() > 4 && volume.compare(volume.size() - 4, 4, ".ctl") == 0;
    return dir_ + "/" + volume + (ctl ? "" : ".sock");
  }

  // args: nestord arguments after --socket-dir DIR. Waits (<= 10 s) until
  // the socket of every volume in wait_for exists.
  bool Start(const std::vector<std::string>& args, const std::vector<std::string>& wait_for,
             std::string* err) {
    const char* bin = std::getenv("NESTORD");
    if (bin == nullptr) {
      *err = "NESTORD is not set";
      return false;
    }
    std::vector<std::string> argv_s = {bin, "--socket-dir", dir_};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = open((dir_ + "/" + log_name_).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
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
    for (int i = 0; i < 1000; ++i) {
      bool all = true;
      for (const std::string& v : wait_for) {
        struct stat st {};
        all &= stat(Socket(v).c_str(), &st) == 0;
      }
      if (all) return true;
      if (!Running()) {
        *err = "nestord exited early: " + Log();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    *err = "nestord sockets did not appear: " + Log();
    return false;
  }

  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      exit_status_ = status;
      return false;
    }
    return true;
  }

  // SIGTERM, wait up to 20 s; returns true if nestord exited with 0.
  bool Stop() {
    if (pid_ <= 0) return exit_status_ == 0;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 2000; ++i) {
      if (!Running()) return WIFEXITED(exit_status_) && WEXITSTATUS(exit_status_) == 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Kill();
    return false;
  }

  // Waits up to timeout_ms for nestord to exit on its own: true with its
  // exit code (128 + signal if killed) in *code, false if still running.
  bool WaitExit(int timeout_ms, int* code) {
    for (int waited = 0; Running(); waited += 10) {
      if (waited >= timeout_ms) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (exit_status_ == -1) return false;  // never started
    *code = WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : 128 + WTERMSIG(exit_status_);
    return true;
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  std::string Log() const {
    std::ifstream f(dir_ + "/" + log_name_);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  std::string dir_;
  std::string log_name_ = "nestord.log";
  bool owns_dir_ = true;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

}  // namespace nestor::testing
