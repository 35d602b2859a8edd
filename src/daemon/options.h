// nestord command line: parsing and validation of volumes and reactors.
// Thread: main thread at start-up. Errors: Status with a message meant for
// the operator (printed, exit code 2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/status.h"
#include "reactor/reactor.h"
#include "virtio/qos.h"
#include "volume/export_access.h"

namespace nestor::daemon {

struct VolumeSpec {
  std::string name;
  uint64_t size = 0;
  std::string backend = "mem";  // mem | null | file | rbd
  std::string path;             // file: the path; rbd: POOL/IMAGE
  uint16_t queues = 1;
  bool read_only = false;
  bool force = false;              // file: serve it although locked by another process or a pool
  uint16_t frontends = 1;          // frontends=N: attached at once (>1: readonly or shared-writers)
  bool shared_writers = false;     // shared-writers: several writing frontends, the guests' problem
  std::vector<int> queue_reactor;  // per queue; empty: spread
  uint32_t delay_us = 0;           // fault injection (file backend): hold each request
  virtio::QosLimits qos;           // read_iops=, write_iops=, read_bps=, write_bps=
  // socket-owner=, socket-group=, socket-mode=, allow-uid=A:B, allow-gid=A:B
  // (names resolved while parsing).
  volume::ExportAccess access;
  bool operator==(const VolumeSpec&) const = default;
};

struct Options {
  std::string config_file;               // --config: options read from this file (the command line wins)
  bool log_json = false;                 // --log-format json
  LogLevel log_level = LogLevel::kInfo;  // --log-level, else NESTOR_LOG, else info
  std::string socket_dir;
  std::vector<VolumeSpec> volumes;
  std::string pool;            // serve every volume of this pool (empty: none)
  uint16_t pool_queues = 1;    // queues per pool volume
  uint32_t commit_ms = 100;    // pool metadata commit timer
  bool export_all = false;     // export every pool volume (and store those exports)
  std::string control_socket;  // default <socket_dir>/control.ctl
  uint16_t metrics_port = 0;   // 0: no Prometheus endpoint
  int reactors = 1;
  std::vector<int> cpus;  // empty: not pinned
  reactor::PollMode mode = reactor::PollMode::kAdaptive;
  uint64_t idle_us = 50;
  // How long a queue stop may wait for in-flight I/O before the queue is
  // handed to its reactor and the session ends anyway.
  uint32_t queue_stop_timeout_ms = 30'000;
  // Pool: where the process-crash journal lives (tmpfs; see
  // volume/journal.h). Empty: none.
  std::string journal_dir = "/run/nestor/journal";
  // Ceph, for backend=rbd volumes (one connection per nestord).
  std::string ceph_conf;          // empty: Ceph's own search (CEPH_CONF, /etc/ceph/ceph.conf)
  std::string ceph_id = "admin";  // cephx user client.<id>
  uint32_t ceph_op_timeout_s = 30;
};

// Parses "NAME,size=SIZE[,backend=mem|null|file:PATH|rbd:POOL/IMAGE][,queues=N][,readonly][,force][,reactor=A/B/..]
//          [,delay_us=N][,read_iops=N][,write_iops=N][,read_bps=N][,write_bps=N]
//          [,socket-owner=U][,socket-group=G][,socket-mode=0660][,allow-uid=U:U..][,allow-gid=G:G..]".
// The access keys also take underscores (socket_group=, allow_uid=, ...).
Result<VolumeSpec> ParseVolumeSpec(const std::string& text);
// The command line, with --config FILE's options under it. Errors name the
// option or the file's line. `reloading` (SIGHUP: the same argv, the file
// read again): nothing is printed, --help and --version are not expected.
Result<Options> ParseOptions(int argc, char** argv, bool reloading = false);

}  // namespace nestor::daemon
