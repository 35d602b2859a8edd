#include "daemon/controller.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "base/log.h"
#include "base/version.h"
#include "daemon/access.h"
#include "daemon/prometheus.h"
#include "volume/limits.h"
#include "reactor/guest_fault.h"
#include "vhost/mem_table.h"
#include "vhost/session.h"
#include "virtio/queue_stats.h"
#include "volume/format.h"

namespace nestor::daemon {
namespace {

using Json = control::Json;

Result<std::string> Str(const Json& p, const char* k) {
  if (!p.contains(k) || !p[k].is_string()) return Status::Invalid(std::string("missing string parameter '") + k + "'");
  return p[k].get<std::string>();
}

Result<uint64_t> U64(const Json& p, const char* k) {
  if (!p.contains(k) || !p[k].is_number_unsigned()) {
    return Status::Invalid(std::string("missing non-negative integer parameter '") + k + "'");
  }
  return p[k].get<uint64_t>();
}

bool Flag(const Json& p, const char* k) { return p.contains(k) && p[k].is_boolean() && p[k].get<bool>(); }

virtio::QosLimits ToLimits(const volume::ExportSettings& s) {
  return {s.read_iops, s.write_iops, s.read_bps, s.write_bps};
}

void SetLimits(volume::ExportSettings* s, const virtio::QosLimits& l) {
  s->read_iops = l.read_iops;
  s->write_iops = l.write_iops;
  s->read_bps = l.read_bps;
  s->write_bps = l.write_bps;
}

Json QosJson(const virtio::QosLimits& l) {
  return {
      {"read_iops", l.read_iops}, {"write_iops", l.write_iops}, {"read_bps", l.read_bps}, {"write_bps", l.write_bps}};
}

// Applies the limits present in p onto l (absent: unchanged).
Status ApplyQos(const Json& p, virtio::QosLimits* l) {
  const std::pair<const char*, uint64_t*> fields[] = {{"read_iops", &l->read_iops},
                                                      {"write_iops", &l->write_iops},
                                                      {"read_bps", &l->read_bps},
                                                      {"write_bps", &l->write_bps}};
  for (auto [k, f] : fields) {
    if (!p.contains(k)) continue;
    if (!p[k].is_number_unsigned()) return Status::Invalid(std::string(k) + " must be a non-negative integer");
    *f = p[k].get<uint64_t>();
  }
  return Status::Ok();
}

// A user or group given as a name or a non-negative integer id.
Result<uint32_t> IdParam(const Json& v, const std::string& field, bool user) {
  if (v.is_string()) {
    std::string text = v.get<std::string>();
    return user ? ResolveUser(text, field) : ResolveGroup(text, field);
  }
  if (v.is_number_unsigned() && v.get<uint64_t>() < UINT32_MAX) return static_cast<uint32_t>(v.get<uint64_t>());
  return Status::Invalid(field + " must be a " + (user ? "user" : "group") + " name or a " + (user ? "uid" : "gid") +
                         " (0 to 4294967294)");
}

// socket_owner, socket_group, socket_mode, allow_uids, allow_gids (all
// optional; names resolved now, the numbers are what the pool stores).
Status ApplyAccess(const Json& p, volume::ExportAccess* a) {
  for (const char* k : {"socket_owner", "socket_group"}) {
    if (!p.contains(k)) continue;
    auto id = IdParam(p[k], k, k == std::string_view("socket_owner"));
    if (!id.ok()) return id.status();
    (k == std::string_view("socket_owner") ? a->socket_uid : a->socket_gid) = *id;
  }
  if (p.contains("socket_mode")) {
    const Json& m = p["socket_mode"];
    if (m.is_string()) {
      auto mode = ParseSocketMode(m.get<std::string>(), "socket_mode");
      if (!mode.ok()) return mode.status();
      a->socket_mode = *mode;
    } else if (m.is_number_unsigned() && m.get<uint64_t>() <= 0777) {
      a->socket_mode = static_cast<uint32_t>(m.get<uint64_t>());  // the value: 432 is 0660
    } else {
      return Status::Invalid(
          "socket_mode must be an octal string from \"0\" to \"0777\" (e.g. \"0660\") or "
          "an integer from 0 to 511");
    }
  }
  for (const char* k : {"allow_uids", "allow_gids"}) {
    if (!p.contains(k)) continue;
    bool users = k == std::string_view("allow_uids");
    if (!p[k].is_array()) return Status::Invalid(std::string(k) + " must be an array of names or ids");
    std::vector<uint32_t>& out = users ? a->allow_uids : a->allow_gids;
    for (const Json& x : p[k]) {
      auto id = IdParam(x, k, users);
      if (!id.ok()) return id.status();
      if (std::find(out.begin(), out.end(), *id) == out.end()) out.push_back(*id);
    }
  }
  return volume::ValidateExportAccess(*a);
}

Json SnapshotJson(const virtio::StatsSnapshot& s) {
  return {{"read_ops", s.read_ops},
          {"write_ops", s.write_ops},
          {"flush_ops", s.flush_ops},
          {"discard_ops", s.discard_ops},
          {"write_zeroes_ops", s.write_zeroes_ops},
          {"read_bytes", s.read_bytes},
          {"write_bytes", s.write_bytes},
          {"errors", s.errors},
          {"throttled", s.throttled},
          {"latency_ns", {{"mean", s.mean_ns}, {"p50", s.p50_ns}, {"p99", s.p99_ns}, {"p999", s.p999_ns}}}};
}

double Seconds(const std::atomic<uint64_t>& ns) { return static_cast<double>(ns.load()) / 1e9; }

// True when no client is connected. A client that just hung up still has a
// session ending (it drains its queues): give that up to half a second.
bool SessionsGone(vhost::BlkExport& e) {
  for (int i = 0; i < 50; ++i) {
    if (e.active_sessions() == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// A nestor pool is opened with --pool: served as a raw file, its first
// write would break it. fd is the backend's (maybe O_DIRECT) descriptor.
Status RefusePoolSignature(int fd, const VolumeSpec& v) {
  UniqueFd r(open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC));
  if (!r.valid()) r.Reset(open(v.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!r.valid()) return Status::FromErrno("open " + v.path);
  uint8_t head[8] = {};
  ssize_t n = pread(r.get(), head, sizeof(head), 0);
  if (n < 0) return Status::FromErrno("read " + v.path);
  if (!volume::HasPoolSignature(head, static_cast<size_t>(n))) return Status::Ok();
  if (v.force) {
    NLOG_WARN("volume {}: {} carries a nestor pool signature; serving its raw bytes (forced)", v.name, v.path);
    return Status::Ok();
  }
  return Status::Invalid(v.path +
                         " is a nestor pool, not a raw volume file (serve it with --pool; "
                         "add ,force to the --volume spec to serve its raw bytes anyway)");
}

Result<std::unique_ptr<io::BlockBackend>> OpenFileVolume(const VolumeSpec& v) {
  io::FileBackendOptions fo;
  fo.read_only = v.read_only;
  fo.delay_us = v.delay_us;
  fo.lock = v.force ? io::FileBackendOptions::Lock::kForce : io::FileBackendOptions::Lock::kTake;
  fo.check = [&v](int fd) { return RefusePoolSignature(fd, v); };
  auto b = io::OpenFileBackend(v.path, v.size, fo);
  if (!b.ok() && b.status().err() == EBUSY) {
    return Status::Error(EBUSY, b.status().message() + " (add ,force to the --volume spec to serve it anyway)");
  }
  return b;
}

}  // namespace

Status Controller::ConnectCeph() {
  if (ceph_ != nullptr) return Status::Ok();  // one connection per nestord, shared by every image
  rbd::CephOptions co;
  co.conf = opts_.ceph_conf;
  co.id = opts_.ceph_id;
  co.op_timeout_s = opts_.ceph_op_timeout_s;
  auto c = rbd::RadosCluster::Connect(co);
  if (!c.ok()) return c.status();
  ceph_ = std::move(c.value());
  return Status::Ok();
}

Result<std::unique_ptr<io::BlockBackend>> Controller::OpenRbdVolume(const VolumeSpec& v) {
  NESTOR_RETURN_IF_ERROR(ConnectCeph());
  auto spec = rbd::ParseImageSpec(v.path);
  if (!spec.ok()) return spec.status();
  rbd::RbdOpenOptions ro;
  ro.size = v.size;
  ro.read_only = v.read_only;
  return rbd::OpenRbdBackend(ceph_, *spec, ro);
}

// --pool PATH (a local pool) or --pool rbd:POOL (a Ceph pool).
Status Controller::OpenPool() {
  if (opts_.pool.empty()) return Status::Ok();
  if (opts_.pool.rfind("rbd:", 0) == 0) {
    NESTOR_RETURN_IF_ERROR(ConnectCeph());
    auto pool = rbd::RbdPool::Open(ceph_, opts_.pool.substr(4));
    if (!pool.ok()) return pool.status();
    rbd_pool_ = std::move(pool.value());
    images_ = rbd_pool_.get();
    return Status::Ok();
  }
  auto dev = volume::OpenFilePoolDevice(opts_.pool, false, 0);
  if (!dev.ok()) return dev.status();
  volume::PoolOptions po;
  po.commit_interval_ms = opts_.commit_ms;
  po.journal_dir = opts_.journal_dir;
  auto pool = volume::Pool::Open(std::move(dev.value()), po);
  if (!pool.ok()) return pool.status();
  pool_ = std::move(pool.value());
  pool_->StartCommitter();
  images_ = pool_.get();
  return Status::Ok();
}

Controller::Controller(const Options& o, std::vector<reactor::Reactor*> reactors)
    : opts_(o), reactors_(std::move(reactors)) {}

Controller::~Controller() { Shutdown(); }

Status Controller::Start() {
  NESTOR_RETURN_IF_ERROR(OpenPool());
  for (const VolumeSpec& v : opts_.volumes) {
    if (images_ != nullptr && images_->GetVolume(v.name).ok()) {
      return Status::Invalid("--volume " + v.name + " clashes with a pool volume");
    }
    Result<std::unique_ptr<io::BlockBackend>> b = Status::Invalid("unknown backend");
    if (v.delay_us > 0 && v.backend != "file")
      return Status::Invalid("volume " + v.name + ": delay_us needs backend=file");
    if (v.backend == "mem") b = io::OpenMemBackend(v.size);
    if (v.backend == "null") b = io::OpenNullBackend(v.size);
    if (v.backend == "file") b = OpenFileVolume(v);
    if (v.backend == "rbd") b = OpenRbdVolume(v);
    if (!b.ok()) return Status::Error(b.status().err(), "volume " + v.name + ": " + b.status().message());
    volume::ExportSettings s;
    s.queues = v.queues;
    s.read_only = v.read_only;
    s.frontends = v.frontends;
    s.shared_writers = v.shared_writers;
    s.access = v.access;
    SetLimits(&s, v.qos);
    NESTOR_RETURN_IF_ERROR(
        AddExport(v.name, std::shared_ptr<io::BlockBackend>(std::move(b.value())), s, false, v.queue_reactor));
  }
  if (images_ == nullptr) return Status::Ok();
  for (const volume::VolumeInfo& info : images_->ListVolumes()) {
    if (!info.exported && !opts_.export_all) continue;
    volume::ExportSettings s = info.export_settings;
    if (!info.exported) {
      s.queues = opts_.pool_queues;
      s.read_only = s.read_only || info.snapshot;  // --export-all: a snapshot is served read-only
    }
    auto backend = images_->OpenVolume(info.name);
    int err = backend.status().err();
    if (err == EUCLEAN || (rbd_pool_ != nullptr && (err == EBUSY || err == EINVAL))) {
      // One unusable volume (a size outside the limits, stored by an older
      // nestor), or a Ceph image another live client serves (its exclusive
      // lock) or named against nestor's rules (made outside nestor): must
      // not take the others down: serve them, name it.
      NLOG_ERROR("not exporting {}: {}", info.name, backend.status().message());
      continue;
    }
    if (!backend.ok()) return backend.status();
    Status added = AddExport(info.name, backend.value(), s, true);
    if (added.err() == EPERM) {
      // A stored socket owner/group nestord may not give (started without
      // root now): serve the others, name it.
      NLOG_ERROR("not exporting {}: {}", info.name, added.message());
      continue;
    }
    NESTOR_RETURN_IF_ERROR(added);
    if (!info.exported) NESTOR_RETURN_IF_ERROR(images_->SetExport(info.name, s));
  }
  return Status::Ok();
}

Status Controller::AddExport(const std::string& name, std::shared_ptr<io::BlockBackend> backend,
                             const volume::ExportSettings& s, bool persistent, std::vector<int> queue_reactor) {
  {
    MutexLock g(&mu_);
    if (exports_.count(name)) return Status::Error(EEXIST, "volume '" + name + "' is already exported");
  }
  vhost::ExportConfig ec;
  ec.name = name;
  ec.socket_path = opts_.socket_dir + "/" + name + ".sock";
  ec.read_only = s.read_only;
  ec.num_queues = s.queues;
  ec.max_frontends = s.frontends;
  ec.queue_reactor = std::move(queue_reactor);
  ec.socket_perms = {s.access.socket_uid, s.access.socket_gid, s.access.socket_mode};
  ec.allow_uids = s.access.allow_uids;
  ec.allow_gids = s.access.allow_gids;
  ec.stop_timeout = std::chrono::milliseconds(opts_.queue_stop_timeout_ms);
  ec.backend = std::move(backend);
  ec.qos = std::make_shared<virtio::VolumeQos>();
  ec.qos->Set(ToLimits(s));
  ec.stats = std::make_shared<virtio::VolumeStats>();
  auto e = std::make_unique<Export>();
  e->exp = std::make_unique<vhost::BlkExport>(std::move(ec), reactors_);
  e->persistent = persistent;
  NESTOR_RETURN_IF_ERROR(e->exp->Listen());
  e->stop_fd.Reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!e->stop_fd.valid()) return Status::FromErrno("eventfd");
  vhost::BlkExport* exp = e->exp.get();
  int stop = e->stop_fd.get();
  e->acceptor = std::thread([exp, stop, name] {
    std::string tname = ("accept-" + name).substr(0, 15);
    pthread_setname_np(pthread_self(), tname.c_str());
    for (;;) {
      pollfd pfds[2] = {{stop, POLLIN, 0}, {exp->listen_fd(), POLLIN, 0}};
      // Wakes up now and then to reap sessions whose clients left, so
      // their sockets close without waiting for the next connection.
      int n = poll(pfds, 2, 250);
      if (n == 0) (void)exp->active_sessions();
      if (n <= 0) continue;
      if (pfds[0].revents) return;
      if (pfds[1].revents & POLLIN) exp->AcceptOne();
    }
  });
  MutexLock g(&mu_);
  exports_[name] = std::move(e);
  return Status::Ok();
}

void Controller::StopExport(Export* e) {
  uint64_t one = 1;
  ssize_t unused = write(e->stop_fd.get(), &one, sizeof(one));
  (void)unused;
  if (e->acceptor.joinable()) e->acceptor.join();
  e->exp->Shutdown();  // clients see EOF; their queues drain on the reactors
}

Status Controller::RemoveExport(const std::string& name, bool force) {
  std::unique_ptr<Export> e;
  {
    MutexLock g(&mu_);
    auto it = exports_.find(name);
    if (it == exports_.end()) return Status::Error(ENOENT, "volume '" + name + "' is not exported");
    if (!force && !SessionsGone(*it->second->exp)) {
      return Status::Error(EBUSY, "export '" + name + "' has a connected client (use force to disconnect it)");
    }
    e = std::move(it->second);
    exports_.erase(it);
  }
  StopExport(e.get());
  bool persistent = e->persistent;
  e.reset();  // unlinks the socket (if still the one it bound), releases the volume
  NLOG_INFO("export {} deleted{}", name, force ? " (forced)" : "");
  if (persistent && images_ != nullptr) return images_->ClearExport(name);
  return Status::Ok();
}

void Controller::Shutdown() {
  std::map<std::string, std::unique_ptr<Export>> all;
  {
    MutexLock g(&mu_);
    all.swap(exports_);
  }
  for (auto& [name, e] : all) StopExport(e.get());
  // Releasing an export closes its backend: an RBD image's close waits on
  // the cluster (up to 3 x --ceph-op-timeout when it stopped answering),
  // so they close side by side, kCloseBatch at a time, not one after another.
  constexpr size_t kCloseBatch = 32;
  std::vector<std::unique_ptr<Export>> left;
  for (auto& [name, e] : all) left.push_back(std::move(e));
  all.clear();
  for (size_t at = 0; at < left.size(); at += kCloseBatch) {
    std::vector<std::thread> closers;
    for (size_t i = at; i < std::min(left.size(), at + kCloseBatch); ++i) {
      closers.emplace_back([e = std::move(left[i])]() mutable { e.reset(); });
    }
    for (std::thread& t : closers) t.join();
  }
}

std::vector<std::pair<std::string, vhost::BlkExport*>> Controller::Exports() const {
  MutexLock g(&mu_);
  std::vector<std::pair<std::string, vhost::BlkExport*>> out;
  for (const auto& [name, e] : exports_) out.emplace_back(name, e->exp.get());
  return out;
}

Status Controller::NeedPool() const {
  if (images_ == nullptr) return Status::Error(EOPNOTSUPP, "nestord runs without a pool (start it with --pool)");
  return Status::Ok();
}

// The params of every method (docs/rpc.md): anything else is -32602.
namespace {

using control::kBool;
using control::kList;
using control::kObject;
using control::kString;
using control::kUint;
using control::Param;
using control::ParamSpec;

Param Name() { return {.name = "name", .types = kString, .required = true}; }
Param Force() { return {.name = "force", .types = kBool}; }
Param Size() { return {.name = "size", .types = kUint, .required = true}; }

ParamSpec QosFields() {
  return {{.name = "read_iops", .types = kUint},
          {.name = "write_iops", .types = kUint},
          {.name = "read_bps", .types = kUint},
          {.name = "write_bps", .types = kUint}};
}

// export_create's settings (everything but the name): also the `export`
// object of volume_clone.
ParamSpec ExportFields() {
  return {{.name = "queues", .types = kUint, .min = 1, .max = 64},
          {.name = "readonly", .types = kBool},
          {.name = "frontends", .types = kUint, .min = 1, .max = volume::kMaxFrontends},
          {.name = "shared_writers", .types = kBool},
          {.name = "qos", .types = kObject, .fields = QosFields()},
          {.name = "socket_owner", .types = kString | kUint, .max = UINT32_MAX - 1},
          {.name = "socket_group", .types = kString | kUint, .max = UINT32_MAX - 1},
          {.name = "socket_mode", .types = kString | kUint, .max = 0777},
          {.name = "allow_uids", .types = kList, .max = UINT32_MAX - 1, .item_types = kString | kUint, .max_items = 8},
          {.name = "allow_gids", .types = kList, .max = UINT32_MAX - 1, .item_types = kString | kUint, .max_items = 8}};
}

ParamSpec ExportCreateSpec() {
  ParamSpec spec = ExportFields();
  spec.insert(spec.begin(), Name());
  return spec;
}

ParamSpec QosSetSpec() {
  ParamSpec spec = QosFields();
  spec.insert(spec.begin(), Name());
  return spec;
}

}  // namespace

void Controller::RegisterMethods(control::RpcServer* rpc) {
  auto bind = [this](Result<Json> (Controller::*m)(const Json&)) {
    return [this, m](const Json& p) { return (this->*m)(p); };
  };
  rpc->Register("pool_info", {}, bind(&Controller::PoolInfo));
  rpc->Register("volume_create", {Name(), Size(), {.name = "preallocate", .types = kBool}},
                bind(&Controller::VolumeCreate));
  rpc->Register("volume_delete", {Name(), Force()}, bind(&Controller::VolumeDelete));
  rpc->Register("volume_resize", {Name(), Size(), Force()}, bind(&Controller::VolumeResize));
  rpc->Register("volume_list", {}, bind(&Controller::VolumeList));
  rpc->Register("volume_clone",
                {{.name = "snapshot", .types = kString, .required = true},
                 Name(),
                 {.name = "export", .types = kObject, .fields = ExportFields()}},
                bind(&Controller::VolumeClone));
  rpc->Register("volume_inflate", {Name()}, bind(&Controller::VolumeInflate));
  rpc->Register("volume_decouple", {Name()}, bind(&Controller::VolumeDecouple));
  rpc->Register("snapshot_create", {{.name = "volume", .types = kString, .required = true}, Name()},
                bind(&Controller::SnapshotCreate));
  rpc->Register("snapshot_delete", {Name(), Force()}, bind(&Controller::SnapshotDelete));
  rpc->Register("snapshot_list", {}, bind(&Controller::SnapshotList));
  rpc->Register("export_create", ExportCreateSpec(), bind(&Controller::ExportCreate));
  rpc->Register("export_delete", {Name(), Force()}, bind(&Controller::ExportDelete));
  rpc->Register("export_list", {}, bind(&Controller::ExportList));
  rpc->Register("qos_set", QosSetSpec(), bind(&Controller::QosSet));
  rpc->Register("qos_get", {Name()}, bind(&Controller::QosGet));
  rpc->Register("reactor_list", {}, bind(&Controller::ReactorList));
  rpc->Register("stats_get", {{.name = "name", .types = kString}}, bind(&Controller::StatsGet));
  rpc->Register("status", {}, bind(&Controller::DaemonStatus));
}

// ---- pool and volumes ----

Json Controller::VolumeJson(const volume::VolumeInfo& v) const {
  bool exported;
  {
    MutexLock g(&mu_);
    exported = exports_.count(v.name) > 0;
  }
  Json j = {{"name", v.name},
            {"id", v.id},
            {"size", v.size},
            {"allocated_bytes", v.allocated_bytes},
            {"reserved_bytes", v.reserved_bytes},
            {"extents", v.extents},
            {"exported", exported},
            {"snapshot", v.snapshot},
            {"parent", v.parent.empty() ? Json(nullptr) : Json(v.parent)},
            {"children", v.children}};
  if (v.space_known) {  // volume_list, snapshot_list: the walk over the maps is theirs only
    j["shared_bytes"] = v.shared_bytes;
    j["delete_frees_bytes"] = v.delete_frees_bytes;
  }
  return j;
}

Result<Json> Controller::PoolInfo(const Json&) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  if (rbd_pool_ != nullptr) {
    auto r = rbd_pool_->Info();
    if (!r.ok()) return r.status();
    return Json{{"kind", "rbd"},
                {"path", opts_.pool},
                {"pool", r->pool},
                {"volumes", r->images},
                {"snapshots", r->snapshots},
                {"stored_bytes", r->stored_bytes},
                {"objects", r->objects},
                {"cluster_bytes", r->cluster_bytes},
                {"cluster_free_bytes", r->cluster_free_bytes}};
  }
  volume::PoolInfo i = pool_->Info();
  return Json{{"kind", "local"},
              {"path", opts_.pool},
              {"uuid", volume::UuidString(i.sb.uuid)},
              {"format_version", i.sb.version},
              {"size", i.sb.device_bytes},
              {"cluster_size", i.sb.cluster_size},
              {"data_clusters", i.sb.data_clusters},
              {"used_clusters", i.used_clusters},
              {"free_clusters", i.free_clusters},
              {"reserved_unused_clusters", i.reserved_unused_clusters},
              {"volumes", i.volumes},
              {"extents", i.extents},
              {"commit_seq", i.commit_seq},
              {"commits", i.commits},
              {"log_used_bytes", i.log_used_bytes},
              {"allocations", i.allocations},
              {"parked_writes", i.parked_writes},
              {"enospc", i.enospc}};
}

Result<Json> Controller::VolumeCreate(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  auto size = U64(p, "size");
  if (!size.ok()) return size.status();
  auto v = images_->CreateVolume(*name, *size, Flag(p, "preallocate"));
  if (!v.ok()) return v.status();
  return VolumeJson(*v);
}

Status Controller::DeleteImage(const std::string& name, bool force) {
  auto v = images_->GetVolume(name);
  if (!v.ok()) return Status::Error(ENOENT, "no volume '" + name + "'");
  const char* what = v->snapshot ? "snapshot" : "volume";
  // A snapshot with clones stays (and so does its export): refused before
  // anything changes, naming the clones (as Pool::DeleteVolume does; it
  // would say "in use" first for an exported one).
  if (!v->children.empty()) {
    std::string children;
    for (const std::string& c : v->children) children += (children.empty() ? "" : ", ") + c;
    if (!v->snapshot) {  // (a Ceph pool's volume: its snapshots are its own)
      return Status::Error(EBUSY, "volume '" + name + "' has snapshots (" + children + "): delete them first");
    }
    return Status::Error(EBUSY, std::string(what) + " '" + name + "' has clones (" + children + "): delete, inflate" +
                                    (rbd_pool_ != nullptr ? "" : " or decouple") + " them first");
  }
  bool exported;
  {
    MutexLock g(&mu_);
    exported = exports_.count(name) > 0;
  }
  if (exported) {
    if (!force) {
      return Status::Error(EBUSY,
                           std::string(what) + " '" + name + "' is exported (delete the export first, or use force)");
    }
    NESTOR_RETURN_IF_ERROR(RemoveExport(name, true));
  }
  return images_->DeleteVolume(name);
}

Result<Json> Controller::VolumeDelete(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  NESTOR_RETURN_IF_ERROR(DeleteImage(*name, Flag(p, "force")));
  return Json(true);
}

Status Controller::ShrinkExported(vhost::BlkExport* exp, const std::string& name, uint64_t size, bool force) {
  // The pool shrinks only a closed volume: with nobody connected the
  // export lets its backend go for the shrink and serves the volume again.
  // A connected guest may address the blocks a shrink takes away: refused
  // (docs/rpc.md, volume_resize). A client that just hung up gets its
  // half second to finish leaving.
  (void)SessionsGone(*exp);
  uint64_t seen = 0;
  Status st = exp->ReplaceBackendWhileIdle([&] { return images_->ResizeVolume(name, size, force); },
                                           [&] { return images_->OpenVolume(name); }, &seen);
  if (st.err() == EBUSY && seen > size) {
    return Status::Error(EBUSY, fmt::format("volume '{}' is exported and a connected guest sees {} bytes: it cannot "
                                            "shrink to {} bytes while that guest is connected",
                                            name, seen, size));
  }
  if (st.err() == EBUSY && seen > 0) {
    return Status::Error(EBUSY, fmt::format("volume '{}' is exported with a client connected (it sees {} bytes): it "
                                            "can shrink only while nobody is connected",
                                            name, seen));
  }
  if (!st.ok() && exp->config().backend == nullptr) {
    NLOG_ERROR("export {}: deleted: the volume could not be opened again after the shrink", name);
    (void)RemoveExport(name, true);
  }
  return st;
}

Result<Json> Controller::VolumeResize(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  auto size = U64(p, "size");
  if (!size.ok()) return size.status();
  auto before = images_->GetVolume(*name);
  if (!before.ok()) return before.status();
  vhost::BlkExport* exp = nullptr;  // RPC methods run on this one thread: it stays
  {
    MutexLock g(&mu_);
    auto it = exports_.find(*name);
    if (it != exports_.end()) exp = it->second->exp.get();
  }
  bool force = Flag(p, "force");
  if (exp != nullptr && *size < before->size) {
    NESTOR_RETURN_IF_ERROR(ShrinkExported(exp, *name, *size, force));
  } else {
    NESTOR_RETURN_IF_ERROR(images_->ResizeVolume(*name, *size, force));
  }
  if (exp != nullptr && *size > before->size) {
    // Each session raises its queues' capacity, then tells its frontend
    // (CONFIG_CHANGE_MSG); neither waits here.
    size_t told = exp->NotifyCapacityChange();
    NLOG_INFO("volume {} grew from {} to {} bytes while exported; {} connected client(s) told", *name, before->size,
              *size, told);
  }
  auto v = images_->GetVolume(*name);
  if (!v.ok()) return v.status();
  return VolumeJson(*v);
}

Result<Json> Controller::VolumeList(const Json&) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  Json out = Json::array();
  for (const auto& v : images_->ListVolumes(true)) out.push_back(VolumeJson(v));
  return out;
}

// ---- snapshots and clones (docs/volumes.md, "Snapshots and clones") ----

Result<Json> Controller::SnapshotCreate(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto source = Str(p, "volume");
  if (!source.ok()) return source.status();
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  // An exported source keeps serving: the pool pauses its new writes for
  // the drain and one commit (reads go on).
  auto v = images_->CreateSnapshot(*source, *name);
  if (!v.ok()) return v.status();
  NLOG_INFO("snapshot {} of {} created", *name, *source);
  return VolumeJson(*v);
}

Result<Json> Controller::SnapshotDelete(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  auto v = images_->GetVolume(*name);
  if (!v.ok()) return Status::Error(ENOENT, "no snapshot '" + *name + "'");
  if (!v->snapshot) {
    return Status::Invalid("'" + *name + "' is not a snapshot (" + (v->parent.empty() ? "a volume" : "a clone") +
                           "): delete it with volume_delete");
  }
  NESTOR_RETURN_IF_ERROR(DeleteImage(*name, Flag(p, "force")));
  NLOG_INFO("snapshot {} deleted", *name);
  return Json(true);
}

Result<Json> Controller::SnapshotList(const Json&) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  Json out = Json::array();
  for (const auto& v : images_->ListVolumes(true)) {
    if (v.snapshot) out.push_back(VolumeJson(v));
  }
  return out;
}

