// Test helper: runs nestord (path from env NESTORD) in a private temporary
// directory, waits for its sockets, and always reaps it: the destructor
// kills it, and PR_SET_PDEATHSIG kills it if the test process dies first.
// Stop() sends SIGTERM and reports whether nestord exited cleanly (0).
// A second instance may share a first one's directory (its own log file;
// the directory stays the first one's to remove). The process handling is
// tests/common/child_process.h's.
//
// Thread: the test's. Errors: Start returns false and fills *err.
#pragma once

#include <signal.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "../common/child_process.h"

namespace nestor::testing {

class NestordProcess {
 public:
  NestordProcess() : owned_dir_("nestord-test"), dir_(owned_dir_.path()) {}
  // Runs in an existing directory (not removed), logging to DIR/log_name.
  NestordProcess(std::string dir, std::string log_name) : dir_(std::move(dir)), log_name_(std::move(log_name)) {}
  ~NestordProcess() { Kill(); }

  const std::string& dir() const { return dir_; }
  // A volume's socket; a name ending in ".ctl" (the control socket) is
  // taken as is.
  std::string Socket(const std::string& volume) const {
    bool ctl = volume.size() > 4 && volume.compare(volume.size() - 4, 4, ".ctl") == 0;
    return dir_ + "/" + volume + (ctl ? "" : ".sock");
  }

  // args: nestord arguments after --socket-dir DIR. Waits (<= 10 s) until
  // the socket of every volume in wait_for exists.
  bool Start(const std::vector<std::string>& args, const std::vector<std::string>& wait_for, std::string* err) {
    const char* bin = std::getenv("NESTORD");
    if (bin == nullptr) {
      *err = "NESTORD is not set";
      return false;
    }
    ChildProcess::Options o;
    o.argv = {bin, "--socket-dir", dir_};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.log_path = dir_ + "/" + log_name_;
    o.name = "nestord";
    o.die_with_parent = true;
    if (!proc_.Start(std::move(o), err)) return false;
    std::vector<std::string> paths;
    for (const std::string& v : wait_for) paths.push_back(Socket(v));
    return proc_.WaitForPaths(paths, 10000, /*sockets_only=*/false, err);
  }

  bool Running() { return proc_.Running(); }

  // SIGTERM, wait up to 20 s; returns true if nestord exited with 0.
  bool Stop() { return proc_.Stop(SIGTERM, 20000) && proc_.ExitedZero(); }

  // Waits up to timeout_ms for nestord to exit on its own: true with its
  // exit code (128 + signal if killed) in *code, false if still running.
  bool WaitExit(int timeout_ms, int* code) { return proc_.WaitExit(timeout_ms, code); }

  void Kill() { proc_.Kill(); }

  std::string Log() const { return ReadWholeFile(dir_ + "/" + log_name_); }

 private:
  TempDir owned_dir_;  // none for a second instance in another's directory
  std::string dir_;
  std::string log_name_ = "nestord.log";
  ChildProcess proc_;  // declared after the directory: it goes first
};

}  // namespace nestor::testing
