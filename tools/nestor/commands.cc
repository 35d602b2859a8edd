#include "nestor/commands.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "base/exit_code.h"
#include "base/fd.h"
#include "base/log.h"
#include "nestor/signature.h"
#include "volume/aligned_buffer.h"
#include "volume/committed_view.h"
#include "volume/format.h"
#include "volume/pool.h"

namespace nestor::tool {

using nlohmann::ordered_json;
using volume::Pool;

const char kExitCodeHelp[] =
    "Exit codes:\n"
    "  0  success (pool check: the pool is clean)\n"
    "  1  pool check found problems\n"
    "  2  usage error or invalid argument\n"
    "  3  not found (no such volume or pool file)\n"
    "  4  already exists (volume name taken; device holds a pool or another signature)\n"
    "  5  no space left in the pool\n"
    "  6  busy (volume or device in use)\n"
    "  7  would discard data (shrinking below written data without --force)\n"
    "  8  corrupt pool metadata\n"
    "  9  other error (I/O, permissions, not a nestor pool, ...)\n";

int ExitCodeFor(const Status& st) { return ExitCodeForErrno(st.err()); }

int Fail(const Status& st) {
  std::fprintf(stderr, "nestor: %s\n", st.ToString().c_str());
  return ExitCodeFor(st);
}

namespace {

// Pool::Open's messages do not name the device; errors of opening the
// file itself already do.
Status Prefixed(const std::string& path, const Status& st) {
  if (st.message().find(path) != std::string::npos) return st;
  return Status::Error(st.err(), path + ": " + st.ToString());
}

}  // namespace

std::string g_journal_dir = "/run/nestor/journal";

namespace {

// The tool writes no data, so it needs a journal only to apply what a
// killed nestord left: none to apply if the directory does not exist.
std::string JournalDirToApply() {
  struct stat st {};
  return !g_journal_dir.empty() && stat(g_journal_dir.c_str(), &st) == 0 ? g_journal_dir : "";
}

Result<std::unique_ptr<Pool>> OpenPool(const std::string& path, bool read_only, bool check_mode = false) {
  auto dev = volume::OpenFilePoolDevice(path, false, 0, read_only);
  if (!dev.ok()) return Prefixed(path, dev.status());
  volume::PoolOptions opts;
  opts.read_only = read_only;
  opts.check_mode = check_mode;
  opts.journal_dir = JournalDirToApply();
  auto pool = Pool::Open(std::move(dev.value()), opts);
  if (!pool.ok()) return Prefixed(path, pool.status());
  return std::move(pool.value());
}

// A pool opened for one of the read-only commands.
struct ReadOnlyPool {
  std::unique_ptr<Pool> pool;
  std::optional<volume::CheckReport> report;  // check, while served: the report the load was confirmed with
};

// Raises the log level to errors for its lifetime unless -v asked for more:
// the warnings of loads of a served pool that are retried are noise.
class QuietLoads {
 public:
  QuietLoads() : was_(GetLogLevel()) {
    if (was_ == LogLevel::kWarn) SetLogLevel(LogLevel::kError);
  }
  ~QuietLoads() { SetLogLevel(was_); }
  QuietLoads(const QuietLoads&) = delete;
  QuietLoads& operator=(const QuietLoads&) = delete;

