#include "nestor-vm/options.h"

#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fmt/format.h>

#include "base/size.h"
#include "nestor-vm/clone.h"
#include "nestor-vm/net.h"
#include "volume/limits.h"
#include "base/version.h"
#include "volume/format.h"

namespace nestor::vm {
namespace {

std::vector<int> Dedup(std::vector<int> cpus) {
  std::vector<int> out;
  for (int c : cpus) {
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

std::vector<int> Intersect(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out;
  for (int c : a) {
    if (std::find(b.begin(), b.end(), c) != b.end()) out.push_back(c);
  }
  return out;
}

std::vector<int> Minus(const std::vector<int>& a, const std::vector<int>& b) {
  std::vector<int> out;
  for (int c : a) {
    if (std::find(b.begin(), b.end(), c) == b.end()) out.push_back(c);
  }
  return out;
}

std::string SizeString(uint64_t bytes) {
  if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{}G", bytes >> 30);
  if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{}M", bytes >> 20);
  if (bytes >= (1ull << 10) && bytes % (1ull << 10) == 0) return fmt::format("{}K", bytes >> 10);
  return fmt::format("{}", bytes);
}

std::string PoolsString(const std::vector<HugepagePool>& pools) {
  if (pools.empty()) return "no hugepage pools in /sys/kernel/mm/hugepages";
  std::string s;
  for (const HugepagePool& p : pools) {
    if (!s.empty()) s += ", ";
    s += fmt::format("{} pages: {} free", SizeString(p.page_size), p.free_pages);
  }
  return s;
}

enum class FileKind { kSocket, kRegular };

// "" if PATH is of the expected kind, else why not.
std::string CheckFile(const std::string& path, FileKind kind) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return fmt::format("{}: {}", path, strerror(errno));
  if (kind == FileKind::kSocket && !S_ISSOCK(st.st_mode)) return fmt::format("{} is not a socket", path);
  if (kind == FileKind::kRegular && S_ISDIR(st.st_mode)) return fmt::format("{} is a directory", path);
  return "";
}

Status CheckCpus(VmOptions* o, const HostInfo& host, std::vector<std::string>* warnings) {
  o->cpus = Dedup(o->cpus);
  o->reactor_cpus = Dedup(o->reactor_cpus);
  if (o->reactor_cpus.empty() && !o->allow_shared_cpus) {
    return Status::Invalid(
        "which CPUs do nestord's reactors poll on? Pass --reactor-cpus LIST (the list given to "
        "nestord --cpus) so the VM's threads stay off them, or --allow-shared-cpus to run "
        "without that guarantee");
  }
  if (o->cpus.empty() && !o->reactor_cpus.empty()) {
    o->cpus = Minus(host.allowed_cpus, o->reactor_cpus);
    if (o->cpus.empty()) {
      return Status::Invalid(
          fmt::format("no CPU left for the VM: this process may use CPUs {} and the reactors use {}; "
                      "pass --cpus LIST explicitly",
                      FormatCpuList(host.allowed_cpus), FormatCpuList(o->reactor_cpus)));
    }
  }
  std::vector<int> shared = Intersect(o->cpus, o->reactor_cpus);
  if (!shared.empty()) {
    std::string msg = fmt::format(
        "--cpus {} overlaps --reactor-cpus {} on CPU{} {}: the VM's vCPU threads would compete "
        "with nestord's polling reactors for {} core{} (a busy-polling reactor and a vCPU on one "
        "core slow each other down); choose disjoint CPU lists",
        FormatCpuList(o->cpus), FormatCpuList(o->reactor_cpus), shared.size() > 1 ? "s" : "", FormatCpuList(shared),
        shared.size() > 1 ? "those" : "that", shared.size() > 1 ? "s" : "");
    if (!o->allow_shared_cpus) return Status::Invalid(msg + " (or pass --allow-shared-cpus)");
    warnings->push_back(msg + "; continuing because of --allow-shared-cpus");
  }
  if (!o->cpus.empty()) {
    std::vector<int> missing = Minus(o->cpus, host.allowed_cpus);
    if (!missing.empty()) {
      std::string msg =
          fmt::format("--cpus names CPU{} {} that this process may not use (allowed: {})",
                      missing.size() > 1 ? "s" : "", FormatCpuList(missing), FormatCpuList(host.allowed_cpus));
      if (!o->dry_run) return Status::Invalid(msg);
      warnings->push_back(msg);
    }
    if (static_cast<int>(o->cpus.size()) < o->vcpus) {
      warnings->push_back(
          fmt::format("{} vCPUs on {} CPU{} ({}): vCPUs share cores round-robin; give each vCPU its own CPU "
                      "(plus one for QEMU's other threads) for the dedicated-core recipe",
                      o->vcpus, o->cpus.size(), o->cpus.size() > 1 ? "s" : "", FormatCpuList(o->cpus)));
    }
  }
  return Status::Ok();
}

Status CheckHugepages(VmOptions* o, const HostInfo& host, std::vector<std::string>* warnings) {
  if (!o->hugepage_path.empty()) o->hugepages = true;
  if (!o->hugepages) return Status::Ok();
  auto problem = [&](std::string msg) -> Status {
    if (!o->dry_run) return Status::Invalid(msg);
    warnings->push_back(msg);
    return Status::Ok();
  };
  uint64_t page = 0;
  if (!o->hugepage_path.empty()) {
    if (!host.hugepage_path_is_hugetlbfs) {
      o->hugepage_size = 2ull << 20;
      return problem(
          fmt::format("--hugepage-path {} is not a hugetlbfs mount (mount -t hugetlbfs none {}), or drop it to "
                      "use a hugetlb memfd",
                      o->hugepage_path, o->hugepage_path));
    }
    page = host.hugepage_path_page_size;
  } else {
    // The smallest page size whose pool can hold all of guest memory.
    for (const HugepagePool& p : host.hugepage_pools) {
      if (o->memory % p.page_size == 0 && p.free_pages >= o->memory / p.page_size &&
          (page == 0 || p.page_size < page)) {
        page = p.page_size;
      }
    }
  }
  if (page == 0) page = 2ull << 20;
  o->hugepage_size = page;
  if (o->memory % page != 0) {
    return Status::Invalid(
        fmt::format("--memory {} is not a multiple of the {} hugepage size", SizeString(o->memory), SizeString(page)));
  }
  uint64_t need = o->memory / page;
  uint64_t have = 0;
  for (const HugepagePool& p : host.hugepage_pools) {
    if (p.page_size == page) have = p.free_pages;
  }
  if (have < need) {
    return problem(
        fmt::format("--hugepages: {} of guest memory needs {} free {} hugepages, {} free ({}); reserve them "
                    "(echo N > /sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages) or drop --hugepages",
                    SizeString(o->memory), need, SizeString(page), have, PoolsString(host.hugepage_pools), page >> 10));
  }
  return Status::Ok();
}

}  // namespace

std::string FormatCpuList(std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  std::string s;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return s;
}

Result<VmOptions> ParseArgs(int argc, char** argv) {
  CLI::App app{
      "nestor-vm: boots a function VM on nestor volumes with the low-overhead recipe (shared "
      "memory, pinned vCPUs off the reactor CPUs, idle=poll, guest poll queues, chardev "
      "reconnect). See docs/function-vms.md."};
  app.set_version_flag("--version", VersionLine("nestor-vm", volume::kFormatVersion), "print the version and exit");
  VmOptions o;
  std::string memory = "512M", cpus, reactor_cpus, accel = "tcg";
  app.add_option("--socket", o.sockets,
                 "vhost-user-blk socket of a nestor volume; repeatable (one disk each; after the --clone-of disk)")
      ->type_name("PATH");
  app.add_option("--clone-of", o.clone_of,
                 "boot on a fresh clone of snapshot SNAP (the first disk): volume_clone + export over "
                 "--control before QEMU starts; export and clone deleted when QEMU exits (any way but "
                 "SIGKILL of nestor-vm) unless --keep")
      ->type_name("SNAP");
  app.add_option("--control", o.control_socket,
                 "nestord's control socket for --clone-of (default $NESTOR_CONTROL_SOCKET, else "
                 "/run/nestor/control.ctl)")
      ->type_name("SOCKET");
  app.add_option("--clone-name", o.clone_name,
                 "name of the clone (default SNAP-NAME-PID, NAME from --name, shortened to 63 characters)")
      ->type_name("NAME");
  app.add_flag("--keep", o.keep, "--clone-of: keep the clone after QEMU exits (only its export is deleted)");
  app.add_option("--vcpus", o.vcpus, "guest vCPUs (default 1)")->type_name("N")->check(CLI::Range(1, 255));
  app.add_option("--memory", memory, "guest memory, e.g. 512M, 2G (default 512M)")->type_name("SIZE");
  app.add_option("--cpus", cpus,
                 "host CPUs for QEMU's threads, e.g. 2-3; vCPU n is pinned to LIST[n % len] "
                 "(default: every allowed CPU except --reactor-cpus)")
      ->type_name("LIST");
  app.add_option("--reactor-cpus", reactor_cpus,
                 "the CPUs nestord's reactors use (nestord --cpus); never given to the VM")
      ->type_name("LIST");
  app.add_flag("--allow-shared-cpus", o.allow_shared_cpus,
               "run without --reactor-cpus, or with CPUs shared with the reactors (warns)");
  app.add_option("--accel", accel, "kvm | tcg (default tcg)")->type_name("ACCEL");
  app.add_option("--kernel", o.kernel, "guest kernel (direct boot)")->type_name("PATH");
  app.add_option("--initrd", o.initrd, "initramfs for --kernel")->type_name("PATH");
  app.add_option("--append", o.append, "extra kernel command line for --kernel")->type_name("ARGS");
  app.add_option("--disk-image", o.disk_image, "boot disk image (QEMU virtio-blk), instead of or besides --kernel")
      ->type_name("PATH");
  app.add_option("--disk-format", o.disk_format, "format of --disk-image (default raw)")->type_name("FMT");
  app.add_flag("--hugepages", o.hugepages,
               "back guest memory with hugepages (hugetlb memfd; refused if not enough are free)");
  app.add_option("--hugepage-path", o.hugepage_path,
                 "hugetlbfs mount for guest memory (memory-backend-file); implies --hugepages")
      ->type_name("DIR");
  app.add_flag("--prealloc", o.prealloc, "preallocate guest memory at start (always on with hugepages)");
  app.add_option("--poll-queues", o.poll_queues,
                 "guest poll queues (default: = vCPUs); the device gets vCPUs + N queues")
      ->type_name("N")
      ->check(CLI::Range(0, 63));
  bool no_idle_poll = false;
  app.add_flag("--no-idle-poll", no_idle_poll, "do not add idle=poll to the kernel command line");
  app.add_flag("--no-reboot", o.no_reboot, "exit instead of rebooting when the guest reboots or panics");
  app.add_option("--serial-log", o.serial_log, "write the guest console to this file (default: stdio)")
      ->type_name("PATH");
  std::vector<std::string> nets;
  std::string net_vhost = "auto";
  app.add_option("--net", nets,
                 "network interface, repeatable: tap:NAME[,mac=MAC] (virtio-net on an existing tap of this "
                 "network namespace, one queue pair per vCPU) or vf:PCI-ADDR (VFIO passthrough of a VF bound "
                 "to vfio-pci)")
      ->type_name("SPEC");
  app.add_option("--net-vhost", net_vhost,
                 "auto | on | off: serve taps with vhost-net (auto: where /dev/vhost-net can be opened)")
      ->type_name("MODE");
  app.add_option("--net-busy-poll", o.net_busy_poll_us,
                 "guest sysctls net.core.busy_poll and busy_read, in us (default 50; 0: interrupts only)")
      ->type_name("US")
      ->check(CLI::Range(0, kMaxBusyPollUs));
  app.add_option("--timeout", o.timeout_sec, "stop QEMU after SEC seconds (exit code 124)")
      ->type_name("SEC")
      ->check(CLI::Range(0, 1 << 30));
  app.add_flag("--dry-run", o.dry_run, "print the QEMU command line (shell-quoted) and the pinning plan; run nothing");
  app.add_option("--qemu", o.qemu, "QEMU binary (default qemu-system-x86_64)")->type_name("PATH");
  app.add_option("--name", o.name, "VM name (QEMU -name; default nestor-vm)")->type_name("NAME");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return Status::Error(rc == 0 ? 0 : EINVAL, "");
  }
  o.idle_poll = !no_idle_poll;
  for (const std::string& spec : nets) {
    auto n = ParseNetSpec(spec);
    if (!n.ok()) return n.status();
    o.nets.push_back(std::move(*n));
  }
  if (net_vhost == "auto") {
    o.net_vhost = VhostMode::kAuto;
  } else if (net_vhost == "on") {
    o.net_vhost = VhostMode::kOn;
  } else if (net_vhost == "off") {
    o.net_vhost = VhostMode::kOff;
  } else {
    return Status::Invalid("--net-vhost must be auto, on or off");
  }
  if (o.nets.empty() && (app.count("--net-vhost") > 0 || app.count("--net-busy-poll") > 0)) {
    return Status::Invalid("--net-vhost and --net-busy-poll need --net");
  }
  auto m = ParseSize(memory);
  if (!m.ok()) return Status::Invalid("--memory: " + m.status().message());
  o.memory = *m;
  if (!cpus.empty()) {
    auto c = ParseCpuList(cpus);
    if (!c.ok()) return Status::Invalid("--cpus: " + c.status().message());
    o.cpus = *c;
  }
  if (!reactor_cpus.empty()) {
    auto c = ParseCpuList(reactor_cpus);
    if (!c.ok()) return Status::Invalid("--reactor-cpus: " + c.status().message());
    o.reactor_cpus = *c;
  }
  if (accel == "tcg") {
    o.accel = Accel::kTcg;
  } else if (accel == "kvm") {
    o.accel = Accel::kKvm;
  } else {
    return Status::Invalid("--accel must be kvm or tcg");
  }
  return o;
}

Status Validate(VmOptions* o, const HostInfo& host, std::vector<std::string>* warnings) {
  if (o->sockets.empty() && o->clone_of.empty())
    return Status::Invalid("at least one --socket or --clone-of is required");
  if (o->clone_of.empty()) {
    if (!o->clone_name.empty() || o->keep || !o->control_socket.empty()) {
      return Status::Invalid("--clone-name, --keep and --control need --clone-of");
    }
  } else {
    if (Status st = volume::ValidateVolumeName(o->clone_of); !st.ok()) {
      return Status::Invalid("--clone-of: " + st.message());
    }
    if (o->control_socket.empty()) o->control_socket = DefaultControlSocket();
    if (o->clone_name.empty()) o->clone_name = DefaultCloneName(o->clone_of, o->name, getpid());
    if (Status st = volume::ValidateVolumeName(o->clone_name); !st.ok()) {
      return Status::Invalid("--clone-name: " + st.message());
    }
  }
  if (o->kernel.empty() && o->disk_image.empty()) {
    return Status::Invalid("nothing to boot: pass --kernel (and --initrd) or --disk-image");
  }
  if (o->kernel.empty() && (!o->initrd.empty() || !o->append.empty())) {
    return Status::Invalid("--initrd and --append need --kernel");
  }
  if (o->memory < (64ull << 20) || o->memory % (1ull << 20) != 0) {
    return Status::Invalid("--memory must be a whole number of MiB, at least 64M");
  }
  if (o->vcpus < 1 || o->vcpus > 255) return Status::Invalid("--vcpus must be 1..255");
  if (o->poll_queues > 63) return Status::Invalid("--poll-queues must be 0..63");
  // nestord offers at most 64 queues per volume (and QEMU refuses to start
  // when the volume offers fewer than num-queues).
  if (o->NumQueues() > 64) {
    return Status::Invalid(fmt::format("{} vCPUs + {} poll queues = {} queues; a nestor volume has at most 64",
                                       o->vcpus, o->PollQueues(), o->NumQueues()));
  }
  if (o->MaxCpus() > 255) return Status::Invalid("vCPUs + poll queues must be at most 255");
  if (o->disk_format.empty() || o->disk_format.find(',') != std::string::npos) {
    return Status::Invalid("bad --disk-format");
  }
  if (o->name.empty() || o->name.find(',') != std::string::npos) return Status::Invalid("bad --name");

  NESTOR_RETURN_IF_ERROR(CheckCpus(o, host, warnings));
  NESTOR_RETURN_IF_ERROR(CheckHugepages(o, host, warnings));
  NESTOR_RETURN_IF_ERROR(CheckNets(o, host, warnings));

  if (o->accel == Accel::kKvm && !host.kvm_usable) {
    std::string msg = "--accel kvm: /dev/kvm cannot be opened read-write (use --accel tcg)";
    if (!o->dry_run) return Status::Invalid(msg);
    warnings->push_back(msg);
  }
  std::vector<std::string> missing;
  for (const std::string& s : o->sockets) {
    std::string why = CheckFile(s, FileKind::kSocket);
    if (!why.empty()) missing.push_back(why + " (is nestord running? it serves DIR/NAME.sock)");
  }
  for (const std::string* f : {&o->kernel, &o->initrd, &o->disk_image}) {
    if (f->empty()) continue;
    std::string why = CheckFile(*f, FileKind::kRegular);
    if (!why.empty()) missing.push_back(why);
  }
  for (const std::string& why : missing) {
    if (!o->dry_run) return Status::Invalid(why);
    warnings->push_back(why);
  }
  if (o->kernel.empty()) {
    std::string params;
    if (o->idle_poll) params += " idle=poll";
    if (o->PollQueues() > 0) params += fmt::format(" virtio_blk.poll_queues={}", o->PollQueues());
    if (std::string net = NetKernelParams(*o); !net.empty()) params += " " + net;
    if (!params.empty()) {
      warnings->push_back(
          fmt::format("booting --disk-image without --kernel: nestor-vm cannot set the guest kernel command "
                      "line; add '{}' to the image's boot loader configuration",
                      params.substr(1)));
    }
  }
  return Status::Ok();
}

}  // namespace nestor::vm
