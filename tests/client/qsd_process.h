// Test helper: runs Debian's qemu-storage-daemon (7.2) with one
// vhost-user-blk export in a private temporary directory, under
// `timeout 60`, and always reaps it. The process handling is
// tests/common/child_process.h's.
//
// Thread: the test's. Errors: Start returns nullptr and fills *err.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../common/child_process.h"

namespace nestor::client::testing {

class Qsd {
 public:
  // Creates the private temporary directory (removed by the destructor).
  static std::unique_ptr<Qsd> Create(std::string* err) {
    auto q = std::unique_ptr<Qsd>(new Qsd());
    q->dir_ = nestor::testing::TempDir("nestor-qsd");
    if (!q->dir_.ok()) {
      *err = "mkdtemp failed";
      return nullptr;
    }
    q->sock_ = q->dir_.path() + "/sock";
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
    for (size_t p; (p = blockdev.find("{DIR}")) != std::string::npos;) blockdev.replace(p, 5, dir());
    std::string exp = "type=vhost-user-blk,id=e0,addr.type=unix,addr.path=" + sock_ +
                      ",node-name=n0,writable=on,num-queues=" + std::to_string(num_queues);
    nestor::testing::ChildProcess::Options o;
    o.argv = {"qemu-storage-daemon", "--blockdev", blockdev, "--export", exp};
    o.log_path = dir() + "/qsd.log";
    o.timeout_s = 60;
    if (!proc_.Start(std::move(o), err)) return false;
    if (!proc_.WaitForPaths({sock_}, 10000, /*sockets_only=*/true, err)) {
      Stop();
      return false;
    }
    // qsd binds and listens right away (a probing connect would take its
    // single client slot): a grace period instead.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return true;
  }

  ~Qsd() { Stop(); }

  const std::string& socket() const { return sock_; }
  const std::string& dir() const { return dir_.path(); }
  std::string Log() const { return nestor::testing::ReadWholeFile(dir() + "/qsd.log"); }
  bool Running() { return proc_.Running(); }
  // Signals timeout and qemu-storage-daemon (timeout leads its own process
  // group) and reaps them, escalating to SIGKILL after 5 s.
  void Stop(int sig = SIGTERM) { proc_.Stop(sig, 5000, /*whole_group=*/true); }

 private:
  Qsd() = default;
  nestor::testing::TempDir dir_;
  std::string sock_;
  nestor::testing::ChildProcess proc_;  // declared after the directory: it goes first
};

}  // namespace nestor::client::testing
