#!/usr/bin/env python3
"""A stand-in for nestord's control socket for nestor-vm --clone-of
(tests/nestor-vm/03-clone-fake.sh).

usage: clone_fake.py DIR

Listens on DIR/control.ctl (newline-delimited JSON-RPC 2.0) and appends every
request to DIR/requests.log as "METHOD PARAMS" (compact JSON, sorted keys).
volume_clone {snapshot, name, export} creates the clone in memory and, with
"export", listens on DIR/NAME.sock like nestord's export; the snapshot
"missing" is ENOENT. export_delete closes and removes that socket;
volume_delete forgets the clone; volume_list lists the clones with
allocated_bytes and delete_frees_bytes 65536. Creates DIR/ready once it
accepts connections. Runs until killed.
"""
import json
import os
import socket
import socketserver
import sys
import threading

DIR = sys.argv[1]
LOCK = threading.Lock()
clones = {}    # name -> snapshot
exports = {}   # name -> listening socket


def error(code, name, msg):
    return {"code": code, "message": msg, "data": {"errno": name}}


def handle(method, params):
    with LOCK:
        if method == "volume_clone":
            snap, name = params["snapshot"], params["name"]
            if snap == "missing":
                return None, error(-2, "ENOENT", "no snapshot 'missing'")
            if name in clones:
                return None, error(-17, "EEXIST", "volume '%s' exists" % name)
            clones[name] = snap
            result = {"name": name, "parent": snap, "size": 67108864}
            if "export" in params:
                path = os.path.join(DIR, name + ".sock")
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(path)
                s.listen(4)
                exports[name] = s
                result["export"] = {"name": name, "socket": path,
                                    "queues": params["export"].get("queues", 1)}
            return result, None
        if method == "export_delete":
            name = params["name"]
            if name not in exports:
                return None, error(-2, "ENOENT", "no export '%s'" % name)
            exports.pop(name).close()
            os.unlink(os.path.join(DIR, name + ".sock"))
            return True, None
        if method == "volume_delete":
            name = params["name"]
            if name not in clones:
                return None, error(-2, "ENOENT", "no volume '%s'" % name)
            if name in exports and not params.get("force"):
                return None, error(-16, "EBUSY", "volume '%s' is exported" % name)
            clones.pop(name)
            return True, None
        if method == "volume_list":
            return [{"name": n, "parent": p, "snapshot": False, "allocated_bytes": 65536,
                     "delete_frees_bytes": 65536, "exported": n in exports}
                    for n, p in sorted(clones.items())], None
    return None, {"code": -32601, "message": "method not found"}


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            req = json.loads(line)
            params = req.get("params", {})
            with open(os.path.join(DIR, "requests.log"), "a") as log:
                log.write("%s %s\n" % (req["method"], json.dumps(params, sort_keys=True, separators=(",", ":"))))
            result, err = handle(req["method"], params)
            reply = {"jsonrpc": "2.0", "id": req["id"]}
            if err is None:
                reply["result"] = result
            else:
                reply["error"] = err
            self.wfile.write((json.dumps(reply) + "\n").encode())


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


srv = Server(os.path.join(DIR, "control.ctl"), Handler)
open(os.path.join(DIR, "ready"), "w").close()
srv.serve_forever()