Result<Json> Controller::VolumeClone(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto snap = Str(p, "snapshot");
  if (!snap.ok()) return snap.status();
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  auto v = images_->CloneVolume(*snap, *name);
  if (!v.ok()) return v.status();
  NLOG_INFO("clone {} of {} created", *name, *snap);
  if (!p.contains("export")) return VolumeJson(*v);
  auto e = ExportImage(*name, p["export"]);
  if (!e.ok()) {
    // All or nothing: the clone goes again (it is empty, nobody else saw it).
    Status undone = images_->DeleteVolume(*name);
    if (!undone.ok()) {
      NLOG_ERROR("clone {}: export failed and deleting it again failed too: {}", *name, undone.ToString());
      return Status::Error(e.status().err(), e.status().message() + " (and the clone '" + *name +
                                                 "' could not be deleted again: " + undone.message() + ")");
    }
    return Status::Error(e.status().err(), e.status().message() + " (the clone '" + *name + "' was not kept)");
  }
  Json out = VolumeJson(*v);
  out["export"] = *e;
  return out;
}

Result<Json> Controller::VolumeInflate(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  NESTOR_RETURN_IF_ERROR(images_->InflateVolume(*name));
  NLOG_INFO("volume {} inflated", *name);
  auto v = images_->GetVolume(*name);
  if (!v.ok()) return v.status();
  return VolumeJson(*v);
}

