// RBD backend: volumes stored as Ceph RBD images, served through librbd's
// asynchronous API straight from and into the guest's buffers (zero copy).
//
// Thread: RadosCluster::Connect and OpenRbdBackend run on the control
// thread and block on the cluster (bounded by CephOptions::op_timeout_s).
// One RadosCluster (one rados_t) per nestord, shared by every image. A
// backend is shared by the reactors; each opens its own channel, used only
// by that reactor. librbd completes requests on its own threads: their
// callback only pushes the request on its channel's lock-free list and
// writes the channel's eventfd, on which the reactor's io_uring has a read
// armed; the reactor then runs each request's done callback (rbd_backend.cc).
// Errors: Status/Result whose message names the pool and image; I/O
// completes with -errno (-ETIMEDOUT once a request waited op_timeout_s for a
// cluster that stopped answering).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "io/backend.h"

namespace nestor::rbd {

struct CephOptions {
  std::string conf;            // ceph.conf; empty: Ceph's own search (CEPH_CONF, /etc/ceph/ceph.conf)
  std::string id = "admin";    // the cephx user, client.<id>
  uint32_t op_timeout_s = 30;  // rados_osd_op_timeout and rados_mon_op_timeout; 0: wait forever
};

// One connection to a Ceph cluster.
class RadosCluster {
 public:
  static Result<std::shared_ptr<RadosCluster>> Connect(const CephOptions& o);
  ~RadosCluster();
  RadosCluster(const RadosCluster&) = delete;
  RadosCluster& operator=(const RadosCluster&) = delete;

  void* handle() const { return cluster_; }  // rados_t
  const CephOptions& options() const { return opts_; }
  // This client's address as the cluster sees it (for blocklisting).
  std::string Address() const;

 private:
  RadosCluster() = default;
  void* cluster_ = nullptr;
  CephOptions opts_;
};

struct ImageSpec {
  std::string pool;
  std::string image;
  std::string ToString() const { return pool + "/" + image; }
};
// "POOL/IMAGE" (both non-empty, no further '/', no '@').
Result<ImageSpec> ParseImageSpec(std::string_view text);

struct RbdOpenOptions {
  uint64_t size = 0;       // 0: the image's size. Else: a missing image is created with it,
                           // a smaller one is grown to it (not when read-only).
  bool read_only = false;  // opened read-only; no lock taken
  std::string snapshot;    // non-empty: this snapshot of the image (read-only)
};

// Opens (creating when asked) the image and, unless read-only, takes its
// exclusive lock for this client: another live client holding it makes the
// open fail with EBUSY; a dead one's lock is broken once the cluster has
// noticed (osd_client_watch_timeout) and the dead client is blocklisted.
Result<std::unique_ptr<io::BlockBackend>> OpenRbdBackend(std::shared_ptr<RadosCluster> cluster, const ImageSpec& spec,
                                                         const RbdOpenOptions& o);

// The librbd image (rbd_image_t) behind a backend OpenRbdBackend made, or
// null for any other backend. For control operations on a served image
// (rbd_pool.cc), from the control thread; librbd serializes them with I/O.
void* ImageOf(io::BlockBackend* b);
// After a resize through ImageOf(b): the size the backend reports.
void SetServedSize(io::BlockBackend* b, uint64_t size);

}  // namespace nestor::rbd
