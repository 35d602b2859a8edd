// RadosCluster (rbd.h): one rados_t per nestord, and the POOL/IMAGE parser.
#include <rados/librados.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "rbd/rbd.h"

namespace nestor::rbd {

Result<std::shared_ptr<RadosCluster>> RadosCluster::Connect(const CephOptions& o) {
  if (o.id.empty()) return Status::Invalid("--ceph-id must not be empty");
  std::string who = "ceph client." + o.id + (o.conf.empty() ? "" : " (" + o.conf + ")");
  rados_t c = nullptr;
  int r = rados_create(&c, o.id.c_str());
  if (r < 0) return Status::Error(-r, who + ": " + strerror(-r));
  std::shared_ptr<RadosCluster> cluster(new RadosCluster);
  cluster->cluster_ = c;  // from here on, shut down by the destructor
  cluster->opts_ = o;
  r = rados_conf_read_file(c, o.conf.empty() ? nullptr : o.conf.c_str());
  if (r < 0) {
    return Status::Error(
        -r, who + ": reading " + (o.conf.empty() ? "the default ceph.conf" : o.conf) + ": " + strerror(-r));
  }
  r = rados_conf_parse_env(c, nullptr);  // CEPH_ARGS, as every Ceph tool does
  if (r < 0) return Status::Error(-r, who + ": CEPH_ARGS: " + strerror(-r));
  // A cluster that stops answering fails requests after op_timeout_s
  // instead of hanging guests forever (0 keeps Ceph's "forever").
  std::string t = std::to_string(o.op_timeout_s);
  for (const char* key : {"rados_osd_op_timeout", "rados_mon_op_timeout", "client_mount_timeout"}) {
    if (o.op_timeout_s == 0 && std::strcmp(key, "client_mount_timeout") == 0) continue;
    r = rados_conf_set(c, key, t.c_str());
    if (r < 0) return Status::Error(-r, who + ": setting " + key + ": " + strerror(-r));
  }
  // Writethrough: a write nestord acknowledges is in the cluster, as a
  // guest's later FLUSH promises. librbd's writeback cache (its default
  // once a FLUSH came) acknowledges writes it still holds: a nestord that
  // crashes loses them, the restarted one cannot resubmit them (they are
  // no longer in flight), and the guest's next FLUSH succeeds without
  // them (ceph.04-guest-restart with LOOP_CHECK). Reads stay cached.
  r = rados_conf_set(c, "rbd_cache_max_dirty", "0");
  if (r < 0) return Status::Error(-r, who + ": setting rbd_cache_max_dirty: " + strerror(-r));
  // librbd copies a write's data inside rbd_aio_writev (Ceph's default):
  // without the copy it would hold on to guest memory until the OSDs
  // answer, where a frontend can change or take it away, and the write's
  // completion could wait for librbd to drop its references.
  // rbd_backend.cc's write path relies on the copy happening at the call.
  r = rados_conf_set(c, "rbd_disable_zero_copy_writes", "true");
  if (r < 0) return Status::Error(-r, who + ": setting rbd_disable_zero_copy_writes: " + strerror(-r));
  r = rados_connect(c);
  if (r < 0) return Status::Error(-r, who + ": connecting to the cluster: " + strerror(-r));
  NLOG_INFO("{}: connected (op timeout {} s)", who, o.op_timeout_s);
  return cluster;
}

RadosCluster::~RadosCluster() {
  if (cluster_ != nullptr) rados_shutdown(static_cast<rados_t>(cluster_));
}

std::string RadosCluster::Address() const {
  char* addrs = nullptr;
  if (rados_getaddrs(static_cast<rados_t>(cluster_), &addrs) < 0 || addrs == nullptr) return "";
  std::string out = addrs;
  rados_buffer_free(addrs);
  return out;
}

Result<ImageSpec> ParseImageSpec(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size() ||
      text.find('/', slash + 1) != std::string_view::npos || text.find('@') != std::string_view::npos) {
    return Status::Invalid("rbd:" + std::string(text) + ": want rbd:POOL/IMAGE");
  }
  return ImageSpec{std::string(text.substr(0, slash)), std::string(text.substr(slash + 1))};
}

}  // namespace nestor::rbd
