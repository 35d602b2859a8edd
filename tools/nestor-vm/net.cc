#include "nestor-vm/net.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <fmt/format.h>
#include <fstream>

namespace nestor::vm {
namespace {

// <linux/if_tun.h> and <linux/if.h> flag bits, as /sys/class/net shows them.
constexpr unsigned kIffTap = 0x0002;
constexpr unsigned kIffMultiQueue = 0x0100;
constexpr unsigned kIffUp = 0x0001;
constexpr size_t kIfNameMax = 15;  // IFNAMSIZ - 1

Status BadSpec(std::string_view spec, std::string_view why) {
  return Status::Invalid(fmt::format("--net {}: {} (want tap:NAME[,mac=MAC] or vf:PCI-ADDR)", spec, why));
}

bool IsHex(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "52:54:00:ab:cd:ef", lower case; "" if S is not a unicast MAC.
std::string ParseMac(std::string_view s) {
  if (s.size() != 17) return "";
  for (size_t i = 0; i < 17; ++i) {
    bool colon = i % 3 == 2;
    if (colon ? s[i] != ':' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return "";
  }
  std::string mac = Lower(s);
  unsigned first = static_cast<unsigned>(std::stoul(mac.substr(0, 2), nullptr, 16));
  if (first & 1 || mac == "00:00:00:00:00:00") return "";
  return mac;
}

// "DDDD:BB:DD.F" (domain optional in S), lower case; "" if malformed.
std::string ParsePciAddress(std::string_view s) {
  std::string_view domain = "0000";
  if (std::count(s.begin(), s.end(), ':') == 2) {
    domain = s.substr(0, s.find(':'));
    s.remove_prefix(domain.size() + 1);
  }
  size_t colon = s.find(':'), dot = s.find('.');
  if (colon == s.npos || dot == s.npos || dot < colon) return "";
  std::string_view bus = s.substr(0, colon), dev = s.substr(colon + 1, dot - colon - 1), fn = s.substr(dot + 1);
  if (domain.size() != 4 || bus.size() != 2 || dev.size() != 2 || fn.size() != 1) return "";
  if (!IsHex(domain) || !IsHex(bus) || !IsHex(dev) || fn[0] < '0' || fn[0] > '7') return "";
  if (std::stoul(std::string(dev), nullptr, 16) > 0x1f) return "";
  return Lower(fmt::format("{}:{}:{}.{}", domain, bus, dev, fn));
}

std::string TapNameProblem(std::string_view name) {
  if (name.empty()) return "no interface name";
  if (name.size() > kIfNameMax) return fmt::format("interface names have at most {} characters", kIfNameMax);
  if (name == "." || name == "..") return "not an interface name";
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return fmt::format("'{}' in the interface name (letters, digits, '-', '_', '.')", c);
    }
  }
  return "";
}

bool ReadHex(const std::string& path, unsigned* out) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s)) return false;
  try {
    *out = static_cast<unsigned>(std::stoul(s, nullptr, 0));
  } catch (...) {
    return false;
  }
  return true;
}

}  // namespace

Result<NetSpec> ParseNetSpec(std::string_view spec) {
  NetSpec n;
  std::string_view rest;
  if (spec.starts_with("tap:")) {
    rest = spec.substr(4);
    std::string_view name = rest.substr(0, rest.find(','));
    if (std::string why = TapNameProblem(name); !why.empty()) return BadSpec(spec, why);
    n.name = std::string(name);
    n.mac = DefaultMac(name);
    rest.remove_prefix(name.size());
    while (!rest.empty()) {
      rest.remove_prefix(1);  // ','
      std::string_view opt = rest.substr(0, rest.find(','));
      rest.remove_prefix(opt.size());
      if (!opt.starts_with("mac=")) return BadSpec(spec, fmt::format("unknown tap option '{}' (only mac=)", opt));
      n.mac = ParseMac(opt.substr(4));
      if (n.mac.empty()) return BadSpec(spec, "mac= wants a unicast MAC address like 52:54:00:12:34:56");
    }
    return n;
  }
  if (spec.starts_with("vf:")) {
    n.kind = NetKind::kVf;
    n.name = ParsePciAddress(spec.substr(3));
    if (n.name.empty()) return BadSpec(spec, "a PCI address is [DDDD:]BB:DD.F, e.g. 0000:3b:02.1");
    return n;
  }
  return BadSpec(spec, "unknown kind");
}

