#!/usr/bin/python3
"""make bench-volume: 4 KiB random I/O of a thin pool volume against the raw
file backend, through the same nestord (one poll-mode reactor), the same fio
engine and the same kind of store (files on tmpfs), in one run.

Targets, all exported by ONE nestord (`--pool POOL --volume raw,...`):
  raw         --volume raw,backend=file:/dev/shm/.../raw.img (pre-filled)
  thin-seq    a thin volume of the same size, filled by one sequential
              fio write (1 MiB blocks): every cluster allocated, few extents
  thin-rand   the same, filled by random cluster-sized writes (each
              cluster once): every cluster allocated, ~one extent per cluster
First writes (size-bounded fio jobs: --rw=randwrite --bs=4k --size=F
--io_size=F/4, random map on, so each 4 KiB block is written at most once):
  raw         the pre-filled raw file (overwrites: the steady-state baseline)
  raw-sparse  a fresh sparse file per run (tmpfs allocates pages too)
  thin-fresh  a fresh, never written thin volume per run
Allocations and parked writes per run come from nestord's pool counters
(SIGUSR1 "stats pool ..." lines).

Steady-state workloads are time-based (1 s) like run_bench.py; every
(workload, target) is repeated --reps times (15) with the targets of one rep
back to back in rotated order; the tables show medians, and thin/raw is the
median (and quartiles) of the per-rep ratios. A rep during which other
tasks waited for a CPU (/proc/pressure/cpu above --max-pressure) is redone. Each cluster size (--cluster-sizes, default 64K,4K)
gets its own pool and nestord.

--journal-compare (make bench-volume-journal) measures only first writes, with
the process-crash journal (src/volume/journal.h) on (nestord's default; the
journal directory on tmpfs, under /dev/shm) against off (--journal-dir none,
the behaviour before the journal), at QD1 and QD32: for every (rep, QD) the
two modes run back to back, alternating which goes first, each on a fresh
pool file on /dev/shm holding one never written volume, served by its own
nestord (same flags but --journal-dir). Per run: the pool's allocations and
commits (SIGUSR1) and the journal entries (one per journal pwrite) and notes
read back from the journal files before nestord stops. The
table shows medians, quartiles and min-max, and on/off as the median of the
per-(rep, QD) paired ratios. --reps default 9 (quick: 2).

Results: bench/results/volume-<timestamp>/results.{json,md} and
bench/results/volume-latest/ (--journal-compare: volume-journal-<timestamp>
and volume-journal-latest).

usage: volume_bench.py --build BUILD_DIR [--quick] [--reps N] [--cluster-sizes 64K,4K]
       volume_bench.py --build BUILD_DIR --journal-compare [--quick] [--reps N] [--cluster-sizes 64K,4K]
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402 (Server, fio_json, summarize, log)

STEADY = [
    # name, rw, iodepth (all 4 KiB, 1 job)
    ("randread-4k-qd1", "randread", 1),
    ("randwrite-4k-qd1", "randwrite", 1),
    ("randread-4k-qd32", "randread", 32),
    ("randwrite-4k-qd32", "randwrite", 32),
]
STEADY_TARGETS = ["raw", "thin-seq", "thin-rand"]
FIRST_TARGETS = ["raw", "raw-sparse", "thin-fresh"]
log = rb.log


def summarize(result, rw):
    """run_bench.summarize, with every percentile taken from fio's total
    latency (lat_ns, submit to completion, like the mean) rather than clat."""
    out = rb.summarize(result, rw)
    job = result["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    pct = side.get("lat_ns", {}).get("percentile")
    if pct:
        out["lat_p50_us"] = pct.get("50.000000", 0) / 1000
        out["lat_p99_us"] = pct.get("99.000000", 0) / 1000
        out["lat_p999_us"] = pct.get("99.900000", 0) / 1000
    return out


def psi_some_us():
    """Total microseconds some task waited for a CPU (/proc/pressure/cpu):
    our two pinned pollers never wait, so growth means other load."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


class Pressure:
    """CPU pressure (% of wall time some task was runnable but waiting)."""

    def __enter__(self):
        self.t0, self.p0 = time.time(), psi_some_us()
        return self

    def __exit__(self, *exc):
        p1 = psi_some_us()
        wall = time.time() - self.t0
        self.pct = None if self.p0 is None or p1 is None or wall <= 0 else 100 * (p1 - self.p0) / 1e6 / wall


def wait_quiet(max_s, pct=1.0):
    """Waits (up to max_s) for 10 s in a row with CPU pressure below pct."""
    deadline = time.time() + max_s
    while time.time() < deadline:
        with Pressure() as p:
            time.sleep(10)
        if p.pct is None or p.pct < pct:
            return True
        log(f"  waiting for a quiet machine: CPU pressure {p.pct:.1f} %")
    return False


def parse_size(text):
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]


def human(n):
    for unit, div in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def journal_entries(paths):
    """(entries, notes) in journal files (src/volume/journal.cc layout: a
    128-byte file header, then entries of a 32-byte header: magic "NJRN",
    CRC, first note u64, count u32, payload bytes u32, base seq u64; then the
    payload)."""
    entries = notes = 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        off = 128
        while off + 32 <= len(data):
            magic, _crc, _first, count, nbytes = struct.unpack_from("<IIQII", data, off)
            if magic != 0x4e524a4e:
                break
            entries += 1
            notes += count
            off += 32 + nbytes
    return entries, notes


