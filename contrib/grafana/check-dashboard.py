#!/usr/bin/env python3
"""Checks a Grafana dashboard against a nestord /metrics scrape: the JSON
loads, and every nestor_* metric its queries use is one nestord exports
(so renaming a metric cannot silently blank a panel).
usage: check-dashboard.py DASHBOARD.json METRICS.txt"""
import json
import re
import sys

dash = json.load(open(sys.argv[1]))
exported = set()
for line in open(sys.argv[2]):
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if m:
        exported.add(m.group(1))
        if m.group(2) in ("histogram", "summary"):
            exported.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
used = set()
for p in dash["panels"]:
    for t in p.get("targets", []):
        used.update(re.findall(r"\bnestor_[a-z0-9_]+", t["expr"]))
for v in dash.get("templating", {}).get("list", []):
    used.update(re.findall(r"\bnestor_[a-z0-9_]+", v.get("query", "")))
missing = sorted(used - exported)
if missing:
    sys.exit("dashboard uses metrics nestord does not export: " + ", ".join(missing))
print(f"dashboard: {len(dash['panels'])} panels, {len(used)} metrics, all exported")
