#!/usr/bin/env bash
# ceph.01: nestord serving Ceph RBD images (issue #13, docs/ceph.md) from a
# throwaway single-node cluster (lib-ceph.sh):
#  a. `rbd create --size 64M rbd/t1`;
#  b. nestord --ceph-conf ... --volume r1,backend=rbd:rbd/t1 (no size=: the
#     image's own 64 MiB is served);
#  c. nestor-io writes and verifies 16 MiB over 2 queues; control-blk-io
#     writes two seeded ranges (4 MiB at 0, 1 MiB at 32 MiB) and checks
#     them, and an unwritten range reads zeros;
#  c2. the exclusive lock: a second nestord on rbd/t1 is refused while
#     the first serves it ("in use", naming the image); a read-only one
#     (no lock) serves it beside the first and reads the same data;
#  d. nestord exits 0 on SIGTERM; a new nestord on the same image reads
#     the same data (it is in Ceph, not in nestord);
#  d2. nestord SIGKILLed holding the lock: the next one, on the same
#     machine, sees the recorded holder is dead, breaks its lock (the dead
#     client is blocklisted) and serves at once (< 3 s; the cluster's watch
#     timeout is 5 s here), with the same data;
#  d3. the holder ran in another pid namespace (as on another machine or
#     in another container: its death cannot be told from here): the next
#     nestord waits for the cluster to notice (>= 4 s), then serves;
#  e. --volume r2,size=32M,backend=rbd:rbd/t2 with t2 missing: nestord
#     creates it (`rbd info` says 32 MiB) and serves it;
#  f. `rbd export rbd/t1` to a file, served by a file-backed nestord
#     volume: the same checks pass (Ceph holds exactly what the guest
#     wrote);
#  g. a missing pool, a missing image without size= (not created) and
#     `rbd:bad` make nestord exit non-zero at start-up, naming them.
# Every daemon and client is bounded; the trap stops nestord and the
# cluster. Needs ceph-mon, ceph-osd, ceph-common (scripts/install-deps.sh).
# usage: 01-rbd-volume.sh NESTORD NESTOR_IO BLK_IO NESTORCTL
set -euo pipefail
NESTORD=$1 NIO=$2 BLK=$3 CTL=$4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d)
T0=$(date +%s.%N)
PID='' PID2=''
. "$HERE/lib-ceph.sh"
. "$HERE/../control/lib-control.sh"  # fail, stop, expect_rc, alive, kill_nestord
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
cleanup() {
	local rc=$?
	set +eu  # nothing may stop the clean-up half way
	[ -z "$PID" ] || kill_nestord PID
	[ -z "$PID2" ] || kill_nestord PID2
	ceph_down
	rm -rf "$T"
	echo "ceph.01-rbd-volume: total $(elapsed) s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM INT
step() { echo "-- $(elapsed) s: $*"; }
err_has() { grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"; }
. "$HERE/lib-rbd-nestord.sh"
# start VOLUME_SPEC...: nestord on the cluster with these volumes
# (RBD_NESTORD_WRAP: d3 runs it in another pid namespace).
start() { RBD_NESTORD_MAX=120 rbd_nestord_start "$@"; }
# blk VOLUME|SOCKET_PATH write|check SEED OFFSET LEN
blk() {
	local sock=$T/s/$1.sock
	[[ $1 != */* ]] || sock=$1
	timeout 60 "$BLK" "$sock" "${@:2}" 2>"$T/blk" || fail "control-blk-io $*: $(cat "$T/blk")"
}
# The content written in c., checked after every restart and on the export.
check_t1() {
	blk "$1" check 7 0 $((4 * M))
	blk "$1" check 9 $((32 * M)) $M
	blk "$1" check 0 $((48 * M)) $M   # never written: zeros
}
# start_fails WORD VOLUME_SPEC: nestord (in its own socket directory,
# beside the one under test if any) must exit non-zero at start-up, with
# WORD in its output.
start_fails() {
	local rc=0
	mkdir -p "$T/s2"
	timeout -k 5 60 "$NESTORD" --socket-dir "$T/s2" --ceph-conf "$CEPH_CONF_FILE" --ceph-id admin \
		--reactors 1 --control-socket "$T/ctl2" --volume "$2" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -ne 0 ] || fail "nestord --volume $2 exited 0"
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		fail "nestord --volume $2 did not exit at start-up (still running after 60 s)"
	fi
	grep -qF -- "$1" "$T/err" || fail "nestord --volume $2 (exit $rc): stderr lacks '$1': $(cat "$T/err") $(cat "$T/out")"
	echo "   --volume $2: exit $rc, $(grep -F -- "$1" "$T/err" | head -n 1)"
}
M=$((1 << 20))

step "a. the cluster, and rbd/t1 (64 MiB)"
ceph_up "$T/ceph" || fail "no Ceph cluster"
ceph_rbd create --size 64M rbd/t1 || fail "rbd create rbd/t1"

step "b. nestord serves rbd/t1 as r1 (the image's own size)"
start r1,backend=rbd:rbd/t1,queues=2
expect_rc 0 "$CTL" -s "$T/ctl" --json export list
python3 -c 'import json,sys; e=[x for x in json.load(open(sys.argv[1])) if x["name"]=="r1"]; assert e and e[0]["size"]==64<<20, e' \
	"$T/out" || fail "export list: $(cat "$T/out")"

step "c. nestor-io (2 queues, qd 8, 16 MiB), then two seeded ranges"
timeout -k 5 120 "$NIO" --socket "$T/s/r1.sock" --queues 2 --qd 8 --bytes 16M >"$T/nio" 2>&1 ||
	fail "nestor-io on r1: $(cat "$T/nio")"
grep -q "^OK" "$T/nio" || fail "nestor-io: $(cat "$T/nio")"
grep "^OK" "$T/nio" | sed 's/^/   /'
blk r1 write 7 0 $((4 * M))
blk r1 write 9 $((32 * M)) $M
check_t1 r1

step "c2. exclusive lock: a second writer is refused, a read-only nestord shares the image"
start_fails "in use" "x,backend=rbd:rbd/t1"
err_has "rbd/t1"
rm -rf "$T/s2"
mkdir -p "$T/s2"
timeout -k 5 120 "$NESTORD" --socket-dir "$T/s2" --ceph-conf "$CEPH_CONF_FILE" --reactors 1 \
	--control-socket "$T/ctl2" --volume ro,backend=rbd:rbd/t1,readonly >>"$T/log" 2>&1 &
PID2=$!
for _ in $(seq 600); do
	[ -S "$T/s2/ro.sock" ] && break
	alive "$PID2" || fail "the read-only nestord exited at start-up"
	sleep 0.05
done
[ -S "$T/s2/ro.sock" ] || fail "the read-only nestord did not create its socket in 30 s"
check_t1 "$T/s2/ro.sock"
if timeout 60 "$BLK" "$T/s2/ro.sock" write 3 0 4096 2>"$T/blk"; then fail "a write to a read-only rbd volume succeeded"; fi
kill -TERM "$PID2"
wait "$PID2" || fail "the read-only nestord exited $? on SIGTERM"
PID2=
blk r1 write 7 0 4096   # the first still writes (and holds the lock)
check_t1 r1

step "d. SIGTERM (exit 0), a new nestord on the same image reads the same data"
stop
start r1,backend=rbd:rbd/t1
check_t1 r1

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step "d2. SIGKILL holding the lock: the next nestord breaks the dead holder's lock at once"
dead=$(ceph_rbd lock ls rbd/t1 | awk '/^client\./ { print $NF }')
[ -n "$dead" ] || fail "rbd lock ls rbd/t1 shows no holder"
kill_nestord PID
t=$(date +%s.%N)
start r1,backend=rbd:rbd/t1
took=$(since "$t")
echo "   lock taken over $took s after the SIGKILL (holder $dead)"
awk -v x="$took" 'BEGIN { exit !(x < 3) }' || fail "takeover took $took s (want < 3: the holder died here)"
grep -q "broke the lock of a nestord that died on this machine" "$T/log" || fail "no lock break in the log"
ceph_cli osd blocklist ls >"$T/bl" 2>&1 || fail "osd blocklist ls: $(cat "$T/bl")"
grep -qF "${dead%%/*}" "$T/bl" || fail "the dead holder $dead is not blocklisted: $(cat "$T/bl")"
check_t1 r1
blk r1 write 9 $((32 * M)) $M

step "d3. SIGKILL of a holder in another pid namespace: the next nestord waits for the cluster"
stop
RBD_NESTORD_WRAP="unshare --pid --fork --kill-child" start r1,backend=rbd:rbd/t1
kill_nestord PID
t=$(date +%s.%N)
start r1,backend=rbd:rbd/t1
took=$(since "$t")
echo "   lock taken over $took s after the SIGKILL (watch timeout 5 s)"
awk -v x="$took" 'BEGIN { exit !(x >= 4) }' || fail "takeover took $took s: a holder we cannot see was broken"
check_t1 r1
blk r1 check 9 $((32 * M)) $M

step "e. a missing image with size= is created (rbd/t2, 32 MiB)"
stop
if ceph_rbd info rbd/t2 >/dev/null 2>&1; then fail "rbd/t2 exists before nestord creates it"; fi
start r1,backend=rbd:rbd/t1 r2,size=32M,backend=rbd:rbd/t2
ceph_rbd info rbd/t2 >"$T/info" 2>&1 || fail "rbd info rbd/t2: $(cat "$T/info")"
grep -q "size 32 MiB in" "$T/info" || fail "rbd info rbd/t2: $(cat "$T/info")"
blk r2 write 11 $((31 * M)) $M
blk r2 check 11 $((31 * M)) $M
check_t1 r1
stop

step "f. rbd export rbd/t1, served from a file: what the guest wrote"
ceph_rbd export --no-progress rbd/t1 "$T/t1.raw" >/dev/null 2>"$T/err" || fail "rbd export: $(cat "$T/err")"
[ "$(stat -c %s "$T/t1.raw")" -eq $((64 * M)) ] || fail "rbd export: $(stat -c %s "$T/t1.raw") bytes, want 64 MiB"
start "f1,backend=file:$T/t1.raw"
check_t1 f1
stop

step "g. start-up errors name the pool and image"
start_fails nopool "x,backend=rbd:nopool/img"
start_fails missing "x,backend=rbd:rbd/missing"
ceph_rbd ls rbd >"$T/ls" || fail "rbd ls"
if grep -qx missing "$T/ls"; then fail "nestord created rbd/missing without size="; fi
start_fails bad "x,backend=rbd:bad"

step "h. done"
echo "PASS: ceph.01-rbd-volume"
