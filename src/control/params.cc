#include "control/params.h"

#include <fmt/format.h>

namespace nestor::control {
namespace {

using Json = nlohmann::json;

// What the handlers read with get<uint64_t>() (JSON "-0" is a signed 0: no).
bool IsUint(const Json& v) { return v.is_number_unsigned(); }

bool HasType(const Json& v, unsigned types) {
  if (types & kAny) return true;
  if ((types & kString) && v.is_string()) return true;
  if ((types & kUint) && IsUint(v)) return true;
  if ((types & kBool) && v.is_boolean()) return true;
  if ((types & kObject) && v.is_object()) return true;
  if ((types & kList) && v.is_array()) return true;
  return false;
}

std::string Join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string KeyList(const ParamSpec& spec) {
  std::string out;
  for (const Param& p : spec) out += (out.empty() ? "" : ", ") + p.name;
  return out.empty() ? "none" : out;
}

Status Fail(std::string* field, const std::string& name, const std::string& msg) {
  if (field != nullptr) *field = name;
  return Status::Invalid(msg);
}

Status CheckRange(const Param& p, uint64_t v, const std::string& name, std::string* field) {
  if (v < p.min || v > p.max) {
    return Fail(field, name, fmt::format("{} must be {}..{} (got {})", name, p.min, p.max, v));
  }
  return Status::Ok();
}

Status CheckValue(const Param& p, const Json& v, const std::string& name, std::string* field);

Status CheckObject(const Json& obj, const ParamSpec& spec, const std::string& prefix, std::string* field) {
  if (!obj.is_object()) {
    return Fail(field, prefix, (prefix.empty() ? std::string("params") : prefix) + " must be an object");
  }
  for (const auto& [key, value] : obj.items()) {
    const Param* p = nullptr;
    for (const Param& q : spec) {
      if (q.name == key) p = &q;
    }
    std::string name = Join(prefix, key);
    if (p == nullptr) {
      return Fail(field, name, fmt::format("unknown parameter '{}' (expected: {})", name, KeyList(spec)));
    }
    NESTOR_RETURN_IF_ERROR(CheckValue(*p, value, name, field));
  }
  for (const Param& p : spec) {
    if (p.required && !obj.contains(p.name)) {
      std::string name = Join(prefix, p.name);
      return Fail(field, name, fmt::format("missing parameter '{}' ({})", name, DescribeTypes(p.types)));
    }
  }
  return Status::Ok();
}

Status CheckValue(const Param& p, const Json& v, const std::string& name, std::string* field) {
  if (!HasType(v, p.types)) return Fail(field, name, fmt::format("{} must be {}", name, DescribeTypes(p.types)));
  if (p.types & kAny) return Status::Ok();
  if (IsUint(v) && (p.types & kUint)) return CheckRange(p, v.get<uint64_t>(), name, field);
  if (v.is_object()) return CheckObject(v, p.fields, name, field);
  if (v.is_array()) {
    if (v.size() > p.max_items) {
      return Fail(field, name, fmt::format("{} has {} items, at most {}", name, v.size(), p.max_items));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      std::string item = fmt::format("{}[{}]", name, i);
      if (!HasType(v[i], p.item_types)) return Fail(field, item, item + " must be " + DescribeTypes(p.item_types));
      if (IsUint(v[i])) NESTOR_RETURN_IF_ERROR(CheckRange(p, v[i].get<uint64_t>(), item, field));
    }
  }
  return Status::Ok();
}

}  // namespace

std::string DescribeTypes(unsigned types) {
  std::string out;
  auto add = [&](unsigned t, const char* what) {
    if (!(types & t)) return;
    out += (out.empty() ? "" : " or ") + std::string(what);
  };
  add(kString, "a string");
  add(kUint, "a non-negative integer");
  add(kBool, "a boolean (true or false)");
  add(kObject, "an object");
  add(kList, "an array");
  add(kAny, "any value");
  return out;
}

Status CheckParams(const Json& params, const ParamSpec& spec, std::string* field) {
  return CheckObject(params, spec, "", field);
}

}  // namespace nestor::control
