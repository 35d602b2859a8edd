#include "daemon/options.h"

#include <gtest/gtest.h>

namespace nestor::daemon {

TEST(VolumeSpec, Full) {
  auto v = ParseVolumeSpec("vol-1,size=64M,backend=file:/tmp/x.img,queues=2,readonly,reactor=0/1");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->name, "vol-1");
  EXPECT_EQ(v->size, 64u << 20);
  EXPECT_EQ(v->backend, "file");
  EXPECT_EQ(v->path, "/tmp/x.img");
  EXPECT_EQ(v->queues, 2);
  EXPECT_TRUE(v->read_only);
  EXPECT_EQ(v->queue_reactor, (std::vector<int>{0, 1}));
}

TEST(VolumeSpec, Errors) {
  EXPECT_FALSE(ParseVolumeSpec("v").ok());             // no size
  EXPECT_FALSE(ParseVolumeSpec("v,size=1000").ok());   // not sector multiple
  EXPECT_FALSE(ParseVolumeSpec("../x,size=1M").ok());  // bad name
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,backend=disk").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,queues=0").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,colour=red").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,queues=2,reactor=0").ok());
  EXPECT_TRUE(ParseVolumeSpec("v,size=1M,backend=null").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,force").ok());  // force is for file: only
  EXPECT_FALSE(ParseVolumeSpec("v,backend=file:/x,force=1").ok());
}

TEST(VolumeSpec, Rbd) {
  auto v = ParseVolumeSpec("r1,backend=rbd:rbd/img-1,queues=2");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->backend, "rbd");
  EXPECT_EQ(v->path, "rbd/img-1");
  EXPECT_EQ(v->size, 0u);  // the image's own size
  EXPECT_TRUE(ParseVolumeSpec("r1,size=1G,backend=rbd:p/i").ok());
  for (const char* bad : {"r1,backend=rbd:", "r1,backend=rbd:img", "r1,backend=rbd:/img", "r1,backend=rbd:p/",
                          "r1,backend=rbd:p/a/b", "r1,backend=rbd:p/i@snap", "r1,backend=rbd:p/i,force"}) {
    auto e = ParseVolumeSpec(bad);
    EXPECT_FALSE(e.ok()) << bad;
    if (!e.ok() && std::string(bad).find("force") == std::string::npos) {
      EXPECT_NE(e.status().message().find("rbd:POOL/IMAGE"), std::string::npos) << e.status().message();
    }
  }
}

TEST(VolumeSpec, Force) {
  auto v = ParseVolumeSpec("v,backend=file:/tmp/pool.img,readonly,force");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_TRUE(v->force);
  EXPECT_TRUE(v->read_only);
  EXPECT_FALSE(ParseVolumeSpec("v,backend=file:/tmp/x.img")->force);
}

// The limits are the volume manager's (volume/limits.h), not our own.
TEST(VolumeSpec, SharesTheVolumeLimits) {
  EXPECT_TRUE(ParseVolumeSpec(std::string(63, 'n') + ",size=1M").ok());
  EXPECT_FALSE(ParseVolumeSpec(std::string(64, 'n') + ",size=1M").ok());
  EXPECT_FALSE(ParseVolumeSpec("-v,size=1M").ok());
  EXPECT_TRUE(ParseVolumeSpec("v,size=512").ok());
  EXPECT_TRUE(ParseVolumeSpec("v,size=4194304T").ok());  // 2^62: the maximum
  auto big = ParseVolumeSpec("v,size=4194305T");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("exceeds the maximum volume size"), std::string::npos)
      << big.status().ToString();
  EXPECT_FALSE(ParseVolumeSpec("v,size=18446744073709551104").ok());  // UINT64_MAX - 511: 512-aligned
  EXPECT_FALSE(ParseVolumeSpec("v,size=16777216T").ok());             // overflows 64 bits
}

// Issue #11: who may attach. Names are resolved while parsing; errors name
// the key.
TEST(VolumeSpec, SocketAccess) {
  auto v = ParseVolumeSpec("v,size=1M,socket-owner=0,socket-group=65534,socket-mode=0660,allow-uid=1000:1001:1000");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->access.socket_uid, 0u);
  EXPECT_EQ(v->access.socket_gid, 65534u);
  EXPECT_EQ(v->access.socket_mode, 0660u);
  EXPECT_EQ(v->access.allow_uids, (std::vector<uint32_t>{1000, 1001}));  // deduplicated
  EXPECT_TRUE(v->access.allow_gids.empty());
  // Underscores too, names, modes without the leading 0.
  v = ParseVolumeSpec("v,size=1M,socket_group=root,socket_mode=600,allow_gid=root:7,socket_owner=root");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->access.socket_gid, 0u);
  EXPECT_EQ(v->access.socket_uid, 0u);
  EXPECT_EQ(v->access.socket_mode, 0600u);
  EXPECT_EQ(v->access.allow_gids, (std::vector<uint32_t>{0, 7}));
  // Defaults: unset, as before.
  v = ParseVolumeSpec("v,size=1M");
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->access.IsDefault());

  auto err = [](const std::string& spec) {
    auto r = ParseVolumeSpec(spec);
    EXPECT_FALSE(r.ok()) << spec;
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(err("v,size=1M,socket-group=no-such-group-nestor").find("socket-group: no group 'no-such-group-nestor'"),
            std::string::npos);
  EXPECT_NE(err("v,size=1M,socket-owner=no-such-user-nestor").find("socket-owner: no user"), std::string::npos);
  EXPECT_NE(err("v,size=1M,socket-mode=0888").find("socket-mode:"), std::string::npos);
  EXPECT_NE(err("v,size=1M,socket-mode=01777").find("socket-mode:"), std::string::npos);
  EXPECT_NE(err("v,size=1M,socket-mode=").find("socket-mode:"), std::string::npos);
  EXPECT_NE(err("v,size=1M,allow-uid=").find("allow-uid:"), std::string::npos);
  EXPECT_NE(err("v,size=1M,allow-uid=1:").find("allow-uid:"), std::string::npos);
  EXPECT_NE(err("v,size=1M,allow-gid=4294967295").find("allow-gid:"), std::string::npos);
  EXPECT_NE(err("v,size=1M,allow-uid=1:2:3:4:5,allow-gid=6:7:8:9").find("the limit is 8"), std::string::npos);
}

// --pool-queues only means something with --export-all; silently ignored
// it hid a mistake (issue #16), so it is refused.
TEST(Options, PoolQueuesNeedsExportAll) {
  auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "nestord");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return ParseOptions(static_cast<int>(argv.size()), argv.data());
  };
  auto bad = parse({"--socket-dir", "/tmp/x", "--pool", "/tmp/p.img", "--pool-queues", "2"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--export-all"), std::string::npos) << bad.status().ToString();
  auto good = parse({"--socket-dir", "/tmp/x", "--pool", "/tmp/p.img", "--export-all", "--pool-queues", "2"});
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->pool_queues, 2);
  EXPECT_TRUE(parse({"--socket-dir", "/tmp/x", "--pool", "rbd:vms"}).ok());
}

TEST(Options, LogFormat) {
  auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), {"nestord", "--socket-dir", "/tmp/x", "--volume", "v,size=1M,backend=mem"});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return ParseOptions(static_cast<int>(argv.size()), argv.data());
  };
  EXPECT_FALSE(parse({})->log_json);
  EXPECT_TRUE(parse({"--log-format", "json"})->log_json);
  EXPECT_FALSE(parse({"--log-format", "text"})->log_json);
  EXPECT_FALSE(parse({"--log-format", "xml"}).ok());
}

}  // namespace nestor::daemon
