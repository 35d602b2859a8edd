#!/usr/bin/env bash
# control.06: the read-only `nestor` commands while nestord serves the pool
# (issue #16):
#  - pool info, pool check, volume list and snapshot list (text and --json)
#    work while nestord holds the pool, say on stderr that they show its
#    last commit read without the lock (naming nestord's pid), and print
#    exactly what the same commands print once nestord has stopped;
#  - every command that writes is refused (exit 6) naming nestord's pid and
#    the nestorctl command to use instead (or "stop it first"), and changes
#    nothing;
#  - pool check, volume list and pool info stay clean and succeed, again
#    and again, while nestor-io writes into fresh space and nestorctl
#    creates and deletes volumes (commits all the time).
# usage: 06-offline-while-served.sh NESTORD NESTORCTL NESTOR NESTOR_IO BLK_IO
set -euo pipefail
NESTORD=$1 CTL=$2 NESTOR=$3 NIO=$4 BLK=$5
T=$(mktemp -d)
PID= IOPID= CTLPID=
reap() { [ -z "$1" ] || { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }; }
cleanup() {
	reap "$IOPID"
	reap "$CTLPID"
	kill_nestord
	rm -rf "$T"
}
trap cleanup EXIT
step() { echo "-- $*"; }
start() {  # start POOL; NPID: nestord's own pid (PID is its timeout wrapper's)
	timeout -k 5 120 "$NESTORD" --socket-dir "$T" --pool "$1" --journal-dir "$T/journal" >>"$T/log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do [ -S "$T/control.ctl" ] && break; sleep 0.05; done
	[ -S "$T/control.ctl" ] || fail "nestord did not create its control socket"
	NPID=$(cat "/proc/$PID/task/$PID/children")
	NPID=${NPID%% *}
	[ "$(cat "/proc/$NPID/comm")" = nestord ] || fail "no nestord under pid $PID"
}
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
export NESTOR_CONTROL_SOCKET=$T/control.ctl
NST=("$NESTOR" --journal-dir "$T/journal")
POOL=$T/pool.img
M=$((1 << 20))
# The read-only commands, one per line (word-split: no spaces in $T).
READ_ONLY="pool info $POOL
pool info $POOL --json
pool check $POOL
pool check $POOL --json
volume list --pool $POOL
volume list --pool $POOL --json
snapshot list --pool $POOL
snapshot list --pool $POOL --json"
# run_read_only SUFFIX [served]: each command's stdout to $T/ro.N.SUFFIX.
run_read_only() {
	local n=0 cmd
	while IFS= read -r cmd; do
		n=$((n + 1))
		# shellcheck disable=SC2086  # the command's words
		expect_rc 0 "${NST[@]}" $cmd
		cp "$T/out" "$T/ro.$n.$1"
		if [ "${2:-}" = served ]; then
			err_has "$POOL is in use by pid $NPID (nestord): showing its last commit (seq "
			err_has "read without the lock"
		else
			[ ! -s "$T/err" ] || fail "nestor $cmd wrote to stderr offline: $(cat "$T/err")"
		fi
	done <<<"$READ_ONLY"
}

step "a served pool with volumes, snapshots, clones, exports and data"
"${NST[@]}" pool create "$POOL" --size 256M >/dev/null
"${NST[@]}" volume create old --pool "$POOL" --size 4M >/dev/null
start "$POOL"
expect_rc 0 "$CTL" volume create db --size 16M
expect_rc 0 "$CTL" export create db --queues 2
blk db write 1 0 $((8 * M))   # (each blk write ends with a FLUSH: committed)
expect_rc 0 "$CTL" volume create pre --size 8M --preallocate
expect_rc 0 "$CTL" snapshot create db snap1
expect_rc 0 "$CTL" volume clone snap1 c1 --export --readonly
blk db write 2 0 $M
expect_rc 0 "$CTL" snapshot create db snap2
blk db write 3 $M $M

step "read-only commands while served"
run_read_only served served
grep -Eq '^snap2 +snapshot +snap1 ' "$T/ro.5.served" || fail "volume list: $(cat "$T/ro.5.served")"
grep -Eq '^c1 +clone +snap1 .* yes \(1q, ro\)' "$T/ro.5.served" || fail "volume list: $(cat "$T/ro.5.served")"
grep -q ": clean (6 volume(s)" "$T/ro.3.served" || fail "pool check: $(cat "$T/ro.3.served")"
py 'sorted(x["name"] for x in j["snapshots"]) == ["snap1", "snap2"]' "$T/ro.8.served"
py 'v("db")["parent"] == "snap2" and v("db")["allocated_bytes"] == 1 << 20' "$T/ro.6.served"
# What nestorctl says live is what nestor read from the last commit.
seq_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["commit_seq"])' "$1"; }
expect_rc 0 "$CTL" --json pool info
[ "$(seq_of "$T/out")" = "$(seq_of "$T/ro.2.served")" ] ||
	fail "nestorctl pool info says commit seq $(seq_of "$T/out"), nestor pool info $(seq_of "$T/ro.2.served")"

