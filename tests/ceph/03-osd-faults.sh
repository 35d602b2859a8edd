#!/usr/bin/env bash
# ceph.03: nestord's RBD volumes when the (single) OSD fails (issue #13,
# docs/ceph.md), on a throwaway single-node cluster (lib-ceph.sh):
#  a. pause and resume: nestord (--ceph-op-timeout 60) serves rbd/f1 (64 MiB,
#     queues=1); a seeded 4 MiB at 56 MiB. nestor-io writes and verifies
#     48 MiB of f1 in a loop (qd 4, more than librbd's 32 MiB cache) while
#     nestorctl stats is sampled every 0.5 s; the OSD is SIGKILLed 2 s in,
#     restarted 3 s later. nestor-io must end with no error and no mismatch,
#     and f1 must have stalled (requests in flight, none completing) for at
#     least 3 s: its I/O paused, then completed. The longest stall is
#     printed. The seeded range is intact afterwards; nestord exits 0 on
#     SIGTERM.
#  b. bounded failure: a fresh nestord (--ceph-op-timeout 5) serves rbd/f2,
#     a memory volume m1 and rbd/f1 read-only (f1r). The OSD is SIGKILLed
#     and stays dead: a write (+FLUSH) to f2 and a read of f1r (not cached)
#     must each fail with -EIO (control-blk-io exit 1) within 30 s, not
#     hang; m1 is written and checked while f2's write is stuck; nestord
#     still answers on its control socket; then SIGTERM: it must exit 0
#     within 25 s: librbd's close of a writable image waits on the dead
#     OSD three times (~3 op timeouts, 15 s), and nestord closes its two
#     writable images (f2 and f3) side by side, not one after the other
#     (30 s).
# Times of each phase are printed. Every daemon and client is bounded; the
# trap stops nestord and the cluster. Needs ceph-mon, ceph-osd, ceph-common
# (scripts/install-deps.sh).
# usage: 03-osd-faults.sh NESTORD NESTOR_IO BLK_IO NESTORCTL
set -euo pipefail
NESTORD=$1 NIO=$2 BLK=$3 CTL=$4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d)
T0=$(date +%s.%N)
PID='' WRITER='' SAMPLER='' F2W=''
. "$HERE/lib-ceph.sh"
. "$HERE/../control/lib-control.sh"  # fail, stop, expect_rc, alive, kill_nestord
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
elapsed() { since "$T0"; }
# kill_tree PID: SIGKILL to PID and every process under it (a `timeout`
# cannot pass SIGKILL on to its child): stopped first, so none forks or
# reaps meanwhile.
kill_tree() {
	local c
	kill -STOP "$1" 2>/dev/null || return 0
	# shellcheck disable=SC2013  # pids, one word each
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do kill_tree "$c"; done
	kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
	local rc=$? p
	set +eu  # nothing may stop the clean-up half way
	for p in "$WRITER" "$SAMPLER" "$F2W"; do
		[ -z "$p" ] || { kill_tree "$p"; wait "$p" 2>/dev/null; }
	done
	[ -z "$PID" ] || kill_nestord PID
	ceph_down
	rm -rf "$T"
	echo "ceph.03-osd-faults: total $(elapsed) s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM INT
step() { echo "-- $(elapsed) s: $*"; }
. "$HERE/lib-rbd-nestord.sh"
# start OP_TIMEOUT VOLUME_SPEC...: nestord on the cluster with these
# volumes and this --ceph-op-timeout; waits for every volume's socket.
start() {
	local to=$1
	shift
	RBD_NESTORD_ARGS="--ceph-op-timeout $to" rbd_nestord_start "$@"
}
# blk VOLUME write|check SEED OFFSET LEN
blk() {
	timeout 60 "$BLK" "$T/s/$1.sock" "${@:2}" 2>"$T/blk" || fail "control-blk-io $*: $(cat "$T/blk")"
}
# sampler VOLUME: every 0.5 s, nestord's counters for VOLUME (nestorctl
# stats) with the time, one line each in $T/samples.VOLUME, until
# $T/sampler.stop exists.
sampler() {
	local i=0 out
	while [ ! -e "$T/sampler.stop" ] && [ "$i" -lt 1000 ]; do
		i=$((i + 1))
		out=$(timeout -k 2 10 "$CTL" -s "$T/ctl" --json stats "$1" 2>&1 | tr -d '\n') || true
		echo "$(now) $out" >>"$T/samples.$1"
		sleep 0.5
	done
}
# stall VOLUME T_KILL: from the samples, the longest time nestord's
# completed requests on VOLUME did not move while some were in flight;
# prints "SECONDS FROM TO" (relative to T_KILL).
stall() {
	python3 - "$T/samples.$1" "$2" <<'PY'
import json, sys
k = float(sys.argv[2])
rows = []
for line in open(sys.argv[1]):
    t, _, js = line.partition(" ")
    try:
        v = json.loads(js)["volumes"][0]
    except Exception:
        continue
    ops = v["read_ops"] + v["write_ops"] + v["flush_ops"] + v["errors"]
    rows.append((float(t), ops, sum(q["in_flight"] for q in v["queues"])))
best = (0.0, 0.0, 0.0)
i = 0
while i < len(rows):
    j = i
    while j + 1 < len(rows) and rows[j + 1][1] == rows[i][1] and rows[j + 1][2] > 0:
        j += 1
    if rows[i][2] > 0 and j > i:
        # from the last sample before that saw progress to the first after
        a = rows[i][0]
        b = rows[j + 1][0] if j + 1 < len(rows) else rows[j][0]
        if b - a > best[0]:
            best = (b - a, a - k, b - k)
    i = j + 1
print("%.1f %+.1f %+.1f" % best)
PY
}
M=$((1 << 20))

################################################################################
step "a. pause and resume: the cluster, nestord (--ceph-op-timeout 60) on rbd/f1"
ta=$(now)
ceph_up "$T/ceph" || fail "no Ceph cluster"
start 60 f1,size=64M,backend=rbd:rbd/f1,queues=1
blk f1 write 7 $((56 * M)) $((4 * M))
blk f1 check 7 $((56 * M)) $((4 * M))

# 48 MiB: more than librbd's client cache (rbd cache size, 32 MiB), so
# the writer's reads and writes wait for the OSD and cannot all be served
# from memory while it is dead.
step "a. nestor-io writes and verifies 48 MiB of f1 in a loop (qd 4, 25 s); the OSD is SIGKILLed 2 s in, restarted 3 s later"
timeout -k 5 120 "$NIO" --socket "$T/s/f1.sock" --queues 1 --qd 4 --bytes 48M --seconds 25 --blocking \
	>"$T/nio" 2>&1 &
WRITER=$!
sampler f1 &
SAMPLER=$!
sleep 2
alive "$WRITER" || fail "nestor-io ended before the OSD was killed: $(cat "$T/nio")"
tk=$(now)
ceph_osd_kill || fail "could not kill the OSD"
sleep 3
ceph_osd_start || fail "the OSD did not come back"
tu=$(now)
echo "   OSD down (SIGKILL to osd active again) for $(since "$tk" "$tu") s"
rc=0
wait "$WRITER" || rc=$?
WRITER=
touch "$T/sampler.stop"
wait "$SAMPLER" || true
SAMPLER=
sed 's/^/   nestor-io: /' "$T/nio"
[ "$rc" -eq 0 ] || fail "nestor-io exited $rc across the OSD restart (want 0: I/O pauses, then completes)"
grep -q "^errors 0, mismatches 0" "$T/nio" || fail "nestor-io saw errors across the OSD restart"
grep -q "^OK" "$T/nio" || fail "nestor-io did not say OK"
read -r st sf stt < <(stall f1 "$tk")
echo "   f1 stalled (no request completed, some in flight) for $st s, from $sf s to $stt s after the SIGKILL (nestorctl stats every 0.5 s)"
# The writer must really have waited for the OSD (not only for the cache).
awk -v s="$st" 'BEGIN { exit !(s >= 3) }' || fail "f1's requests never paused for 3 s while the OSD was dead (longest $st s)"
blk f1 check 7 $((56 * M)) $((4 * M))
ts=$(now)
stop
echo "   nestord exited 0 on SIGTERM in $(since "$ts") s; phase a took $(since "$ta") s"

################################################################################
step "b. bounded failure: nestord (--ceph-op-timeout 5) on rbd/f2, a memory volume m1 and rbd/f1 read-only"
tb=$(now)
# f1r: rbd/f1 read-only, for a read that only the OSD can answer (a fresh
# nestord, an empty client cache; an image's never-written objects would
# read as zeros without asking the OSD).
start 5 f2,size=64M,backend=rbd:rbd/f2,queues=1 m1,size=16M f1r,backend=rbd:rbd/f1,readonly \
	f3,size=64M,backend=rbd:rbd/f3,queues=1
blk f2 write 5 0 $M
blk f3 write 5 0 $M
blk f2 check 5 0 $M
blk m1 write 6 0 $M
tk=$(now)
ceph_osd_kill || fail "could not kill the OSD"
sleep 0.5  # the daemon is gone (its wrapper reaps it at once)

step "b. the OSD SIGKILLed for good: a write to f2 and a read of f1r must fail within 30 s; m1 keeps working meanwhile"
t=$(now)
(
	rc=0
	timeout -k 5 60 "$BLK" "$T/s/f2.sock" write 8 0 $M >"$T/f2.out" 2>&1 || rc=$?
	echo "$rc $(now)" >"$T/f2.rc"
) &
F2W=$!
sleep 1
alive "$F2W" || fail "the write to f2 ended at once: $(cat "$T/f2.rc" "$T/f2.out")"
tm=$(now)
blk m1 write 9 0 $M
blk m1 check 9 0 $M
tm=$(since "$tm")
[ ! -e "$T/f2.rc" ] || fail "m1 was written after f2's write ended (m1 took $tm s), not while it was stuck"
echo "   m1: 1 MiB written and checked in $tm s while f2's write was stuck"
wait "$F2W" || true
F2W=
read -r rc tend <"$T/f2.rc"
d=$(since "$t" "$tend")
echo "   f2 write with the OSD dead: exit $rc after $d s: $(tr '\n' ' ' <"$T/f2.out")"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then fail "the write to f2 hung: still running after 60 s (--ceph-op-timeout 5)"; fi
[ "$rc" -eq 1 ] || fail "the write to f2 exited $rc, want 1 (an I/O error): $(cat "$T/f2.out")"
# -ETIMEDOUT would be control-blk-io's own 10 s bound on one request, not
# nestord's answer.
grep -qF -- "-EIO" "$T/f2.out" || fail "the write to f2 did not fail with an I/O error from nestord: $(cat "$T/f2.out")"
awk -v d="$d" 'BEGIN { exit !(d < 30) }' || fail "the write to f2 failed only after $d s (--ceph-op-timeout 5)"
t=$(now)
rc=0
timeout -k 5 60 "$BLK" "$T/s/f1r.sock" check 7 $((56 * M)) $M >"$T/f1r.out" 2>&1 || rc=$?
d=$(since "$t")
echo "   f1r read (not in this nestord's cache) with the OSD dead: exit $rc after $d s: $(tr '\n' ' ' <"$T/f1r.out")"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then fail "the read from f1r hung: still running after 60 s (--ceph-op-timeout 5)"; fi
if [ "$rc" -ne 1 ] || ! grep -qF -- "-EIO" "$T/f1r.out"; then
	fail "the read from f1r exited $rc, want 1 with -EIO: $(cat "$T/f1r.out")"
fi
awk -v d="$d" 'BEGIN { exit !(d < 30) }' || fail "the read from f1r failed only after $d s (--ceph-op-timeout 5)"
alive "$PID" || fail "nestord died after f2's I/O error"
expect_rc 0 "$CTL" -s "$T/ctl" --json stats f2
python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["volumes"][0]; print("   nestorctl stats f2: %d writes, %d flushes, %d errors, latency p99 %.1f s" % (v["write_ops"], v["flush_ops"], v["errors"], v["latency_ns"]["p99"] / 1e9))' \
	"$T/out" || fail "stats f2: $(cat "$T/out")"
expect_rc 0 "$CTL" -s "$T/ctl" export list
blk m1 check 9 0 $M

step "b. SIGTERM with the OSD still dead: nestord must exit within 25 s (two writable images closed side by side)"
# SIGTERM to nestord itself: its `timeout -k 5` wrapper, signalled, would
# SIGKILL it 5 s later.
c=$(cat "/proc/$PID/task/$PID/children" 2>/dev/null || true)
[ -n "$c" ] || fail "no nestord under its timeout wrapper $PID"
ts=$(now)
kill -TERM "$c"
for _ in $(seq 600); do
	alive "$PID" || break
	sleep 0.1
done
if alive "$PID"; then
	echo "   nestord still running $(since "$ts") s after SIGTERM; its threads:" >&2
	for tid in /proc/"$c"/task/*; do echo "     $(cat "$tid/comm") $(cut -d' ' -f3 "$tid/stat") $(cat "$tid/wchan" 2>/dev/null)"; done >&2
	if command -v gdb >/dev/null; then
		echo "   nestord's main thread:" >&2
		timeout -k 2 30 gdb -p "$c" -batch -ex "thread 1" -ex "bt 25" 2>/dev/null | grep '^#' | sed 's/^/     /' >&2 || true
	fi
	fail "nestord did not exit within 60 s of SIGTERM with the OSD dead"
fi
rc=0
wait "$PID" || rc=$?
PID=
echo "   nestord exited $rc $(since "$ts") s after SIGTERM; phase b took $(since "$tb") s"
[ "$rc" -eq 0 ] || fail "nestord exited $rc on SIGTERM with the OSD dead, want 0"
# librbd's close of a writable image with the OSD dead waits out three
# operations one after the other (object map unlock, lock release, the
# watch), each --ceph-op-timeout: ~15 s for each of f2 and f3, which
# nestord closes at the same time.
d=$(since "$ts")
awk -v d="$d" 'BEGIN { exit !(d < 25) }' ||
	fail "nestord took $d s to stop with two writable images and the OSD dead: they were closed one after the other (~15 s each), not side by side"
sed -n '/--ceph-op-timeout 5/,$p' "$T/log" | grep -E 'WARN|ERROR|signal 15|stopped' | sed 's/^/   nestord: /'

step "c. done"
echo "PASS: ceph.03-osd-faults"