 private:
  LogLevel was_;
};

// info, list and check: the pool opened read-only under a shared lock, or,
// while another process holds it (nestord serving it), its last commit read
// without the lock (volume/committed_view.h), with a note on stderr saying
// so. Nothing is written either way.
Result<ReadOnlyPool> OpenForReading(const std::string& path, bool check_mode) {
  auto opened = OpenPool(path, true, check_mode);
  if (opened.ok() || opened.status().err() != EBUSY) {
    if (!opened.ok()) return opened.status();
    return ReadOnlyPool{std::move(opened.value()), std::nullopt};
  }
  auto view = [&] {
    QuietLoads quiet;
    return volume::LoadCommittedView(path, check_mode);
  }();
  if (!view.ok()) return Prefixed(path, view.status());
  std::fprintf(stderr, "nestor: %s: showing its last commit (seq %lu), read without the lock\n",
               opened.status().message().c_str(), static_cast<unsigned long>(view->pool->Info().commit_seq));
  std::optional<volume::CheckReport> report;
  if (check_mode) report = std::move(view->report);
  return ReadOnlyPool{std::move(view->pool), std::move(report)};
}

// A command that changes the pool refused because another process holds
// it (EBUSY): says what to use instead while nestord serves it. (Held by
// another nestor command, the pool is free again when that one ends.)
Status WhileServed(const Status& st, const std::string& instead) {
  if (st.err() != EBUSY || st.message().find(" (nestor)") != std::string::npos) return st;
  return Status::Error(EBUSY, st.message() + ": " + instead);
}

std::string Online(const std::string& command) { return "use `nestorctl " + command + "` while it serves the pool"; }

const char kStopFirst[] = "stop it first (nestorctl has no such command)";

void PrintJson(const ordered_json& j) { std::printf("%s\n", j.dump(2).c_str()); }

std::string Bytes(uint64_t b) { return fmt::format("{} ({} bytes)", HumanSize(b), b); }

std::string CreatedTime(uint64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm tmv{};
  gmtime_r(&t, &tmv);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tmv);
  return buf;
}

// What is on an existing device before pool create formats it.
struct Existing {
  bool exists = false;
  bool is_pool = false;
  std::string signature;  // libblkid's description; "" if none
};

Result<Existing> Inspect(const std::string& path) {
  Existing e;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return e;
    return Status::FromErrno("stat " + path);
  }
  e.exists = true;
  if (S_ISBLK(st.st_mode)) {
    // O_EXCL on a block device fails with EBUSY while it is mounted or
    // held (device mapper, md, another O_EXCL user): never format that.
    UniqueFd ex(open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC));
    if (!ex.valid() && errno == EBUSY) {
      return Status::Error(EBUSY, path + " is in use (mounted, or held by another program)");
    }
  } else if (!S_ISREG(st.st_mode)) {
    return Status::Invalid(path + ": not a file or block device");
  }
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  uint64_t magic = 0;
  if (pread(fd.get(), &magic, sizeof(magic), 0) == static_cast<ssize_t>(sizeof(magic))) {
    e.is_pool = magic == volume::kSuperMagic;
  }
  if (!e.is_pool) {
    auto sig = FindSignature(path);
    if (!sig.ok()) return sig.status();
    e.signature = *sig;
  }
  return e;
}

ordered_json VolumeJson(const volume::VolumeInfo& v) {
  ordered_json j{{"name", v.name},
                 {"id", v.id},
                 {"size", v.size},
                 {"allocated_bytes", v.allocated_bytes},
                 {"reserved_bytes", v.reserved_bytes},
                 {"extents", v.extents},
                 {"snapshot", v.snapshot},
                 {"parent", v.parent.empty() ? ordered_json(nullptr) : ordered_json(v.parent)},
                 {"children", v.children},
                 {"exported", v.exported}};
  if (v.exported) {  // the stored export nestord serves again at start
    const volume::ExportSettings& e = v.export_settings;
    j["export"] = {{"queues", e.queues},
                   {"readonly", e.read_only},
                   {"qos",
                    {{"read_iops", e.read_iops},
                     {"write_iops", e.write_iops},
                     {"read_bps", e.read_bps},
                     {"write_bps", e.write_bps}}}};
  }
  if (v.space_known) {
    j["shared_bytes"] = v.shared_bytes;
    j["delete_frees_bytes"] = v.delete_frees_bytes;
  }
  return j;
}

const char* ImageType(const volume::VolumeInfo& v) {
  if (v.snapshot) return "snapshot";
  return v.parent.empty() ? "volume" : "clone";
}

// "no", or the stored export: "yes (2q)", "yes (1q, ro)".
std::string ExportedColumn(const volume::VolumeInfo& v) {
  if (!v.exported) return "no";
  return "yes (" + std::to_string(v.export_settings.queues) + "q" + (v.export_settings.read_only ? ", ro)" : ")");
}

std::string Joined(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ",") + n;
  return s.empty() ? "-" : s;
}