step "commands that write are refused, naming nestord and what to use instead"
refused() {  # refused "NESTORCTL COMMAND|stop it first" NESTOR-ARGS...
	local instead=$1
	shift
	expect_rc 6 "${NST[@]}" "$@"
	err_has "$POOL is in use by pid $NPID (nestord): "
	case $instead in
	stop*) err_has "stop it first" ;;
	*) err_has "use \`nestorctl $instead\` while it serves the pool" ;;
	esac
}
refused "volume create x --size SIZE" volume create x --pool "$POOL" --size 4M
refused "volume create x --size SIZE --preallocate" volume create x --pool "$POOL" --size 4M --preallocate
refused "volume delete old" volume delete old --pool "$POOL"
refused "volume resize old --size SIZE" volume resize old --pool "$POOL" --size 8M
refused "volume clone snap1 x" volume clone snap1 x --pool "$POOL"
refused "volume inflate c1" volume inflate c1 --pool "$POOL"
refused "volume decouple db" volume decouple db --pool "$POOL"
refused "snapshot create old s" snapshot create old s --pool "$POOL"
refused "snapshot delete snap1" snapshot delete snap1 --pool "$POOL"
refused stop pool upgrade "$POOL"
refused stop pool repair "$POOL" --backup "$T/repair.bak"
[ ! -e "$T/repair.bak" ] || fail "pool repair saved a backup of a served pool"
refused stop pool create "$POOL" --size 256M --force

step "the same commands print the same once nestord has stopped"
stop
run_read_only offline
for n in 1 2 3 4 5 6 7 8; do
	cmp -s "$T/ro.$n.served" "$T/ro.$n.offline" ||
		fail "command $n served and offline differ: $(diff "$T/ro.$n.served" "$T/ro.$n.offline")"
done

step "pool check, volume list and pool info while I/O and control calls commit"
start "$POOL"
expect_rc 0 "$CTL" volume create io --size 160M
expect_rc 0 "$CTL" export create io --queues 2
# Fresh clusters all the way: every pass of nestor-io maps new ones.
timeout 60 "$NIO" --socket "$T/io.sock" --bytes 160M --block-size 65536 --qd 8 --seconds 5 >"$T/nio" 2>&1 &
IOPID=$!
(
	for i in $(seq 1000); do
		timeout 10 "$CTL" volume create "t$i" --size 4M >/dev/null || exit 1
		timeout 10 "$CTL" volume delete "t$i" >/dev/null || exit 1
	done
) &
CTLPID=$!
# Rounds while nestor-io runs, and at least 3 (a busy machine may starve
# them: bounded by the 40 s below instead of a count per second).
checks=0 seq0= t0=$SECONDS
while alive "$IOPID" || [ "$checks" -lt 3 ]; do
	[ $((SECONDS - t0)) -lt 40 ] || fail "only $checks rounds of read-only commands in 40 s"
	r0=$(date +%s%N)
	expect_rc 0 "${NST[@]}" pool check "$POOL"
	grep -q "^$POOL: clean (" "$T/out" || fail "pool check under I/O: $(cat "$T/out")"
	# (grep, not python: python's start-up alone takes seconds on a busy machine)
	expect_rc 0 "${NST[@]}" volume list --pool "$POOL"
	grep -Eq '^io +volume +- +160\.0M ' "$T/out" || fail "volume list under I/O: $(cat "$T/out")"
	grep -Eq '^db +clone +snap2 ' "$T/out" || fail "volume list under I/O: $(cat "$T/out")"
	expect_rc 0 "${NST[@]}" pool info "$POOL"
	seq=$(sed -n 's/^commit seq: *//p' "$T/out")
	seq0=${seq0:-$seq}
	checks=$((checks + 1))
	echo "round $checks: commit seq $seq, $(( ($(date +%s%N) - r0) / 1000000 )) ms"
done
wait "$IOPID" || fail "nestor-io: $(cat "$T/nio")"
IOPID=
grep -q "^OK" "$T/nio" || fail "nestor-io: $(cat "$T/nio")"
reap "$CTLPID"
CTLPID=
[ "$seq" -gt "$seq0" ] || fail "the commit seq did not move during the I/O ($seq0): nothing raced"
stop
expect_rc 0 "${NST[@]}" pool check "$POOL"

echo "PASS: control.06-offline-while-served"