Result<Json> Controller::VolumeDecouple(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  NESTOR_RETURN_IF_ERROR(images_->DecoupleVolume(*name));
  NLOG_INFO("volume {} decoupled", *name);
  auto v = images_->GetVolume(*name);
  if (!v.ok()) return v.status();
  return VolumeJson(*v);
}

// ---- exports ----

Json Controller::ExportJson(const std::string& name, const vhost::BlkExport& e, bool persistent) const {
  const vhost::ExportConfig& c = e.config();
  return {{"name", name},
          {"socket", c.socket_path},
          {"queues", c.num_queues},
          {"readonly", c.read_only},
          {"frontends", c.max_frontends},
          {"persistent", persistent},
          {"sessions", const_cast<vhost::BlkExport&>(e).active_sessions()},
          {"size", c.backend->size_bytes()},
          {"qos", QosJson(e.qos().Get())},
          {"socket_owner", e.socket_uid()},
          {"socket_group", e.socket_gid()},
          {"socket_mode", fmt::format("{:04o}", e.socket_mode())},
          {"allow_uids", c.allow_uids},
          {"allow_gids", c.allow_gids}};
}

Result<Json> Controller::ExportCreate(const Json& p) {
  NESTOR_RETURN_IF_ERROR(NeedPool());
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  return ExportImage(*name, p);
}