// The table of `volume list` and `snapshot list` (space filled in).
void PrintImages(const std::vector<volume::VolumeInfo>& vols, bool snapshots_only) {
  size_t w = 4, pw = 6;
  for (const auto& v : vols) {
    w = std::max(w, v.name.size());
    pw = std::max(pw, v.parent.size());
  }
  const int iw = static_cast<int>(w), ipw = static_cast<int>(pw);
  if (snapshots_only) {
    std::printf("%-*s %-*s %10s %10s %10s %10s %-12s %s\n", iw, "NAME", ipw, "PARENT", "SIZE", "ALLOCATED", "SHARED",
                "FREES", "EXPORTED", "CLONES");
  } else {
    std::printf("%-*s %-8s %-*s %10s %10s %10s %10s %10s %8s %-12s %s\n", iw, "NAME", "TYPE", ipw, "PARENT", "SIZE",
                "ALLOCATED", "SHARED", "FREES", "RESERVED", "EXTENTS", "EXPORTED", "CHILDREN");
  }
  for (const auto& v : vols) {
    std::string parent = v.parent.empty() ? "-" : v.parent;
    std::string shared = v.space_known ? HumanSize(v.shared_bytes) : "-";
    std::string frees = v.space_known ? HumanSize(v.delete_frees_bytes) : "-";
    std::string exported = ExportedColumn(v);
    if (snapshots_only) {
      std::printf("%-*s %-*s %10s %10s %10s %10s %-12s %s\n", iw, v.name.c_str(), ipw, parent.c_str(),
                  HumanSize(v.size).c_str(), HumanSize(v.allocated_bytes).c_str(), shared.c_str(), frees.c_str(),
                  exported.c_str(), Joined(v.children).c_str());
    } else {
      std::printf("%-*s %-8s %-*s %10s %10s %10s %10s %10s %8lu %-12s %s\n", iw, v.name.c_str(), ImageType(v), ipw,
                  parent.c_str(), HumanSize(v.size).c_str(), HumanSize(v.allocated_bytes).c_str(), shared.c_str(),
                  frees.c_str(), HumanSize(v.reserved_bytes).c_str(), static_cast<unsigned long>(v.extents),
                  exported.c_str(), Joined(v.children).c_str());
    }
  }
}

}  // namespace

int PoolCreate(const std::string& path, uint64_t size, uint64_t cluster_size, bool force) {
  if (cluster_size > UINT32_MAX) return Fail(Status::Invalid("cluster size too large"));
  auto existing = Inspect(path);
  if (!existing.ok()) return Fail(existing.status());
  if (!existing->exists && size == 0) return Fail(Status::Invalid(path + " does not exist: give --size"));
  if (existing->is_pool && !force) {
    return Fail(Status::Error(EEXIST, path + " already holds a nestor pool (use --force to overwrite it)"));
  }
  if (!existing->signature.empty() && !force) {
    return Fail(
        Status::Error(EEXIST, path + " holds a signature: " + existing->signature + "; use --force to overwrite it"));
  }
  // A file this command created goes away again if the format fails.
  struct RemoveOnFailure {
    const std::string* path = nullptr;
    ~RemoveOnFailure() {
      if (path != nullptr) unlink(path->c_str());
    }
  } created{existing->exists ? nullptr : &path};
  auto dev = volume::OpenFilePoolDevice(path, true, size);
  if (!dev.ok()) return Fail(WhileServed(Prefixed(path, dev.status()), kStopFirst));
  // Refuse an impossible layout before erasing anything.
  auto plan = volume::PlanLayout((*dev)->size_bytes(), static_cast<uint32_t>(cluster_size));
  if (!plan.ok()) return Fail(Prefixed(path, plan.status()));
  if (!existing->signature.empty()) {
    // Stale magic elsewhere on the device (backup GPT, md superblock at
    // the end, ...) would keep being recognised after the format.
    auto wiped = WipeSignatures(path);
    if (!wiped.ok()) return Fail(wiped.status());
    std::fprintf(stderr, "nestor: erased %d signature(s) on %s (%s)\n", *wiped, path.c_str(),
                 existing->signature.c_str());
  }
  Status st = Pool::Format(dev->get(), static_cast<uint32_t>(cluster_size), force);
  if (!st.ok()) return Fail(Prefixed(path, st));
  created.path = nullptr;
  volume::PoolOptions opts;
  opts.read_only = true;  // nothing to commit: just read back what was written
  auto pool = Pool::Open(std::move(dev.value()), opts);
  if (!pool.ok()) return Fail(Prefixed(path, pool.status()));
  const volume::Superblock& sb = (*pool)->superblock();
  std::printf("created pool %s: %s, cluster size %s, %lu data clusters (%s), uuid %s\n", path.c_str(),
              HumanSize(sb.device_bytes).c_str(), HumanSize(sb.cluster_size).c_str(),
              static_cast<unsigned long>(sb.data_clusters), HumanSize(sb.data_clusters * sb.cluster_size).c_str(),
              volume::UuidString(sb.uuid).c_str());
  return kExitOk;
}