std::string DefaultMac(std::string_view tap) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (char c : tap) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return fmt::format("52:54:00:{:02x}:{:02x}:{:02x}", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
}

void ProbeNets(const VmOptions& o, HostInfo* host) {
  bool any_tap = false;
  for (const NetSpec& n : o.nets) {
    if (n.kind == NetKind::kTap) {
      any_tap = true;
      std::string dir = "/sys/class/net/" + n.name;
      struct stat st {};
      if (stat(dir.c_str(), &st) != 0) continue;
      TapInfo t;
      unsigned tun = 0, flags = 0;
      if (ReadHex(dir + "/tun_flags", &tun)) {
        t.is_tap = (tun & kIffTap) != 0;
        t.multi_queue = (tun & kIffMultiQueue) != 0;
      }
      t.up = ReadHex(dir + "/flags", &flags) && (flags & kIffUp) != 0;
      host->taps[n.name] = t;
    } else {
      std::string dev = "/sys/bus/pci/devices/" + n.name;
      struct stat st {};
      if (stat(dev.c_str(), &st) != 0) continue;
      char link[PATH_MAX];
      ssize_t len = readlink((dev + "/driver").c_str(), link, sizeof(link) - 1);
      std::string driver = len > 0 ? std::string(link, static_cast<size_t>(len)) : "";
      host->pci_drivers[n.name] = driver.substr(driver.find_last_of('/') + 1);
    }
  }
  if (any_tap) {
    int fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      host->vhost_net_usable = true;
      close(fd);
    }
  }
}

Status CheckNets(VmOptions* o, const HostInfo& host, std::vector<std::string>* warnings) {
  if (o->net_busy_poll_us < 0 || o->net_busy_poll_us > kMaxBusyPollUs) {
    return Status::Invalid(fmt::format("--net-busy-poll must be 0..{} microseconds", kMaxBusyPollUs));
  }
  auto problem = [&](std::string msg) -> Status {
    if (!o->dry_run) return Status::Invalid(msg);
    warnings->push_back(msg);
    return Status::Ok();
  };
  const int queues = o->NetQueues();
  bool any_tap = false;
  for (size_t i = 0; i < o->nets.size(); ++i) {
    const NetSpec& n = o->nets[i];
    for (size_t j = 0; j < i; ++j) {
      if (o->nets[j].name == n.name) return Status::Invalid(fmt::format("--net: {} given twice", n.name));
    }
    if (n.kind == NetKind::kVf) {
      auto it = host.pci_drivers.find(n.name);
      std::string why;
      if (it == host.pci_drivers.end()) {
        why = fmt::format("--net vf:{}: no PCI device {} (/sys/bus/pci/devices/{})", n.name, n.name, n.name);
      } else if (it->second != "vfio-pci") {
        why = fmt::format(
            "--net vf:{}: PCI device {} is bound to {}, not vfio-pci; bind it first: {}echo vfio-pci > "
            "/sys/bus/pci/devices/{}/driver_override; echo {} > /sys/bus/pci/drivers_probe",
            n.name, n.name, it->second.empty() ? "no driver" : it->second,
            it->second.empty() ? "" : fmt::format("echo {} > /sys/bus/pci/devices/{}/driver/unbind; ", n.name, n.name),
            n.name, n.name);
      }
      if (!why.empty()) NESTOR_RETURN_IF_ERROR(problem(why));
      continue;
    }
    any_tap = true;
    auto it = host.taps.find(n.name);
    std::string mq = queues > 1 ? " multi_queue" : "";
    if (it == host.taps.end()) {
      NESTOR_RETURN_IF_ERROR(problem(fmt::format(
          "--net tap:{}: tap {} does not exist in this network namespace; create it first (ip tuntap add {} mode "
          "tap{}; ip link set {} master BRIDGE up) or run nestor-vm in the namespace that holds it (ip netns exec)",
          n.name, n.name, n.name, mq, n.name)));
    } else if (!it->second.is_tap) {
      NESTOR_RETURN_IF_ERROR(problem(fmt::format(
          "--net tap:{}: {} is not a tap device (create one: ip tuntap add NAME mode tap{})", n.name, n.name, mq)));
    } else if (queues > 1 && !it->second.multi_queue) {
      NESTOR_RETURN_IF_ERROR(problem(
          fmt::format("--net tap:{}: tap {} is not multi_queue, and a {}-vCPU VM opens {} queues on it; recreate it "
                      "with ip tuntap add {} mode tap multi_queue",
                      n.name, n.name, o->vcpus, queues, n.name)));
    } else if (queues == 1 && it->second.multi_queue) {
      NESTOR_RETURN_IF_ERROR(
          problem(fmt::format("--net tap:{}: tap {} is multi_queue, and a 1-vCPU VM opens one queue, which QEMU does "
                              "without IFF_MULTI_QUEUE (the kernel refuses it); recreate it without multi_queue "
                              "(ip tuntap add {} mode tap) or give the VM more vCPUs",
                              n.name, n.name, n.name)));
    } else if (!it->second.up) {
      warnings->push_back(
          fmt::format("--net tap:{}: tap {} is down; the guest's packets go nowhere until ip link set {} up", n.name,
                      n.name, n.name));
    }
  }
  o->vhost_net = false;
  if (any_tap && o->net_vhost == VhostMode::kOn) {
    if (!host.vhost_net_usable) {
      NESTOR_RETURN_IF_ERROR(
          problem("--net-vhost on: /dev/vhost-net cannot be opened read-write (modprobe vhost_net), or use "
                  "--net-vhost auto (QEMU's own virtio-net where vhost-net is missing)"));
    }
    o->vhost_net = true;
  } else if (any_tap && o->net_vhost == VhostMode::kAuto) {
    o->vhost_net = host.vhost_net_usable;
  }
  return Status::Ok();
}

