#!/usr/bin/python3
"""make bench-snapshots (data path part): 4 KiB random reads of clones that
are 0 %, 50 % and 100 % diverged from their snapshot against the same data
on a plain volume, and first writes to shared clusters (copy-on-write)
against first writes to unallocated clusters, through one nestord and the
project's fio engine; the same on qcow2 through qemu-storage-daemon (an
overlay with a backing file). Ratios only within one run.

nestor targets, all in ONE pool file on tmpfs (64 KiB clusters) exported by
ONE nestord (--export-all, one poll-mode reactor on the server CPU):
  plain       a thin volume filled by one sequential write (1 MiB blocks)
  plain-rand  a thin volume filled by random cluster-sized writes, each
              cluster once: as fragmented as clone-100 (one extent per
              cluster), without a snapshot above it
  clone-0     a clone of snapshot gold-snap (golden filled the same way):
              every read goes through to the snapshot
  clone-50    a clone in which half the clusters were rewritten (random
              cluster-sized writes, each cluster at most once)
  clone-100   every cluster rewritten (same way)
First writes (fio --rw=write:60k --bs=4k over the volume: one 4 KiB write
at the start of every 64 KiB cluster, in address order, so every write is
a first write; checked with nestord's allocation counter):
  plain       overwrites of the filled plain volume (the steady baseline)
  fresh       a never written thin volume (a first write to an unallocated
              cluster: 4 KiB of data plus zeros for the rest of the cluster)
  cow         a fresh clone of gold-snap (a first write to a shared cluster:
              the snapshot's cluster is read and written with the new 4 KiB)
  each run on a volume of its own, made before nestord starts.

qcow2 targets (one qemu-storage-daemon, one iothread, on the server CPU;
files on tmpfs, aio=io_uring, cache.direct=on, 64 KiB clusters):
  plain       plain.qcow2: a copy of base.qcow2, fully allocated
  clone-N     overlay-N.qcow2 backed by base.qcow2 (qemu-img create -b),
              N % of its clusters rewritten as for nestor
  fresh       an empty qcow2 without backing file; cow: a fresh overlay.

Set-up of snapshots and clones: with `nestorctl` RPCs when the running
nestord has them (snapshot_create, volume_clone), else offline with
`build/bench/snapshot_bench admin` (the Pool API) between two nestord runs.
This script uses the offline path (it needs no RPC) so the run does not
depend on the control plane.

Every (workload, target) is repeated --reps times (quick: 2, else 11), the
targets of one rep back to back in rotated order; X/plain is the median of
the per-rep ratios. Results in bench/results/snapshots-<timestamp>/.

Also runs the in-process parts first (build/bench/snapshot_bench, see
bench/snapshot_bench.cc): `open` (pool open with 10M extents over 1,000
clones vs one volume; quick: 1M over 100) and `ops` (1,000 clones of one
snapshot vs plain creates, deletes, snapshots of an idle vs a busy volume).
Then `rpc`: snapshot_create, volume_clone (with and without export),
volume_delete through nestord's control socket, against volume_create /
volume_delete, and snapshot_create of an idle vs a busy exported volume
(needs the snapshot RPCs: skipped with a note if nestord lacks them).
--parts open,ops,rpc,data picks them.

usage: snapshot_bench.py --build BUILD [--quick] [--parts open,ops,rpc,data] [--reps N] [--fw-reps N]
                         [--no-qcow2] [--pool-dir /var/tmp] [--open-repeat 5] [--size 1G] [--fw-size 256M]
                         [--prefault-pool] [--skip-reads] [--snap-reps 9] [--rpc-poll-mode poll]
                         [--nestord PATH]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402
import volume_bench as vb  # noqa: E402 (summarize, Pressure, pool_stats, wait_quiet)

log = rb.log
CLUSTER = 64 * 1024
READ_TARGETS = ["plain", "plain-rand", "clone-0", "clone-50", "clone-100"]
FIRST_TARGETS = ["plain", "fresh", "cow"]


def machine_load(top=False):
    """uptime, and the busiest processes: what else ran (the machine is shared)."""
    text = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if top:
        t = subprocess.run(["top", "-bn1", "-w", "160"], capture_output=True, text=True).stdout.splitlines()
        text += "\n" + "\n".join(t[:14])
    return text


def quantiles(xs):
    xs = sorted(xs)
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (None, None)
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


class SnapBench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.quick = args.quick
        self.reps = args.reps or (2 if self.quick else 11)
        self.fw_reps = args.fw_reps or (2 if self.quick else 5)
        self.runtime = 1.0
        self.size = vb.parse_size(args.size) if args.size else (256 if self.quick else 1024) * 2**20
        self.fw_size = vb.parse_size(args.fw_size) if args.fw_size else 256 * 2**20
        self.engine = os.path.join(self.build, "tools/fio/nestor-fio.so")
        self.nestord = os.path.abspath(args.nestord) if args.nestord else os.path.join(self.build, "src/daemon/nestord")
        self.helper = os.path.join(self.build, "bench/snapshot_bench")
        self.server_cpu = (os.cpu_count() or 1) - 1
        self.client_cpu = 0
        self.tmp = tempfile.mkdtemp(prefix="nestor-sbench.")
        self.shm = tempfile.mkdtemp(prefix="nestor-sbench.", dir="/dev/shm")
        self.records = []
        self.notes = []
        with open("/proc/loadavg") as f:
            self.load_before = f.read().split()[:3]

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    # -- fio ---------------------------------------------------------------
    def fio_target(self, sock):
        return [f"--ioengine=external:{self.engine}", f"--socket={sock}", "--filename=nestor", "--nestor_poll=1"]

    def fio_read(self, qd, sock):
        return ["--name=read", "--rw=randread", "--bs=4k", f"--iodepth={qd}", "--numjobs=1", "--thread",
                f"--cpus_allowed={self.client_cpu}", "--time_based", f"--runtime={int(self.runtime * 1000)}ms",
                "--group_reporting", "--lat_percentiles=1", "--norandommap", "--randrepeat=0",
                f"--size={self.size}"] + self.fio_target(sock)

    def fio_first(self, qd, sock):
        # One 4 KiB write at the start of every cluster, in address order
        # (rw=write:60k skips the rest of the cluster): every write is a
        # first write. (A random order with --ba=64k repeats clusters: fio's
        # random map tracks 4 KiB blocks, not aligned offsets.)
        return ["--name=first", f"--rw=write:{CLUSTER - 4096}", "--bs=4k", f"--iodepth={qd}", "--numjobs=1",
                "--thread", f"--cpus_allowed={self.client_cpu}", "--group_reporting", "--lat_percentiles=1",
                f"--size={self.fw_size}", f"--io_size={self.fw_size // CLUSTER * 4096}"] + self.fio_target(sock)

    def fio_fill(self, sock, rw, bs, size, io_size=None):
        args = ["--name=fill", f"--rw={rw}", f"--bs={bs}", "--iodepth=8", "--numjobs=1", "--thread",
                f"--cpus_allowed={self.client_cpu}", f"--size={size}", "--randrepeat=0"]
        if io_size:
            args.append(f"--io_size={io_size}")
        res = rb.fio_json(args + self.fio_target(sock), timeout=900)
        if res["jobs"][0].get("error", 0):
            raise RuntimeError(f"fill failed: fio error {res['jobs'][0]['error']}")
        return res

    # -- servers -----------------------------------------------------------
    def start_nestord(self, tag, pool, ready, poll_mode="poll"):
        d = os.path.join(self.tmp, f"nestord-{tag}")
        os.makedirs(d, exist_ok=True)
        argv = [self.nestord, "--socket-dir", d, "--pool", pool, "--pool-queues", "1", "--reactors", "1",
                "--poll-mode", poll_mode, "--export-all", "--journal-dir", "none"]
        logpath = os.path.join(d, "log")
        srv = rb.Server(argv, os.path.join(d, f"{ready}.sock"), self.server_cpu, logpath)
        srv.dir, srv.logpath = d, logpath
        self.notes.append("nestord: " + " ".join(os.path.basename(a) if a == self.nestord else a for a in argv))
        return srv

    def sock(self, srv, name):
        return vb.VolumeBench.sock(srv, name)

    def admin(self, pool, *ops):
        subprocess.run([self.helper, "admin", "--pool", pool] + list(ops), check=True, capture_output=True)

    def start_qsd(self, images, backing):
        """images: {name: path}; backing: {name: True if it has a backing file}."""
        d = os.path.join(self.tmp, "qsd")
        os.makedirs(d, exist_ok=True)
        # Each overlay opens base.qcow2 as its own read-only backing node
        # (one node shared by several overlays in an iothread aborts qsd 7.2:
        # "qemu_mutex_unlock_impl: Operation not permitted").
        argv = ["qemu-storage-daemon", "--object", "iothread,id=io0"]
        for name, path in images.items():
            node = f"q-{name}"
            argv += ["--blockdev", f"driver=file,node-name=f-{name},filename={path},aio=io_uring,cache.direct=on",
                     "--blockdev", f"driver=qcow2,node-name={node},file=f-{name}"
                     + (f",backing.driver=qcow2,backing.read-only=on,backing.file.driver=file,"
                        f"backing.file.filename={self.qcow2_base},backing.file.aio=io_uring,"
                        f"backing.file.cache.direct=on" if backing[name] else ""),
                     "--export", f"type=vhost-user-blk,id=e-{name},addr.type=unix,addr.path={d}/{name}.sock,"
                                 f"node-name={node},writable=on,num-queues=1,iothread=io0"]
        last = list(images)[-1]
        srv = rb.Server(argv, os.path.join(d, f"{last}.sock"), self.server_cpu, os.path.join(d, "log"))
        srv.dir = d
        self.notes.append("qsd: qemu-storage-daemon --object iothread,id=io0; per image: --blockdev "
                          "driver=file,...,aio=io_uring,cache.direct=on --blockdev driver=qcow2,...[,backing.driver="
                          "qcow2,backing.read-only=on,backing.file.filename=base.qcow2,backing.file.aio=io_uring,"
                          "backing.file.cache.direct=on] "
                          "--export type=vhost-user-blk,...,num-queues=1,iothread=io0")
        return srv

    # -- measurement ---------------------------------------------------------
    def run_reads(self, system, socks):
        for qd in (1, 32):
            name = f"randread-4k-qd{qd}"
            for rep in range(self.reps):
                k = rep % len(READ_TARGETS)
                order = READ_TARGETS[k:] + READ_TARGETS[:k]
                for attempt in range(self.args.retries + 1):
                    group = []
                    with vb.Pressure() as pressure:
                        for target in order:
                            with vb.Pressure() as one:
                                raw = rb.fio_json(self.fio_read(qd, socks[target]), timeout=self.runtime + 60)
                            res = vb.summarize(raw, "randread")
                            group.append({"kind": "read", "system": system, "workload": name, "target": target,
                                          "rep": rep, "attempt": attempt, "cpu_pressure_pct": one.pct, **res})
                    for r in group:
                        log(f"  {system:6} {name:17} {r['target']:9} rep {rep}: {r['iops']:>9.0f} IOPS "
                            f"mean {r['lat_mean_us']:7.2f} us p99 {r['lat_p99_us']:7.2f} us"
                            + (f" (cpu pressure {r['cpu_pressure_pct']:.1f} %)" if r["cpu_pressure_pct"] is not None
                               else ""))
                    if pressure.pct is not None and pressure.pct > self.args.max_pressure \
                            and attempt < self.args.retries:
                        log(f"  rep {rep} disturbed (cpu pressure {pressure.pct:.1f} %): again")
                        continue
                    self.records.extend(group)
                    break

    def run_first(self, system, srv, vols):
        """vols[(target, qd, rep)] = socket name."""
        for qd in (1, 32):
            name = f"first-write-4k-qd{qd}"
            for rep in range(self.fw_reps):
                k = rep % len(FIRST_TARGETS)
                order = FIRST_TARGETS[k:] + FIRST_TARGETS[:k]
                for target in order:
                    sock = self.sock(srv, vols[(target, qd, rep)]) if system == "nestor" else \
                        os.path.join(srv.dir, vols[(target, qd, rep)] + ".sock")
                    s0 = vb.VolumeBench.pool_stats(srv) if system == "nestor" else None
                    with vb.Pressure() as one:
                        raw = rb.fio_json(self.fio_first(qd, sock), timeout=900)
                    res = vb.summarize(raw, "randwrite")
                    rec = {"kind": "first", "system": system, "workload": name, "target": target, "rep": rep,
                           "cpu_pressure_pct": one.pct, **res}
                    extra = ""
                    if s0 is not None:
                        s1 = vb.VolumeBench.pool_stats(srv)
                        rec["allocations"] = s1["allocations"] - s0["allocations"]
                        extra = f" allocations {rec['allocations']} of {res['ios']} writes"
                    self.records.append(rec)
                    log(f"  {system:6} {name:25} {target:6} rep {rep}: {res['iops']:>9.0f} IOPS "
                        f"mean {res['lat_mean_us']:7.2f} us p99 {res['lat_p99_us']:8.2f} us{extra}"
                        + (f" (cpu pressure {one.pct:.1f} %)" if one.pct is not None else ""))

    # -- nestor --------------------------------------------------------------
    def run_nestor(self):
        pool = os.path.join(self.shm, "pool.img")
        n_first = 2 * self.fw_reps
        data = 3 * self.size + 2 * self.size + 2 * n_first * self.fw_size  # plain(-rand), golden, clone-50/100, fresh + cow
        pool_bytes = vb.VolumeBench.pool_bytes(None, data, CLUSTER) + (256 << 20)
        ops = [f"create:plain:{self.size}", f"create:plain-rand:{self.size}", f"create:golden:{self.size}"]
        for qd in (1, 32):
            for rep in range(self.fw_reps):
                ops.append(f"create:fresh-qd{qd}-r{rep}:{self.fw_size}")
        subprocess.run([self.helper, "admin", "--pool", pool, "--format", str(pool_bytes),
                        "--cluster-size", str(CLUSTER)] + ops, check=True, capture_output=True)
        if self.args.prefault_pool:
            # tmpfs allocates (and zeroes) every page of the file now: first
            # writes then land in pages that exist, and what is measured is
            # the volume layer, not the VM's page allocation.
            fd = os.open(pool, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            self.notes.append(f"nestor pool file prefaulted (posix_fallocate, {pool_bytes >> 20} MiB)")
        log(f"nestor: pool {pool} ({pool_bytes >> 20} MiB, 64 KiB clusters); filling plain and golden")
        srv = self.start_nestord("fill", pool, "golden")
        try:
            for v in ("plain", "golden"):
                self.fio_fill(self.sock(srv, v), "write", "1M", self.size)
            self.fio_fill(self.sock(srv, "plain-rand"), "randwrite", str(CLUSTER), self.size)
        finally:
            srv.stop()
        # The golden snapshot and its clones (offline, through the Pool API).
        ops = ["snapshot:golden:gold-snap", "export-ro:gold-snap", "clone:gold-snap:clone-0", "clone:gold-snap:clone-50",
               "clone:gold-snap:clone-100"]
        for qd in (1, 32):
            for rep in range(self.fw_reps):
                ops.append(f"clone:gold-snap:cow-qd{qd}-r{rep}")
        self.admin(pool, *ops)
        srv = self.start_nestord("run", pool, "clone-100")
        try:
            # Divergence: random cluster-sized writes, each cluster at most once.
            clusters = self.size // CLUSTER
            for name, frac in (("clone-50", 0.5), ("clone-100", 1.0)):
                s0 = vb.VolumeBench.pool_stats(srv)
                self.fio_fill(self.sock(srv, name), "randwrite", str(CLUSTER), self.size,
                              io_size=int(clusters * frac) * CLUSTER)
                s1 = vb.VolumeBench.pool_stats(srv)
                log(f"  {name}: {s1['allocations'] - s0['allocations']} of {clusters} clusters rewritten")
            stats = vb.VolumeBench.pool_stats(srv)
            log(f"  pool: {stats}")
            socks = {t: self.sock(srv, t) for t in READ_TARGETS}
            if not self.args.skip_reads:
                self.run_reads("nestor", socks)
            vols = {}
            for qd in (1, 32):
                for rep in range(self.fw_reps):
                    vols[("plain", qd, rep)] = "plain"
                    vols[("fresh", qd, rep)] = f"fresh-qd{qd}-r{rep}"
                    vols[("cow", qd, rep)] = f"cow-qd{qd}-r{rep}"
            self.run_first("nestor", srv, vols)
        finally:
            srv.stop()
            os.unlink(pool)

    # -- qcow2 ---------------------------------------------------------------
    def qemu_img(self, *args):
        subprocess.run(["qemu-img"] + list(args), check=True, capture_output=True)

    def run_qcow2(self):
        d = os.path.join(self.shm, "qcow2")
        os.makedirs(d)
        base, plain = os.path.join(d, "base.qcow2"), os.path.join(d, "plain.qcow2")
        self.qcow2_base = base
        raw = os.path.join(d, "seed.raw")
        log(f"qcow2: images in {d} (64 KiB clusters)")
        subprocess.run(["dd", "if=/dev/urandom", f"of={raw}", "bs=1M", f"count={self.size >> 20}", "status=none"],
                       check=True)
        self.qemu_img("convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=65536", raw, base)
        os.unlink(raw)
        shutil.copyfile(base, plain)
        images, backing = {"plain": plain, "plain-rand": os.path.join(d, "plain-rand.qcow2")}, \
            {"plain": False, "plain-rand": False}
        for n in ("clone-0", "clone-50", "clone-100"):
            images[n] = os.path.join(d, f"{n}.qcow2")
            backing[n] = True
        vols = {}
        for qd in (1, 32):
            for rep in range(self.fw_reps):
                for t in ("fresh", "cow"):
                    name = f"{t}-qd{qd}-r{rep}"
                    images[name] = os.path.join(d, f"{name}.qcow2")
                    backing[name] = t == "cow"
                    vols[(t, qd, rep)] = name
                vols[("plain", qd, rep)] = "plain"
        for name, path in images.items():
            if name == "plain":
                continue
            if backing[name]:
                self.qemu_img("create", "-f", "qcow2", "-o", "cluster_size=65536", "-b", base, "-F", "qcow2", path)
            else:
                size = self.size if name == "plain-rand" else self.fw_size
                self.qemu_img("create", "-f", "qcow2", "-o", "cluster_size=65536", path, str(size))
        srv = self.start_qsd(images, backing)
        try:
            socks = {n: os.path.join(srv.dir, f"{n}.sock") for n in images}
            clusters = self.size // CLUSTER
            self.fio_fill(socks["plain-rand"], "randwrite", str(CLUSTER), self.size)
            for name, frac in (("clone-50", 0.5), ("clone-100", 1.0)):
                self.fio_fill(socks[name], "randwrite", str(CLUSTER), self.size, io_size=int(clusters * frac) * CLUSTER)
            if not self.args.skip_reads:
                self.run_reads("qcow2", {t: socks[t] for t in READ_TARGETS})
            self.run_first("qcow2", srv, vols)
        finally:
            srv.stop()
            for name, path in images.items():
                info = subprocess.run(["qemu-img", "info", "--output=json", "-U", path], capture_output=True,
                                      text=True)
                if info.returncode == 0 and name in ("clone-50", "clone-100"):
                    log(f"  {name}: {json.loads(info.stdout).get('actual-size', 0) >> 20} MiB allocated")
            shutil.rmtree(d, ignore_errors=True)

    # -- report --------------------------------------------------------------
    def table(self):
        out = []
        recs = self.records
        for system in ("nestor", "qcow2"):
            rr = [r for r in recs if r.get("system") == system and r.get("kind") == "read"]
            if rr:
                out.append(f"\n### {system}: 4 KiB random read, clone vs plain volume\n")
                out.append("| workload | target | IOPS | mean / p99 us | IOPS / plain, median of pairs [q1-q3] | "
                           "IOPS / plain-rand, same |")
                out.append("|---|---|---|---|---|---|")
                for wl in sorted({r["workload"] for r in rr}, key=lambda w: int(w.rsplit("qd", 1)[1])):
                    by = {}
                    for r in rr:
                        if r["workload"] == wl:
                            by.setdefault(r["target"], {})[r["rep"]] = r
                    for t in READ_TARGETS:
                        rows = list(by.get(t, {}).values())
                        if not rows:
                            continue
                        cells = []
                        for base in ("plain", "plain-rand"):
                            ratios = [by[t][k]["iops"] / by[base][k]["iops"] for k in by[t] if k in by.get(base, {})]
                            if ratios:
                                q1, q3 = quantiles(ratios)
                                cells.append(f"**{statistics.median(ratios):.3f}** [{q1:.3f}-{q3:.3f}]")
                            else:
                                cells.append("-")
                        out.append(f"| {wl} | {t} | {statistics.median(r['iops'] for r in rows):,.0f} | "
                                   f"{statistics.median(r['lat_mean_us'] for r in rows):.2f} / "
                                   f"{statistics.median(r['lat_p99_us'] for r in rows):.2f} | "
                                   + " | ".join(cells) + " |")
            fr = [r for r in recs if r.get("system") == system and r.get("kind") == "first"]
            if not fr:
                continue
            out.append(f"\n### {system}: first writes (one 4 KiB write per 64 KiB cluster)\n")
            out.append("| workload | target | IOPS | mean / p99 us | IOPS / fresh, median of pairs [min-max] | "
                       "writes that allocated |")
            out.append("|---|---|---|---|---|---|")
            for wl in sorted({r["workload"] for r in fr}, key=lambda w: int(w.rsplit("qd", 1)[1])):
                by = {}
                for r in fr:
                    if r["workload"] == wl:
                        by.setdefault(r["target"], {})[r["rep"]] = r
                for t in FIRST_TARGETS:
                    rows = list(by.get(t, {}).values())
                    if not rows:
                        continue
                    ratios = [by[t][k]["iops"] / by["fresh"][k]["iops"] for k in by[t] if k in by.get("fresh", {})]
                    alloc = [r["allocations"] / r["ios"] for r in rows if "allocations" in r and r["ios"]]
                    out.append(f"| {wl} | {t} | {statistics.median(r['iops'] for r in rows):,.0f} | "
                               f"{statistics.median(r['lat_mean_us'] for r in rows):.2f} / "
                               f"{statistics.median(r['lat_p99_us'] for r in rows):.2f} | "
                               f"**{statistics.median(ratios):.3f}** [{min(ratios):.3f}-{max(ratios):.3f}] | "
                               + (f"{100 * statistics.median(alloc):.0f} %" if alloc else "-") + " |")
        return "\n".join(out)

    # -- control plane through nestord (JSON-RPC) -------------------------------
    def run_rpc(self):
        """snapshot_create / volume_clone / volume_delete through a running
        nestord (docs/rpc.md), one control connection, pool on tmpfs: the
        per-call latency a client sees, next to volume_create/volume_delete
        of plain volumes interleaved in blocks; and snapshot_create of an
        idle exported volume vs one under fio random writes (QD32), with the
        longest write latency of a fio run that contains the snapshot vs one
        that does not."""
        import socket
        n = 100 if self.quick else 1000
        block = 50 if self.quick else 100
        pool = os.path.join(self.shm, "rpc-pool.img")
        small = 64 << 20
        reps = self.args.snap_reps or (3 if self.quick else 9)
        # Each busy snapshot keeps what the volume held and the writes after
        # it copy every cluster again: room for a copy per snapshot.
        vsize = 128 << 20
        data = small * 2 + vsize * (reps + 3)
        pool_bytes = vb.VolumeBench.pool_bytes(None, data, CLUSTER) + (256 << 20)
        subprocess.run([self.helper, "admin", "--pool", pool, "--format", str(pool_bytes), "--cluster-size",
                        str(CLUSTER), f"create:golden:{small}", f"create:idle:{vsize}",
                        f"create:busy:{vsize}"], check=True, capture_output=True)
        mode = self.args.rpc_poll_mode
        srv = self.start_nestord(f"rpc-{mode}", pool, "busy", poll_mode=mode)
        results = {"clone": [], "create": [], "delete_clone": [], "delete_plain": [], "clone_export": [],
                   "delete_exported_clone": [], "snap_idle": [], "snap_busy": [], "busy_max_lat_us": [],
                   "quiet_max_lat_us": []}
        try:
            ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            ctl.connect(os.path.join(srv.dir, "control.ctl"))
            f = ctl.makefile("rwb")
            ids = [0]

            def call(method, **params):
                ids[0] += 1
                req = {"jsonrpc": "2.0", "id": ids[0], "method": method, "params": params}
                t0 = time.perf_counter()
                f.write(json.dumps(req).encode() + b"\n")
                f.flush()
                rep = json.loads(f.readline())
                dt = time.perf_counter() - t0
                if "error" in rep:
                    raise RuntimeError(f"{method} {params}: {rep['error']}")
                return dt, rep["result"]

            for v in ("idle", "busy"):
                self.fio_fill(self.sock(srv, v), "write", "1M", vsize)
            call("snapshot_create", volume="golden", name="gold-snap")
            log(f"rpc: {n} clones of gold-snap, plain creates in blocks of {block} (created, then deleted)")
            for b0 in range(0, n, block):  # (plain ones first: at most 1,024 images)
                for i in range(b0, min(n, b0 + block)):
                    results["create"].append(call("volume_create", name=f"p{i:04d}", size=small)[0])
                for i in range(b0, min(n, b0 + block)):
                    results["delete_plain"].append(call("volume_delete", name=f"p{i:04d}")[0])
                for i in range(b0, min(n, b0 + block)):
                    results["clone"].append(call("volume_clone", snapshot="gold-snap", name=f"c{i:04d}")[0])
            for i in range(n):
                results["delete_clone"].append(call("volume_delete", name=f"c{i:04d}")[0])
            for i in range(block):
                results["clone_export"].append(call("volume_clone", snapshot="gold-snap", name=f"e{i:04d}",
                                                    export={})[0])
            for i in range(block):
                results["delete_exported_clone"].append(call("volume_delete", name=f"e{i:04d}", force=True)[0])
            log(f"rpc: snapshot_create of an idle vs a busy exported volume, {reps} rep(s)")
            fio_args = ["--name=busy", "--rw=randwrite", "--bs=4k", "--iodepth=32", "--numjobs=1", "--thread",
                        f"--cpus_allowed={self.client_cpu}", "--time_based", "--runtime=2000ms", "--randrepeat=0",
                        "--norandommap", f"--size={vsize}"] + self.fio_target(self.sock(srv, "busy"))
            for rep in range(reps):
                results["snap_idle"].append(call("snapshot_create", volume="idle", name=f"idle-s{rep}")[0])
                for with_snap in ((True, False) if rep % 2 == 0 else (False, True)):
                    proc = subprocess.Popen(["fio", "--output-format=json"] + fio_args, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)
                    time.sleep(1.0)
                    if with_snap:
                        results["snap_busy"].append(call("snapshot_create", volume="busy", name=f"busy-s{rep}")[0])
                    out, err = proc.communicate(timeout=120)
                    if proc.returncode != 0:
                        raise RuntimeError(f"fio: {err[-500:]}")
                    res = json.loads(out[out.index("{"):])
                    lat = res["jobs"][0]["write"]["lat_ns"]["max"] / 1000
                    results["busy_max_lat_us" if with_snap else "quiet_max_lat_us"].append(lat)
                log(f"  rep {rep}: idle {results['snap_idle'][-1] * 1e3:.2f} ms, busy "
                    f"{results['snap_busy'][-1] * 1e3:.2f} ms; max write latency with snapshot "
                    f"{results['busy_max_lat_us'][-1]:.0f} us, without {results['quiet_max_lat_us'][-1]:.0f} us")
            ctl.close()
        finally:
            srv.stop()
            os.unlink(pool)
        self.records.append({"kind": "rpc", "poll_mode": mode, **results})

        def cell(xs, scale=1e3):
            xs = [x * scale for x in xs]
            q1, q3 = quantiles(xs)
            return f"{statistics.median(xs):.3f} [{q1:.3f}-{q3:.3f}] (max {max(xs):.3f})"

        def ratio(a, b):
            return statistics.median(x / y for x, y in zip(a, b))
        rows = [
            ("volume_clone (of a snapshot)", "clone", "volume_create (plain volume)", "create"),
            ("volume_delete of a clone (never written)", "delete_clone", "volume_delete of a plain volume",
             "delete_plain"),
            ("volume_clone with export {}", "clone_export", "volume_clone", "clone"),
            ("volume_delete of an exported clone (force)", "delete_exported_clone", "volume_delete of a clone",
             "delete_clone"),
            ("snapshot_create, volume under fio randwrite QD32", "snap_busy", "snapshot_create, idle volume",
             "snap_idle"),
        ]
        md = ["", f"nestord --poll-mode {mode} (the whole process on CPU {self.server_cpu}: its control and "
                  "commit threads share that CPU with the reactor).",
              "", "ms per call as the client sees it (one control connection, pool on tmpfs): median [q1-q3] (max);",
              "ratio: of medians", "", "| call | count | ms | baseline | ms | ratio |", "|---|---|---|---|---|---|"]
        for name, key, bname, bkey in rows:
            a, b = results[key], results[bkey]
            md.append(f"| {name} | {len(a)} | {cell(a)} | {bname} | {cell(b)} | "
                      f"{statistics.median(a) / statistics.median(b):.2f} |")
        md += ["", f"fio randwrite 4 KiB QD32, 2 s runs: max write latency of a run with one snapshot_create in it "
                   f"{cell(results['busy_max_lat_us'], 1e-3)} ms vs without "
                   f"{cell(results['quiet_max_lat_us'], 1e-3)} ms (median of paired ratios "
                   f"{ratio(results['busy_max_lat_us'], results['quiet_max_lat_us']):.2f}); total for {n} clones "
                   f"{sum(results['clone']):.2f} s"]
        text = "\n".join(md)
        self.sections.append(f"\n## Control calls through nestord (JSON-RPC), --poll-mode {mode}\n" + text + "\n")
        print(text, flush=True)

    # -- the in-process parts (build/bench/snapshot_bench open|ops) -----------
    def run_helper(self, title, argv):
        log(f"{title}: {' '.join(argv)}")
        t0 = time.time()
        load = machine_load()
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=None, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({out.returncode})")
        recs = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
        tables = "\n".join(l for l in out.stdout.splitlines() if not l.startswith("{"))
        for r in recs:
            r["kind"] = r.get("bench")
        self.records.extend(recs)
        cmd = " ".join(os.path.relpath(a) if a.startswith(self.build) else a for a in argv)
        self.sections.append(f"\n## {title}\n\nCommand: `{cmd}` ({time.time() - t0:.0f} s)\n\n"
                             f"Load when it started: {load}\n{tables}\n")
        print(tables, flush=True)

    def run(self):
        parts = self.args.parts.split(",")
        if "data" in parts and not os.access(self.engine, os.R_OK):
            sys.exit(f"snapshot_bench.py: no fio engine at {self.engine}")
        t0 = time.time()
        self.sections = []
        self.load_text = machine_load(top=True)
        log(self.load_text)
        q = self.quick
        if "open" in parts:
            argv = [self.helper, "open", "--dir", self.args.pool_dir, "--drop-caches"]
            argv += ["--extents", "1M", "--clones", "100", "--repeat", "2"] if q else \
                ["--extents", "10M", "--clones", "1000", "--repeat", str(self.args.open_repeat)]
            self.run_helper("Pool open: extents spread over clones vs one volume", argv)
        if "ops" in parts:
            # Each operation commits (two device flushes): on ext4 the flush
            # latency of the disk, on tmpfs what the pool itself costs.
            for where in (self.args.pool_dir, "/dev/shm"):
                argv = [self.helper, "ops", "--dir", where]
                argv += ["--clones", "100"] if q else ["--clones", "1000"]
                argv += ["--snapshots", str(self.args.snap_reps or (3 if q else 9))]
                self.run_helper(f"Clone, delete and snapshot operations (Pool API, in-process), pools on {where}",
                                argv)
        if "rpc" in parts:
            with open(self.nestord, "rb") as f:
                has_rpc = b"snapshot_create" in f.read()
            if has_rpc:
                self.run_rpc()
            else:
                log("rpc: this nestord has no snapshot_create RPC: skipped")
                self.sections.append("\n## Control calls through nestord (JSON-RPC)\n\nSkipped: this nestord has "
                                     "no snapshot_create RPC.\n")
        if "data" in parts:
            log(f"client (fio) on CPU {self.client_cpu}, servers on CPU {self.server_cpu}; {self.runtime} s per "
                f"read run, {self.reps} rep(s); first writes: {self.fw_reps} rep(s) of {self.fw_size >> 20} MiB")
            self.run_nestor()
            if not self.args.no_qcow2 and shutil.which("qemu-storage-daemon"):
                self.run_qcow2()
        with open("/proc/loadavg") as f:
            load_after = f.read().split()[:3]
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        outdir = self.args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                               f"snapshots-{stamp}")
        os.makedirs(outdir, exist_ok=True)
        with open(os.path.join(outdir, "results.json"), "w") as f:  # first: a report bug must not lose the run
            json.dump({"load_before": self.load_before, "notes": self.notes, "records": self.records}, f, indent=1)
        head = [f"# Snapshots and clones, data path ({stamp} UTC)", "",
                f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
                f"load average before {' '.join(self.load_before)}, after {' '.join(load_after)}; "
                f"{time.time() - t0:.0f} s.", "", f"Command: `{' '.join(sys.argv)}`", ""] + \
               [f"- {n}" for n in self.notes] + ["", "Load at the start:", "", "```", self.load_text, "```"]
        md = "\n".join(head) + "\n" + "".join(self.sections)
        if "data" in parts:
            md += "\n## Data path (fio)\n" + self.table() + "\n"
        md += "\nLoad at the end:\n\n```\n" + machine_load(top=True) + "\n```\n"
        with open(os.path.join(outdir, "results.md"), "w") as f:
            f.write(md)
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump({"load_before": self.load_before, "load_after": load_after, "notes": self.notes,
                       "records": self.records}, f, indent=1)
        latest = os.path.join(os.path.dirname(outdir), "snapshots-latest")
        if os.path.islink(latest) or os.path.exists(latest):
            os.unlink(latest) if os.path.islink(latest) else shutil.rmtree(latest)
        os.symlink(os.path.basename(outdir), latest)
        print(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--fw-reps", type=int, default=0)
    ap.add_argument("--no-qcow2", action="store_true")
    ap.add_argument("--max-pressure", type=float, default=5.0)
    ap.add_argument("--retries", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--snap-reps", type=int, default=0,
                    help="snapshots of the idle and the busy volume, ops and rpc parts (default 9, quick 3)")
    ap.add_argument("--rpc-poll-mode", default="poll", choices=["poll", "adaptive", "interrupt"],
                    help="nestord's --poll-mode for the rpc part")
    ap.add_argument("--nestord", help="another nestord binary (default BUILD/src/daemon/nestord)")
    ap.add_argument("--size", help="plain, golden and clone volume size (default 1G, quick 256M)")
    ap.add_argument("--fw-size", help="first-write volume size (default 256M: a run writes 4,096 clusters, 256 MiB of tmpfs)")
    ap.add_argument("--prefault-pool", action="store_true",
                    help="fallocate the nestor pool file on tmpfs first (first writes without page allocation)")
    ap.add_argument("--skip-reads", action="store_true", help="data part: first writes only")
    ap.add_argument("--parts", default="open,ops,rpc,data", help="comma list of open, ops, rpc, data")
    ap.add_argument("--pool-dir", default="/var/tmp", help="file system for the open and ops pools (ext4)")
    ap.add_argument("--open-repeat", type=int, default=5)
    args = ap.parse_args()
    b = SnapBench(args)
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