int PoolInfo(const std::string& path, bool json) {
  auto opened = OpenForReading(path, false);
  if (!opened.ok()) return Fail(opened.status());
  volume::PoolInfo i = opened->pool->Info();
  const volume::Superblock& sb = i.sb;
  uint64_t cs = sb.cluster_size;
  uint64_t available = i.free_clusters > i.reserved_unused_clusters ? i.free_clusters - i.reserved_unused_clusters : 0;
  if (json) {
    PrintJson(ordered_json{
        {"path", path},
        {"uuid", volume::UuidString(sb.uuid)},
        {"format_version", sb.version},
        {"created_unix", sb.created_unix},
        {"size", sb.device_bytes},
        {"cluster_size", sb.cluster_size},
        {"data_clusters", sb.data_clusters},
        {"data_bytes", sb.data_clusters * cs},
        {"used_clusters", i.used_clusters},
        {"used_bytes", i.used_clusters * cs},
        {"free_clusters", i.free_clusters},
        {"free_bytes", i.free_clusters * cs},
        {"reserved_clusters", i.reserved_unused_clusters},
        {"reserved_bytes", i.reserved_unused_clusters * cs},
        {"available_bytes", available * cs},
        {"volumes", i.volumes},
        {"extents", i.extents},
        {"commit_seq", i.commit_seq},
        {"log_used_bytes", i.log_used_bytes},
        {"layout",
         {{"superblock_offset", 0},
          {"checkpoint_offsets", {sb.ckpt_offset[0], sb.ckpt_offset[1]}},
          {"checkpoint_bytes", sb.ckpt_bytes},
          {"log_offset", sb.log_offset},
          {"log_bytes", sb.log_bytes},
          {"data_offset", sb.data_offset}}},
    });
    return kExitOk;
  }
  std::printf("pool:            %s\n", path.c_str());
  std::printf("uuid:            %s\n", volume::UuidString(sb.uuid).c_str());
  std::printf("format version:  %u%s, created %s\n", sb.version,
              sb.version < volume::kFormatVersion ? " (no snapshots or clones until `nestor pool upgrade`)" : "",
              CreatedTime(sb.created_unix).c_str());
  std::printf("size:            %s\n", Bytes(sb.device_bytes).c_str());
  std::printf("cluster size:    %s\n", Bytes(cs).c_str());
  std::printf("data clusters:   %lu (%s)\n", static_cast<unsigned long>(sb.data_clusters),
              HumanSize(sb.data_clusters * cs).c_str());
  std::printf("used:            %lu clusters (%s)\n", static_cast<unsigned long>(i.used_clusters),
              HumanSize(i.used_clusters * cs).c_str());
  std::printf("free:            %lu clusters (%s)\n", static_cast<unsigned long>(i.free_clusters),
              HumanSize(i.free_clusters * cs).c_str());
  std::printf("reserved:        %lu clusters (%s) promised to preallocated volumes, not yet written\n",
              static_cast<unsigned long>(i.reserved_unused_clusters),
              HumanSize(i.reserved_unused_clusters * cs).c_str());
  std::printf("available:       %s for thin allocation\n", HumanSize(available * cs).c_str());
  std::printf("volumes:         %lu\n", static_cast<unsigned long>(i.volumes));
  std::printf("extents:         %lu\n", static_cast<unsigned long>(i.extents));
  std::printf("commit seq:      %lu\n", static_cast<unsigned long>(i.commit_seq));
  std::printf("log used:        %s of %s\n", HumanSize(i.log_used_bytes).c_str(), HumanSize(sb.log_bytes).c_str());
  std::printf("layout:\n");
  std::printf("  superblock     offset %-14d %s\n", 0, HumanSize(volume::kBlock).c_str());
  for (int s = 0; s < 2; ++s) {
    std::printf("  checkpoint %d   offset %-14lu %s\n", s, static_cast<unsigned long>(sb.ckpt_offset[s]),
                HumanSize(sb.ckpt_bytes).c_str());
  }
  std::printf("  log            offset %-14lu %s\n", static_cast<unsigned long>(sb.log_offset),
              HumanSize(sb.log_bytes).c_str());
  std::printf("  data           offset %-14lu %s\n", static_cast<unsigned long>(sb.data_offset),
              HumanSize(sb.data_clusters * cs).c_str());
  return kExitOk;
}

