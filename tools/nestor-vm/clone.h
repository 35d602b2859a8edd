// nestor-vm --clone-of SNAP: the VM's first disk is a fresh writable clone
// of a snapshot, created (and exported) over nestord's JSON-RPC control
// socket before QEMU starts and removed after QEMU exits, unless --keep
// (docs/function-vms.md, "Function images"). The RPC client is nestorctl's
// (tools/nestorctl/rpc_client.h), shared, not copied.
// Thread: the launcher's main thread; every call blocks for at most the
// RPC timeout.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/status.h"
#include "nestor-vm/options.h"

namespace nestor::vm {

// The default clone name: "<SNAP>-<VM name>-<pid>", characters outside
// [A-Za-z0-9._-] of the VM name replaced by '-', shortened (the snapshot
// part first, then the VM name) to the 63-character limit of a volume name.
std::string DefaultCloneName(std::string_view snapshot, std::string_view vm_name, pid_t pid);

// The params of volume_clone for O: {"snapshot", "name", "export":
// {"queues": O.NumQueues()}}.
nlohmann::ordered_json CloneParams(const VmOptions& o);

// Where the clone's socket will be when nestord does not say: the
// directory of the control socket (nestord's default control socket is
// <socket-dir>/control.ctl) + "/<name>.sock".
std::string PlannedCloneSocket(const VmOptions& o);

// The socket path in a volume_clone result ({"export":{"socket":...}} or
// {"socket":...}), or "" if it has none.
std::string SocketFromCloneResult(const nlohmann::ordered_json& result);

// A clone that this process created. Create() calls volume_clone (with
// the export) and waits up to 10 s for its socket; Remove() deletes the
// export (force: QEMU is gone) and, unless o.keep, the clone, logging
// what it frees. Both print their progress and errors on stderr.
class CloneLifecycle {
 public:
  explicit CloneLifecycle(const VmOptions& o) : o_(o) {}
  // On success, the socket of the exported clone.
  Result<std::string> Create();
  // Idempotent; a no-op unless Create() succeeded.
  Status Remove();
  bool created() const { return created_; }

 private:
  const VmOptions& o_;
  bool created_ = false;
};

// Default --control: $NESTOR_CONTROL_SOCKET, else /run/nestor/control.ctl
// (as nestorctl).
std::string DefaultControlSocket();

}  // namespace nestor::vm
