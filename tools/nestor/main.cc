// nestor: offline administration of nestor pools and their thin volumes
// (docs/volumes.md). The commands that change a pool need it closed: while
// nestord serves it (holds its lock) they are refused, naming nestord's pid
// and the nestorctl command to use. The read-only ones (pool info, pool
// check, volume list, snapshot list) then show nestord's last commit, read
// without the lock (volume/committed_view.h; docs/volumes.md, "Reading a
// served pool").
//
//   nestor pool create PATH [--size SIZE] [--cluster-size SIZE] [--force]
//   nestor pool info PATH [--json]
//   nestor pool check PATH [--json]
//   nestor volume create NAME --pool PATH --size SIZE [--preallocate]
//   nestor volume delete NAME --pool PATH
//   nestor volume resize NAME --pool PATH --size SIZE [--force]
//   nestor pool upgrade PATH
//   nestor volume list --pool PATH [--json]
//   nestor volume clone SNAPSHOT NAME --pool PATH
//   nestor volume inflate NAME --pool PATH
//   nestor volume decouple NAME --pool PATH
//   nestor snapshot create VOLUME NAME --pool PATH
//   nestor snapshot delete NAME --pool PATH
//   nestor snapshot list --pool PATH [--json]
//
// Exit codes (commands.h, kExitCodeHelp): 0 ok, 1 check found problems,
// 2 usage error / invalid argument, 3 not found (ENOENT), 4 already
// exists (EEXIST: volume name, pool or foreign signature on the device),
// 5 no space (ENOSPC), 6 busy (EBUSY), 7 would discard data (ENOTEMPTY),
// 8 corrupt pool (EUCLEAN), 9 any other error. Errors go to stderr as
// "nestor: <message>"; results go to stdout.
//
// Logging: the volume manager's INFO lines are hidden unless -v (or
// NESTOR_LOG=info|debug); -vv shows debug lines. Warnings always show.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <string_view>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/log.h"
#include "base/size.h"
#include "common/cli.h"
#include "nestor/commands.h"
#include "base/version.h"
#include "volume/format.h"