Result<Json> Controller::ExportImage(const std::string& name, const Json& p) {
  volume::ExportSettings s;
  if (p.contains("queues")) {
    auto q = U64(p, "queues");
    if (!q.ok() || *q < 1 || *q > 64) return Status::Invalid("queues must be 1..64");
    s.queues = static_cast<uint16_t>(*q);
  }
  s.read_only = Flag(p, "readonly");
  s.shared_writers = Flag(p, "shared_writers");
  if (p.contains("frontends")) {
    auto f = U64(p, "frontends");
    if (!f.ok() || *f < 1 || *f > volume::kMaxFrontends) return Status::Invalid("frontends must be 1..64");
    s.frontends = static_cast<uint16_t>(*f);
  }
  NESTOR_RETURN_IF_ERROR(volume::ValidateFrontends(s.frontends, s.read_only, s.shared_writers));
  virtio::QosLimits l;
  if (p.contains("qos")) {
    if (!p["qos"].is_object()) return Status::Invalid("qos must be an object");
    NESTOR_RETURN_IF_ERROR(ApplyQos(p["qos"], &l));
  }
  SetLimits(&s, l);
  NESTOR_RETURN_IF_ERROR(ApplyAccess(p, &s.access));
  auto info = images_->GetVolume(name);
  if (!info.ok()) return info.status();
  if (info->snapshot && !s.read_only) {
    return Status::Invalid("'" + name + "' is a snapshot: it can only be exported read-only (readonly: true)");
  }
  auto backend = images_->OpenVolume(name);
  if (!backend.ok()) return backend.status();
  NESTOR_RETURN_IF_ERROR(AddExport(name, backend.value(), s, true));
  Status st = images_->SetExport(name, s);
  if (!st.ok()) {
    (void)RemoveExport(name, true);
    return st;
  }
  MutexLock g(&mu_);
  return ExportJson(name, *exports_.at(name)->exp, true);
}