int PoolCheck(const std::string& path, bool json) {
  auto opened = OpenForReading(path, true);
  if (!opened.ok()) {
    if (json) {
      PrintJson(ordered_json{{"path", path}, {"clean", false}, {"error", opened.status().ToString()}});
    }
    return Fail(opened.status());
  }
  volume::CheckReport r = opened->report ? *opened->report : opened->pool->Check();
  if (json) {
    PrintJson(ordered_json{{"path", path},
                           {"clean", r.clean()},
                           {"problems", r.problems},
                           {"notices", r.notices},
                           {"volumes", r.volumes},
                           {"extents", r.extents},
                           {"used_clusters", r.used_clusters},
                           {"free_clusters", r.free_clusters}});
  } else if (r.clean()) {
    for (const std::string& n : r.notices) std::printf("%s: notice: %s\n", path.c_str(), n.c_str());
    std::printf("%s: clean (%lu volume(s), %lu extent(s), %lu used and %lu free clusters)\n", path.c_str(),
                static_cast<unsigned long>(r.volumes), static_cast<unsigned long>(r.extents),
                static_cast<unsigned long>(r.used_clusters), static_cast<unsigned long>(r.free_clusters));
  } else {
    for (const std::string& n : r.notices) std::printf("%s: notice: %s\n", path.c_str(), n.c_str());
    for (const std::string& p : r.problems) std::printf("%s: problem: %s\n", path.c_str(), p.c_str());
    std::printf("%s: %zu problem(s) found\n", path.c_str(), r.problems.size());
  }
  return r.clean() ? kExitOk : kExitProblems;
}

