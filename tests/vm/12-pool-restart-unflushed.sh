#!/usr/bin/env bash
# VM test 12: nestord is SIGKILLed and restarted while a guest writes to a
# thin POOL volume without ever flushing (issue #10 item 1): every write
# nestord acknowledged must survive, carried across the kills by the
# process-crash journal (--journal-dir) alone.
#
# `nestor` formats a 4 GiB pool (a sparse file) and creates the thin
# 64 MiB volume v0; nestord (1 reactor, adaptive) serves it (--pool
# --export-all, 2 queues)
# with --journal-dir JOURNAL (default: a directory in the test's temp dir;
# the same boot, so the same semantics as /run/nestor/journal) and --commit-ms
# 60000 (the maximum: no timed commit happens while the test runs, so the
# pool's own commits never carry the mappings of the guest's writes). The
# guest (QEMU chardev reconnect=1) runs the "loop" test (lib-restart.sh):
# O_DIRECT 64 KiB write generations over 4 MiB, LOOP_QD (default 8) in
# flight, for LOOP_SECS (default 10), with --loop-nosync 1 (no fdatasync:
# no FLUSH ever reaches nestord), --loop-discard 1 (each generation first
# discards the range, so its writes allocate new clusters: every
# generation makes unmaps and mappings that only the journal records until
# the next commit) and --loop-check 1 (before generation g+1 overwrites
# generation g, the guest reads the range back and every 4 KiB block must
# hold generation g, the last one the device acknowledged there). Freed
# clusters are reused only once their unmap is committed: the pool is large
# enough (65,224 clusters, 64 a generation) that no allocation has to wait
# for a commit. While it loops, the host SIGKILLs nestord KILLS times
# (default 2; each when the inflight region marks RESTART_MIN, default 1,
# requests in flight, within 5 s) and starts it again on the same pool and
# journal directory, then waits for two more generations.
# Asserts: the guest reports zero write errors and zero check failures
# (no block it was told was written reads back older data, e.g. zeros of a
# lost mapping, across either kill) and reads back the last generation in
# every block; each kill stalled guest requests; the restarted nestord
# resubmitted exactly the requests the region marked in flight; no kernel
# I/O or virtio errors (lib-restart.sh restart_check); each nestord started
# after a kill logged "journal: replayed N change(s)" with N > 0 (the
# journal, not a commit, carried the mappings); after a clean SIGTERM
# (exit 0) `nestor pool check` finds the pool clean; and a nestord started
# with --journal-dir none (only committed state) serves v0 with the last
# generation in every block (nestor-vm-dump, then iopoll_io verify): the
# SIGTERM committed everything.
# Without the journal (JOURNAL=none) the mappings of the writes acknowledged
# before each kill are lost: the guest's check reads zeros (or an older
# generation) and the test fails (issue #10 item 1 reproduced).
# Env: LOOP_SECS, LOOP_QD, KILLS (more kills need more LOOP_SECS, about
# 4 s each), RESTART_MIN, JOURNAL (a directory, or "none").
# usage: 12-pool-restart-unflushed.sh NESTORD_BINARY NESTOR_VM_DUMP_BINARY NESTOR_BINARY
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Read by lib-restart.sh:
# shellcheck disable=SC2034 # a pool volume has no delay_us
DELAY_US=
RESTART_MIN=${RESTART_MIN:-1}
# shellcheck disable=SC2034 # no backing file: the host checks the pool below
RESTART_VERIFY=
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
. "$HERE/lib-restart.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
BIN=${1:-${NESTORD:-}}
DUMP=${2:-${NESTOR_VM_DUMP:-}}
NESTOR=${3:-${NESTOR_CLI:-}}
[ -x "$BIN" ] && [ -x "$DUMP" ] && [ -x "$NESTOR" ] ||
	{ echo "usage: $0 NESTORD_BINARY NESTOR_VM_DUMP_BINARY NESTOR_BINARY" >&2; exit 2; }
LOOP_SECS=${LOOP_SECS:-10}
KILLS=${KILLS:-2}
JOURNAL=${JOURNAL:-$TMP/journal}
OFFSET=$((1 << 20)) LENGTH=$((4 << 20)) # run-guest.sh's default offset, lib-restart.sh's length

t0=$(date +%s.%N)
POOL=$TMP/pool.img
[ "$JOURNAL" = none ] || mkdir -p "$JOURNAL"
"$NESTOR" --journal-dir "$JOURNAL" pool create "$POOL" --size 4G
"$NESTOR" --journal-dir "$JOURNAL" volume create v0 --pool "$POOL" --size 64M
ARGS=(--pool "$POOL" --export-all --pool-queues 2 --journal-dir "$JOURNAL" --commit-ms 60000
	--reactors 1 --poll-mode adaptive)
echo "nestord ${ARGS[*]}"

restart_begin 0x12000000 --loop-nosync 1 --loop-discard 1 --loop-check 1
for k in $(seq "$KILLS"); do
	restart_cycle "$k" kill9
done
restart_check

# The journal carried the mappings: each nestord started after a kill
# replayed changes from it (lines (RESTART_AT[i], RESTART_AT[i+1]] of the log).
fail=0
n=$((${#RESTART_AT[@]} - 1))
for i in $(seq "$n"); do
	to='$'
	[ "$i" -eq "$n" ] || to=${RESTART_AT[$((i + 1))]}
	replayed=$(sed -n "$((RESTART_AT[i] + 1)),${to}p" "$TMP/nestord.log" |
		grep -oP 'journal: replayed \K[0-9]+' | head -n 1 || true)
	echo "restart $i: the journal replayed ${replayed:-no} change(s)"
	[ "${replayed:-0}" -gt 0 ] || { echo "FAIL: restart $i: nestord replayed nothing from the journal" >&2; fail=1; }
done
[ $fail -eq 0 ] || { _nestord_log; exit 1; }

last=$(tr -d '\r' <"$TMP/g.console" | grep -aoP 'iopoll_io: loop: generations [0-9]+ last-seed \K0x[0-9a-f]+' | tail -n 1)
nestord_stop
"$NESTOR" --journal-dir "$JOURNAL" pool check "$POOL" || { echo "FAIL: nestor pool check" >&2; exit 1; }

# Only committed state: the clean stop must have committed every mapping.
nestord_launch "$BIN" --pool "$POOL" --export-all --pool-queues 2 --journal-dir none --reactors 1
timeout 60 "$DUMP" "$TMP/v0.sock" "$TMP/v0.dump" || { echo "FAIL: nestor-vm-dump v0" >&2; _nestord_log; exit 1; }
nestord_stop
"$GUEST/iopoll_io" verify --seed "$last" --offset "$OFFSET" --length "$LENGTH" "$TMP/v0.dump" ||
	{ echo "FAIL: after SIGTERM, the pool's committed v0 does not hold the last generation ($last)" >&2; exit 1; }
echo "after SIGTERM the committed pool holds the last generation ($last) in every block"
echo "PASS: vm.12-pool-restart-unflushed ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
