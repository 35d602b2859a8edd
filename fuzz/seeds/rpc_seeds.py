#!/usr/bin/env python3
"""Writes the snapshot and clone seeds of the rpc fuzz target.

Usage: fuzz/seeds/rpc_seeds.py [OUT_DIR]   (default fuzz/corpus/rpc)

Rewrites only its own files (snapshot-*): the hand-written inputs beside
them, and those that found bugs, stay. The input format is described at
the top of fuzz/rpc.cc: request lines, each one JSON-RPC call (these
seeds spell the methods out; the harness's shorthand names each method
by a byte, see kMethods). The harness's pool is 8 MiB with 4 KiB clusters, so
the volumes here are small. Each input ends by deleting what it made,
children before their snapshots, so the harness's clean-up finds an empty
pool.
"""
import json
import os
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "corpus", "rpc")


def call(i, method, params=None):
    r = {"jsonrpc": "2.0", "id": i, "method": method}
    if params is not None:
        r["params"] = params
    return json.dumps(r, separators=(",", ":"))


def lines(*calls):
    return "\n".join(call(i + 1, *c) for i, c in enumerate(calls)) + "\n"


SEEDS = {
    # The whole life of a golden image: snapshot under an export, clones
    # (one exported in the same call), refused delete, inflate, decouple.
    "snapshot-lifecycle": lines(
        ("volume_create", {"name": "gold", "size": 262144}),
        ("export_create", {"name": "gold", "queues": 1}),
        ("snapshot_create", {"volume": "gold", "name": "gold.v1"}),
        ("volume_clone", {"snapshot": "gold.v1", "name": "fn1"}),
        ("volume_clone", {"snapshot": "gold.v1", "name": "fn2",
                          "export": {"queues": 2, "qos": {"write_iops": 100}, "socket_mode": "0660"}}),
        ("volume_list", {}),
        ("snapshot_list", {}),
        ("snapshot_delete", {"name": "gold.v1"}),
        ("volume_inflate", {"name": "fn1"}),
        ("volume_decouple", {"name": "fn2"}),
        ("volume_decouple", {"name": "gold"}),
        ("snapshot_delete", {"name": "gold.v1", "force": True}),
        ("volume_delete", {"name": "fn1"}),
        ("volume_delete", {"name": "fn2", "force": True}),
        ("volume_delete", {"name": "gold", "force": True}),
    ),
    # A chain three levels deep: snapshots of clones, decouple one level at
    # a time, a read-only export of a snapshot.
    "snapshot-chain": lines(
        ("volume_create", {"name": "base", "size": 65536}),
        ("snapshot_create", {"volume": "base", "name": "s1"}),
        ("snapshot_create", {"volume": "base", "name": "s2"}),
        ("volume_clone", {"snapshot": "s2", "name": "c"}),
        ("snapshot_create", {"volume": "c", "name": "s3"}),
        ("export_create", {"name": "s3", "readonly": True}),
        ("volume_list", {}),
        ("volume_decouple", {"name": "c"}),
        ("volume_decouple", {"name": "c"}),
        ("volume_resize", {"name": "c", "size": 131072}),
        ("volume_resize", {"name": "c", "size": 4096, "force": True}),
        ("volume_delete", {"name": "c"}),
        ("volume_delete", {"name": "s3", "force": True}),
        ("volume_delete", {"name": "base"}),
        ("volume_delete", {"name": "s2"}),
        ("volume_delete", {"name": "s1"}),
    ),
    # What must be refused, and change nothing.
    "snapshot-errors": lines(
        ("snapshot_create", {"name": "x"}),
        ("snapshot_create", {"volume": 1, "name": "x"}),
        ("snapshot_create", {"volume": "nope", "name": "x"}),
        ("volume_create", {"name": "v", "size": 8192}),
        ("snapshot_create", {"volume": "v", "name": "../x"}),
        ("snapshot_create", {"volume": "v", "name": "v"}),
        ("snapshot_create", {"volume": "v", "name": "s", "drain_ms": 5}),
        ("snapshot_create", {"volume": "v", "name": "s"}),
        ("snapshot_create", {"volume": "s", "name": "s.s"}),
        ("export_create", {"name": "s"}),
        ("export_create", {"name": "s", "readonly": False}),
        ("volume_resize", {"name": "s", "size": 16384}),
        ("volume_resize", {"name": "v", "size": 4096, "force": True}),
        ("snapshot_delete", {"name": "v"}),
        ("snapshot_delete", {"name": "s"}),
        ("snapshot_delete", {"name": "s", "force": "yes"}),
        ("volume_clone", {"snapshot": "v", "name": "c"}),
        ("volume_clone", {"snapshot": "s"}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": True}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": {"name": "c"}}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": {"read_only": True}}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": {"qos": {"readiops": 1}}}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": {"queues": 65}}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": {"socket_group": "no-such-group-nestor"}}),
        ("volume_clone", {"snapshot": "s", "name": "c", "export": {"allow_uids": [1, 2, 3, 4, 5, 6, 7, 8, 9]}}),
        ("volume_clone", {"snapshot": "s", "name": "v"}),
        ("volume_inflate", {"name": "v"}),
        ("volume_inflate", {"name": "s"}),
        ("volume_inflate", {}),
        ("volume_decouple", {"name": "nope"}),
        ("snapshot_list", {"all": True}),
        ("volume_list", {}),
        ("volume_delete", {"name": "v"}),
        ("volume_delete", {"name": "s"}),
    ),
    # Two clones exported at once, then deleted with force while exported.
    "snapshot-exported-clones": lines(
        ("volume_create", {"name": "img", "size": 16384}),
        ("snapshot_create", {"volume": "img", "name": "img.s"}),
        ("volume_clone", {"snapshot": "img.s", "name": "a", "export": {}}),
        ("volume_clone", {"snapshot": "img.s", "name": "b", "export": {"readonly": True, "allow_gids": [0]}}),
        ("volume_clone", {"snapshot": "img.s", "name": "a", "export": {}}),
        ("export_list", {}),
        ("stats_get", {"name": "a"}),
        ("volume_delete", {"name": "a"}),
        ("volume_delete", {"name": "a", "force": True}),
        ("volume_delete", {"name": "b", "force": True}),
        ("volume_delete", {"name": "img"}),
        ("snapshot_delete", {"name": "img.s"}),
        ("pool_info", {}),
    ),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, body in SEEDS.items():
        with open(os.path.join(OUT, name), "w") as f:
            f.write(body)
    print("wrote %d seeds to %s" % (len(SEEDS), OUT))


if __name__ == "__main__":
    main()
