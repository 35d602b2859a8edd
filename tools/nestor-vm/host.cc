#include "nestor-vm/host.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fmt/format.h>
#include <fstream>

#include "nestor-vm/net.h"

namespace nestor::vm {
namespace {

constexpr long kHugetlbfsMagic = 0x958458f6;

bool ReadU64(const std::string& path, uint64_t* out) {
  std::ifstream f(path);
  unsigned long long v = 0;
  if (!(f >> v)) return false;
  *out = v;
  return true;
}

}  // namespace

HostInfo ProbeHost(const VmOptions& o) {
  HostInfo h;
  auto cpus = GetAffinity(0);
  if (cpus.ok()) h.allowed_cpus = *cpus;

  const std::string base = "/sys/kernel/mm/hugepages";
  if (DIR* d = opendir(base.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string_view n(e->d_name);
      // hugepages-2048kB
      if (!n.starts_with("hugepages-") || !n.ends_with("kB")) continue;
      std::string_view num = n.substr(10, n.size() - 12);
      uint64_t kb = 0;
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), kb);
      if (ec != std::errc() || p != num.data() + num.size() || kb == 0) continue;
      uint64_t free_pages = 0, resv = 0;
      std::string dir = base + "/" + std::string(n);
      if (!ReadU64(dir + "/free_hugepages", &free_pages)) continue;
      ReadU64(dir + "/resv_hugepages", &resv);
      h.hugepage_pools.push_back({kb << 10, free_pages > resv ? free_pages - resv : 0});
    }
    closedir(d);
  }
  std::sort(h.hugepage_pools.begin(), h.hugepage_pools.end(),
            [](const HugepagePool& a, const HugepagePool& b) { return a.page_size < b.page_size; });

  if (!o.hugepage_path.empty()) {
    struct statfs sf {};
    if (statfs(o.hugepage_path.c_str(), &sf) == 0 && static_cast<long>(sf.f_type) == kHugetlbfsMagic) {
      h.hugepage_path_is_hugetlbfs = true;
      h.hugepage_path_page_size = static_cast<uint64_t>(sf.f_bsize);
    }
  }
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    h.kvm_usable = true;
    close(fd);
  }
  ProbeNets(o, &h);
  return h;
}

Status SetAffinity(pid_t tid, const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  if (sched_setaffinity(tid, sizeof(set), &set) != 0) {
    return Status::FromErrno(fmt::format("sched_setaffinity(thread {}, CPUs {})", tid, FormatCpuList(cpus)));
  }
  return Status::Ok();
}

Result<std::vector<int>> GetAffinity(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(tid, sizeof(set), &set) != 0) {
    return Status::FromErrno(fmt::format("sched_getaffinity(thread {})", tid));
  }
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

std::optional<int> VcpuIndexFromComm(std::string_view comm) {
  while (!comm.empty() && (comm.back() == '\n' || comm.back() == ' ')) comm.remove_suffix(1);
  if (!comm.starts_with("CPU ")) return std::nullopt;
  comm.remove_prefix(4);
  int n = -1;
  auto [p, ec] = std::from_chars(comm.data(), comm.data() + comm.size(), n);
  if (ec != std::errc() || n < 0) return std::nullopt;
  std::string_view rest(p, comm.data() + comm.size() - p);
  if (rest != "/TCG" && rest != "/KVM") return std::nullopt;
  return n;
}

std::vector<QemuThread> ListThreads(pid_t pid) {
  std::vector<QemuThread> out;
  std::string dir = fmt::format("/proc/{}/task", pid);
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    pid_t tid = 0;
    std::string_view n(e->d_name);
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), tid);
    if (ec != std::errc() || p != n.data() + n.size()) continue;
    std::ifstream f(dir + "/" + std::string(n) + "/comm");
    std::string comm;
    std::getline(f, comm);
    out.push_back({tid, comm});
  }
  closedir(d);
  return out;
}

void VcpuPinner::Poll() {
  if (Done() || cpus_.empty()) return;
  for (const QemuThread& t : ListThreads(pid_)) {
    if (std::find(pinned_.begin(), pinned_.end(), t.tid) != pinned_.end()) continue;
    if (t.comm == "ALL CPUs/TCG") {
      single_threaded_ = true;
      std::fprintf(stderr, "nestor-vm: single-threaded TCG: all vCPUs run in thread %d ('%s') on CPUs %s\n", t.tid,
                   t.comm.c_str(), FormatCpuList(cpus_).c_str());
      return;
    }
    std::optional<int> n = VcpuIndexFromComm(t.comm);
    if (!n) continue;
    int cpu = cpus_[static_cast<size_t>(*n) % cpus_.size()];
    Status st = SetAffinity(t.tid, {cpu});
    if (st.ok()) {
      auto now = GetAffinity(t.tid);
      std::fprintf(stderr, "nestor-vm: vCPU %d (thread %d '%s') pinned to CPU %d (affinity now %s)\n", *n, t.tid,
                   t.comm.c_str(), cpu, now.ok() ? FormatCpuList(*now).c_str() : "?");
    } else {
      std::fprintf(stderr, "nestor-vm: warning: vCPU %d (thread %d) not pinned: %s\n", *n, t.tid,
                   st.ToString().c_str());
    }
    pinned_.push_back(t.tid);
  }
}

}  // namespace nestor::vm
