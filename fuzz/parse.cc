// Fuzz target parse: nestord's text parsers: sizes and CPU lists
// (base/size.*), the --volume spec and the whole command line
// (daemon/options.*), volume names and sizes (volume/limits.*), poll
// modes (reactor/reactor.h), and nestor-vm's command line with its
// validation and QEMU command (tools/nestor-vm, a library). Each must return a Status for any input (no
// crash, no exit()), and what it accepts must hold the documented limits.
//
// Input: selector:u8, text. selector % 6 picks the parser:
//   0 ParseSize (and HumanSize of the result)
//   1 ParseCpuList
//   2 ParseVolumeSpec
//   3 ParseOptions: the text split into argv on NUL or '\n' (at most 64
//     arguments), after argv[0] "nestord"; CLI11's usage and error text
//     goes to a null stream
//   4 ValidateVolumeName, ParsePollMode, and ParseSize +
//     ValidateVolumeSize / ValidateExportSize on the same text
//   5 nestor-vm: the text split into argv as for 3, after "nestor-vm";
//     what parses is validated against a fixed host (8 CPUs, 2 MiB
//     hugepages, no KVM) and, if valid, turned into QEMU's argv
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "base/size.h"
#include "daemon/options.h"
#include "rbd/rbd.h"
#include "nestor-vm/options.h"
#include "nestor-vm/qemu_command.h"
#include "reactor/reactor.h"
#include "volume/limits.h"

namespace nestor {
namespace {

[[noreturn]] void Broken(const std::string& what, const std::string& input) {
  fprintf(stderr, "parse: %s (input '%s')\n", what.c_str(), input.c_str());
  abort();
}

void Size(const std::string& text) {
  auto s = ParseSize(text);
  if (s.ok()) (void)HumanSize(*s);
}

void CpuList(const std::string& text) {
  auto c = ParseCpuList(text);
  if (!c.ok()) return;
  if (c->empty()) Broken("empty CPU list accepted", text);
  for (int cpu : *c) {
    if (cpu < 0 || cpu >= 4096) Broken("CPU out of range accepted", text);
  }
}

void CheckSpec(const daemon::VolumeSpec& v, const std::string& text) {
  if (!volume::ValidateVolumeName(v.name).ok()) Broken("bad volume name accepted", text);
  if (v.queues < 1 || v.queues > 64) Broken("queue count out of range accepted", text);
  if (!v.queue_reactor.empty() && v.queue_reactor.size() != v.queues) Broken("reactor list size mismatch", text);
  if (v.backend != "mem" && v.backend != "null" && v.backend != "file" && v.backend != "rbd") {
    Broken("unknown backend accepted", text);
  }
  bool own_size = v.backend == "file" || v.backend == "rbd";  // size 0: the file's or image's
  if (!(own_size && v.size == 0) && !volume::ValidateExportSize(v.size).ok()) Broken("bad size accepted", text);
  // What nestord will open must parse again as POOL/IMAGE (rbd/rbd.h).
  if (v.backend == "rbd" && !rbd::ParseImageSpec(v.path).ok()) Broken("bad rbd POOL/IMAGE accepted", text);
  if (v.force && v.backend != "file") Broken("force without a file accepted", text);
}

void VolumeSpec(const std::string& text) {
  auto v = daemon::ParseVolumeSpec(text);
  if (v.ok()) CheckSpec(*v, text);
}

// argv for a parser: argv0, then the text split on NUL or '\n' (at most 64).
std::vector<std::string> SplitArgs(const char* argv0, const std::string& text) {
  std::vector<std::string> args{argv0};
  std::string cur;
  for (char ch : text) {
    if (ch == '\0' || ch == '\n') {
      args.push_back(cur);
      cur.clear();
      if (args.size() > 64) break;
    } else {
      cur += ch;
    }
  }
  if (args.size() <= 64) args.push_back(cur);
  return args;
}

// Runs parse(argc, argv) with CLI11's usage and error text (std::cout,
// std::cerr) going nowhere.
template <typename Parse>
auto Quietly(std::vector<std::string>& args, Parse parse) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::ostringstream sink;
  auto* out = std::cout.rdbuf(sink.rdbuf());
  auto* err = std::cerr.rdbuf(sink.rdbuf());
  auto r = parse(static_cast<int>(args.size()), argv.data());
  std::cout.rdbuf(out);
  std::cerr.rdbuf(err);
  return r;
}

void CommandLine(const std::string& text) {
  std::vector<std::string> args = SplitArgs("nestord", text);
  auto o = Quietly(args, [](int argc, char** argv) { return daemon::ParseOptions(argc, argv); });
  if (!o.ok()) return;
  if (o->volumes.empty() && o->pool.empty()) Broken("neither --volume nor --pool, accepted", text);
  if (o->reactors < 1 || o->reactors > 256) Broken("reactor count out of range accepted", text);
  std::set<std::string> names;
  for (const daemon::VolumeSpec& v : o->volumes) {
    CheckSpec(v, text);
    if (!names.insert(v.name).second) Broken("duplicate volume accepted", text);
    for (int r : v.queue_reactor) {
      if (r < 0 || r >= o->reactors) Broken("reactor index out of range accepted", text);
    }
  }
}

void Limits(const std::string& text) {
  (void)volume::ValidateVolumeName(text);
  (void)reactor::ParsePollMode(text);
  auto s = ParseSize(text);
  if (!s.ok()) return;
  if (volume::ValidateVolumeSize(*s).ok() &&
      (*s < volume::kMinVolumeBytes || *s > volume::kMaxVolumeBytes || *s % volume::kVolumeAlign != 0)) {
    Broken("volume size out of the limits accepted", text);
  }
  (void)volume::ValidateExportSize(*s);
}

void VmCommandLine(const std::string& text) {
  std::vector<std::string> args = SplitArgs("nestor-vm", text);
  auto o = Quietly(args, vm::ParseArgs);
  if (!o.ok()) return;
  vm::HostInfo host;
  host.allowed_cpus = {0, 1, 2, 3, 4, 5, 6, 7};
  host.hugepage_pools = {{2u << 20, 512}};
  std::vector<std::string> warnings;
  if (!vm::Validate(&*o, host, &warnings).ok()) return;
  (void)vm::FormatCommand(vm::BuildQemuArgv(*o));
}

}  // namespace
}  // namespace nestor

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0: nestor::Size(text); break;
    case 1: nestor::CpuList(text); break;
    case 2: nestor::VolumeSpec(text); break;
    case 3: nestor::CommandLine(text); break;
    case 4: nestor::Limits(text); break;
    case 5: nestor::VmCommandLine(text); break;
  }
  return 0;
}
