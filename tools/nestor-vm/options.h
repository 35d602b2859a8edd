// nestor-vm's argument model: what the user asked for (VmOptions), the facts
// about this host that validation needs (HostInfo), and the checks that turn
// the first into a launchable plan (Validate).
// Thread: any. Errors are returned as Status, never thrown.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/status.h"

namespace nestor::vm {

enum class Accel { kTcg, kKvm };

// --net: a network interface of the guest (net.h).
enum class NetKind {
  kTap,  // virtio-net on an existing tap device of this network namespace
  kVf,   // an SR-IOV VF (any PCI function) passed through with VFIO
};
struct NetSpec {
  NetKind kind = NetKind::kTap;
  std::string name;  // tap: interface name; vf: PCI address DDDD:BB:DD.F
  std::string mac;   // tap: the guest's MAC (given, or DefaultMac(name))
};
enum class VhostMode { kAuto, kOn, kOff };  // --net-vhost

struct VmOptions {
  std::vector<std::string> sockets;  // one vhost-user-blk disk each, in order
  int vcpus = 1;
  uint64_t memory = 512ull << 20;
  std::vector<int> cpus;          // host CPUs for QEMU's threads; empty: not pinned
  std::vector<int> reactor_cpus;  // nestord's --cpus
  bool allow_shared_cpus = false;
  Accel accel = Accel::kTcg;
  std::string kernel, initrd, append;
  std::string disk_image, disk_format = "raw";
  bool hugepages = false;      // hugetlb memfd (or file backend with hugepage_path)
  std::string hugepage_path;   // a hugetlbfs mount: memory-backend-file there
  uint64_t hugepage_size = 0;  // chosen by Validate (0 until then)
  bool prealloc = false;
  int poll_queues = -1;  // -1: as many as vCPUs
  bool idle_poll = true;
  bool no_reboot = false;
  std::string serial_log;
  int timeout_sec = 0;  // 0: none
  bool dry_run = false;
  std::string qemu = "qemu-system-x86_64";
  std::string name = "nestor-vm";
  // --clone-of: the first disk is a clone of this snapshot, created and
  // exported through control_socket before QEMU starts, deleted after it
  // exits unless keep (clone.h).
  std::string clone_of;
  std::string control_socket;  // default DefaultControlSocket() (clone.h)
  std::string clone_name;      // default DefaultCloneName() (clone.h)
  bool keep = false;
  // --net, in order (nic0, nic1, ...), and how taps are served.
  std::vector<NetSpec> nets;
  VhostMode net_vhost = VhostMode::kAuto;
  bool vhost_net = false;     // resolved by Validate from net_vhost and the host
  int net_busy_poll_us = 50;  // guest net.core.busy_poll/busy_read; 0: not set

  int PollQueues() const { return poll_queues < 0 ? vcpus : poll_queues; }
  // Interrupt-driven queues = vCPUs, plus the poll queues.
  int NumQueues() const { return vcpus + PollQueues(); }
  // Queue pairs of each virtio-net interface: one per vCPU.
  int NetQueues() const { return vcpus; }
  // Linux virtio_blk uses at most nr_cpu_ids (possible CPUs) queues: declare
  // enough hot-pluggable CPUs that every queue is used.
  int MaxCpus() const { return NumQueues() > vcpus ? NumQueues() : vcpus; }
};

// A network interface as seen in /sys/class/net of this network namespace.
struct TapInfo {
  bool is_tap = false;       // a tun/tap device in tap mode (tun_flags has IFF_TAP)
  bool multi_queue = false;  // created with multi_queue (IFF_MULTI_QUEUE)
  bool up = false;           // administratively up (IFF_UP)
};

struct HugepagePool {
  uint64_t page_size = 0;   // bytes
  uint64_t free_pages = 0;  // free minus reserved
};

// What Validate needs to know about the machine (filled by ProbeHost in
// host.h; tests fill it by hand).
struct HostInfo {
  std::vector<int> allowed_cpus;  // sched_getaffinity of this process
  std::vector<HugepagePool> hugepage_pools;
  bool hugepage_path_is_hugetlbfs = false;
  uint64_t hugepage_path_page_size = 0;
  bool kvm_usable = false;        // /dev/kvm opens read-write (not a boot test)
  bool vhost_net_usable = false;  // /dev/vhost-net opens read-write
  // The interfaces named by tap: --net specs that exist (absent: no such
  // interface), and the driver bound to each vf: --net PCI device ("": none;
  // absent: no such device).
  std::map<std::string, TapInfo> taps;
  std::map<std::string, std::string> pci_drivers;
};

// Exit code for refused configurations and bad command lines.
inline constexpr int kExitUsage = 2;

// Parses argv. A --help request yields Status::Error(0, "") after printing
// the help; a parse error yields EINVAL after CLI11 printed it.
Result<VmOptions> ParseArgs(int argc, char** argv);

// Checks the options against each other and the host, fills defaults
// (cpus = allowed CPUs minus reactor CPUs when only --reactor-cpus was given,
// hugepage_size). Facts of the host (free hugepages, existing files, CPUs
// this process may use) are errors for a real run but only warnings with
// --dry-run, so a command can be prepared for another machine.
// Warnings are appended to *warnings.
Status Validate(VmOptions* o, const HostInfo& host, std::vector<std::string>* warnings);

// "0-3,6" style rendering of a CPU list (sorted, deduplicated).
std::string FormatCpuList(std::vector<int> cpus);

}  // namespace nestor::vm
