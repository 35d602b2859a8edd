// The stored export's text form: round trips, and hostile or damaged
// metadata (anyone with write access to the Ceph pool can write it) is
// refused with EUCLEAN naming the key, never trusted or crashed on.
#include "rbd/export_meta.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace nestor::rbd {
namespace {

TEST(ExportMeta, RoundTripsDefaultsAndEveryField) {
  volume::ExportSettings d;
  auto back = DecodeExport(EncodeExport(d));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, d);

  volume::ExportSettings s;
  s.queues = 64;
  s.read_only = true;
  s.read_iops = 1000;
  s.write_iops = 2;
  s.read_bps = uint64_t{1} << 40;
  s.write_bps = 7;
  s.access.socket_uid = 0;
  s.access.socket_gid = 1234;
  s.access.socket_mode = 0660;
  s.access.allow_uids = {0, 1000, 4294967294u};
  s.access.allow_gids = {5, 6, 7, 8, 9};
  s.frontends = 64;
  back = DecodeExport(EncodeExport(s));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);

  volume::ExportSettings w;  // several writers, asked for explicitly
  w.frontends = 3;
  w.shared_writers = true;
  back = DecodeExport(EncodeExport(w));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, w);
}

TEST(ExportMeta, SeveralWritersOnlyWhenAskedFor) {
  auto s = DecodeExport("v1 queues=1 readonly=0 frontends=2");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().err(), EUCLEAN);
  EXPECT_FALSE(DecodeExport("v1 frontends=0").ok());
  EXPECT_FALSE(DecodeExport("v1 frontends=65 readonly=1").ok());
  EXPECT_TRUE(DecodeExport("v1 frontends=2 readonly=1").ok());
}

TEST(ExportMeta, IgnoresUnknownKeysFromANewerNestor) {
  auto s = DecodeExport("v1 queues=3 future_knob=yes readonly=1");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->queues, 3);
  EXPECT_TRUE(s->read_only);
}

TEST(ExportMeta, RefusesDamagedOrHostileText) {
  struct Case {
    const char* text;
    const char* names;  // what the message must name
  };
  const Case cases[] = {
      {"", "version"},
      {"v2 queues=1", "version"},
      {"queues=1", "version"},
      {"v1 queues=0", "queues"},
      {"v1 queues=65", "queues"},
      {"v1 queues=-1", "queues"},
      {"v1 queues=1x", "queues"},
      {"v1 queues=", "queues"},
      {"v1 queues", "queues"},
      {"v1 readonly=2", "readonly"},
      {"v1 read_iops=18446744073709551616", "read_iops"},
      {"v1 socket_mode=01000", "socket_mode"},
      {"v1 socket_uid=4294967296", "socket_uid"},
      {"v1 allow_uids=1,,2", "allow_uids"},
      {"v1 allow_uids=4294967296", "allow_uids"},
      {"v1 allow_gids=1,2,3,4,5,6,7,8,9", "allow_gids"},
      {"v1 allow_gids=", "allow_gids"},
  };
  for (const Case& c : cases) {
    auto s = DecodeExport(c.text);
    ASSERT_FALSE(s.ok()) << "accepted: '" << c.text << "'";
    EXPECT_EQ(s.status().err(), EUCLEAN) << c.text;
    EXPECT_NE(s.status().message().find(c.names), std::string::npos) << c.text << ": " << s.status().message();
  }
}

}  // namespace
}  // namespace nestor::rbd