Result<Json> Controller::ExportDelete(const Json& p) {
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  NESTOR_RETURN_IF_ERROR(RemoveExport(*name, Flag(p, "force")));
  return Json(true);
}

Result<Json> Controller::ExportList(const Json&) {
  Json out = Json::array();
  MutexLock g(&mu_);
  for (const auto& [name, e] : exports_) out.push_back(ExportJson(name, *e->exp, e->persistent));
  return out;
}

// ---- QoS ----

Result<Json> Controller::QosSet(const Json& p) {
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  virtio::QosLimits l;
  bool persistent;
  {
    MutexLock g(&mu_);
    auto it = exports_.find(*name);
    if (it == exports_.end()) return Status::Error(ENOENT, "volume '" + *name + "' is not exported");
    l = it->second->exp->qos().Get();
    NESTOR_RETURN_IF_ERROR(ApplyQos(p, &l));
    it->second->exp->qos().Set(l);  // the reactors see it at their next request
    persistent = it->second->persistent;
  }
  if (persistent && images_ != nullptr) {
    auto v = images_->GetVolume(*name);
    if (!v.ok()) return v.status();
    volume::ExportSettings s = v->export_settings;
    SetLimits(&s, l);
    NESTOR_RETURN_IF_ERROR(images_->SetExport(*name, s));
  }
  NLOG_INFO("qos {}: read_iops {} write_iops {} read_bps {} write_bps {}", *name, l.read_iops, l.write_iops, l.read_bps,
            l.write_bps);
  return QosJson(l);
}