namespace {

Status SaveMetadata(volume::PoolDevice* dev, uint64_t bytes, const std::string& to) {
  UniqueFd out(open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out.valid()) return Status::FromErrno("create " + to);
  const uint64_t chunk = 4ull << 20;
  volume::AlignedBuffer buf(chunk);
  for (uint64_t off = 0; off < bytes; off += chunk) {
    uint64_t len = std::min(chunk, bytes - off);
    NESTOR_RETURN_IF_ERROR(dev->ReadAt(off, buf.data(), len));
    if (pwrite(out.get(), buf.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) {
      return Status::FromErrno("write " + to);
    }
  }
  if (fsync(out.get()) != 0) return Status::FromErrno("fsync " + to);
  return Status::Ok();
}

}  // namespace

int PoolRepair(const std::string& path, std::string backup) {
  {
    auto dev = volume::OpenFilePoolDevice(path, false, 0, false);
    if (!dev.ok()) return Fail(WhileServed(Prefixed(path, dev.status()), kStopFirst));
    std::string damage;
    auto sb = Pool::ReadSuperblock(dev->get(), &damage);
    if (!sb.ok()) {
      return Fail(Prefixed(path, Status::Error(sb.status().err(), "no intact superblock or copy of it: " +
                                                                      sb.status().message() + "; cannot repair")));
    }
    if (backup.empty()) {
      struct stat st {};
      std::string stamp = std::to_string(time(nullptr));
      bool file = stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
      std::string base = file ? path : "./" + path.substr(path.rfind('/') + 1);
      backup = base + ".metadata-" + stamp + ".bak";
    }
    Status saved = SaveMetadata(dev->get(), sb->data_offset, backup);
    if (!saved.ok()) return Fail(Prefixed(path, saved));
    std::printf("%s: metadata area (%lu bytes) saved to %s\n", path.c_str(),
                static_cast<unsigned long>(sb->data_offset), backup.c_str());
    volume::PoolOptions opts;
    opts.journal_dir = JournalDirToApply();
    auto before = Pool::Repair(std::move(dev.value()), opts);
    if (!before.ok()) return Fail(Prefixed(path, before.status()));
    for (const std::string& n : before->notices) std::printf("%s: notice: %s\n", path.c_str(), n.c_str());
    for (const std::string& p : before->problems) std::printf("%s: lost or fixed: %s\n", path.c_str(), p.c_str());
    std::printf("%s: %zu problem(s) dealt with; %lu volume(s) kept\n", path.c_str(), before->problems.size(),
                static_cast<unsigned long>(before->volumes));
  }
  auto pool = OpenPool(path, true, true);
  if (!pool.ok()) return Fail(Prefixed(path, pool.status()));
  volume::CheckReport r = (*pool)->Check();
  for (const std::string& p : r.problems) std::printf("%s: still a problem: %s\n", path.c_str(), p.c_str());
  std::printf("%s: %s after repair\n", path.c_str(), r.clean() ? "clean" : "NOT clean");
  return r.clean() ? kExitOk : kExitProblems;
}

int VolumeCreate(const std::string& path, const std::string& name, uint64_t size, bool preallocate) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) {
    std::string online = "volume create " + name + " --size SIZE" + (preallocate ? " --preallocate" : "");
    return Fail(WhileServed(pool.status(), Online(online)));
  }
  auto v = (*pool)->CreateVolume(name, size, preallocate);
  if (!v.ok()) return Fail(v.status());
  std::printf("created volume %s: %s%s\n", name.c_str(), HumanSize(v->size).c_str(),
              preallocate ? ", preallocated" : ", thin");
  return kExitOk;
}

int VolumeDelete(const std::string& path, const std::string& name) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) return Fail(WhileServed(pool.status(), Online("volume delete " + name)));
  Status st = (*pool)->DeleteVolume(name);
  if (!st.ok()) return Fail(st);
  std::printf("deleted volume %s\n", name.c_str());
  return kExitOk;
}

int VolumeResize(const std::string& path, const std::string& name, uint64_t size, bool force) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) {
    std::string online = "volume resize " + name + " --size SIZE" + (force ? " --force" : "");
    return Fail(WhileServed(pool.status(), Online(online)));
  }
  auto before = (*pool)->GetVolume(name);
  if (!before.ok()) return Fail(before.status());
  Status st = (*pool)->ResizeVolume(name, size, force);
  if (!st.ok()) return Fail(st);
  std::printf("resized volume %s: %s -> %s\n", name.c_str(), HumanSize(before->size).c_str(), HumanSize(size).c_str());
  return kExitOk;
}

int VolumeList(const std::string& path, bool json) {
  auto opened = OpenForReading(path, false);
  if (!opened.ok()) return Fail(opened.status());
  std::vector<volume::VolumeInfo> vols = opened->pool->ListVolumes(true);
  if (json) {
    ordered_json list = ordered_json::array();
    for (const auto& v : vols) list.push_back(VolumeJson(v));
    PrintJson(ordered_json{{"pool", path}, {"volumes", list}});
    return kExitOk;
  }
  PrintImages(vols, false);
  return kExitOk;
}

// ---- snapshots and clones ----

