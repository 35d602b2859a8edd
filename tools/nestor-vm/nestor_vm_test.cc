// Unit tests of nestor-vm's argument checks and QEMU command builder.
#include <gtest/gtest.h>

#include <algorithm>

#include "nestor-vm/clone.h"
#include "nestor-vm/host.h"
#include "nestor-vm/options.h"
#include "nestor-vm/qemu_command.h"
#include "volume/limits.h"

namespace nestor::vm {
namespace {

VmOptions Base() {
  VmOptions o;
  o.sockets = {"/run/nestor/v0.sock"};
  o.kernel = "/boot/vmlinuz";
  o.dry_run = true;  // host files need not exist
  o.cpus = {0};
  o.reactor_cpus = {1};
  return o;
}

HostInfo Host() {
  HostInfo h;
  h.allowed_cpus = {0, 1, 2, 3};
  h.hugepage_pools = {{2ull << 20, 0}, {1ull << 30, 0}};
  return h;
}

bool Has(const std::vector<std::string>& argv, const std::string& opt, const std::string& value) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == opt && argv[i + 1] == value) return true;
  }
  return false;
}

TEST(NestorVm, DefaultRecipe) {
  VmOptions o = Base();
  std::vector<std::string> w;
  ASSERT_TRUE(Validate(&o, Host(), &w).ok());
  auto a = BuildQemuArgv(o);
  EXPECT_EQ(a[0], "qemu-system-x86_64");
  EXPECT_TRUE(Has(a, "-name", "nestor-vm,debug-threads=on"));
  EXPECT_TRUE(Has(a, "-accel", "tcg"));
  EXPECT_TRUE(Has(a, "-smp", "1,maxcpus=2"));
  EXPECT_TRUE(Has(a, "-m", "512M"));
  EXPECT_TRUE(Has(a, "-object", "memory-backend-memfd,id=mem,size=512M,share=on"));
  EXPECT_TRUE(Has(a, "-numa", "node,memdev=mem"));
  EXPECT_TRUE(Has(a, "-chardev", "socket,id=vhost0,path=/run/nestor/v0.sock,reconnect=1"));
  EXPECT_TRUE(Has(a, "-device", "vhost-user-blk-pci,id=disk0,chardev=vhost0,num-queues=2"));
  EXPECT_TRUE(Has(a, "-append", "console=ttyS0 idle=poll virtio_blk.poll_queues=1"));
}

TEST(NestorVm, QueuesFollowVcpusAndPollQueues) {
  VmOptions o = Base();
  o.vcpus = 2;
  o.cpus = {0, 2};
  o.poll_queues = 1;
  o.idle_poll = false;
  o.append = "root=/dev/vda";
  o.sockets.push_back("/run/a,b.sock");
  std::vector<std::string> w;
  ASSERT_TRUE(Validate(&o, Host(), &w).ok());
  auto a = BuildQemuArgv(o);
  EXPECT_TRUE(Has(a, "-smp", "2,maxcpus=3"));
  EXPECT_TRUE(Has(a, "-device", "vhost-user-blk-pci,id=disk1,chardev=vhost1,num-queues=3"));
  EXPECT_TRUE(Has(a, "-chardev", "socket,id=vhost1,path=/run/a,,b.sock,reconnect=1"));
  EXPECT_TRUE(Has(a, "-append", "console=ttyS0 virtio_blk.poll_queues=1 root=/dev/vda"));

  o.poll_queues = 0;
  a = BuildQemuArgv(o);
  EXPECT_TRUE(Has(a, "-smp", "2"));
  EXPECT_TRUE(Has(a, "-device", "vhost-user-blk-pci,id=disk0,chardev=vhost0,num-queues=2"));
  EXPECT_TRUE(Has(a, "-append", "console=ttyS0 root=/dev/vda"));
}

TEST(NestorVm, RefusesOverlappingCpus) {
  VmOptions o = Base();
  o.cpus = {0, 1, 2};
  o.reactor_cpus = {2, 3, 1};
  std::vector<std::string> w;
  Status st = Validate(&o, Host(), &w);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("on CPUs 1-2"), std::string::npos) << st.message();
  o.allow_shared_cpus = true;
  EXPECT_TRUE(Validate(&o, Host(), &w).ok());
  EXPECT_FALSE(w.empty());
}

TEST(NestorVm, ReactorCpusRequiredAndDefaultCpus) {
  VmOptions o = Base();
  o.cpus.clear();
  o.reactor_cpus.clear();
  std::vector<std::string> w;
  EXPECT_FALSE(Validate(&o, Host(), &w).ok());
  o.reactor_cpus = {1, 3};
  ASSERT_TRUE(Validate(&o, Host(), &w).ok());
  EXPECT_EQ(o.cpus, (std::vector<int>{0, 2}));
  o.cpus.clear();
  o.reactor_cpus = {0, 1, 2, 3};
  EXPECT_FALSE(Validate(&o, Host(), &w).ok());
}

