#!/usr/bin/env bash
# Runs every fuzz target of BUILD for SECONDS each, from its seed corpus
# (copied to a scratch folder: the repo's corpus only grows by hand).
# Usage: fuzz/run-all.sh BUILD SECONDS
set -euo pipefail
build=${1:?build folder}; secs=${2:?seconds}
root=$(cd "$(dirname "$0")" && pwd)
shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets in $build/fuzz"; exit 1; }
for t in "${targets[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t"); name=${name#fuzz_}
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
  cp -r "$root/corpus/$name/." "$work/" 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  timeout $((secs + 120)) "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/fuzz/crash-$name-" "$work" 2>&1 | tail -n 3
  rc=${PIPESTATUS[0]}
  rm -rf "$work"
  [ "$rc" -eq 0 ] || { echo "fuzz: $name FAILED (rc $rc); artifacts in $build/fuzz/"; exit 1; }
done