int PoolUpgrade(const std::string& path) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) return Fail(WhileServed(pool.status(), kStopFirst));
  uint32_t before = (*pool)->superblock().version;
  if (before >= volume::kFormatVersion) {
    std::printf("pool %s: format version %u is current; nothing to do\n", path.c_str(), before);
    return kExitOk;
  }
  Status st = (*pool)->Upgrade();
  if (!st.ok()) return Fail(Prefixed(path, st));
  uint32_t after = (*pool)->superblock().version;
  std::printf(
      "pool %s: upgraded from format version %u to %u (superblock and a fresh checkpoint rewritten); "
      "snapshots and clones can be used now; nestor older than format version %u refuses this pool\n",
      path.c_str(), before, after, after);
  return kExitOk;
}

int SnapshotCreate(const std::string& path, const std::string& volume, const std::string& name) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) return Fail(WhileServed(pool.status(), Online("snapshot create " + volume + " " + name)));
  auto v = (*pool)->CreateSnapshot(volume, name);
  if (!v.ok()) return Fail(v.status());
  std::printf("created snapshot %s of %s: %s (%s is now a clone of it)\n", name.c_str(), volume.c_str(),
              HumanSize(v->size).c_str(), volume.c_str());
  return kExitOk;
}

int SnapshotDelete(const std::string& path, const std::string& name) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) return Fail(WhileServed(pool.status(), Online("snapshot delete " + name)));
  auto v = (*pool)->GetVolume(name);
  if (!v.ok()) return Fail(v.status());
  if (!v->snapshot) {
    return Fail(Status::Invalid("'" + name + "' is not a snapshot (" + ImageType(*v) +
                                "): delete it with `nestor volume delete`"));
  }
  Status st = (*pool)->DeleteVolume(name);
  if (!st.ok()) return Fail(st);
  std::printf("deleted snapshot %s\n", name.c_str());
  return kExitOk;
}

int SnapshotList(const std::string& path, bool json) {
  auto opened = OpenForReading(path, false);
  if (!opened.ok()) return Fail(opened.status());
  std::vector<volume::VolumeInfo> snaps;
  for (auto& v : opened->pool->ListVolumes(true)) {
    if (v.snapshot) snaps.push_back(std::move(v));
  }
  if (json) {
    ordered_json list = ordered_json::array();
    for (const auto& v : snaps) list.push_back(VolumeJson(v));
    PrintJson(ordered_json{{"pool", path}, {"snapshots", list}});
    return kExitOk;
  }
  PrintImages(snaps, true);
  return kExitOk;
}

int VolumeClone(const std::string& path, const std::string& snapshot, const std::string& name) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) return Fail(WhileServed(pool.status(), Online("volume clone " + snapshot + " " + name)));
  auto v = (*pool)->CloneVolume(snapshot, name);
  if (!v.ok()) return Fail(v.status());
  std::printf("created clone %s of %s: %s\n", name.c_str(), snapshot.c_str(), HumanSize(v->size).c_str());
  return kExitOk;
}

namespace {

int InflateOrDecouple(const std::string& path, const std::string& name, bool inflate) {
  auto pool = OpenPool(path, false);
  if (!pool.ok()) {
    std::string online = std::string(inflate ? "volume inflate " : "volume decouple ") + name;
    return Fail(WhileServed(pool.status(), Online(online)));
  }
  auto before = (*pool)->GetVolume(name);
  if (!before.ok()) return Fail(before.status());
  Status st = inflate ? (*pool)->InflateVolume(name) : (*pool)->DecoupleVolume(name);
  if (!st.ok()) return Fail(st);
  auto after = (*pool)->GetVolume(name);
  if (!after.ok()) return Fail(after.status());
  std::string was = before->parent.empty() ? "none" : before->parent;
  std::string now = after->parent.empty() ? "none" : after->parent;
  std::printf("%s volume %s: parent %s -> %s, allocated %s -> %s\n", inflate ? "inflated" : "decoupled", name.c_str(),
              was.c_str(), now.c_str(), HumanSize(before->allocated_bytes).c_str(),
              HumanSize(after->allocated_bytes).c_str());
  return kExitOk;
}

}  // namespace

int VolumeInflate(const std::string& path, const std::string& name) { return InflateOrDecouple(path, name, true); }
int VolumeDecouple(const std::string& path, const std::string& name) { return InflateOrDecouple(path, name, false); }

}  // namespace nestor::tool
