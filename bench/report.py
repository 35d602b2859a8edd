"""Markdown tables and PNG plots from a bench results document
(run_bench.py). Every ratio compares records of the same run."""
import os

SYSTEM_ORDER = [("bare", "-"), ("nestor", "poll"), ("nestor", "adaptive"), ("nestor", "interrupt"), ("qsd", "-")]


def label(system, mode):
    return system if mode == "-" else f"{system} {mode}"


def find(records, system, mode, backend, workload, jobs):
    for r in records:
        if (r["system"], r["mode"], r["backend"], r["workload"], r["jobs"]) == (system, mode, backend, workload, jobs):
            return r
    return None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def workload_table(doc, backend, workload, jobs):
    recs = doc["records"]
    bare = find(recs, "bare", "-", backend, workload, jobs)
    qsd = find(recs, "qsd", "-", backend, workload, jobs)
    qd1 = workload.endswith("qd1")
    seq = workload.startswith("seq")
    lines = []
    if qd1:
        lines.append("| system | mean us | p50 us | p99 us | p99.9 us | IOPS | server CPU % | mean vs bare | mean vs qsd |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
    else:
        unit = "MiB/s" if seq else "IOPS"
        lines.append(f"| system | {unit} | mean us | p99 us | server CPU % | server CPU s per M I/Os | {unit} vs bare | {unit} vs qsd |")
        lines.append("|---|---|---|---|---|---|---|---|")
    for system, mode in SYSTEM_ORDER:
        r = find(recs, system, mode, backend, workload, jobs)
        if r is None:
            continue
        if qd1:
            lines.append(f"| {label(system, mode)} | {fmt(r['lat_mean_us'], 2)} | {fmt(r['lat_p50_us'], 2)} | "
                         f"{fmt(r['lat_p99_us'], 2)} | {fmt(r['lat_p999_us'], 2)} | {fmt(r['iops'], 0)} | "
                         f"{fmt(r['server_cpu_pct'])} | {ratio(r['lat_mean_us'], bare and bare['lat_mean_us'])} | "
                         f"{ratio(r['lat_mean_us'], qsd and qsd['lat_mean_us'])} |")
        else:
            key = "bw_mib_s" if seq else "iops"
            lines.append(f"| {label(system, mode)} | {fmt(r[key], 0)} | {fmt(r['lat_mean_us'], 2)} | "
                         f"{fmt(r['lat_p99_us'], 2)} | {fmt(r['server_cpu_pct'])} | "
                         f"{fmt(r.get('server_cpu_s_per_mio'), 2)} | {ratio(r[key], bare and bare[key])} | "
                         f"{ratio(r[key], qsd and qsd[key])} |")
    return lines


def write_markdown(doc, path):
    m = doc["machine"]
    out = [f"# Benchmark results {doc['started']}", "",
           f"Machine: {m['cpu']}, {m['cpus']} CPUs, kernel {m['kernel']}; {m['fio']}; {m['qsd']}.",
           f"Client (fio, `--thread`) pinned to CPU {m['client_cpu']}, server pinned to CPU {m['server_cpu']}; "
           f"{m['runtime_s']} s per run{' (QUICK)' if m['quick'] else ''}; store: {m['store']}.",
           f"Command: `{doc['command']}` ({doc['elapsed_s']} s).", "",
           "Latency is fio's total latency (submit to completion) as seen by the client. "
           "Ratios compare records of this same run; for latency lower is better, for IOPS and bandwidth higher is better.", ""]
    recs = doc["records"]
    workloads = []
    for r in recs:
        if r["workload"] != "idle-10s" and r["workload"] not in workloads:
            workloads.append(r["workload"])
    for backend in ("null", "shm-file"):
        for workload in workloads:
            for jobs in (1, 2):
                table = workload_table(doc, backend, workload, jobs)
                if len(table) > 2:
                    out += [f"## {backend}, {workload}, {jobs} job{'s' if jobs > 1 else ''}", ""] + table + [""]
    out += ["## Idle: server CPU with a connected client doing 1 I/O per second", "",
            "| system | CPU % of one core | duration s |", "|---|---|---|"]
    for r in recs:
        if r["workload"] == "idle-10s":
            out.append(f"| {label(r['system'], r['mode'])} | {r['server_cpu_pct']:.2f} | {r['duration_s']} |")
    out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def write_plots(doc, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib missing (apt install python3-matplotlib): no plots")
        return
    recs = doc["records"]
    systems = [s for s in SYSTEM_ORDER]

    def bars(ax, workload, key, backend, jobs=1):
        names, vals = [], []
        for system, mode in systems:
            r = find(recs, system, mode, backend, workload, jobs)
            if r is not None and r.get(key) is not None:
                names.append(label(system, mode))
                vals.append(r[key])
        ax.bar(range(len(vals)), vals, color="#4477aa")
        ax.set_xticks(range(len(vals)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{backend} {workload}", fontsize=9)
        for i, v in enumerate(vals):
            ax.annotate(f"{v:,.2f}" if v < 100 else f"{v:,.0f}", (i, v), ha="center", va="bottom", fontsize=7)

    for fname, workloads, key, ylabel in (
            ("qd1-latency.png", ("randread-4k-qd1", "randwrite-4k-qd1"), "lat_mean_us", "mean latency (us), lower is better"),
            ("qd32-iops.png", ("randread-4k-qd32", "randwrite-4k-qd32"), "iops", "IOPS, higher is better")):
        fig, axes = plt.subplots(2, 2, figsize=(10, 7))
        for row, backend in enumerate(("null", "shm-file")):
            for col, workload in enumerate(workloads):
                bars(axes[row][col], workload, key, backend)
                axes[row][col].set_ylabel(ylabel, fontsize=8)
        fig.suptitle(f"{fname[:-4]} ({doc['started']}, 1 job, client CPU {doc['machine']['client_cpu']}, "
                     f"server CPU {doc['machine']['server_cpu']})", fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, fname), dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    idle = [r for r in recs if r["workload"] == "idle-10s"]
    ax.bar(range(len(idle)), [r["server_cpu_pct"] for r in idle], color="#aa4455")
    ax.set_xticks(range(len(idle)), [label(r["system"], r["mode"]) for r in idle], rotation=30, ha="right")
    ax.set_ylabel("server CPU % of one core (idle, client connected)")
    for i, r in enumerate(idle):
        ax.annotate(f"{r['server_cpu_pct']:.1f}", (i, r["server_cpu_pct"]), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "idle-cpu.png"), dpi=110)
    plt.close(fig)
