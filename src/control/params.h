// Params: the declared shape of a JSON-RPC method's `params`, checked before
// the method runs. It is the one validation path for nestorctl and raw
// clients: an unknown key, a missing required key, a value of the wrong
// type or out of range is refused with -32602 and the field named
// (docs/rpc.md, "Errors"), so a typo never turns into a silent default.
//
// Thread: none (pure functions over immutable specs). Errors: Status
// EINVAL whose message names the field ("qos.read_iops must be a
// non-negative integer"); CheckParams sets *field to the dotted name.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"

namespace nestor::control {

// The JSON types a parameter may take (a bit set: kString | kUint accepts
// either, e.g. a user name or a uid).
enum ParamType : unsigned {
  kString = 1,
  kUint = 2,  // a non-negative integer, within [min, max]
  kBool = 4,
  kObject = 8,  // checked against `fields`
  kList = 16,   // an array of at most max_items items, each of item_types (uints within [min, max])
  kAny = 32,    // any JSON value, unchecked (tests only: no method of nestord takes one)
};

struct Param {
  std::string name = {};
  unsigned types = kString;
  bool required = false;
  uint64_t min = 0;
  uint64_t max = std::numeric_limits<uint64_t>::max();
  std::vector<Param> fields = {};  // kObject: its keys (any other key is refused)
  unsigned item_types = kUint;     // kList: what each item may be
  size_t max_items = 1024;         // kList: at most this many
};

using ParamSpec = std::vector<Param>;

// Checks params (must be an object) against spec. On error *field (if not
// null) gets the dotted name of the offending key ("" for params itself).
[[nodiscard]] Status CheckParams(const nlohmann::json& params, const ParamSpec& spec, std::string* field);

// "a boolean", "a string or a non-negative integer", ... (for messages).
std::string DescribeTypes(unsigned types);

}  // namespace nestor::control
