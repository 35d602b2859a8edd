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
  EXPECT_FALSE(ParseVolumeSpec("v").ok());                      // no size
  EXPECT_FALSE(ParseVolumeSpec("v,size=1000").ok());            // not sector multiple
  EXPECT_FALSE(ParseVolumeSpec("../x,size=1M").ok());           // bad name
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,backend=disk").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,queues=0").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,colour=red").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,queues=2,reactor=0").ok());
  EXPECT_TRUE(ParseVolumeSpec("v,size=1M,backend=null").ok());
  EXPECT_FALSE(ParseVolumeSpec("v,size=1M,force").ok());  // force is for file: only
  EXPECT_FALSE(ParseVolumeSpec("v,backend=file:/x,force=1").ok());
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
  EXPECT_FALSE(ParseVolumeSpec("v,size=16777216T").ok());              // overflows 64 bits
}

}  // namespace nestor::daemon