TEST(NestorVm, Hugepages) {
  VmOptions o = Base();
  o.hugepages = true;
  o.dry_run = false;
  o.sockets = {"/"};  // not reached: hugepages are checked first
  std::vector<std::string> w;
  Status st = Validate(&o, Host(), &w);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("free"), std::string::npos) << st.message();

  HostInfo h = Host();
  h.hugepage_pools[0].free_pages = 256;
  o.dry_run = true;
  ASSERT_TRUE(Validate(&o, h, &w).ok());
  EXPECT_EQ(o.hugepage_size, 2ull << 20);
  auto a = BuildQemuArgv(o);
  EXPECT_TRUE(
      Has(a, "-object", "memory-backend-memfd,id=mem,size=512M,share=on,hugetlb=on,hugetlbsize=2M,prealloc=on"));

  o.hugepage_path = "/dev/hugepages";
  h.hugepage_path_is_hugetlbfs = true;
  h.hugepage_path_page_size = 2ull << 20;
  ASSERT_TRUE(Validate(&o, h, &w).ok());
  a = BuildQemuArgv(o);
  EXPECT_TRUE(Has(a, "-object", "memory-backend-file,id=mem,size=512M,mem-path=/dev/hugepages,share=on,prealloc=on"));
}

TEST(NestorVm, QueueLimit) {
  VmOptions o = Base();
  o.vcpus = 40;
  o.cpus = {0};
  std::vector<std::string> w;
  EXPECT_FALSE(Validate(&o, Host(), &w).ok());  // 80 queues
  o.poll_queues = 24;
  EXPECT_TRUE(Validate(&o, Host(), &w).ok());
}

TEST(NestorVm, VcpuThreadNames) {
  EXPECT_EQ(VcpuIndexFromComm("CPU 0/TCG"), 0);
  EXPECT_EQ(VcpuIndexFromComm("CPU 12/KVM\n"), 12);
  EXPECT_FALSE(VcpuIndexFromComm("ALL CPUs/TCG"));
  EXPECT_FALSE(VcpuIndexFromComm("qemu-system-x86"));
  EXPECT_FALSE(VcpuIndexFromComm("CPU 1/XYZ"));
}

TEST(NestorVm, Quoting) {
  EXPECT_EQ(ShellQuote("-m"), "-m");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(FormatCommand({"q", "-m", "1G", "-nodefaults", "-append", "x y"}),
            "q \\\n  -m 1G \\\n  -nodefaults \\\n  -append 'x y'\n");
  EXPECT_EQ(FormatCpuList({3, 0, 1, 2, 6, 6}), "0-3,6");
}

TEST(NestorVm, CloneOfOptions) {
  VmOptions o = Base();
  o.sockets.clear();
  std::vector<std::string> w;
  EXPECT_FALSE(Validate(&o, Host(), &w).ok());  // neither --socket nor --clone-of
  o.keep = true;
  o.clone_of = "gold-snap";
  o.control_socket = "/run/nestor/control.ctl";
  ASSERT_TRUE(Validate(&o, Host(), &w).ok());
  EXPECT_EQ(o.clone_name, DefaultCloneName("gold-snap", "nestor-vm", getpid()));
  EXPECT_EQ(PlannedCloneSocket(o), "/run/nestor/" + o.clone_name + ".sock");
  EXPECT_EQ(CloneParams(o).dump(),
            "{\"snapshot\":\"gold-snap\",\"name\":\"" + o.clone_name + "\",\"export\":{\"queues\":2}}");

  VmOptions bad = Base();
  bad.keep = true;  // --keep without --clone-of
  EXPECT_FALSE(Validate(&bad, Host(), &w).ok());
  bad = Base();
  bad.clone_of = "gold";
  bad.clone_name = "-no";
  EXPECT_FALSE(Validate(&bad, Host(), &w).ok());
  bad.clone_name = "";
  bad.clone_of = "bad/name";
  EXPECT_FALSE(Validate(&bad, Host(), &w).ok());
}

TEST(NestorVm, DefaultCloneName) {
  EXPECT_EQ(DefaultCloneName("gold-snap", "fn1", 42), "gold-snap-fn1-42");
  EXPECT_EQ(DefaultCloneName("gold", "my vm,x", 7), "gold-my-vm-x-7");
  // Always a valid volume name, however long the parts.
  std::string snap(63, 's'), vm(200, 'v');
  for (const auto& [a, b] :
       {std::pair{snap, vm}, std::pair{snap, std::string("fn")}, std::pair{std::string("g"), vm}}) {
    std::string n = DefaultCloneName(a, b, 4194304);
    EXPECT_TRUE(volume::ValidateVolumeName(n).ok()) << n;
    EXPECT_TRUE(n.ends_with("-4194304")) << n;
    EXPECT_EQ(n.substr(0, std::min<size_t>(a.size(), 16)), a.substr(0, 16)) << n;
  }
}

TEST(NestorVm, CloneSocketFromResult) {
  using nlohmann::ordered_json;
  EXPECT_EQ(SocketFromCloneResult(ordered_json::parse(R"({"name":"c","export":{"socket":"/d/c.sock"}})")), "/d/c.sock");
  EXPECT_EQ(SocketFromCloneResult(ordered_json::parse(R"({"name":"c","socket":"/e/c.sock"})")), "/e/c.sock");
  EXPECT_EQ(SocketFromCloneResult(ordered_json::parse(R"({"name":"c"})")), "");
  VmOptions o;
  o.clone_name = "c";
  o.control_socket = "ctl";
  EXPECT_EQ(PlannedCloneSocket(o), "./c.sock");
  o.control_socket = "/ctl";
  EXPECT_EQ(PlannedCloneSocket(o), "/c.sock");
}

}  // namespace
}  // namespace nestor::vm
