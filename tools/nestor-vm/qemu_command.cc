#include "nestor-vm/qemu_command.h"

#include <fmt/format.h>

#include "nestor-vm/net.h"

namespace nestor::vm {
namespace {

// Whole MiB (Validate guarantees it), as G when whole GiB.
std::string MiB(uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return fmt::format("{}G", bytes >> 30);
  return fmt::format("{}M", bytes >> 20);
}

}  // namespace

std::string QemuEscape(std::string_view value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::string ShellQuote(std::string_view arg) {
  if (arg.empty()) return "''";
  bool safe = true;
  for (char c : arg) {
    if (!(isalnum(static_cast<unsigned char>(c)) || std::string_view("@%+=:,./_-").find(c) != std::string_view::npos)) {
      safe = false;
      break;
    }
  }
  if (safe) return std::string(arg);
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string FormatCommand(const std::vector<std::string>& argv) {
  std::string out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i == 0) {
      out += ShellQuote(argv[i]);
      continue;
    }
    if (argv[i].starts_with("-"))
      out += " \\\n  ";
    else
      out += " ";
    out += ShellQuote(argv[i]);
  }
  return out + "\n";
}

std::string KernelCommandLine(const VmOptions& o) {
  std::string s = "console=ttyS0";
  if (o.idle_poll) s += " idle=poll";
  if (o.PollQueues() > 0) s += fmt::format(" virtio_blk.poll_queues={}", o.PollQueues());
  // The kernel applies sysctl.* parameters itself (Linux >= 5.8) before init.
  if (std::string net = NetKernelParams(o); !net.empty()) s += " " + net;
  if (!o.append.empty()) s += " " + o.append;
  return s;
}

std::vector<std::string> BuildQemuArgv(const VmOptions& o) {
  std::vector<std::string> a{o.qemu};
  auto add = [&a](std::string opt, std::string value) {
    a.push_back(std::move(opt));
    a.push_back(std::move(value));
  };
  // debug-threads=on names the vCPU threads "CPU n/TCG|KVM" (used for pinning).
  add("-name", QemuEscape(o.name) + ",debug-threads=on");
  add("-accel", o.accel == Accel::kKvm ? "kvm" : "tcg");
  if (o.accel == Accel::kKvm) add("-cpu", "host");
  a.push_back("-nodefaults");
  a.push_back("-no-user-config");
  std::string smp = fmt::format("{}", o.vcpus);
  if (o.MaxCpus() > o.vcpus) smp += fmt::format(",maxcpus={}", o.MaxCpus());
  add("-smp", smp);
  add("-m", MiB(o.memory));

  // Guest RAM is one shared, file-descriptor-backed region that QEMU passes
  // to nestord (SET_MEM_TABLE): without share=on nestord would map a copy.
  std::string mem;
  bool prealloc = o.prealloc;
  if (!o.hugepage_path.empty()) {
    mem = fmt::format("memory-backend-file,id=mem,size={},mem-path={},share=on", MiB(o.memory),
                      QemuEscape(o.hugepage_path));
    prealloc = true;
  } else if (o.hugepages) {
    uint64_t page = o.hugepage_size ? o.hugepage_size : (2ull << 20);
    mem = fmt::format("memory-backend-memfd,id=mem,size={},share=on,hugetlb=on,hugetlbsize={}", MiB(o.memory),
                      page >= (1ull << 20) ? MiB(page) : fmt::format("{}", page));
    prealloc = true;
  } else {
    mem = fmt::format("memory-backend-memfd,id=mem,size={},share=on", MiB(o.memory));
  }
  if (prealloc) mem += ",prealloc=on";
  add("-object", mem);
  add("-numa", "node,memdev=mem");

  for (size_t i = 0; i < o.sockets.size(); ++i) {
    // reconnect=1: if nestord restarts, QEMU retries the socket every second
    // and renegotiates instead of failing.
    add("-chardev", fmt::format("socket,id=vhost{},path={},reconnect=1", i, QemuEscape(o.sockets[i])));
    add("-device", fmt::format("vhost-user-blk-pci,id=disk{},chardev=vhost{},num-queues={}", i, i, o.NumQueues()));
  }
  if (!o.disk_image.empty()) {
    add("-drive", fmt::format("file={},format={},if=none,id=boot0", QemuEscape(o.disk_image), o.disk_format));
    add("-device", "virtio-blk-pci,drive=boot0,bootindex=0");
  }
  AddNetArgs(o, &a);

  add("-display", "none");
  if (o.serial_log.empty()) {
    add("-serial", "mon:stdio");  // Ctrl-a x quits, Ctrl-a c toggles the monitor
  } else {
    add("-serial", "file:" + o.serial_log);
    add("-monitor", "none");
  }
  if (o.no_reboot) a.push_back("-no-reboot");
  if (!o.kernel.empty()) {
    add("-kernel", o.kernel);
    if (!o.initrd.empty()) add("-initrd", o.initrd);
    add("-append", KernelCommandLine(o));
  }
  return a;
}

}  // namespace nestor::vm
