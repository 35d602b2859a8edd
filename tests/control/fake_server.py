#!/usr/bin/env python3
"""A stand-in for nestord's control socket (docs/rpc.md), for testing nestorctl.

usage: fake_server.py SOCKET LOG READY

Listens on the unix socket SOCKET, speaks newline-delimited JSON-RPC 2.0,
appends every request it receives to LOG, one line each: "METHOD PARAMS"
(PARAMS compact JSON with sorted keys, "-" when absent), or "INVALID <line>"
for a line that is not a JSON-RPC 2.0 call with an integer id; and creates
the file READY once it accepts connections. Replies are canned
per method (the examples of docs/rpc.md). A request whose params.name is one
of the names below gets the matching misbehaviour instead:

  missing ENOENT   taken EEXIST   full ENOSPC   busy EBUSY   written ENOTEMPTY
  corrupt EUCLEAN  bad EINVAL     nopool EOPNOTSUPP   eio EIO (-5)
  codeonly         -16 without data.errno (the code alone must map to EBUSY)
  rpcparams        JSON-RPC -32602 invalid params
  toomany          -32000 "too many connections" (a connection limit: exit 10)
  garbage          a reply line that is not JSON
  silent           no reply at all (the client must time out)
  hangup           the connection is closed without a reply
  wrongid          a result carrying another id
  huge             a reply line longer than 16 MiB
  deep             a result nested 200 levels deep
  badshape         a result of the wrong type (a string)

Unknown methods get -32601. Runs until killed.
"""
import json
import os
import socket
import socketserver
import sys
import threading

ERRORS = {
    "missing": (-2, "ENOENT", "no volume 'missing'"),
    "taken": (-17, "EEXIST", "volume 'taken' exists"),
    "full": (-28, "ENOSPC", "pool full"),
    "busy": (-16, "EBUSY", "volume 'busy' is exported"),
    "written": (-39, "ENOTEMPTY", "shrinking 'written' would discard data"),
    "corrupt": (-117, "EUCLEAN", "pool metadata corrupt"),
    "bad": (-22, "EINVAL", "size must be a multiple of 4096"),
    "nopool": (-95, "EOPNOTSUPP", "nestord runs without --pool"),
    "eio": (-5, "EIO", "I/O error on the pool"),
}

QOS0 = {"read_iops": 0, "write_iops": 0, "read_bps": 0, "write_bps": 0}


def volume(name, size, allocated=0, reserved=0, extents=0, exported=False, vid=3,
           snapshot=False, parent=None, children=(), space=None):
    v = {"name": name, "id": vid, "size": size, "allocated_bytes": allocated,
         "reserved_bytes": reserved, "extents": extents, "exported": exported,
         "snapshot": snapshot, "parent": parent, "children": list(children)}
    if space is not None:  # (shared_bytes, delete_frees_bytes): volume_list, snapshot_list
        v["shared_bytes"], v["delete_frees_bytes"] = space
    return v


def export(name, queues=1, readonly=False, sessions=0, qos=None):
    return {"name": name, "socket": "/run/nestor/%s.sock" % name, "queues": queues,
            "readonly": readonly, "persistent": True, "sessions": sessions,
            "qos": dict(qos or QOS0)}