Status Controller::SetQos(const std::string& name, const virtio::QosLimits& limits) {
  Json p = QosJson(limits);
  p["name"] = name;
  return QosSet(p).status();
}

size_t Controller::ExportCount() const {
  MutexLock g(&mu_);
  return exports_.size();
}

Result<Json> Controller::QosGet(const Json& p) {
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  MutexLock g(&mu_);
  auto it = exports_.find(*name);
  if (it == exports_.end()) return Status::Error(ENOENT, "volume '" + *name + "' is not exported");
  return QosJson(it->second->exp->qos().Get());
}

// ---- observation ----

Result<Json> Controller::ReactorList(const Json&) {
  std::map<int, int> queues;
  virtio::ForEachQueueStats([&](const virtio::QueueStats& q) { ++queues[q.reactor]; });
  Json out = Json::array();
  for (reactor::Reactor* r : reactors_) {
    const reactor::Counters& c = r->counters();
    uint64_t work = c.polls_work.load(), idle = c.polls_idle.load();
    out.push_back(
        {{"id", r->options().id},
         {"cpu", r->options().cpu},
         {"mode", reactor::PollModeName(r->options().mode)},
         {"busy_s", Seconds(c.busy_ns)},
         {"idle_s", Seconds(c.idle_ns)},
         {"sleep_s", Seconds(c.sleep_ns)},
         {"polls_work", work},
         {"polls_idle", idle},
         {"poll_efficiency", work + idle ? static_cast<double>(work) / static_cast<double>(work + idle) : 0.0},
         {"sleeps", c.sleeps.load()},
         {"kicks", c.kicks.load()},
         {"calls", c.calls.load()},
         {"requests", c.requests.load()},
         {"guest_faults", c.guest_faults.load()},
         {"queues", queues[r->options().id]}});
  }
  return out;
}