void AddNetArgs(const VmOptions& o, std::vector<std::string>* argv) {
  auto add = [argv](std::string opt, std::string value) {
    argv->push_back(std::move(opt));
    argv->push_back(std::move(value));
  };
  const int queues = o.NetQueues();
  for (size_t i = 0; i < o.nets.size(); ++i) {
    const NetSpec& n = o.nets[i];
    if (n.kind == NetKind::kVf) {
      add("-device", fmt::format("vfio-pci,id=nic{},host={}", i, n.name));
      continue;
    }
    // script=no: the tap exists and is attached already; nothing to run.
    std::string netdev =
        fmt::format("tap,id=net{},ifname={},script=no,downscript=no,vhost={}", i, n.name, o.vhost_net ? "on" : "off");
    std::string device = fmt::format("virtio-net-pci,id=nic{},netdev=net{},mac={}", i, i, n.mac);
    if (queues > 1) {
      netdev += fmt::format(",queues={}", queues);
      // One rx and one tx vector per queue pair, plus config and control.
      device += fmt::format(",mq=on,vectors={}", 2 * queues + 2);
    }
    add("-netdev", netdev);
    add("-device", device);
  }
}

std::string NetKernelParams(const VmOptions& o) {
  if (o.nets.empty() || o.net_busy_poll_us == 0) return "";
  return fmt::format("sysctl.net.core.busy_poll={} sysctl.net.core.busy_read={}", o.net_busy_poll_us,
                     o.net_busy_poll_us);
}

std::vector<std::string> DescribeNets(const VmOptions& o) {
  std::vector<std::string> out;
  for (size_t i = 0; i < o.nets.size(); ++i) {
    const NetSpec& n = o.nets[i];
    if (n.kind == NetKind::kVf) {
      out.push_back(fmt::format("nic{}: VF {} passed through (vfio-pci)", i, n.name));
      continue;
    }
    std::string busy = o.net_busy_poll_us > 0 ? fmt::format("guest busy_poll/busy_read {} us", o.net_busy_poll_us)
                                              : "no guest busy polling";
    out.push_back(fmt::format("nic{}: tap {} ({}), {} queue pair{}, {}, {}", i, n.name, n.mac, o.NetQueues(),
                              o.NetQueues() > 1 ? "s" : "",
                              o.vhost_net ? "vhost-net" : "QEMU virtio-net (no vhost-net)", busy));
  }
  return out;
}

}  // namespace nestor::vm