def result_for(method, p):
    name = p.get("name") if isinstance(p, dict) else None
    if method == "pool_info":
        return {"path": "/var/lib/nestor/pool0.img", "uuid": "9b0c5e2a-1111-2222-3333-444455556666",
                "size": 107374182400, "cluster_size": 65536, "data_clusters": 1638000,
                "used_clusters": 2048, "free_clusters": 1635952, "reserved_unused_clusters": 0,
                "volumes": 2, "extents": 5, "commit_seq": 41, "commits": 40, "log_used_bytes": 16384,
                "format_version": 2}
    if method == "volume_create":
        return volume(name, p["size"])
    if method in ("volume_delete", "export_delete", "snapshot_delete"):
        return True
    if method == "volume_resize":
        return volume(name, p["size"], 1048576, 0, 1, False)
    if method == "volume_list":
        return [volume("db0", 42949672960, 1048576, 0, 1, True, 3, space=(0, 1048576)),
                volume("scratch-volume", 21474836480, 0, 21474836480, 0, False, 4, space=(0, 0)),
                volume("golden", 1073741824, 4194304, 0, 2, False, 5, True, None, ["fn1", "fn2"],
                       space=(3145728, 0)),
                volume("fn1", 1073741824, 65536, 0, 1, True, 6, False, "golden", space=(4128768, 65536)),
                volume("fn2", 1073741824, 0, 0, 0, False, 7, False, "golden", space=(4194304, 0))]
    if method == "snapshot_list":
        return [volume("golden", 1073741824, 4194304, 0, 2, False, 5, True, None, ["fn1", "fn2"],
                       space=(3145728, 0)),
                volume("golden.v2", 1073741824, 0, 0, 0, True, 8, True, "fn1", [], space=(0, 0))]
    if method == "snapshot_create":
        return volume(name, 1073741824, 4194304, 0, 2, False, 9, True, None, [p["volume"]])
    if method == "volume_clone":
        v = volume(name, 1073741824, 0, 0, 0, "export" in p, 10, False, p["snapshot"])
        if "export" in p:
            v["export"] = export(name, p["export"].get("queues", 1), p["export"].get("readonly", False))
        return v
    if method in ("volume_inflate", "volume_decouple"):
        return volume(name, 1073741824, 4194304, 0, 2, False, 6, False,
                      None if method == "volume_inflate" else "base")
    if method == "export_create":
        return export(name, p.get("queues", 1), p.get("readonly", False))
    if method == "export_list":
        db0 = export("db0", 2, False, 1, {"read_iops": 0, "write_iops": 5000, "read_bps": 0,
                                           "write_bps": 104857600})
        db0.update({"socket_owner": 0, "socket_group": 64055, "socket_mode": "0660",
                    "allow_uids": [1000, 1001], "allow_gids": [5]})
        return [db0, export("logs", 1, True, 0)]
    if method == "qos_set":
        q = dict(QOS0)
        q.update({k: v for k, v in p.items() if k in QOS0})
        return q
    if method == "qos_get":
        return {"read_iops": 0, "write_iops": 5000, "read_bps": 0, "write_bps": 104857600}
    if method == "reactor_list":
        return [{"id": 0, "cpu": 1, "mode": "adaptive", "busy_s": 1.2, "idle_s": 0.3, "sleep_s": 58.1,
                 "polls_work": 120034, "polls_idle": 53311, "poll_efficiency": 0.692, "sleeps": 812,
                 "kicks": 790, "calls": 9021, "requests": 240511, "queues": 2},
                {"id": 1, "cpu": -1, "mode": "poll", "busy_s": 60.0, "idle_s": 0.0, "sleep_s": 0.0,
                 "polls_work": 5, "polls_idle": 995, "poll_efficiency": 0.005, "sleeps": 0,
                 "kicks": 0, "calls": 0, "requests": 5, "queues": 0}]
    if method == "stats_get":
        vols = [{"name": "db0", "read_ops": 1000, "write_ops": 500, "flush_ops": 3, "discard_ops": 0,
                 "write_zeroes_ops": 0, "read_bytes": 4096000, "write_bytes": 2048000, "errors": 0,
                 "throttled": 7,
                 "latency_ns": {"mean": 5120, "p50": 4096, "p99": 20480, "p999": 65536},
                 "queues": [{"session": "db0#1", "index": 0, "reactor": 0, "requests": 1503,
                             "in_flight": 0, "kicks": 10, "calls": 1490},
                            {"session": "db0#1", "index": 1, "reactor": 1, "requests": 12,
                             "in_flight": 2, "kicks": 1, "calls": 11}]},
                {"name": "logs", "read_ops": 0, "write_ops": 0, "flush_ops": 0, "discard_ops": 0,
                 "write_zeroes_ops": 0, "read_bytes": 0, "write_bytes": 0, "errors": 1,
                 "throttled": 0, "latency_ns": {"mean": 0, "p50": 0, "p99": 0, "p999": 0},
                 "queues": []}]
        if name is not None:
            vols = [v for v in vols if v["name"] == name]
        return {"volumes": vols}
    if method == "echo":  # for `nestorctl call`: the params back
        return p
    return None


class Handler(socketserver.StreamRequestHandler):
    def send(self, obj):
        self.wfile.write(json.dumps(obj).encode() + b"\n")
        self.wfile.flush()

    def log(self, raw, req):
        if (isinstance(req, dict) and req.get("jsonrpc") == "2.0" and type(req.get("id")) is int
                and isinstance(req.get("method"), str)):
            params = req.get("params")
            line = "%s %s" % (req["method"], "-" if "params" not in req
                              else json.dumps(params, sort_keys=True, separators=(",", ":")))
        else:
            line = "INVALID " + raw.decode(errors="replace").rstrip("\n")
        with self.server.log_lock:
            with open(self.server.log, "a") as f:
                f.write(line + "\n")

    def handle(self):
        try:
            self.serve_lines()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, reply too long)

    def serve_lines(self):
        for raw in self.rfile:
            try:
                req = json.loads(raw)
            except ValueError:
                req = None
            self.log(raw, req)
            if req is None:
                self.send({"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32700, "message": "parse error"}})
                continue
            rid = req.get("id")
            method = req.get("method")
            params = req.get("params", {})
            name = params.get("name") if isinstance(params, dict) else None
            if name == "silent":
                continue
            if name == "hangup":
                return
            if name == "garbage":
                self.wfile.write(b"this is not JSON\n")
                self.wfile.flush()
                continue
            if name == "huge":
                self.wfile.write(b'{"jsonrpc":"2.0","id":1,"result":"' + b"x" * (17 << 20) + b'"}\n')
                self.wfile.flush()
                continue
            if name == "wrongid":
                self.send({"jsonrpc": "2.0", "id": 99, "result": True})
                continue
            if name == "deep":
                self.wfile.write(b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * 200 + b"]" * 200 + b"}\n")
                self.wfile.flush()
                continue
            if name == "badshape":
                self.send({"jsonrpc": "2.0", "id": rid, "result": "not what you expected"})
                continue
            if name == "codeonly":
                self.send({"jsonrpc": "2.0", "id": rid, "error": {"code": -16, "message": "busy (code only)"}})
                continue
            if name == "toomany":
                self.send({"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32000, "message": "too many connections (128 open)"}})
                continue
            if name == "rpcparams":
                self.send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": "invalid params"}})
                continue
            if name in ERRORS:
                code, errno_name, msg = ERRORS[name]
                self.send({"jsonrpc": "2.0", "id": rid,
                           "error": {"code": code, "message": msg, "data": {"errno": errno_name}}})
                continue
            result = result_for(method, params)
            if result is None:
                self.send({"jsonrpc": "2.0", "id": rid,
                           "error": {"code": -32601, "message": "unknown method '%s'" % method}})
                continue
            self.send({"jsonrpc": "2.0", "id": rid, "result": result})


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, log, ready = sys.argv[1:]
    if os.path.exists(path):
        os.unlink(path)
    server = Server(path, Handler)  # binds and listens
    server.log = log
    server.log_lock = threading.Lock()
    open(ready, "w").close()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
