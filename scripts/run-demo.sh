#!/usr/bin/env bash
# `make run`: the embedded default. A 1 GiB thin pool in ./var/pool.img
# (created on the first run with `nestor pool create`); nestord serves it
# (1 reactor, adaptive polling) with its control socket; `nestorctl`
# creates and exports the 256 MiB volume "demo" (2 queues) at runtime
# (kept in the pool: later runs find it exported already); a separate
# process drives a verifying workload through libnestor (nestor-io); then
# nestorctl shows the volume, its statistics and the reactor, and nestord
# stops with SIGTERM.
# usage: scripts/run-demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
VAR=$PWD/var
mkdir -p "$VAR/run"
SOCK_DIR=$VAR/run
LOG=$VAR/nestord.log
POOL=$VAR/pool.img
NCPU=$(nproc)
# Reactor on the last CPU, client on CPU 0 (when there are two or more).
RCPU=$((NCPU - 1))
NESTOR=$BUILD/tools/nestor/nestor
CTL=("$BUILD/tools/nestorctl/nestorctl" -s "$SOCK_DIR/control.ctl")

if [ ! -f "$POOL" ]; then
  echo "== nestor pool create $POOL --size 1G"
  "$NESTOR" pool create "$POOL" --size 1G
fi
echo "== nestord --pool $POOL, reactor on CPU $RCPU, adaptive, control socket $SOCK_DIR/control.ctl"
# nestord runs directly (not under timeout) so that PID is nestord itself:
# the EXIT trap reaps it on any failure.
"$BUILD/src/daemon/nestord" --socket-dir "$SOCK_DIR" --pool "$POOL" \
  --reactors 1 --cpus "$RCPU" --poll-mode adaptive >"$LOG" 2>&1 &
PID=$!
trap 'kill -KILL $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SOCK_DIR/control.ctl" ] && break; sleep 0.05; done
[ -S "$SOCK_DIR/control.ctl" ] || { cat "$LOG"; echo "nestord did not start"; exit 1; }

if ! "${CTL[@]}" --json export list | grep -q '"name": "demo"'; then
  echo "== nestorctl volume create demo --size 256M; nestorctl export create demo --queues 2"
  "${CTL[@]}" volume create demo --size 256M
  "${CTL[@]}" export create demo --queues 2
fi

CLIENT=("$BUILD/src/client/nestor-io" --socket "$SOCK_DIR/demo.sock" --bytes 64M)
TASKSET=(); [ "$NCPU" -gt 1 ] && TASKSET=(taskset -c 0)
echo "== client (separate process, libnestor, polled completions): 4 KiB blocks, QD 16 per queue, 2 queues, 3 s"
timeout 60 "${TASKSET[@]}" "${CLIENT[@]}" --queues 2 --block-size 4096 --qd 16 --seconds 3
echo "== client: 4 KiB, QD 1, one queue, blocking completions (latency), 2 s"
timeout 60 "${TASKSET[@]}" "${CLIENT[@]}" --queues 1 --block-size 4096 --qd 1 --blocking --seconds 2

echo "== nestorctl volume list; nestorctl stats demo; nestorctl reactor list"
"${CTL[@]}" volume list
"${CTL[@]}" stats demo
"${CTL[@]}" reactor list

kill -TERM $PID
wait $PID && rc=0 || rc=$?
trap - EXIT
echo "== nestord exited with status $rc"
grep -E "stats pool|stopped cleanly" "$LOG" | sed 's/^[^ ]* [A-Z]* */  /'
exit $rc
