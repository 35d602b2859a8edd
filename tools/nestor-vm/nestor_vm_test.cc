// Unit tests of nestor-vm's argument checks and QEMU command builder.
#include <gtest/gtest.h>

#include <algorithm>

#include "nestor-vm/clone.h"
#include "nestor-vm/host.h"
#include "nestor-vm/net.h"
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

// --- network (--net, --net-vhost, --net-busy-poll) ---

HostInfo NetHost() {
  HostInfo h = Host();
  h.taps["tap0"] = TapInfo{.is_tap = true, .multi_queue = false, .up = true};
  h.taps["mq0"] = TapInfo{.is_tap = true, .multi_queue = true, .up = true};
  h.taps["eth9"] = TapInfo{.is_tap = false, .multi_queue = false, .up = true};
  h.pci_drivers["0000:3b:02.1"] = "vfio-pci";
  h.pci_drivers["0000:3b:02.2"] = "iavf";
  h.pci_drivers["0000:3b:02.3"] = "";
  return h;
}

std::vector<std::string> Values(const std::vector<std::string>& argv, const std::string& opt) {
  std::vector<std::string> out;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == opt) out.push_back(argv[i + 1]);
  }
  return out;
}

TEST(NestorVmNet, ParseNetSpec) {
  auto t = ParseNetSpec("tap:tap0");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->kind, NetKind::kTap);
  EXPECT_EQ(t->name, "tap0");
  EXPECT_EQ(t->mac, DefaultMac("tap0"));
  auto m = ParseNetSpec("tap:fn1,mac=52:54:00:AB:cd:01");
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->mac, "52:54:00:ab:cd:01");
  auto v = ParseNetSpec("vf:3b:02.1");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->kind, NetKind::kVf);
  EXPECT_EQ(v->name, "0000:3b:02.1");  // domain added
  EXPECT_EQ(ParseNetSpec("vf:0000:3B:02.7")->name, "0000:3b:02.7");
  for (const char* bad : {"", "tap", "tap:", "tap:a,b", "tap:0123456789abcdef", "tap:a/b", "tap:a b", "tap:..",
                          "tap:x,mac=01:00:00:00:00:01", "tap:x,mac=52:54:00:00:00", "tap:x,speed=10",
                          "vf:", "vf:3b:02", "vf:3b:02.8", "vf:zz:02.1", "vf:0000:3b:20.1", "bridge:br0", "user"}) {
    auto r = ParseNetSpec(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("--net"), std::string::npos) << r.status().message();
    }
  }
}

TEST(NestorVmNet, DefaultMacIsStableLocalUnicast) {
  EXPECT_EQ(DefaultMac("tap0"), DefaultMac("tap0"));
  EXPECT_NE(DefaultMac("tap0"), DefaultMac("tap1"));
  std::string mac = DefaultMac("fn-net");
  ASSERT_EQ(mac.size(), 17u);
  EXPECT_TRUE(mac.starts_with("52:54:00:")) << mac;  // locally administered, unicast
}

TEST(NestorVmNet, TapSingleQueue) {
  VmOptions o = Base();
  o.nets = {*ParseNetSpec("tap:tap0")};
  std::vector<std::string> w;
  ASSERT_TRUE(Validate(&o, NetHost(), &w).ok());
  EXPECT_FALSE(o.vhost_net);  // auto, /dev/vhost-net not usable
  auto a = BuildQemuArgv(o);
  EXPECT_TRUE(Has(a, "-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no,vhost=off"));
  EXPECT_TRUE(Has(a, "-device", "virtio-net-pci,id=nic0,netdev=net0,mac=" + DefaultMac("tap0")));
  EXPECT_TRUE(Has(a, "-append",
                  "console=ttyS0 idle=poll virtio_blk.poll_queues=1 sysctl.net.core.busy_poll=50 "
                  "sysctl.net.core.busy_read=50"));
}

TEST(NestorVmNet, TapMultiQueueVhostAndBusyPoll) {
  VmOptions o = Base();
  o.vcpus = 4;
  o.cpus = {0, 2, 3};
  o.nets = {*ParseNetSpec("tap:mq0,mac=52:54:00:00:00:07")};
  o.net_busy_poll_us = 0;
  o.append = "quiet";
  HostInfo h = NetHost();
  h.vhost_net_usable = true;
  std::vector<std::string> w;
  ASSERT_TRUE(Validate(&o, h, &w).ok());
  EXPECT_TRUE(o.vhost_net);
  auto a = BuildQemuArgv(o);
  EXPECT_TRUE(Has(a, "-netdev", "tap,id=net0,ifname=mq0,script=no,downscript=no,vhost=on,queues=4"));
  EXPECT_TRUE(Has(a, "-device", "virtio-net-pci,id=nic0,netdev=net0,mac=52:54:00:00:00:07,mq=on,vectors=10"));
  EXPECT_TRUE(Has(a, "-append", "console=ttyS0 idle=poll virtio_blk.poll_queues=4 quiet"));  // no busy poll

  o.net_vhost = VhostMode::kOff;
  ASSERT_TRUE(Validate(&o, h, &w).ok());
  EXPECT_FALSE(o.vhost_net);
  EXPECT_TRUE(Has(BuildQemuArgv(o), "-netdev", "tap,id=net0,ifname=mq0,script=no,downscript=no,vhost=off,queues=4"));
}

