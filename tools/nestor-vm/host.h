// Host facts and CPU pinning for nestor-vm: what this process may run on,
// the hugepage pools, and the vCPU threads of a running QEMU.
// Thread: the launcher's main thread.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "nestor-vm/options.h"

namespace nestor::vm {

// CPUs, hugepage pools (/sys/kernel/mm/hugepages/*: free_hugepages minus
// resv_hugepages), the hugetlbfs mount of o.hugepage_path, /dev/kvm access,
// the taps and VFs of o.nets and /dev/vhost-net (ProbeNets, net.h).
HostInfo ProbeHost(const VmOptions& o);

// Sets the affinity of thread TID (0: the caller) to CPUS.
Status SetAffinity(pid_t tid, const std::vector<int>& cpus);
Result<std::vector<int>> GetAffinity(pid_t tid);

// QEMU names its vCPU threads "CPU <n>/TCG" or "CPU <n>/KVM" when started
// with -name ...,debug-threads=on (single-threaded TCG: one "ALL CPUs/TCG").
// Returns n, or nothing for any other thread name.
std::optional<int> VcpuIndexFromComm(std::string_view comm);

struct QemuThread {
  pid_t tid = 0;
  std::string comm;
};
std::vector<QemuThread> ListThreads(pid_t pid);

// Pins the vCPU threads of QEMU process PID as they appear: vCPU n goes to
// cpus[n % cpus.size()]; every other QEMU thread keeps the whole list (the
// process starts under that mask, see main.cc). Call Poll() until Done().
class VcpuPinner {
 public:
  VcpuPinner(pid_t pid, int vcpus, std::vector<int> cpus) : pid_(pid), vcpus_(vcpus), cpus_(std::move(cpus)) {}
  // Scans /proc/PID/task once; pins and logs new vCPU threads.
  void Poll();
  bool Done() const { return pinned_.size() >= static_cast<size_t>(vcpus_) || single_threaded_; }
  size_t pinned() const { return pinned_.size(); }

 private:
  pid_t pid_;
  int vcpus_;
  std::vector<int> cpus_;
  std::vector<pid_t> pinned_;
  bool single_threaded_ = false;
};

}  // namespace nestor::vm