Result<Json> Controller::StatsGet(const Json& p) {
  std::string only;
  if (p.contains("name")) {
    auto n = Str(p, "name");
    if (!n.ok()) return n.status();
    only = *n;
  }
  Json vols = Json::array();
  bool found = false;
  for (const auto& [name, e] : Exports()) {
    if (!only.empty() && name != only) continue;
    found = true;
    Json v = SnapshotJson(e->stats().Snapshot());
    v["name"] = name;
    v["sessions"] = e->active_sessions();
    v["refused_connections"] = e->refused_connections();
    Json queues = Json::array();
    std::string prefix = name + "#";
    virtio::ForEachQueueStats([&](const virtio::QueueStats& q) {
      if (q.device.rfind(prefix, 0) != 0) return;
      queues.push_back({{"session", q.device},
                        {"index", q.index},
                        {"reactor", q.reactor},
                        {"requests", q.requests.load()},
                        {"errors", q.errors.load()},
                        {"in_flight", q.in_flight.load()},
                        {"kicks", q.kicks.load()},
                        {"calls", q.calls.load()},
                        {"calls_suppressed", q.calls_suppressed.load()}});
    });
    v["queues"] = queues;
    vols.push_back(v);
  }
  if (!only.empty() && !found) return Status::Error(ENOENT, "volume '" + only + "' is not exported");
  return Json{{"volumes", vols},
              {"memory", {{"mapped_bytes", vhost::MemTable::TotalMappedBytes()}}},
              {"queue_stop_timeouts", vhost::Session::StopTimeouts()},
              {"orphaned_queues", vhost::Session::OrphanedQueues()},
              {"guest_faults_patched", reactor::GuestFaultsPatched()}};
}

// One look at the daemon (nestorctl status): what runs, what it serves,
// and what an operator should look at (warnings).
Result<Json> Controller::DaemonStatus(const Json&) {
  Json warnings = Json::array();
  Json pool = nullptr;
  if (pool_ != nullptr) {
    volume::PoolInfo i = pool_->Info();
    uint64_t total = i.sb.data_clusters;
    pool = {{"kind", "local"},
            {"path", opts_.pool},
            {"volumes", i.volumes},
            {"size_bytes", total * i.sb.cluster_size},
            {"used_bytes", i.used_clusters * i.sb.cluster_size},
            {"free_bytes", i.free_clusters * i.sb.cluster_size}};
    if (total > 0 && i.free_clusters * 10 < total) {
      warnings.push_back(
          fmt::format("pool {} is {:.0f}% full: writes to new clusters will fail with ENOSPC when it is "
                      "full",
                      opts_.pool, 100.0 * static_cast<double>(total - i.free_clusters) / total));
    }
    if (i.enospc > 0) warnings.push_back(fmt::format("{} write(s) failed for lack of space (ENOSPC)", i.enospc));
  } else if (rbd_pool_ != nullptr) {
    pool = {{"kind", "rbd"}, {"path", opts_.pool}};
    auto r = rbd_pool_->Info();
    if (r.ok()) {
      pool["volumes"] = r->images;
      pool["stored_bytes"] = r->stored_bytes;
      pool["cluster_free_bytes"] = r->cluster_free_bytes;
    } else {
      warnings.push_back("ceph pool: " + r.status().message());
    }
  }
  uint64_t sessions = 0, errors = 0;
  Json exports = Json::array();
  for (const auto& [name, e] : Exports()) {
    sessions += e->active_sessions();
    virtio::StatsSnapshot s = e->stats().Snapshot();
    errors += s.errors;
    exports.push_back(name);
  }
  if (errors > 0) warnings.push_back(fmt::format("{} request(s) completed with an error (nestorctl stats)", errors));
  uint64_t faults = 0;
  for (reactor::Reactor* r : reactors_) faults += r->counters().guest_faults.load();
  if (faults > 0) {
    warnings.push_back(
        fmt::format("{} guest-memory fault(s): frontends that shrank their memory were cut off", faults));
  }
  if (uint64_t t = vhost::Session::StopTimeouts(); t > 0) {
    warnings.push_back(fmt::format("{} queue(s) did not stop in time (--queue-stop-timeout-ms)", t));
  }
  if (uint64_t o = vhost::Session::OrphanedQueues(); o > 0) {
    warnings.push_back(fmt::format("{} handed-over queue(s) still wait for their I/O", o));
  }
  double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return Json{{"version", BuildVersion()},
              {"pool_format", volume::kFormatVersion},
              {"pid", getpid()},
              {"uptime_s", uptime},
              {"reactors", reactors_.size()},
              {"poll_mode", reactors_.empty() ? "" : reactor::PollModeName(reactors_[0]->options().mode)},
              {"pool", pool},
              {"exports", exports},
              {"sessions", sessions},
              {"warnings", warnings}};
}

