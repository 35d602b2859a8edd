// Controller: nestord's control plane. Owns the pool and the exports (each
// with its own acceptor thread), and implements the JSON-RPC methods of
// docs/rpc.md on top of an image store (volume/image_store.h: a local pool,
// volume/pool.h, or a Ceph pool, rbd/rbd_pool.h) and the vhost-user
// exports (vhost/blk_export.h).
//
// Thread: RPC methods run on the control socket's thread; LogStats and
// PrometheusText may run on others (signal loop, metrics): the export map
// is guarded by mu_. Nothing here runs on a reactor: queues start and stop
// through their sessions, which message the reactors, so managing one
// volume never stalls I/O on another. Errors: Status with errno (ENOENT,
// EEXIST, EBUSY, ENOSPC, EOPNOTSUPP, ...), mapped to JSON-RPC by the server;
// an export whose socket path holds a live socket is EBUSY, one where a
// file that is not a socket sits is EEXIST (the file is never removed).
// --volume file: backends are locked like pools (io::FileBackendOptions).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "base/mutex.h"
#include "base/status.h"
#include "control/rpc_server.h"
#include "daemon/options.h"
#include "rbd/rbd.h"
#include "rbd/rbd_pool.h"
#include "reactor/reactor.h"
#include "vhost/blk_export.h"
#include "volume/pool.h"

namespace nestor::daemon {

class Controller {
 public:
  Controller(const Options& o, std::vector<reactor::Reactor*> reactors);
  ~Controller();  // Shutdown()

  // Start-up: the pool (if --pool), its stored exports (and, with
  // --export-all, every other volume), and the --volume exports.
  Status Start();
  void RegisterMethods(control::RpcServer* rpc);
  // Ends every export (clients see EOF; queues drain). Then commits.
  void Shutdown();

  void LogStats() const;
  std::string PrometheusText() const;
  size_t ExportCount() const;
  // qos_set on an exported volume from inside nestord (SIGHUP's reload).
  Status SetQos(const std::string& name, const virtio::QosLimits& limits);

 private:
  struct Export {
    std::unique_ptr<vhost::BlkExport> exp;
    bool persistent = false;  // a pool volume's export, stored in the pool
    std::thread acceptor;
    UniqueFd stop_fd;
  };
  using Json = control::Json;

  // --pool: a local pool or a Ceph pool (rbd:POOL); sets images_.
  Status OpenPool();
  // The Ceph connection, made for the first rbd volume or pool.
  Status ConnectCeph();
  // A --volume with backend=rbd (start-up, control thread).
  Result<std::unique_ptr<io::BlockBackend>> OpenRbdVolume(const VolumeSpec& v);
  Status AddExport(const std::string& name, std::shared_ptr<io::BlockBackend> backend, const volume::ExportSettings& s,
                   bool persistent, std::vector<int> queue_reactor = {});
  Status RemoveExport(const std::string& name, bool force);
  void StopExport(Export* e);
  std::vector<std::pair<std::string, vhost::BlkExport*>> Exports() const;
  Status NeedPool() const;

  Result<Json> PoolInfo(const Json& p);
  Result<Json> VolumeCreate(const Json& p);
  Result<Json> VolumeDelete(const Json& p);
  Result<Json> VolumeResize(const Json& p);
  Result<Json> VolumeList(const Json& p);
  Result<Json> SnapshotCreate(const Json& p);
  Result<Json> SnapshotDelete(const Json& p);
  Result<Json> SnapshotList(const Json& p);
  Result<Json> VolumeClone(const Json& p);
  Result<Json> VolumeInflate(const Json& p);
  Result<Json> VolumeDecouple(const Json& p);
  Result<Json> ExportCreate(const Json& p);
  Result<Json> ExportDelete(const Json& p);
  Result<Json> ExportList(const Json& p);
  Result<Json> QosSet(const Json& p);
  Result<Json> QosGet(const Json& p);
  Result<Json> ReactorList(const Json& p);
  Result<Json> StatsGet(const Json& p);
  Result<Json> DaemonStatus(const Json& p);

  // Deletes a pool image (volume, clone or snapshot); an exported one only
  // with force (its export goes first).
  Status DeleteImage(const std::string& name, bool force);
  // volume_resize of exported volume `name` to a smaller size: only with
  // nobody connected (EBUSY naming the size a connected guest sees).
  Status ShrinkExported(vhost::BlkExport* exp, const std::string& name, uint64_t size, bool force);
  // Exports pool image `name` with the settings in `p` (export_create's
  // params; `name` itself is not read from p) and stores the export.
  Result<Json> ExportImage(const std::string& name, const Json& p);

  Json ExportJson(const std::string& name, const vhost::BlkExport& e, bool persistent) const;
  Json VolumeJson(const volume::VolumeInfo& v) const;

  Options opts_;
  std::vector<reactor::Reactor*> reactors_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::shared_ptr<rbd::RadosCluster> ceph_;  // the first rbd volume or pool connects
  std::unique_ptr<volume::Pool> pool_;       // --pool PATH
  std::unique_ptr<rbd::RbdPool> rbd_pool_;   // --pool rbd:POOL
  volume::ImageStore* images_ = nullptr;     // whichever of the two serves, or null
  mutable Mutex mu_;                         // exports_ (the map; each Export's own state is its own)
  std::map<std::string, std::unique_ptr<Export>> exports_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nestor::daemon
