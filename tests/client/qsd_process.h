// Test helper: runs Debian's qemu-storage-daemon (7.2) with one
// vhost-user-blk export in a private temporary directory, under
// `timeout 60`, and always reaps it.
//
// Thread: the test's. Errors: Start returns nullptr and fills *err.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nestor::client::testing {

class Qsd {
 public:
  // Creates the private temporary directory (removed by the destructor).
  static std::unique_ptr<Qsd> Create(std::string* err) {
    auto q = std::unique_ptr<Qsd>(new Qsd());
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nestor-qsd.XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      *err = "mkdtemp failed";
      return nullptr;
    }
    q->dir_ = tmpl;
    q->sock_ = q->dir_ + "/sock";
    return q;
  }
  // Create + Start.
  static std::unique_ptr<Qsd> Launch(const std::string& blockdev, int num_queues, std::string* err) {
    auto q = Create(err);
    if (q && !q->Start(blockdev, num_queues, err)) return nullptr;
    return q;
  }

  // Starts the daemon; blockdev is the --blockdev value, "{DIR}" replaced
  // by dir(). Returns once the socket exists (bounded: 10 s).
  bool Start(std::string blockdev, int num_queues, std::string* err) {
    Stop();
    unlink(sock_.c_str());
    for (size_t p; (p = blockdev.find("{DIR}")) != std::string::npos;) blockdev.replace(p, 5, dir_);
    std::string exp = "type=vhost-user-blk,id=e0,addr.type=unix,addr.path=" + sock_ +
                      ",node-name=n0,writable=on,num-queues=" + std::to_string(num_queues);
    std::vector<std::string> args = {"timeout", "-k", "5", "60", "qemu-storage-daemon", "--blockdev", blockdev,
                                     "--export", exp};
    std::string log = dir_ + "/qsd.log";
    pid_ = fork();
    if (pid_ == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    if (pid_ < 0) {
      *err = "fork failed";
      return false;
    }
    for (int i = 0; i < 200; ++i) {
      if (SocketExists()) return true;
      if (!Running()) {
        *err = "qemu-storage-daemon exited: " + Log();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    *err = "qemu-storage-daemon socket never appeared: " + Log();
    Stop();
    return false;
  }

  ~Qsd() {
    Stop();
    std::string cmd = "rm -rf '" + dir_ + "'";
    if (!dir_.empty() && std::system(cmd.c_str()) != 0) {
    }
  }

  const std::string& socket() const { return sock_; }
  const std::string& dir() const { return dir_; }
  std::string Log() const {
    std::ifstream f(dir_ + "/qsd.log");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  bool Running() {
    if (pid_ < 0) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  // Signals timeout and qemu-storage-daemon (timeout leads its own process
  // group) and reaps them, escalating to SIGKILL after 5 s.
  void Stop(int sig = SIGTERM) {
    if (pid_ < 0) return;
    kill(-pid_, sig);
    kill(pid_, sig);
    for (int i = 0; i < 100; ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  Qsd() = default;
  // True once the socket file exists (qsd binds and listens right away; a
  // probing connect would take its single client slot), plus a grace period.
  bool SocketExists() const {
    struct stat st;
    if (stat(sock_.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return true;
  }
  std::string dir_, sock_;
  pid_t pid_ = -1;
};

}  // namespace nestor::client::testing