namespace nestor::tool {
namespace {

// ParseSize for an option value; false after printing the error.
bool SizeArg(const std::string& option, const std::string& text, uint64_t* out) {
  auto s = ParseSize(text);
  if (!s.ok()) {
    std::fprintf(stderr, "nestor: %s: %s\n", option.c_str(), s.status().message().c_str());
    return false;
  }
  *out = *s;
  return true;
}

int Main(int argc, char** argv) {
  CLI::App app{"nestor: offline administration of nestor pools and thin volumes", "nestor"};
  app.set_version_flag("--version", VersionLine("nestor", volume::kFormatVersion), "print the version and exit");
  app.footer(kExitCodeHelp);
  app.fallthrough();  // -v after a subcommand too
  app.require_subcommand(1);
  int verbose = 0;
  app.add_flag("-v,--verbose", verbose, "show the volume manager's log lines (-vv: debug)");
  std::string journal_dir = g_journal_dir;
  app.add_option("--journal-dir", journal_dir,
                 "where nestord keeps its process-crash journals: opening a pool applies what a killed nestord "
                 "left there (default /run/nestor/journal; 'none': ignore)");

  std::string path, name, source, size_text, cluster_text = "64K";
  bool force = false, json = false, preallocate = false;

  CLI::App* pool = app.add_subcommand("pool", "create, inspect and check pools");
  pool->require_subcommand(1);
  CLI::App* pool_create = pool->add_subcommand(
      "create",
      "format PATH as a pool; creates a sparse file of --size if PATH does not exist. Refuses a "
      "device holding a pool, a file system, a partition table or any other signature unless --force");
  pool_create->add_option("PATH", path, "file or block device")->required();
  pool_create->add_option("--size", size_text,
                          "pool size, e.g. 256M or 1T (required for a new file; default: the device's size)");
  pool_create->add_option("--cluster-size", cluster_text,
                          "allocation unit, a power of two from 4K to 64M (default 64K)");
  pool_create->add_flag("--force", force, "overwrite an existing pool or signature");

  CLI::App* pool_info = pool->add_subcommand(
      "info", "show a pool's size, usage and metadata layout (while nestord serves it: its last commit)");
  pool_info->add_option("PATH", path, "the pool's file or block device")->required();
  pool_info->add_flag("--json", json, "machine-readable output (sizes in bytes)");

  CLI::App* pool_check =
      pool->add_subcommand("check",
                           "verify a pool's metadata read-only; exit 0 if clean, 1 if problems found (while nestord "
                           "serves it: its last commit)");
  pool_check->add_option("PATH", path, "the pool's file or block device")->required();
  pool_check->add_flag("--json", json, "machine-readable output");

  std::string backup;
  CLI::App* pool_repair = pool->add_subcommand(
      "repair",
      "rebuild damaged metadata from everything consistent in it: saves the metadata area to --backup first, "
      "prints what could not be kept; exit 0 if the repaired pool checks clean");
  pool_repair->add_option("PATH", path, "the pool's file or block device")->required();
  pool_repair->add_option("--backup", backup,
                          "where the metadata area is saved first (default: PATH.metadata-<time>.bak for a file, "
                          "./<name>.metadata-<time>.bak for a device)");

  CLI::App* pool_upgrade = pool->add_subcommand(
      "upgrade",
      "rewrite a version 1 pool as the current format version (2: snapshots and clones); a current pool is left "
      "alone. Older nestor refuses an upgraded pool");
  pool_upgrade->add_option("PATH", path, "the pool's file or block device")->required();

  CLI::App* vol = app.add_subcommand("volume", "create, delete, resize, clone and list volumes of a pool");
  vol->require_subcommand(1);
  CLI::App* vol_create = vol->add_subcommand("create", "create a thin volume (or a fully reserved one)");
  vol_create->add_option("NAME", name, "volume name: 1-63 of [A-Za-z0-9._-], not starting with '.' or '-'")->required();
  vol_create->add_option("--pool", path, "the pool's file or block device")->required();
  vol_create->add_option("--size", size_text, "volume size, a multiple of 4K, e.g. 10G")->required();
  vol_create->add_flag("--preallocate", preallocate, "reserve all of the volume's space in the pool now");

  CLI::App* vol_delete = vol->add_subcommand("delete", "delete a volume and free its space");
  vol_delete->add_option("NAME", name, "volume name")->required();
  vol_delete->add_option("--pool", path, "the pool's file or block device")->required();

  CLI::App* vol_resize = vol->add_subcommand("resize", "grow or shrink a volume");
  vol_resize->add_option("NAME", name, "volume name")->required();
  vol_resize->add_option("--pool", path, "the pool's file or block device")->required();
  vol_resize->add_option("--size", size_text, "new size, a multiple of 4K")->required();
  vol_resize->add_flag("--force", force, "shrink even below written data, discarding it");

  CLI::App* vol_list =
      vol->add_subcommand("list",
                          "list a pool's volumes, snapshots and clones, with parents, children and space (while "
                          "nestord serves it: its last commit)");
  vol_list->add_option("--pool", path, "the pool's file or block device")->required();
  vol_list->add_flag("--json", json, "machine-readable output (sizes in bytes)");

  CLI::App* vol_clone =
      vol->add_subcommand("clone", "create a writable clone of a snapshot (it reads through to it until written)");
  vol_clone->add_option("SNAPSHOT", source, "the snapshot to clone")->required();
  vol_clone->add_option("NAME", name, "name of the new clone")->required();
  vol_clone->add_option("--pool", path, "the pool's file or block device")->required();

  CLI::App* vol_inflate =
      vol->add_subcommand("inflate", "copy into a clone everything it reads from its snapshots, then drop its parent");
  vol_inflate->add_option("NAME", name, "the clone")->required();
  vol_inflate->add_option("--pool", path, "the pool's file or block device")->required();

  CLI::App* vol_decouple = vol->add_subcommand(
      "decouple", "copy into a clone what its parent snapshot holds itself, then take the grandparent as parent");
  vol_decouple->add_option("NAME", name, "the clone")->required();
  vol_decouple->add_option("--pool", path, "the pool's file or block device")->required();

  CLI::App* snap = app.add_subcommand("snapshot", "read-only point-in-time images of volumes");
  snap->require_subcommand(1);
  CLI::App* snap_create =
      snap->add_subcommand("create", "snapshot a volume or clone (instant; the volume becomes a clone of it)");
  snap_create->add_option("VOLUME", source, "the volume or clone to snapshot")->required();
  snap_create->add_option("NAME", name, "name of the new snapshot")->required();
  snap_create->add_option("--pool", path, "the pool's file or block device")->required();

  CLI::App* snap_delete = snap->add_subcommand(
      "delete", "delete a snapshot (refused while it has clones: delete, inflate or decouple them)");
  snap_delete->add_option("NAME", name, "snapshot name")->required();
  snap_delete->add_option("--pool", path, "the pool's file or block device")->required();

  CLI::App* snap_list = snap->add_subcommand(
      "list", "list a pool's snapshots with their clones and space (while nestord serves it: its last commit)");
  snap_list->add_option("--pool", path, "the pool's file or block device")->required();
  snap_list->add_flag("--json", json, "machine-readable output (sizes in bytes)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::string sub = cli::SubcommandError(app, argc, argv, {"--journal-dir"});
    std::fprintf(stderr, "nestor: %s\n(see nestor --help)\n", sub.empty() ? e.what() : sub.c_str());
    return kExitUsage;
  }
  g_journal_dir = journal_dir == "none" ? "" : journal_dir;

  if (verbose >= 2) {
    SetLogLevel(LogLevel::kDebug);
  } else if (verbose == 1) {
    SetLogLevel(LogLevel::kInfo);
  } else if (std::getenv("NESTOR_LOG") == nullptr) {
    SetLogLevel(LogLevel::kWarn);
  }

  uint64_t size = 0;
  if (*pool_create) {
    uint64_t cluster = 0;
    if (!size_text.empty() && !SizeArg("--size", size_text, &size)) return kExitUsage;
    if (!SizeArg("--cluster-size", cluster_text, &cluster)) return kExitUsage;
    return PoolCreate(path, size, cluster, force);
  }
  if (*pool_info) return PoolInfo(path, json);
  if (*pool_check) return PoolCheck(path, json);
  if (*pool_repair) return PoolRepair(path, backup);
  if (*pool_upgrade) return PoolUpgrade(path);
  if (*vol_create) {
    if (!SizeArg("--size", size_text, &size)) return kExitUsage;
    return VolumeCreate(path, name, size, preallocate);
  }
  if (*vol_delete) return VolumeDelete(path, name);
  if (*vol_resize) {
    if (!SizeArg("--size", size_text, &size)) return kExitUsage;
    return VolumeResize(path, name, size, force);
  }
  if (*vol_list) return VolumeList(path, json);
  if (*vol_clone) return VolumeClone(path, source, name);
  if (*vol_inflate) return VolumeInflate(path, name);
  if (*vol_decouple) return VolumeDecouple(path, name);
  if (*snap_create) return SnapshotCreate(path, source, name);
  if (*snap_delete) return SnapshotDelete(path, name);
  if (*snap_list) return SnapshotList(path, json);
  return kExitUsage;  // unreachable: a subcommand is required
}

}  // namespace
}  // namespace nestor::tool

int main(int argc, char** argv) { return nestor::tool::Main(argc, argv); }
