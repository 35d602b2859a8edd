// Human output of nestorctl: one printer per RPC result (docs/rpc.md).
// Printers are tolerant: a missing or mistyped field prints as "-". They
// return false only when the result has the wrong shape altogether (e.g.
// not a list for volume_list); the caller then reports a malformed reply.
//
// Thread: the main thread; everything goes to stdout.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/size.h"

namespace nestor::ctl {

using nlohmann::ordered_json;

using ::nestor::HumanSize;  // base/size.h

// Columns aligned on their widest cell; align[i] is 'l' or 'r'. The last
// column is not padded.
class Table {
 public:
  Table(std::vector<std::string> header, std::string align);
  void Add(std::vector<std::string> row);
  std::string Render(const std::string& indent = "") const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::string align_;
};

// The result pretty-printed, two-space indent, one trailing newline.
void PrintJson(const ordered_json& j);

bool PrintPoolInfo(const ordered_json& r);
bool PrintVolumeList(const ordered_json& r);
bool PrintSnapshotList(const ordered_json& r);
// "volume", "snapshot" or "clone" (a volume with a parent), from the
// volume JSON's "snapshot" and "parent"; "-" if it has neither.
std::string ImageType(const ordered_json& v);
bool PrintExportList(const ordered_json& r);
bool PrintReactorList(const ordered_json& r);
bool PrintStats(const ordered_json& r);
bool PrintStatus(const ordered_json& r);
// "read_iops unlimited, write_iops 5000, read_bps unlimited, write_bps 100.0M/s"
std::string QosText(const ordered_json& qos);

// Field helpers: "-" when missing or of the wrong type.
std::string SizeField(const ordered_json& o, const char* key);
std::string IntField(const ordered_json& o, const char* key);
std::string StrField(const ordered_json& o, const char* key);

}  // namespace nestor::ctl
