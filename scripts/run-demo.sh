#!/usr/bin/env bash
# `make run`: start nestord on the embedded default (one 256 MiB volume
# "demo" backed by ./var/demo.img, 2 queues, 1 reactor, adaptive polling),
# drive a verifying workload against it from a separate process through
# libnestor (nestor-io), print what it did, and stop nestord with SIGTERM.
# usage: scripts/run-demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
VAR=$PWD/var
mkdir -p "$VAR/run"
SOCK_DIR=$VAR/run
LOG=$VAR/nestord.log
NCPU=$(nproc)
# Reactor on the last CPU, client on CPU 0 (when there are two or more).
RCPU=$((NCPU - 1))

echo "== nestord: volume demo (256 MiB, file $VAR/demo.img, 2 queues), reactor on CPU $RCPU, adaptive"
# nestord runs directly (not under timeout) so that PID is nestord itself:
# the EXIT trap reaps it on any failure.
"$BUILD/src/daemon/nestord" --socket-dir "$SOCK_DIR" \
  --volume "demo,size=256M,backend=file:$VAR/demo.img,queues=2" \
  --reactors 1 --cpus "$RCPU" --poll-mode adaptive >"$LOG" 2>&1 &
PID=$!
trap 'kill -KILL $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SOCK_DIR/demo.sock" ] && break; sleep 0.05; done
[ -S "$SOCK_DIR/demo.sock" ] || { cat "$LOG"; echo "nestord did not start"; exit 1; }

CLIENT=("$BUILD/src/client/nestor-io" --socket "$SOCK_DIR/demo.sock" --bytes 64M)
TASKSET=(); [ "$NCPU" -gt 1 ] && TASKSET=(taskset -c 0)
echo "== client (separate process, libnestor, polled completions): 4 KiB blocks, QD 16 per queue, 2 queues, 3 s"
timeout 60 "${TASKSET[@]}" "${CLIENT[@]}" --queues 2 --block-size 4096 --qd 16 --seconds 3
echo "== client: 4 KiB, QD 1, one queue, blocking completions (latency), 2 s"
timeout 60 "${TASKSET[@]}" "${CLIENT[@]}" --queues 1 --block-size 4096 --qd 1 --blocking --seconds 2

kill -TERM $PID
wait $PID && rc=0 || rc=$?
trap - EXIT
echo "== nestord exited with status $rc; its counters:"
grep -E "reactor [0-9]+ cpu|stopped cleanly" "$LOG" | sed 's/^[^ ]* [A-Z]* */  /'
exit $rc
