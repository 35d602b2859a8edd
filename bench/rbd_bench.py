#!/usr/bin/python3
"""make bench-rbd: 4 KiB random reads and writes of one RBD image on a
throwaway single-node Ceph cluster (tests/ceph/lib-ceph.sh), through

  librbd   fio's own rbd engine: librbd in the client, no server (the floor
           of what any server in front of librbd can add to)
  nestord  nestord --volume r,backend=rbd:rbd/IMG (one reactor, --poll-mode
           poll, adaptive or interrupt), fio with our engine (nestor_poll=1)
  qsd      qemu-storage-daemon --blockdev driver=rbd, exported as
           vhost-user-blk (one iothread), the same fio engine

all with the cluster's default librbd settings (rbd cache on, writethrough
until the first flush: every system gets the same). fio's job thread on
CPU 0; nestord's reactor on CPU 1 (--cpus); every other thread (librbd's
and the cluster's, qemu-storage-daemon's) wherever the scheduler puts
them: librbd runs a dozen threads per client, and pinning them with a
reactor starves them (this machine has two CPUs; the OSD competes for
both). Every (workload,
system) is repeated --reps times in rotated order; per system the median
IOPS and latency, and system / librbd as the median of per-rep ratios.

usage: rbd_bench.py --build BUILD [--quick] [--reps N] [--runtime S] [--size 1G] [--out DIR]
                    [--systems nestord-adaptive,qsd,...] [--workloads randread-4k-qd32,...]

librbd's baseline is not like for like on writes: fio's rbd engine flushes
at open, which turns librbd's cache from writethrough to writeback, while
the servers' guests (fio through our engine) never flush, so their cache
stays writethrough. Compare the servers with each other there.
Results: bench/results/rbd-<timestamp>/results.{json,md} and rbd-latest/.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_bench as rb  # noqa: E402

log = rb.log
HERE = os.path.dirname(os.path.abspath(__file__))
LIB_CEPH = os.path.join(HERE, "..", "tests", "ceph", "lib-ceph.sh")
WORKLOADS = [("randread-4k-qd1", "randread", 1), ("randread-4k-qd32", "randread", 32),
             ("randwrite-4k-qd1", "randwrite", 1), ("randwrite-4k-qd32", "randwrite", 32)]
IMAGE = "bench"


class Cluster:
    """ceph_up in a bash child that holds the cluster until told to stop."""

    def __init__(self, d):
        script = '. "$1"; ceph_up "$2" || exit 1; echo "CONF=$CEPH_CONF_FILE"; read -r _; ceph_down'
        self.proc = subprocess.Popen(["bash", "-c", script, "bash", LIB_CEPH, d], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("CONF="):
            self.proc.wait(timeout=30)
            raise RuntimeError("ceph_up failed (see its messages above)")
        self.conf = line[5:]

    def rbd(self, *args):
        subprocess.run(["timeout", "120", "rbd", "-c", self.conf, "--id", "admin"] + list(args), check=True,
                       capture_output=True)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


class RbdBench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.engine = os.path.join(self.build, "tools/fio/nestor-fio.so")
        self.nestord = os.path.join(self.build, "src/daemon/nestord")
        self.reps = args.reps or (2 if args.quick else 5)
        self.runtime = args.runtime or (2 if args.quick else 5)
        self.size = args.size
        self.tmp = tempfile.mkdtemp(prefix="nestor-rbdbench.")
        self.server_cpu = (os.cpu_count() or 1) - 1
        self.client_cpu = 0
        self.records = []
        self.failures = []  # runs left out (see run)
        self.notes = []

    def fio(self, rw, qd, target):
        args = ["--name=bench", f"--rw={rw}", "--bs=4k", f"--iodepth={qd}", "--numjobs=1", "--thread",
                f"--cpus_allowed={self.client_cpu}", "--time_based", f"--runtime={self.runtime}s",
                "--ramp_time=1s", "--group_reporting", "--lat_percentiles=1", "--norandommap", "--randrepeat=0",
                f"--size={self.size}"] + target
        return rb.summarize(rb.fio_json(args, timeout=self.runtime + 120), rw)

    def target(self, system, servers):
        if system == "librbd":
            return ["--ioengine=rbd", "--clientname=admin", "--pool=rbd", f"--rbdname={IMAGE}"]
        return [f"--ioengine=external:{self.engine}", f"--socket={servers[system].sock}", "--filename=nestor",
                "--nestor_poll=1"]

    def start_servers(self, conf):
        servers = {}
        for mode in ("poll", "adaptive", "interrupt"):
            d = os.path.join(self.tmp, f"nestord-{mode}")
            os.makedirs(d)
            argv = [self.nestord, "--socket-dir", d, "--ceph-conf", conf, "--reactors", "1", "--poll-mode", mode,
                    "--cpus", str(self.server_cpu),
                    "--volume", f"r,backend=rbd:rbd/{IMAGE}"]
            servers[f"nestord-{mode}"] = argv
        servers["qsd"] = ["qemu-storage-daemon", "--object", "iothread,id=io0", "--blockdev",
                          f"driver=rbd,pool=rbd,image={IMAGE},conf={conf},user=admin,node-name=r",
                          "--export", "type=vhost-user-blk,id=e0,addr.type=unix,addr.path={sock},node-name=r,"
                                      "writable=on,num-queues=1,iothread=io0"]
        return servers

    def start(self, system, argv):
        d = os.path.join(self.tmp, system)
        os.makedirs(d, exist_ok=True)
        if system == "qsd":
            sock = os.path.join(d, "r.sock")
            argv = [a.replace("{sock}", sock) for a in argv]
        else:
            sock = os.path.join(argv[argv.index("--socket-dir") + 1], "r.sock")
        every_cpu = f"0-{(os.cpu_count() or 1) - 1}"  # not pinned: see the top of this file
        return rb.Server(argv, sock, every_cpu, os.path.join(d, "log"))

    def run(self):
        t0 = time.time()
        with open("/proc/loadavg") as f:
            load_before = f.read().split()[:3]
        cluster = Cluster(os.path.join(self.tmp, "ceph"))
        try:
            cluster.rbd("create", "--size", self.size, f"rbd/{IMAGE}")
            log(f"filling rbd/{IMAGE} ({self.size}) with fio's rbd engine")
            fill = ["--name=fill", "--rw=write", "--bs=1M", "--iodepth=8", f"--size={self.size}", "--ioengine=rbd",
                    "--clientname=admin", "--pool=rbd", f"--rbdname={IMAGE}"]
            os.environ["CEPH_CONF"] = cluster.conf
            rb.fio_json(fill, timeout=600)
            argvs = self.start_servers(cluster.conf)
            systems = ["librbd"] + list(argvs)
            if self.args.systems:
                systems = ["librbd"] + [s for s in systems if s in self.args.systems.split(",")]
            for (name, rw, qd) in WORKLOADS:
                if self.args.workloads and name not in self.args.workloads.split(","):
                    continue
                for rep in range(self.reps):
                    order = systems[rep % len(systems):] + systems[:rep % len(systems)]
                    for system in order:
                        # One server at a time: the writer holds the image's
                        # exclusive lock, and a server left running would
                        # keep polling a CPU.
                        # One failed or hung run (fio's own rbd engine once
                        # hung for 124 s on the last rep of an hour-long run)
                        # is reported and left out, not the whole run lost.
                        srv = None
                        try:
                            srv = self.start(system, argvs[system]) if system != "librbd" else None
                            # Server CPU: every thread of the server process
                            # (reactor, librbd's, qsd's iothread) over the fio
                            # run (ramp included), in cores.
                            c0, w0 = (srv.cpu() if srv else 0.0), time.time()
                            res = self.fio(rw, qd, self.target(system, {system: srv} if srv else {}))
                            if srv:
                                res["server_cores"] = (srv.cpu() - c0) / (time.time() - w0)
                        except (subprocess.TimeoutExpired, RuntimeError) as e:
                            log(f"  {name:17} {system:17} rep {rep}: FAILED, left out: {str(e)[:200]}")
                            self.failures.append(f"{name} {system} rep {rep}: {str(e)[:200]}")
                            continue
                        finally:
                            if srv:
                                srv.stop()
                        self.records.append({"workload": name, "system": system, "rep": rep, **res})
                        cpu = f" server {res['server_cores']:.2f} cores" if "server_cores" in res else ""
                        log(f"  {name:17} {system:17} rep {rep}: {res['iops']:>8.0f} IOPS mean "
                            f"{res['lat_mean_us']:8.1f} us p99 {res['lat_p99_us']:8.1f} us{cpu}")
        finally:
            cluster.stop()
        with open("/proc/loadavg") as f:
            load_after = f.read().split()[:3]
        self.report(load_before, load_after, time.time() - t0)

    def report(self, load_before, load_after, seconds):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        outdir = self.args.out or os.path.join(HERE, "results", f"rbd-{stamp}")
        os.makedirs(outdir, exist_ok=True)
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump({"load_before": load_before, "load_after": load_after, "records": self.records}, f, indent=1)
        out = [f"# RBD volumes ({stamp} UTC)", "", f"Command: `{' '.join(sys.argv)}`; {seconds:.0f} s; load average "
               f"before {' '.join(load_before)}, after {' '.join(load_after)}; {self.reps} reps of "
               f"{self.runtime} s (+1 s ramp) per (workload, system), rotated order.", "",
               "| workload | system | IOPS | mean / p99 us | server CPU: cores, us per I/O | "
               "IOPS / librbd, median of pairs [min-max] |",
               "|---|---|---|---|---|---|"]
        if self.failures:
            out[2:2] = ["Runs that failed and were left out: " + "; ".join(self.failures), ""]
        for (name, _, _) in WORKLOADS:
            by = {}
            for r in self.records:
                if r["workload"] == name:
                    by.setdefault(r["system"], {})[r["rep"]] = r
            for system, reps in by.items():
                rows = list(reps.values())
                ratios = [reps[k]["iops"] / by["librbd"][k]["iops"] for k in reps if k in by.get("librbd", {})]
                if not ratios:
                    continue
                cores = [r["server_cores"] for r in rows if "server_cores" in r]
                per_io = [r["server_cores"] * 1e6 / r["iops"] for r in rows if "server_cores" in r and r["iops"]]
                cpu = (f"{statistics.median(cores):.2f}, {statistics.median(per_io):.1f}" if cores
                       else "- (in the client)")
                out.append(f"| {name} | {system} | {statistics.median(r['iops'] for r in rows):,.0f} | "
                           f"{statistics.median(r['lat_mean_us'] for r in rows):.1f} / "
                           f"{statistics.median(r['lat_p99_us'] for r in rows):.1f} | {cpu} | "
                           f"**{statistics.median(ratios):.3f}** [{min(ratios):.3f}-{max(ratios):.3f}] |")
        md = "\n".join(out) + "\n"
        with open(os.path.join(outdir, "results.md"), "w") as f:
            f.write(md)
        latest = os.path.join(os.path.dirname(outdir), "rbd-latest")
        if os.path.islink(latest):
            os.unlink(latest)
        if not os.path.exists(latest):
            os.symlink(os.path.basename(outdir), latest)
        print(md)

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--runtime", type=int, default=0, help="seconds per run (default 5, quick 2)")
    ap.add_argument("--size", default="1G", help="image size (default 1G)")
    ap.add_argument("--systems", help="comma list of nestord-poll, nestord-adaptive, nestord-interrupt, qsd "
                                     "(default all; librbd always runs, as the baseline)")
    ap.add_argument("--workloads", help="comma list of " + ", ".join(w[0] for w in WORKLOADS) + " (default all)")
    ap.add_argument("--out")
    args = ap.parse_args()
    b = RbdBench(args)
    try:
        b.run()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
