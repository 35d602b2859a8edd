#include "control/rpc_server.h"

#include <gtest/gtest.h>

namespace nestor::control {
namespace {

TEST(RpcServer, DispatchesAndMapsErrors) {
  RpcServer s("/nonexistent");
  s.Register("echo", [](const Json& p) -> Result<Json> { return p; });
  s.Register("missing", [](const Json&) -> Result<Json> { return Status::Error(ENOENT, "no volume 'x'"); });
  s.Register("typed", [](const Json& p) -> Result<Json> { return Json(p.at("n").get<int>() + 1); });
  auto r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":1}})"));
  EXPECT_EQ(r["result"]["a"], 1);
  EXPECT_EQ(r["id"], 1);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":"x","method":"missing"})"));
  EXPECT_EQ(r["error"]["code"], -ENOENT);
  EXPECT_EQ(r["error"]["data"]["errno"], "ENOENT");
  EXPECT_EQ(r["id"], "x");
  r = Json::parse(s.Handle("{not json"));
  EXPECT_EQ(r["error"]["code"], -32700);
  r = Json::parse(s.Handle(R"({"id":2,"method":"echo"})"));
  EXPECT_EQ(r["error"]["code"], -32600);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":3,"method":"nope"})"));
  EXPECT_EQ(r["error"]["code"], -32601);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":4,"method":"typed","params":{"n":"str"}})"));
  EXPECT_EQ(r["error"]["code"], -32602);
  r = Json::parse(s.Handle(R"({"jsonrpc":"2.0","id":5,"method":"echo","params":[1]})"));
  EXPECT_EQ(r["error"]["code"], -32602);
}

}  // namespace
}  // namespace nestor::control