class VolumeBench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.quick = args.quick
        # Short, many, interleaved runs: this machine's throughput drifts by
        # tens of % over seconds, so only back-to-back pairs compare well.
        self.runtime = 1.0
        if args.journal_compare:
            self.reps = args.reps or (2 if self.quick else 9)
        else:
            self.reps = args.reps or (1 if self.quick else 15)
        self.fw_reps = min(self.reps, 3)  # each needs its own fresh volume and sparse file
        self.size = (256 if self.quick else 1024) * 2**20        # steady-state volumes
        self.fw_size = (256 if self.quick else 512) * 2**20      # first-write volumes
        self.cluster_sizes = [parse_size(c) for c in args.cluster_sizes.split(",")]
        self.engine = os.path.join(self.build, "tools/fio/nestor-fio.so")
        self.nestord = os.path.join(self.build, "src/daemon/nestord")
        self.admin = os.path.join(self.build, "tools/nestor/nestor")
        self.helper = os.path.join(self.build, "bench/pool_open_bench")
        self.server_cpu = (os.cpu_count() or 1) - 1
        self.client_cpu = 0
        self.tmp = tempfile.mkdtemp(prefix="nestor-vbench.")
        self.shm = tempfile.mkdtemp(prefix="nestor-vbench.", dir="/dev/shm")
        self.raw = os.path.join(self.shm, "raw.img")
        self.records = []
        self.fills = []
        self.pool_tool = None
        self.server_argvs = []
        self.discarded = 0
        with open("/proc/loadavg") as f:
            self.load_before = f.read().split()[:3]

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    # -- pool set-up -----------------------------------------------------
    def choose_pool_tool(self):
        if os.access(self.admin, os.X_OK) and subprocess.run(
                [self.admin, "--help"], capture_output=True).returncode == 0:
            return "nestor"
        if os.access(self.helper, os.X_OK):
            return "helper"
        sys.exit("volume_bench: neither build/tools/nestor/nestor nor build/bench/pool_open_bench is built")

    def make_pool(self, path, pool_bytes, cluster, volumes):
        """Creates the pool file and its volumes [(name, bytes)]."""
        if self.pool_tool == "nestor":
            subprocess.run([self.admin, "pool", "create", path, "--size", str(pool_bytes),
                            "--cluster-size", str(cluster)], check=True, capture_output=True)
            for name, size in volumes:
                subprocess.run([self.admin, "volume", "create", name, "--pool", path, "--size", str(size)],
                               check=True, capture_output=True)
        else:
            argv = [self.helper, "--make-pool", path, "--pool-size", str(pool_bytes),
                    "--cluster-size", str(cluster)]
            for name, size in volumes:
                argv += ["--make-volume", f"{name}:{size}"]
            subprocess.run(argv, check=True, capture_output=True)

    # -- server ----------------------------------------------------------
    def start_server(self, tag, pool, raw_volumes, extra=(), ready=None, record_argv=True):
        d = os.path.join(self.tmp, f"nestord-{tag}")
        os.makedirs(d, exist_ok=True)
        argv = [self.nestord, "--socket-dir", d, "--pool", pool,
                "--reactors", "1", "--poll-mode", "poll"] + list(extra)
        if self.export_all:
            # nestord exports only stored exports by default
            argv += ["--export-all", "--pool-queues", "1"]
        for name, path, size in raw_volumes:
            argv += ["--volume", f"{name},size={size},backend=file:{path},queues=1"]
        if record_argv:
            self.server_argvs.append(" ".join(os.path.basename(a) if a == self.nestord else a for a in argv))
        logpath = os.path.join(d, "log")
        ready = ready or raw_volumes[-1][0]
        srv = rb.Server(argv, os.path.join(d, f"{ready}.sock"), self.server_cpu, logpath)
        srv.dir = d
        srv.logpath = logpath
        return srv

    @staticmethod
    def sock(srv, name):
        path = os.path.join(srv.dir, f"{name}.sock")
        deadline = time.time() + 10
        while not os.path.exists(path):
            if time.time() > deadline:
                raise RuntimeError(f"no socket {path}")
            time.sleep(0.05)
        return path

    @staticmethod
    def pool_stats(srv):
        """nestord's pool counters (SIGUSR1 makes it log a 'stats pool' line)."""
        def lines():
            with open(srv.logpath) as f:
                return [l for l in f if "stats pool " in l]
        before = len(lines())
        srv.proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 10
        while True:
            got = lines()
            if len(got) > before:
                tail = got[-1].split(": ", 2)[-1]
                return {k: int(v) for k, v in re.findall(r"([a-z_]+) (\d+)", tail)}
            if time.time() > deadline:
                raise RuntimeError("nestord did not log its pool stats")
            time.sleep(0.02)

    # -- fio -------------------------------------------------------------
    def fio_target(self, sock):
        return [f"--ioengine=external:{self.engine}", f"--socket={sock}", "--filename=nestor",
                "--nestor_poll=1"]

    def fio_steady(self, rw, qd, size, sock):
        return ["--name=bench", f"--rw={rw}", "--bs=4k", f"--iodepth={qd}", "--numjobs=1", "--thread",
                f"--cpus_allowed={self.client_cpu}", "--time_based", f"--runtime={int(self.runtime * 1000)}ms",
                "--group_reporting", "--lat_percentiles=1", "--norandommap", "--randrepeat=0",
                f"--size={size}"] + self.fio_target(sock)

    def fio_first(self, qd, sock):
        # Size-bounded: the random map stays on, so each 4 KiB block of the
        # first F bytes is written at most once; F/4 bytes in all.
        return ["--name=first", "--rw=randwrite", "--bs=4k", f"--iodepth={qd}", "--numjobs=1", "--thread",
                f"--cpus_allowed={self.client_cpu}", "--group_reporting", "--lat_percentiles=1",
                "--randrepeat=0", f"--size={self.fw_size}", f"--io_size={self.fw_size // 4}"] + self.fio_target(sock)

    def fill(self, srv, name, rw, bs, cluster):
        args = ["--name=fill", f"--rw={rw}", f"--bs={bs}", "--iodepth=8", "--numjobs=1", "--thread",
                f"--cpus_allowed={self.client_cpu}", f"--size={self.size}", "--randrepeat=0"] \
            + self.fio_target(self.sock(srv, name))
        s0 = self.pool_stats(srv)
        t0 = time.time()
        res = rb.fio_json(args, timeout=600)
        secs = time.time() - t0
        s1 = self.pool_stats(srv)
        job = res["jobs"][0]
        if job.get("error", 0):
            raise RuntimeError(f"fill of {name} failed: fio error {job['error']}")
        rec = {"cluster": cluster, "volume": name, "rw": rw, "bs": bs, "bytes": job["write"]["io_bytes"],
               "seconds": round(secs, 2), "allocations": s1["allocations"] - s0["allocations"],
               "extents": s1["extents"] - s0["extents"], "clusters": self.size // cluster}
        self.fills.append(rec)
        log(f"  filled {name} ({rw} bs={bs}): {rec['allocations']} of {rec['clusters']} clusters allocated, "
            f"{rec['extents']} extents, {secs:.1f} s")
        if rec["allocations"] != rec["clusters"]:
            raise RuntimeError(f"{name}: expected every cluster allocated")

    # -- runs ------------------------------------------------------------
    def run_steady(self, srv, cluster):
        socks = {"raw": self.sock(srv, "raw"), "thin-seq": self.sock(srv, "seqfill"),
                 "thin-rand": self.sock(srv, "randfill")}
        for (name, rw, qd) in STEADY:
            for rep in range(self.reps):
                order = STEADY_TARGETS[rep % 3:] + STEADY_TARGETS[:rep % 3]
                for attempt in range(self.args.retries + 1):
                    # One rep = every target back to back; redone when other
                    # load disturbed it (CPU pressure above --max-pressure).
                    group = []
                    with Pressure() as pressure:
                        for target in order:
                            with Pressure() as one:
                                raw = rb.fio_json(self.fio_steady(rw, qd, self.size, socks[target]),
                                                  timeout=self.runtime + 60)
                            res = summarize(raw, rw)
                            group.append({"kind": "steady", "cluster": cluster, "workload": name,
                                          "target": target, "rep": rep, "attempt": attempt,
                                          "cpu_pressure_pct": one.pct, **res})
                    disturbed = pressure.pct is not None and pressure.pct > self.args.max_pressure
                    for rec in group:
                        p = rec["cpu_pressure_pct"]
                        log(f"  {human(cluster):>3} {name:18} {rec['target']:10} rep {rep}: {rec['iops']:>9.0f} IOPS "
                            f"mean {rec['lat_mean_us']:6.2f} us p99 {rec['lat_p99_us']:6.2f} us"
                            + (f" (cpu pressure {p:.1f} %)" if p is not None else ""))
                    if disturbed and attempt < self.args.retries:
                        log(f"  rep {rep} disturbed (cpu pressure {pressure.pct:.1f} %): again")
                        self.discarded += 1
                        if self.args.wait_quiet:
                            wait_quiet(self.args.wait_quiet)
                        continue
                    self.records.extend(group)
                    break

    def run_first(self, srv, cluster, raw_sparse):
        for qd in (1, 32):
            name = f"randwrite-4k-qd{qd}-first"
            for rep in range(self.fw_reps):
                if self.args.wait_quiet:
                    wait_quiet(self.args.wait_quiet)
                order = FIRST_TARGETS[rep % 3:] + FIRST_TARGETS[:rep % 3]
                for target in order:
                    vol = {"raw": "raw", "raw-sparse": raw_sparse[(qd, rep)],
                           "thin-fresh": f"fresh-qd{qd}-r{rep}"}[target]
                    s0 = self.pool_stats(srv) if target == "thin-fresh" else None
                    with Pressure() as one:
                        raw = rb.fio_json(self.fio_first(qd, self.sock(srv, vol)), timeout=600)
                    res = summarize(raw, "randwrite")
                    rec = {"kind": "first", "cluster": cluster, "workload": name, "target": target,
                           "rep": rep, "cpu_pressure_pct": one.pct, **res}
                    extra = ""
                    if s0 is not None:
                        s1 = self.pool_stats(srv)
                        rec["allocations"] = s1["allocations"] - s0["allocations"]
                        rec["parked_writes"] = s1["parked_writes"] - s0["parked_writes"]
                        rec["commits"] = s1["commits"] - s0["commits"]
                        rec["alloc_fraction"] = rec["allocations"] / res["ios"] if res["ios"] else 0
                        extra = (f" allocations {rec['allocations']} ({100 * rec['alloc_fraction']:.0f} % of "
                                 f"writes) parked {rec['parked_writes']} commits {rec['commits']}")
                    self.records.append(rec)
                    if one.pct is not None:
                        extra += f" (cpu pressure {one.pct:.1f} %)"
                    log(f"  {human(cluster):>3} {name:24} {target:10} rep {rep}: {res['iops']:>9.0f} IOPS "
                        f"mean {res['lat_mean_us']:6.2f} us p99 {res['lat_p99_us']:6.2f} us{extra}")

    def run_cluster(self, cluster):
        log(f"cluster size {human(cluster)}: pool on {self.shm}")
        pool = os.path.join(self.shm, f"pool-{human(cluster)}.img")
        volumes = [("seqfill", self.size), ("randfill", self.size)]
        volumes += [(f"fresh-qd{qd}-r{rep}", self.fw_size) for qd in (1, 32) for rep in range(self.fw_reps)]
        data = sum(s for _, s in volumes)
        # metadata: two checkpoint slots of 25 B per cluster, a log of 1/256
        # of the device (4..256 MiB), alignment
        pool_bytes = data + 2 * (data // cluster) * 25 + data // 200 + (64 << 20)
        pool_bytes = (pool_bytes + (1 << 20) - 1) // (1 << 20) * (1 << 20)
        self.make_pool(pool, pool_bytes, cluster, volumes)
        raw_sparse, raw_vols = {}, [("raw", self.raw, self.size)]
        for qd in (1, 32):
            for rep in range(self.fw_reps):
                name = f"rawsparse-{human(cluster)}-qd{qd}-r{rep}"
                path = os.path.join(self.shm, name + ".img")
                with open(path, "wb") as f:
                    f.truncate(self.fw_size)
                raw_sparse[(qd, rep)] = name
                raw_vols.append((name, path, self.fw_size))
        srv = self.start_server(human(cluster), pool, raw_vols)
        try:
            self.fill(srv, "seqfill", "write", "1M", cluster)
            self.fill(srv, "randfill", "randwrite", str(cluster), cluster)
            self.run_steady(srv, cluster)
            self.run_first(srv, cluster, raw_sparse)
        finally:
            srv.stop()
            os.unlink(pool)
            for name, path, _ in raw_vols[1:]:
                os.unlink(path)

    # -- --journal-compare ------------------------------------------------
    def pool_bytes(self, data, cluster):
        # metadata: two checkpoint slots of 25 B per cluster, a log of 1/256
        # of the device (4..256 MiB), alignment
        b = data + 2 * (data // cluster) * 25 + data // 200 + (64 << 20)
        return (b + (1 << 20) - 1) // (1 << 20) * (1 << 20)

    def journal_run(self, cluster, qd, rep, mode, seq):
        """One first-write run on a fresh pool and nestord; mode 'on'/'off'."""
        tag = f"jc-{human(cluster)}-qd{qd}-r{rep}-{mode}-{seq}"
        pool = os.path.join(self.shm, f"{tag}.img")
        self.make_pool(pool, self.pool_bytes(self.fw_size, cluster), cluster, [("fresh", self.fw_size)])
        if self.args.prefault_pool:
            # tmpfs allocates (and zeroes) every page of the file now, so the
            # first writes land in pages that exist: no page allocation in
            # the measured path, only the volume layer and the journal.
            fd = os.open(pool, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        jdir = os.path.join(self.shm, "journal")
        os.makedirs(jdir, exist_ok=True)
        extra = ["--journal-dir", jdir if mode == "on" else "none"]
        first_of_kind = (cluster, mode) not in self.jc_argv_seen
        self.jc_argv_seen.add((cluster, mode))
        srv = self.start_server(tag, pool, [], extra=extra, ready="fresh", record_argv=first_of_kind)
        try:
            s0 = self.pool_stats(srv)
            with Pressure() as one:
                raw = rb.fio_json(self.fio_first(qd, self.sock(srv, "fresh")), timeout=600)
            s1 = self.pool_stats(srv)
            jfiles = [os.path.join(jdir, f) for f in os.listdir(jdir) if f.startswith("journal-")]
            jbytes = sum(os.path.getsize(f) for f in jfiles)
            jentries, jnotes = journal_entries(jfiles)
        finally:
            srv.stop()
            os.unlink(pool)
            for f in os.listdir(jdir):
                os.unlink(os.path.join(jdir, f))
            shutil.rmtree(srv.dir, ignore_errors=True)
        res = summarize(raw, "randwrite")
        job = raw["jobs"][0]
        if job.get("error", 0):
            raise RuntimeError(f"{tag}: fio error {job['error']}")
        allocs = s1["allocations"] - s0["allocations"]
        rec = {"kind": "journal", "cluster": cluster, "workload": f"randwrite-4k-qd{qd}-first",
               "qd": qd, "target": f"journal-{mode}", "rep": rep, "seq": seq, "cpu_pressure_pct": one.pct,
               "allocations": allocs, "commits": s1["commits"] - s0["commits"],
               "parked_writes": s1["parked_writes"] - s0["parked_writes"],
               "alloc_fraction": allocs / res["ios"] if res["ios"] else 0, "journal_bytes": jbytes, **res}
        if mode == "on":
            rec["journal_entries"] = jentries
            rec["journal_notes"] = jnotes
            rec["notes_per_entry"] = jnotes / jentries if jentries else None
        return rec

    def run_journal_compare(self):
        self.jc_argv_seen = set()
        seq = 0
        for cluster in self.cluster_sizes:
            log(f"cluster size {human(cluster)}: journal on vs off, fresh pool per run on {self.shm}")
            for rep in range(self.reps):
                for qd in (1, 32):
                    # alternate which mode goes first, per rep and per QD
                    order = ["on", "off"] if (rep + (qd == 32)) % 2 == 0 else ["off", "on"]
                    for attempt in range(self.args.retries + 1):
                        if self.args.wait_quiet:
                            wait_quiet(self.args.wait_quiet)
                        group = []
                        with Pressure() as pressure:
                            for mode in order:
                                seq += 1
                                group.append(self.journal_run(cluster, qd, rep, mode, seq))
                        for r in group:
                            r["attempt"] = attempt
                            extra = ""
                            if r.get("journal_entries") is not None:
                                extra = f" journal entries {r['journal_entries']:.0f}"
                            log(f"  {human(cluster):>3} qd{qd:<2} {r['target']:11} rep {rep}: {r['iops']:>9.0f} IOPS "
                                f"mean {r['lat_mean_us']:7.2f} us p99 {r['lat_p99_us']:8.2f} us allocations "
                                f"{r['allocations']} commits {r['commits']}{extra}"
                                + (f" (cpu pressure {r['cpu_pressure_pct']:.1f} %)"
                                   if r["cpu_pressure_pct"] is not None else ""))
                        disturbed = pressure.pct is not None and pressure.pct > self.args.max_pressure
                        if disturbed and attempt < self.args.retries:
                            log(f"  pair disturbed (cpu pressure {pressure.pct:.1f} %): again")
                            self.discarded += 1
                            continue
                        self.records.extend(group)
                        break

    def run(self):
        self.pool_tool = self.choose_pool_tool()
        helptext = subprocess.run([self.nestord, "--help"], capture_output=True, text=True).stdout
        self.export_all = "--export-all" in helptext
        if self.args.journal_compare:
            if "--journal-dir" not in helptext:
                sys.exit("volume_bench: this nestord has no --journal-dir")
            log(f"journal compare: pools and journal on {self.shm} (tmpfs); pools made with {self.pool_tool}; "
                f"client (fio) on CPU {self.client_cpu}, nestord on CPU {self.server_cpu} (poll); "
                f"{self.reps} rep(s)")
            self.run_journal_compare()
            return
        self.pool_tool = self.choose_pool_tool()
        helptext = subprocess.run([self.nestord, "--help"], capture_output=True, text=True).stdout
        self.export_all = "--export-all" in helptext
        log(f"raw store: {self.raw} ({self.size >> 20} MiB on tmpfs), filled; pools made with {self.pool_tool}")
        subprocess.run(["dd", "if=/dev/zero", f"of={self.raw}", "bs=1M", f"count={self.size >> 20}",
                        "status=none"], check=True)
        if self.args.wait_quiet:
            wait_quiet(self.args.wait_quiet)
        log(f"client (fio) on CPU {self.client_cpu}, nestord on CPU {self.server_cpu} (poll); "
            f"{self.runtime} s per steady run, {self.reps} rep(s)")
        for c in self.cluster_sizes:
            self.run_cluster(c)


# -- report --------------------------------------------------------------
def median(xs):
    return statistics.median(xs) if xs else 0.0


def aggregate(records, kind, cluster, workload, target):
    rs = [r for r in records if r["kind"] == kind and r["cluster"] == cluster and r["workload"] == workload
          and r["target"] == target]
    out = {k: median([r[k] for r in rs]) for k in ("iops", "lat_mean_us", "lat_p99_us")}
    out["reps"] = len(rs)
    ps = [r["cpu_pressure_pct"] for r in rs if r.get("cpu_pressure_pct") is not None]
    out["pressure_max"] = max(ps) if ps else None
    out["iops_all"] = [round(r["iops"]) for r in rs]
    if rs and "allocations" in rs[0]:
        out["alloc_fraction"] = median([r["alloc_fraction"] for r in rs])
        out["parked_writes"] = sum(r["parked_writes"] for r in rs)
    return out


def paired_ratios(records, kind, cluster, workload, target, base):
    """thin/raw IOPS of each repetition (targets of one rep ran back to back)."""
    by = {}
    for r in records:
        if r["kind"] == kind and r["cluster"] == cluster and r["workload"] == workload:
            by.setdefault(r["rep"], {})[r["target"]] = r["iops"]
    return [v[target] / v[base] for _, v in sorted(by.items()) if target in v and base in v and v[base]]


def quartiles(xs):
    """(q1, median, q3) of xs."""
    if len(xs) < 2:
        x = xs[0] if xs else 0.0
        return x, x, x
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def verdict(q1, med, q3):
    """The 5 % target on the median of the per-rep (paired) IOPS ratios."""
    if med >= 0.95:
        return "met"
    if q3 < 0.95:
        return "**missed**"
    return "**missed** (median; upper quartile within 5 %)"


def fmt_pct(p):
    return "-" if p is None else f"{p:.1f}"


def write_markdown(doc, path):
    recs, m = doc["records"], doc["machine"]
    lines = [f"# Thin volumes vs raw file backend ({'quick' if m['quick'] else 'full'} run, {doc['started']})", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs, kernel {m['kernel']}; {m['fio']}.",
             f"fio (`--thread`, our engine, `nestor_poll=1`) on CPU {m['client_cpu']}; one nestord "
             f"(`--reactors 1 --poll-mode poll`) on CPU {m['server_cpu']} serving every target; "
             f"steady runs {m['runtime_s']} s x {m['reps']} rep(s), first writes {m['first_write_reps']} rep(s); "
             "medians; latency is fio's total latency (lat_ns); store: files on tmpfs.",
             f"CPU pressure (/proc/pressure/cpu, time other tasks waited for a CPU) above "
             f"{m['max_pressure_pct']} % redid a steady rep: {m['discarded_reps']} rep(s) redone.",
             f"Command: `{doc['command']}` ({doc['elapsed_s']} s); pools made with `{m['pool_tool']}`.", "",
             f"Servers (one per cluster size, `taskset -c {m['server_cpu']}`):", ""]
    lines += [f"    {a}" for a in doc["server_argv"]]
    lines.append("")
    lines += ["## Fills", "", "| cluster | volume | fio | clusters allocated | extents | seconds |",
              "|---|---|---|---|---|---|"]
    for f in doc["fills"]:
        lines.append(f"| {human(f['cluster'])} | {f['volume']} | {f['rw']} bs={f['bs']} | "
                     f"{f['allocations']:,} of {f['clusters']:,} | {f['extents']:,} | {f['seconds']} |")
    lines.append("")
    clusters = sorted({r["cluster"] for r in recs}, reverse=True)
    for c in clusters:
        lines += [f"## Steady state, {human(c)} clusters, volume {m['size_mib']} MiB", "",
                  "| workload | target | IOPS | mean us | p99 us | IOPS vs raw: median of per-rep ratios "
                  "(quartiles) | 5 % target | max CPU pressure % |",
                  "|---|---|---|---|---|---|---|---|"]
        for (w, _, _) in STEADY:
            base = aggregate(recs, "steady", c, w, "raw")
            for t in STEADY_TARGETS:
                a = aggregate(recs, "steady", c, w, t)
                if not a["reps"]:
                    continue
                if t == "raw":
                    rel, ok = "1.000x", "-"
                else:
                    q1, med, q3 = quartiles(paired_ratios(recs, "steady", c, w, t, "raw"))
                    rel, ok = f"{med:.3f}x ({q1:.3f}-{q3:.3f})", verdict(q1, med, q3)
                lines.append(f"| {w} | {t} | {a['iops']:,.0f} | {a['lat_mean_us']:.2f} | {a['lat_p99_us']:.2f} | "
                             f"{rel} | {ok} | {fmt_pct(a['pressure_max'])} |")
        lines.append("")
        lines += [f"## First writes, {human(c)} clusters: randwrite 4k, {m['fw_size_mib']} MiB region, "
                  f"{m['fw_size_mib'] // 4} MiB written once", "",
                  "| workload | target | IOPS | mean us | p99 us | IOPS vs raw | IOPS vs raw-sparse | "
                  "writes that allocated | parked | max CPU pressure % |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for qd in (1, 32):
            w = f"randwrite-4k-qd{qd}-first"
            base = aggregate(recs, "first", c, w, "raw")
            sparse = aggregate(recs, "first", c, w, "raw-sparse")
            for t in FIRST_TARGETS:
                a = aggregate(recs, "first", c, w, t)
                if not a["reps"]:
                    continue
                alloc = f"{100 * a['alloc_fraction']:.0f} %" if "alloc_fraction" in a else "-"
                parked = f"{a['parked_writes']:,}" if "parked_writes" in a else "-"
                lines.append(f"| {w} | {t} | {a['iops']:,.0f} | {a['lat_mean_us']:.2f} | {a['lat_p99_us']:.2f} | "
                             f"{a['iops'] / base['iops']:.3f}x | {a['iops'] / sparse['iops']:.3f}x | {alloc} | "
                             f"{parked} | {fmt_pct(a['pressure_max'])} |")
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def spread(xs):
    """(min, q1, median, q3, max); quartiles as quartiles() (exclusive), but
    inclusive below 4 values, where the exclusive ones fall outside min-max."""
    if not xs:
        return (0, 0, 0, 0, 0)
    if 2 <= len(xs) < 4:
        q = statistics.quantiles(xs, n=4, method="inclusive")
        return (min(xs), q[0], statistics.median(xs), q[2], max(xs))
    q1, med, q3 = quartiles(xs)
    return (min(xs), q1, med, q3, max(xs))


def journal_pairs(records, cluster, qd):
    """{rep: {target: record}} of the --journal-compare runs."""
    by = {}
    for r in records:
        if r["kind"] == "journal" and r["cluster"] == cluster and r["qd"] == qd:
            by.setdefault(r["rep"], {})[r["target"]] = r
    return {k: v for k, v in sorted(by.items()) if "journal-on" in v and "journal-off" in v}


def journal_summary(records, cluster, qd):
    pairs = journal_pairs(records, cluster, qd)
    out = {"reps": len(pairs)}
    for t in ("journal-on", "journal-off"):
        rs = [v[t] for v in pairs.values()]
        out[t] = {k: spread([r[k] for r in rs]) for k in ("iops", "lat_mean_us", "lat_p99_us")}
        out[t]["alloc_fraction"] = median([r["alloc_fraction"] for r in rs])
        out[t]["commits"] = median([r["commits"] for r in rs])
        out[t]["parked"] = sum(r["parked_writes"] for r in rs)
        ps = [r["cpu_pressure_pct"] for r in rs if r.get("cpu_pressure_pct") is not None]
        out[t]["pressure"] = spread(ps) if ps else None
    out["ratio"] = spread([v["journal-on"]["iops"] / v["journal-off"]["iops"] for v in pairs.values()
                           if v["journal-off"]["iops"]])
    out["lat_ratio"] = spread([v["journal-on"]["lat_mean_us"] / v["journal-off"]["lat_mean_us"]
                               for v in pairs.values() if v["journal-off"]["lat_mean_us"]])
    out["lat_diff"] = spread([v["journal-on"]["lat_mean_us"] - v["journal-off"]["lat_mean_us"]
                              for v in pairs.values()])
    on = [v["journal-on"] for v in pairs.values()]
    npe = [r["notes_per_entry"] for r in on if r.get("notes_per_entry")]
    out["notes_per_entry"] = spread(npe) if npe else None
    out["entries"] = median([r["journal_entries"] for r in on if r.get("journal_entries") is not None])
    out["allocations"] = median([r["allocations"] for r in on])
    out["ios"] = median([r["ios"] for r in on])
    return out


def write_journal_markdown(doc, path):
    recs, m = doc["records"], doc["machine"]
    lines = [f"# First writes with the process-crash journal on vs off ({'quick' if m['quick'] else 'full'} run, "
             f"{doc['started']})", "",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs, kernel {m['kernel']}; {m['fio']}; load average before "
             f"{' '.join(m['loadavg_before'])}.",
             f"fio (`--thread`, our engine, `nestor_poll=1`) on CPU {m['client_cpu']}; nestord "
             f"(`--reactors 1 --poll-mode poll`) on CPU {m['server_cpu']}, one per run; every run a fresh pool "
             f"file on tmpfs with one never written volume; randwrite 4k, {m['fw_size_mib']} MiB region, "
             f"{m['fw_size_mib'] // 4} MiB written once (random map on); "
             + ("pool files prefaulted (`--prefault-pool`: fallocate, so no tmpfs page is allocated by the "
                "writes); " if m.get("prefault_pool") else "pool files sparse (each first write allocates "
                "tmpfs pages, as in production on tmpfs); ")
             + f"{m['reps']} rep(s) per (cluster, QD), "
             "on and off back to back, alternating which goes first.",
             f"A pair whose CPU pressure (/proc/pressure/cpu) exceeded {m['max_pressure_pct']} % was redone "
             f"(at most {m['retries']} times): {m['discarded_reps']} pair(s) redone.",
             f"Command: `{doc['command']}` ({doc['elapsed_s']} s); pools made with `{m['pool_tool']}`.", "",
             f"Servers (`taskset -c {m['server_cpu']}`; the socket directory and pool differ per run):", ""]
    lines += [f"    {a}" for a in doc["server_argv"]]
    lines += ["", "IOPS and latency: median [min, q1-q3, max] over the reps; on/off: median of the per-rep "
              "paired IOPS ratios [min, q1-q3, max]; on - off mean latency: median of the per-rep paired "
              "differences [min, q1-q3, max] (at QD1, divided by the fraction of writes that allocated: the "
              "journal's cost per allocating write).", "",
              "| clusters | QD | reps | journal on IOPS | journal off IOPS | on/off IOPS | on mean / p99 us | "
              "off mean / p99 us | on - off mean us | per allocating write us (QD1) | writes that allocated | "
              "allocations per journal write | max CPU pressure % on / off |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def sp(t, fmt="{:,.0f}"):
        mn, q1, med, q3, mx = t
        return f"{fmt.format(med)} [{fmt.format(mn)}, {fmt.format(q1)}-{fmt.format(q3)}, {fmt.format(mx)}]"

    for c in sorted({r["cluster"] for r in recs if r["kind"] == "journal"}, reverse=True):
        for qd in (1, 32):
            a = journal_summary(recs, c, qd)
            if not a["reps"]:
                continue
            on, off = a["journal-on"], a["journal-off"]
            npe = sp(a["notes_per_entry"], "{:.2f}") if a["notes_per_entry"] else "-"
            pr = " / ".join("-" if x["pressure"] is None else f"{x['pressure'][4]:.1f}" for x in (on, off))
            lines.append(f"| {human(c)} | {qd} | {a['reps']} | {sp(on['iops'])} | {sp(off['iops'])} | "
                         f"{sp(a['ratio'], '{:.3f}')} | {on['lat_mean_us'][2]:.2f} / {on['lat_p99_us'][2]:.1f} | "
                         f"{off['lat_mean_us'][2]:.2f} / {off['lat_p99_us'][2]:.1f} | "
                         f"{sp(a['lat_diff'], '{:.2f}')} | "
                         + (f"{a['lat_diff'][2] / on['alloc_fraction']:.2f} | "
                            if qd == 1 and on["alloc_fraction"] else "- | ")
                         + f"{100 * on['alloc_fraction']:.0f} % | {npe} | {pr} |")
    lines += ["", "Per run (in the order run):", "",
              "| # | clusters | QD | rep | journal | IOPS | mean us | p99 us | allocations | journal entries | "
              "commits | CPU pressure % |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in recs if r["kind"] == "journal"), key=lambda r: r["seq"]):
        je = f"{r['journal_entries']:,.0f}" if r.get("journal_entries") is not None else "-"
        lines.append(f"| {r['seq']} | {human(r['cluster'])} | {r['qd']} | {r['rep']} | {r['target'][8:]} | "
                     f"{r['iops']:,.0f} | {r['lat_mean_us']:.2f} | {r['lat_p99_us']:.1f} | {r['allocations']:,} | "
                     f"{je} | {r['commits']} | {fmt_pct(r['cpu_pressure_pct'])} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def machine_info(b):
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    fio = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(), "fio": fio,
            "client_cpu": b.client_cpu, "server_cpu": b.server_cpu, "quick": b.quick, "runtime_s": b.runtime,
            "reps": b.reps, "discarded_reps": b.discarded, "max_pressure_pct": b.args.max_pressure,
            "first_write_reps": b.fw_reps, "size_mib": b.size >> 20, "fw_size_mib": b.fw_size >> 20,
            "cluster_sizes": b.cluster_sizes, "pool_tool": b.pool_tool,
            "loadavg_before": b.load_before, "retries": b.args.retries,
            "journal_compare": b.args.journal_compare, "prefault_pool": b.args.prefault_pool}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--quick", action="store_true", help="1 s runs, 256 MiB volumes, 1 rep (about 1 minute)")
    ap.add_argument("--reps", type=int, default=0,
                    help="repetitions per steady record (default 15, quick 1; first writes: at most 3)")
    ap.add_argument("--max-pressure", type=float, default=5.0,
                    help="redo a steady rep whose CPU pressure (other load) exceeded this %% (default 5)")
    ap.add_argument("--retries", type=int, default=3, help="redos per steady rep (default 3)")
    ap.add_argument("--wait-quiet", type=int, default=0,
                    help="wait up to this many seconds for 10 s of CPU pressure below 1 %% at the start, "
                    "before each first-write rep and before redoing a disturbed rep")
    ap.add_argument("--cluster-sizes", default="64K,4K", help="comma-separated, e.g. 64K,4K")
    ap.add_argument("--prefault-pool", action="store_true",
                    help="--journal-compare: fallocate each fresh pool file before the run, so first writes "
                    "do not allocate tmpfs pages (isolates the volume layer and journal)")
    ap.add_argument("--journal-compare", action="store_true",
                    help="first writes only, QD1 and QD32, process-crash journal on (tmpfs) vs off "
                    "(--journal-dir none), interleaved; --reps default 9 (quick 2); --retries redoes a "
                    "disturbed on/off pair")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.sched_setaffinity(0, {0})
    b = VolumeBench(args)
    for path, what in ((b.nestord, "nestord"), (b.engine, "the fio engine")):
        if not os.path.exists(path):
            sys.exit(f"volume_bench: {what} not found at {path}; build first (make build)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.time()
    info_before = None
    try:
        b.run()
        info_before = machine_info(b)
    finally:
        b.cleanup()
    kind = "volume-journal" if args.journal_compare else "volume"
    out = os.path.join(args.out, f"{kind}-{stamp}")
    os.makedirs(out, exist_ok=True)
    doc = {"machine": info_before, "command": " ".join(sys.argv), "server_argv": b.server_argvs,
        "started": stamp, "elapsed_s": round(time.time() - started, 1), "fills": b.fills, "records": b.records}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    (write_journal_markdown if args.journal_compare else write_markdown)(doc, os.path.join(out, "results.md"))
    latest = os.path.join(args.out, f"{kind}-latest")
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(out, latest)
    log(f"results: {out} (and {latest}); {doc['elapsed_s']} s")
    with open(os.path.join(out, "results.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