TEST(NestorVmNet, TapRefusals) {
  auto refused = [](VmOptions o, const HostInfo& h, const std::string& want) {
    std::vector<std::string> w;
    Status st = Validate(&o, h, &w);
    EXPECT_FALSE(st.ok()) << want;
    EXPECT_NE(st.message().find(want), std::string::npos) << st.message();
  };
  VmOptions o = Base();
  o.dry_run = false;
  o.sockets.clear();
  o.clone_of = "gold";  // no socket file to check
  o.control_socket = "/c.ctl";
  o.kernel.clear();
  o.disk_image = "/dev/null";
  o.nets = {*ParseNetSpec("tap:nope0")};
  refused(o, NetHost(), "tap nope0 does not exist in this network namespace");
  refused(o, NetHost(), "ip tuntap add nope0 mode tap");
  o.nets = {*ParseNetSpec("tap:eth9")};
  refused(o, NetHost(), "eth9 is not a tap device");
  o.nets = {*ParseNetSpec("tap:mq0")};  // 1 vCPU: one queue, QEMU opens it without IFF_MULTI_QUEUE
  refused(o, NetHost(), "tap mq0 is multi_queue");
  o.vcpus = 2;
  o.cpus = {0, 2};
  o.nets = {*ParseNetSpec("tap:tap0")};
  refused(o, NetHost(), "tap tap0 is not multi_queue");
  o.net_vhost = VhostMode::kOn;
  o.nets = {*ParseNetSpec("tap:mq0")};
  refused(o, NetHost(), "--net-vhost on: /dev/vhost-net");
  o.net_vhost = VhostMode::kAuto;
  o.nets = {*ParseNetSpec("tap:mq0"), *ParseNetSpec("tap:mq0")};
  refused(o, NetHost(), "mq0 given twice");
  o.nets = {*ParseNetSpec("tap:mq0")};
  o.net_busy_poll_us = 20000;
  refused(o, NetHost(), "--net-busy-poll");

  // With --dry-run the host facts are warnings.
  o.net_busy_poll_us = 50;
  o.dry_run = true;
  o.nets = {*ParseNetSpec("tap:nope0")};
  std::vector<std::string> w;
  ASSERT_TRUE(Validate(&o, NetHost(), &w).ok());
  EXPECT_TRUE(std::any_of(w.begin(), w.end(), [](const std::string& s) { return s.find("nope0") != s.npos; }));
  // --disk-image: the busy-poll sysctls cannot be passed, the warning says which.
  EXPECT_TRUE(std::any_of(w.begin(), w.end(), [](const std::string& s) {
    return s.find("sysctl.net.core.busy_poll=50 sysctl.net.core.busy_read=50") != s.npos;
  }));
}

TEST(NestorVmNet, VfPassthrough) {
  VmOptions o = Base();
  o.dry_run = false;
  o.sockets.clear();
  o.clone_of = "gold";
  o.control_socket = "/c.ctl";
  o.kernel.clear();
  o.disk_image = "/dev/null";
  o.nets = {*ParseNetSpec("vf:0000:3b:02.1"), *ParseNetSpec("tap:tap0")};
  std::vector<std::string> w;
  ASSERT_TRUE(Validate(&o, NetHost(), &w).ok());
  auto a = BuildQemuArgv(o);
  EXPECT_EQ(Values(a, "-device").back(), "virtio-net-pci,id=nic1,netdev=net1,mac=" + DefaultMac("tap0"));
  EXPECT_TRUE(Has(a, "-device", "vfio-pci,id=nic0,host=0000:3b:02.1"));
  EXPECT_EQ(Values(a, "-netdev").size(), 1u);

  auto refused = [&](const char* spec, const std::string& want) {
    o.nets = {*ParseNetSpec(spec)};
    Status st = Validate(&o, NetHost(), &w);
    EXPECT_FALSE(st.ok()) << spec;
    EXPECT_NE(st.message().find(want), std::string::npos) << st.message();
  };
  refused("vf:0000:3b:02.2", "0000:3b:02.2 is bound to iavf, not vfio-pci");
  refused("vf:0000:3b:02.2", "driver_override");
  refused("vf:0000:3b:02.3", "0000:3b:02.3 is bound to no driver, not vfio-pci");
  refused("vf:0000:3b:02.4", "no PCI device 0000:3b:02.4");
}

TEST(NestorVmNet, ProbeReadsSysfs) {
  // lo exists in every network namespace and is no tap; no machine has an
  // interface no-such-if-0123 or a PCI domain ffff.
  VmOptions o;
  o.nets = {*ParseNetSpec("tap:lo"), NetSpec{NetKind::kTap, "no-such-if-0123", ""},
            NetSpec{NetKind::kVf, "ffff:ff:1f.7", ""}};
  HostInfo h;
  ProbeNets(o, &h);
  ASSERT_EQ(h.taps.count("lo"), 1u);
  EXPECT_FALSE(h.taps["lo"].is_tap);
  EXPECT_TRUE(h.taps["lo"].up);
  EXPECT_EQ(h.taps.count("no-such-if-0123"), 0u);
  EXPECT_TRUE(h.pci_drivers.empty());
}

}  // namespace
}  // namespace nestor::vm
