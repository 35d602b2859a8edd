#!/usr/bin/env bash
# Runs every fuzz target of BUILD for SECONDS each, starting from its seed
# corpus (copied to a scratch folder: the repo's corpus grows only by hand).
# A crash leaves its input in BUILD/fuzz/crash-<name>-*; the script fails.
# Usage: fuzz/run-all.sh BUILD SECONDS
set -uo pipefail
build=${1:?build folder}; secs=${2:?seconds}
root=$(cd "$(dirname "$0")" && pwd)
shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets in $build/fuzz"; exit 1; }
for t in "${targets[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t"); name=${name#fuzz_}
  work=$(mktemp -d)
  cp -r "$root/corpus/$name/." "$work/" 2>/dev/null
  echo "fuzz: $name for ${secs}s"
  timeout $((secs + 120)) "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/fuzz/crash-$name-" "$work" >"$build/fuzz/$name.log" 2>&1
  rc=$?
  grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$build/fuzz/$name.log" | tail -n 2
  rm -rf "$work"
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$build/fuzz/$name.log"
    echo "fuzz: $name FAILED (rc $rc); input in $build/fuzz/crash-$name-*"
    exit 1
  fi
done
echo "fuzz: all targets clean"
