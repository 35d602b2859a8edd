#!/usr/bin/env python3
"""Checks a nestord /metrics scrape against Prometheus' naming and
exposition conventions (https://prometheus.io/docs/practices/naming/):
every family has HELP and TYPE; names are nestor_snake_case; counters end
in _total and nothing else does; times are _seconds and sizes _bytes (no
_ms, _us, _ns, _kb ...); every sample belongs to a declared family; a
histogram has cumulative _bucket lines ending in le="+Inf", whose count
equals _count, and a _sum.
usage: check-metrics.py METRICS.txt"""
import re
import sys
from collections import defaultdict

types, helps, samples = {}, set(), []
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# HELP "):
        helps.add(line.split()[2])
    elif line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        types[name] = kind
    elif line and not line.startswith("#"):
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
        if not m:
            sys.exit(f"not a sample line: {line!r}")
        samples.append((m.group(1), m.group(2) or "", float(m.group(3))))

errors = []
for name, kind in types.items():
    if name not in helps:
        errors.append(f"{name}: no HELP")
    if not re.fullmatch(r"nestor_[a-z0-9]+(_[a-z0-9]+)*", name):
        errors.append(f"{name}: not nestor_snake_case")
    if (kind == "counter") != name.endswith("_total"):
        errors.append(f"{name}: a {kind}; only counters end in _total")
    if re.search(r"_(ms|us|ns|millis|micros|nanos|milliseconds|microseconds|nanoseconds|kb|mb|gb|kib|mib)(_|$)", name):
        errors.append(f"{name}: not in base units (seconds, bytes)")

def family(sample):
    if sample in types:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample[: -len(suffix)]
        if sample.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return None

buckets = defaultdict(list)
counts = {}
for name, labels, value in samples:
    fam = family(name)
    if fam is None:
        errors.append(f"{name}: sample without a TYPE")
        continue
    if types[fam] == "histogram":
        series = re.sub(r',?le="[^"]*"', "", labels).replace("{,", "{")
        if name.endswith("_bucket"):
            le = re.search(r'le="([^"]*)"', labels)
            if not le:
                errors.append(f"{name}{labels}: a bucket without le")
                continue
            buckets[(fam, series)].append((float(le.group(1)), value))
        elif name.endswith("_count"):
            counts[(fam, series)] = value

for key, bs in buckets.items():
    if bs[-1][0] != float("inf"):
        errors.append(f"{key}: the last bucket is not le=\"+Inf\"")
    if any(b[0] >= c[0] or b[1] > c[1] for b, c in zip(bs, bs[1:])):
        errors.append(f"{key}: buckets not increasing and cumulative")
    if counts.get(key) != bs[-1][1]:
        errors.append(f"{key}: _count {counts.get(key)} != +Inf bucket {bs[-1][1]}")
for kind in set(types.values()) - {"counter", "gauge", "histogram"}:
    errors.append(f"type {kind} used; nestord exports counters, gauges and histograms")
if errors:
    sys.exit("\n".join(errors))
print(f"metrics: {len(types)} families, {len(samples)} samples, {len(buckets)} histograms: conventions kept")
