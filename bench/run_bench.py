#!/usr/bin/python3
"""make bench: fio side by side against bare io_uring, nestord (poll,
adaptive, interrupt) and qemu-storage-daemon, on one backing store.

Every number in the output was measured in this run. Client (fio) and
server are pinned to different CPUs. Results go to
bench/results/<timestamp>/ and bench/results/latest/: results.json,
results.md (tables with ratios to bare and to qsd) and PNG plots.

usage: run_bench.py --build BUILD_DIR [--quick] [--out DIR]
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

WORKLOADS = [
    # name, rw, bs, iodepth
    ("randread-4k-qd1", "randread", "4k", 1),
    ("randwrite-4k-qd1", "randwrite", "4k", 1),
    ("randread-4k-qd32", "randread", "4k", 32),
    ("randwrite-4k-qd32", "randwrite", "4k", 32),
    ("seqread-128k-qd8", "read", "128k", 8),
    ("seqwrite-128k-qd8", "write", "128k", 8),
]
MODES = ["poll", "adaptive", "interrupt"]


def log(msg):
    print(msg, flush=True)


def cpu_seconds(pid):
    """utime + stime of a process and all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class Server:
    """A vhost-user-blk server process (nestord or qsd), pinned to a CPU."""

    def __init__(self, argv, sock, cpu, logpath):
        self.sock = sock
        self.log = open(logpath, "w")
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 15
        while not os.path.exists(sock):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {' '.join(argv)} (see {logpath})")
            time.sleep(0.05)

    def cpu(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class CpuSampler:
    """Samples a server's CPU time every 20 ms while fio runs, so that the
    CPU spent inside fio's measurement window (not fio's start-up) can be
    read off afterwards."""

    def __init__(self, server):
        self.server = server
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.samples.append((time.time(), self.server.cpu()))
            self.stop.wait(0.02)

    def __enter__(self):
        if self.server:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.server:
            self.stop.set()
            self.thread.join()
            self.samples.append((time.time(), self.server.cpu()))

    def at(self, t):
        s = self.samples
        for (t0, c0), (t1, c1) in zip(s, s[1:]):
            if t0 <= t <= t1:
                return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        return s[0][1] if t < s[0][0] else s[-1][1]

    def window(self, end_s, seconds):
        """CPU seconds used in [end_s - seconds, end_s]."""
        if not self.server:
            return None
        return self.at(end_s) - self.at(end_s - seconds)


def fio_json(args, timeout):
    out = subprocess.run(["fio", "--output-format=json"] + args, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"fio failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    text = out.stdout
    return json.loads(text[text.index("{"):])


def fio_window(result, jobs=1):
    """(end time in s since the epoch, measured seconds) of a fio run of
    `jobs` parallel jobs (group_reporting sums their runtimes)."""
    runtime_s = max(j.get("job_runtime", 0) for j in result["jobs"]) / 1000.0 / jobs
    return result["timestamp_ms"] / 1000.0, runtime_s


def summarize(result, rw):
    """Aggregate fio's per-job stats (group_reporting gives one job)."""
    job = result["jobs"][0]
    if job.get("error", 0) != 0:
        raise RuntimeError(f"fio job error {job['error']}")
    side = job["read"] if "read" in rw else job["write"]
    lat = side["clat_ns"] if side.get("lat_ns", {}).get("N", 0) == 0 else side["lat_ns"]
    pct = side["clat_ns"].get("percentile", {})
    return {
        "iops": side["iops"],
        "bw_mib_s": side["bw_bytes"] / 2**20,
        "lat_mean_us": lat["mean"] / 1000,
        "lat_p50_us": pct.get("50.000000", 0) / 1000,
        "lat_p99_us": pct.get("99.000000", 0) / 1000,
        "lat_p999_us": pct.get("99.900000", 0) / 1000,
        "ios": side["total_ios"],
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.quick = args.quick
        self.runtime = 0.7 if self.quick else 5
        self.idle_s = 3 if self.quick else 10
        self.size_mib = 256 if self.quick else 1024
        self.engine = os.path.join(self.build, "tools/fio/nestor-fio.so")
        self.nestord = os.path.join(self.build, "src/daemon/nestord")
        ncpu = os.cpu_count() or 1
        self.server_cpu = ncpu - 1
        self.client_cpu = 0
        self.tmp = tempfile.mkdtemp(prefix="nestor-bench.")
        self.shm = tempfile.mkdtemp(prefix="nestor-bench.", dir="/dev/shm")
        self.img = os.path.join(self.shm, "disk.img")
        self.records = []

    def prepare_store(self):
        log(f"backing store: {self.img} ({self.size_mib} MiB on tmpfs), filled")
        subprocess.run(["dd", "if=/dev/zero", f"of={self.img}", "bs=1M", f"count={self.size_mib}",
                        "status=none"], check=True)

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    # -- servers ---------------------------------------------------------
    def start_nestord(self, mode):
        d = os.path.join(self.tmp, f"nestord-{mode}")
        os.makedirs(d, exist_ok=True)
        size = f"{self.size_mib}M"
        argv = [self.nestord, "--socket-dir", d,
                "--volume", f"file,size={size},backend=file:{self.img},queues=2",
                "--volume", f"null,size={size},backend=null,queues=2",
                "--reactors", "1", "--poll-mode", mode]
        srv = Server(argv, os.path.join(d, "null.sock"), self.server_cpu, os.path.join(d, "log"))
        srv.socks = {"shm-file": os.path.join(d, "file.sock"), "null": os.path.join(d, "null.sock")}
        return srv

    def start_qsd(self):
        d = os.path.join(self.tmp, "qsd")
        os.makedirs(d, exist_ok=True)
        fsock, nsock = os.path.join(d, "file.sock"), os.path.join(d, "null.sock")
        size = self.size_mib * 2**20
        argv = ["qemu-storage-daemon",
                "--object", "iothread,id=io0", "--object", "iothread,id=io1",
                "--blockdev", f"driver=file,node-name=f0,filename={self.img},aio=io_uring,cache.direct=on",
                "--blockdev", f"driver=null-co,node-name=n0,size={size},read-zeroes=on",
                "--export", f"type=vhost-user-blk,id=e0,addr.type=unix,addr.path={fsock},node-name=f0,"
                            "writable=on,num-queues=2,iothread=io0",
                "--export", f"type=vhost-user-blk,id=e1,addr.type=unix,addr.path={nsock},node-name=n0,"
                            "writable=on,num-queues=2,iothread=io1"]
        srv = Server(argv, nsock, self.server_cpu, os.path.join(d, "log"))
        deadline = time.time() + 10
        while not os.path.exists(fsock) and time.time() < deadline:
            time.sleep(0.05)
        srv.socks = {"shm-file": fsock, "null": nsock}
        return srv

    # -- clients ---------------------------------------------------------
    def fio_common(self, rw, bs, qd, jobs):
        return ["--name=bench", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}", f"--numjobs={jobs}",
                "--thread", f"--cpus_allowed={self.client_cpu}", "--time_based",
                f"--runtime={int(self.runtime * 1000)}ms", "--group_reporting", "--lat_percentiles=1",
                "--norandommap", "--randrepeat=0", f"--size={self.size_mib}M"]

    def fio_target(self, system, sock, backend="shm-file"):
        if system == "bare" and backend == "null":
            # The null device "built into" the client: fio's own null engine,
            # the ceiling of what one fio client core can issue.
            return ["--ioengine=null"]
        if system == "bare":
            return ["--ioengine=io_uring", "--direct=1", f"--filename={self.img}"]
        return [f"--ioengine=external:{self.engine}", f"--socket={sock}", "--filename=nestor",
                "--nestor_poll=1"]

    def run_workloads(self, system, mode, backend, sock, server):
        for (name, rw, bs, qd) in WORKLOADS:
            for jobs in (1, 2):
                args = self.fio_common(rw, bs, qd, jobs) + self.fio_target(system, sock, backend)
                with CpuSampler(server) as sampler:
                    raw = fio_json(args, timeout=self.runtime + 60)
                res = summarize(raw, rw)
                end, seconds = fio_window(raw, jobs)
                cpu = sampler.window(end, seconds)
                rec = {"system": system, "mode": mode, "backend": backend, "workload": name,
                       "jobs": jobs, **res,
                       "server_cpu_s": cpu, "server_cpu_pct": (100 * cpu / seconds) if server else None,
                       "server_cpu_s_per_mio": (cpu / (res["ios"] / 1e6)) if server and res["ios"] else None,
                       "duration_s": self.runtime}
                self.records.append(rec)
                log(f"  {system:6} {mode:9} {backend:8} {name:18} jobs={jobs}: "
                    f"{res['iops']:>10.0f} IOPS {res['bw_mib_s']:>8.1f} MiB/s "
                    f"mean {res['lat_mean_us']:7.2f} us p99 {res['lat_p99_us']:7.2f} us"
                    + (f" server {rec['server_cpu_pct']:5.1f}% cpu" if server else ""))

    def measure_idle(self, system, mode, server, sock):
        """Server CPU while a client is connected but idle (1 I/O per second)."""
        args = ["--name=idle", "--rw=randread", "--bs=4k", "--iodepth=1", "--rate_iops=1",
                "--thread", f"--cpus_allowed={self.client_cpu}", "--time_based",
                f"--runtime={self.idle_s}", f"--size={self.size_mib}M"] + self.fio_target(system, sock)
        with CpuSampler(server) as sampler:
            raw = fio_json(args, timeout=self.idle_s + 60)
        end, seconds = fio_window(raw)
        cpu = sampler.window(end, seconds)
        wall = seconds
        rec = {"system": system, "mode": mode, "backend": "shm-file", "workload": "idle-10s", "jobs": 1,
               "iops": 0, "bw_mib_s": 0, "lat_mean_us": None, "lat_p50_us": None, "lat_p99_us": None,
               "lat_p999_us": None, "server_cpu_s": cpu, "server_cpu_pct": 100 * cpu / wall,
               "duration_s": self.idle_s}
        self.records.append(rec)
        log(f"  {system:6} {mode:9} idle {self.idle_s}s with a connected client: "
            f"{rec['server_cpu_pct']:.2f}% of a core")

    def run(self):
        self.prepare_store()
        log(f"client (fio) on CPU {self.client_cpu}, server on CPU {self.server_cpu}; "
            f"{self.runtime} s per run")
        self.run_workloads("bare", "-", "shm-file", None, None)
        self.run_workloads("bare", "-", "null", None, None)
        for mode in MODES:
            srv = self.start_nestord(mode)
            try:
                self.measure_idle("nestor", mode, srv, srv.socks["shm-file"])
                for backend in ("shm-file", "null"):
                    self.run_workloads("nestor", mode, backend, srv.socks[backend], srv)
            finally:
                srv.stop()
        srv = self.start_qsd()
        try:
            self.measure_idle("qsd", "-", srv, srv.socks["shm-file"])
            for backend in ("shm-file", "null"):
                self.run_workloads("qsd", "-", backend, srv.socks[backend], srv)
        finally:
            srv.stop()


def machine_info(bench):
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    qsd = subprocess.run(["qemu-storage-daemon", "--version"], capture_output=True, text=True).stdout
    fio = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "fio": fio, "qsd": qsd.splitlines()[0] if qsd else "",
            "client_cpu": bench.client_cpu, "server_cpu": bench.server_cpu,
            "quick": bench.quick, "runtime_s": bench.runtime,
            "store": f"{bench.size_mib} MiB file on tmpfs (/dev/shm)"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--quick", action="store_true", help="0.7 s runs, 3 s idle (under 3 minutes)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args()
    # SIGTERM/SIGINT unwind through the finally blocks that stop servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The orchestrator (and its CPU sampler) stays off the server's CPU.
    os.sched_setaffinity(0, {0})
    bench = Bench(args)
    for path, what in ((bench.nestord, "nestord"), (bench.engine, "the fio engine")):
        if not os.path.exists(path):
            sys.exit(f"bench: {what} not found at {path}; build first (make build)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.time()
    try:
        bench.run()
    finally:
        bench.cleanup()
    out = os.path.join(args.out, stamp)
    os.makedirs(out, exist_ok=True)
    doc = {"machine": machine_info(bench), "command": " ".join(sys.argv),
           "started": stamp, "elapsed_s": round(time.time() - started, 1), "records": bench.records}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    import report  # noqa: E402 (local module, needs the results first)
    report.write_markdown(doc, os.path.join(out, "results.md"))
    report.write_plots(doc, out)
    latest = os.path.join(args.out, "latest")
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(out, latest)
    log(f"results: {out} (and {latest}); {doc['elapsed_s']} s")
    with open(os.path.join(out, "results.md")) as f:
        print(f.read())


if __name__ == "__main__":
    main()
