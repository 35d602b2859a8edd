// nestor-vm's network interfaces (--net tap:NAME[,mac=MAC] | vf:PCI-ADDR,
// --net-vhost, --net-busy-poll): parsing a spec, the checks against each
// other and the host (is the tap there, multi_queue as the vCPU count
// needs, is the VF bound to vfio-pci, can vhost-net be used), the QEMU
// options and the guest's busy-poll kernel parameters.
// Thread: any. Errors are returned as Status (EINVAL, message naming the
// problem and its fix); the probe never fails (missing facts stay absent).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "nestor-vm/options.h"

namespace nestor::vm {

// Largest --net-busy-poll, in microseconds.
inline constexpr int kMaxBusyPollUs = 10000;

// "tap:NAME[,mac=MAC]" or "vf:[DDDD:]BB:DD.F". The MAC defaults to
// DefaultMac(NAME); the PCI address is returned lower case with its domain.
Result<NetSpec> ParseNetSpec(std::string_view spec);

// 52:54:00:xx:xx:xx (QEMU's locally administered prefix) with the last three
// bytes hashed from the tap name: stable across restarts, distinct per tap.
std::string DefaultMac(std::string_view tap);

// Fills host->taps, host->pci_drivers and host->vhost_net_usable for the
// interfaces o names (/sys/class/net, /sys/bus/pci/devices, /dev/vhost-net).
void ProbeNets(const VmOptions& o, HostInfo* host);

// Checks o->nets and resolves o->vhost_net. Facts of the host are errors
// for a real run and warnings (appended to *warnings) with --dry-run.
Status CheckNets(VmOptions* o, const HostInfo& host, std::vector<std::string>* warnings);

// Appends the -netdev/-device options of every interface to *argv.
void AddNetArgs(const VmOptions& o, std::vector<std::string>* argv);

// "sysctl.net.core.busy_poll=US sysctl.net.core.busy_read=US" when the VM
// has an interface and busy polling is on, else "".
std::string NetKernelParams(const VmOptions& o);

// One line per interface for the launch plan (no trailing newline).
std::vector<std::string> DescribeNets(const VmOptions& o);

}  // namespace nestor::vm
