#include "control/params.h"

#include <gtest/gtest.h>

namespace nestor::control {
namespace {

using Json = nlohmann::json;

ParamSpec Spec() {
  return {{.name = "name", .types = kString, .required = true},
          {.name = "queues", .types = kUint, .min = 1, .max = 64},
          {.name = "readonly", .types = kBool},
          {.name = "owner", .types = kString | kUint},
          {.name = "uids", .types = kList, .max = 99, .max_items = 2},
          {.name = "users", .types = kList, .item_types = kString | kUint},
          {.name = "qos", .types = kObject, .fields = {{.name = "read_iops", .types = kUint}}}};
}

// The field named, or "ok".
std::string Check(const char* params) {
  std::string field;
  Status st = CheckParams(Json::parse(params), Spec(), &field);
  return st.ok() ? "ok" : field + ": " + st.message();
}

TEST(Params, AcceptsWhatTheSpecSays) {
  EXPECT_EQ(Check(R"({"name":"a"})"), "ok");
  EXPECT_EQ(Check(R"({"name":"a","queues":64,"readonly":false,"owner":"qemu","uids":[1,2],"qos":{"read_iops":5}})"),
            "ok");
  EXPECT_EQ(Check(R"({"name":"a","owner":107})"), "ok");
  EXPECT_EQ(Check(R"({"name":"a","users":["qemu",107]})"), "ok");
}

// Issue #11: each of these used to be accepted and reported as success.
TEST(Params, RefusesWrongTypesAndUnknownKeysNamingTheField) {
  EXPECT_EQ(Check(R"({"name":"a","readonly":"yes"})"), "readonly: readonly must be a boolean (true or false)");
  EXPECT_EQ(Check(R"({"name":"a","read_only":true})"),
            "read_only: unknown parameter 'read_only' (expected: name, queues, readonly, owner, uids, users, qos)");
  EXPECT_EQ(Check(R"({"name":"a","qos":{"readiops":1}})"),
            "qos.readiops: unknown parameter 'qos.readiops' (expected: read_iops)");
  EXPECT_EQ(Check(R"({"name":"a","qos":{"read_iops":-1}})"),
            "qos.read_iops: qos.read_iops must be a non-negative integer");
  EXPECT_EQ(Check(R"({"name":"a","queues":1.5})"), "queues: queues must be a non-negative integer");
  EXPECT_EQ(Check(R"({"name":"a","queues":0})"), "queues: queues must be 1..64 (got 0)");
  EXPECT_EQ(Check(R"({"queues":1})"), "name: missing parameter 'name' (a string)");
  EXPECT_EQ(Check(R"({"name":"a","owner":true})"), "owner: owner must be a string or a non-negative integer");
  EXPECT_EQ(Check(R"({"name":"a","uids":[1,100]})"), "uids[1]: uids[1] must be 0..99 (got 100)");
  EXPECT_EQ(Check(R"({"name":"a","uids":[1,2,3]})"), "uids: uids has 3 items, at most 2");
  EXPECT_EQ(Check(R"({"name":"a","uids":["x"]})"), "uids[0]: uids[0] must be a non-negative integer");
  EXPECT_EQ(Check(R"({"name":"a","users":[true]})"), "users[0]: users[0] must be a string or a non-negative integer");
  EXPECT_EQ(Check(R"({"name":"a","users":"qemu"})"), "users: users must be an array");
  EXPECT_EQ(Check(R"([1])"), ": params must be an object");
}

}  // namespace
}  // namespace nestor::control