void Controller::LogStats() const {
  for (reactor::Reactor* r : reactors_) NLOG_INFO("stats {}", r->CountersString());
  virtio::ForEachQueueStats([](const virtio::QueueStats& q) { NLOG_INFO("stats {}", virtio::QueueStatsString(q)); });
  for (const auto& [name, e] : Exports()) {
    NLOG_INFO("stats volume {}: sessions {} refused_connections {} {}", name, e->active_sessions(),
              e->refused_connections(), virtio::StatsSnapshotString(e->stats().Snapshot()));
  }
  if (pool_ != nullptr) NLOG_INFO("stats {}", volume::PoolStatsString(pool_->Info()));
  NLOG_INFO("stats memory: mapped_bytes {}", vhost::MemTable::TotalMappedBytes());
  NLOG_INFO("stats queues: stop_timeouts {} orphaned {}", vhost::Session::StopTimeouts(),
            vhost::Session::OrphanedQueues());
  NLOG_INFO("stats guest_faults_patched {}", reactor::GuestFaultsPatched());
}

std::string Controller::PrometheusText() const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  auto exports = Exports();
  struct Row {
    std::string name;
    virtio::StatsSnapshot s;
  };
  std::vector<Row> rows;
  for (const auto& [name, e] : exports) rows.push_back({name, e->stats().Snapshot()});
  auto per_volume = [&](const char* name, const char* type, const char* help, auto field) {
    metric(name, type, help);
    for (const Row& r : rows) out += fmt::format("{}{{volume=\"{}\"}} {}\n", name, r.name, field(r.s));
  };
  per_volume("nestor_volume_read_ops_total", "counter", "Read requests completed.", [](auto& s) { return s.read_ops; });
  per_volume("nestor_volume_write_ops_total", "counter", "Write requests completed.",
             [](auto& s) { return s.write_ops; });
  per_volume("nestor_volume_flush_ops_total", "counter", "Flush requests completed.",
             [](auto& s) { return s.flush_ops; });
  per_volume("nestor_volume_read_bytes_total", "counter", "Bytes read.", [](auto& s) { return s.read_bytes; });
  per_volume("nestor_volume_write_bytes_total", "counter", "Bytes written.", [](auto& s) { return s.write_bytes; });
  per_volume("nestor_volume_errors_total", "counter", "Requests completed with an error.",
             [](auto& s) { return s.errors; });
  per_volume("nestor_volume_throttled_total", "counter", "Requests that waited for QoS.",
             [](auto& s) { return s.throttled; });
  metric("nestor_volume_refused_connections_total", "counter",
         "Connections closed at accept: peer not in allow_uids/allow_gids.");
  for (const auto& [name, e] : exports) {
    out += fmt::format("nestor_volume_refused_connections_total{{volume=\"{}\"}} {}\n", name, e->refused_connections());
  }
  metric("nestor_volume_request_duration_seconds", "histogram",
         "Request latency, ring pop to completion, since the export started.");
  for (const Row& r : rows) {
    AppendSecondsHistogram(&out, "nestor_volume_request_duration_seconds", fmt::format("volume=\"{}\"", r.name),
                           r.s.latency);
  }
  auto per_reactor = [&](const char* name, const char* type, const char* help, auto field) {
    metric(name, type, help);
    for (reactor::Reactor* rc : reactors_) {
      out += fmt::format("{}{{reactor=\"{}\"}} {}\n", name, rc->options().id, field(rc->counters()));
    }
  };
  per_reactor("nestor_reactor_busy_seconds_total", "counter", "Time in iterations that did work.",
              [](const reactor::Counters& c) { return Seconds(c.busy_ns); });
  per_reactor("nestor_reactor_idle_seconds_total", "counter", "Time polling without work.",
              [](const reactor::Counters& c) { return Seconds(c.idle_ns); });
  per_reactor("nestor_reactor_sleep_seconds_total", "counter", "Time asleep waiting for notifications.",
              [](const reactor::Counters& c) { return Seconds(c.sleep_ns); });
  per_reactor("nestor_reactor_requests_total", "counter", "Requests completed.",
              [](const reactor::Counters& c) { return c.requests.load(); });
  metric("nestor_queue_stop_timeouts_total", "counter",
         "Queues that did not stop in time and were handed to their reactor.");
  out += fmt::format("nestor_queue_stop_timeouts_total {}\n", vhost::Session::StopTimeouts());
  metric("nestor_orphaned_queues", "gauge", "Handed-over queues still waiting for their I/O.");
  out += fmt::format("nestor_orphaned_queues {}\n", vhost::Session::OrphanedQueues());
  if (pool_ != nullptr) {
    volume::PoolInfo i = pool_->Info();
    metric("nestor_pool_free_bytes", "gauge", "Free space in the pool.");
    out += fmt::format("nestor_pool_free_bytes {}\n", i.free_clusters * i.sb.cluster_size);
    metric("nestor_pool_used_bytes", "gauge", "Allocated space in the pool.");
    out += fmt::format("nestor_pool_used_bytes {}\n", i.used_clusters * i.sb.cluster_size);
    metric("nestor_pool_commits_total", "counter", "Metadata commits.");
    out += fmt::format("nestor_pool_commits_total {}\n", i.commits);
  }
  return out;
}

}  // namespace nestor::daemon
