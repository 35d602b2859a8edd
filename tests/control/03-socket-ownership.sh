#!/usr/bin/env bash
# control.03: nestorctl never makes nestord delete a file that is not its
# own socket (issue #10): `export create` over a regular file is refused
# (exit 4, EEXIST, naming the path) and the file survives export delete and
# shutdown; a second nestord on the same socket directory refuses to start
# (exit 1) and the first one's control socket keeps answering.
# usage: 03-socket-ownership.sh NESTORD NESTORCTL NESTOR
set -euo pipefail
NESTORD=$1 CTL=$2 NESTOR=$3
T=$(mktemp -d)
PID=
cleanup() {
	# $PID is timeout's: SIGTERM reaches nestord through it (and -k 5 backs
	# it up); a SIGKILLed timeout would leave nestord running.
	[ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "---- nestord log ----" >&2; tail -n 30 "$T/log" >&2 || true; exit 1; }
expect_rc() {  # expect_rc CODE CMD...
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T/err")"
}
export NESTOR_CONTROL_SOCKET=$T/control.ctl

"$NESTOR" pool create "$T/pool.img" --size 64M >/dev/null
timeout -k 5 60 "$NESTORD" --socket-dir "$T" --pool "$T/pool.img" >>"$T/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -S "$T/control.ctl" ] && break; sleep 0.05; done
[ -S "$T/control.ctl" ] || fail "nestord did not create its control socket"
expect_rc 0 "$CTL" volume create db --size 16M

echo precious >"$T/db.sock"
expect_rc 4 "$CTL" export create db
grep -q "$T/db.sock" "$T/err" && grep -q "not a socket" "$T/err" || fail "export create: $(cat "$T/err")"
[ "$(cat "$T/db.sock" 2>/dev/null)" = precious ] || fail "export create deleted $T/db.sock"
expect_rc 3 "$CTL" export delete db
[ "$(cat "$T/db.sock" 2>/dev/null)" = precious ] || fail "export delete deleted $T/db.sock"

# A second nestord on the same directory: exit 1, nothing touched.
rc=0
timeout -k 5 20 "$NESTORD" --socket-dir "$T" --volume db,size=16M,backend=mem >"$T/second" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "second nestord exited $rc, want 1: $(cat "$T/second")"
grep -q "$T" "$T/second" && grep -q "in use" "$T/second" || fail "second nestord: $(cat "$T/second")"
[ "$(cat "$T/db.sock" 2>/dev/null)" = precious ] || fail "the second nestord deleted $T/db.sock"
expect_rc 0 "$CTL" pool info

kill -TERM "$PID"
wait "$PID" || fail "nestord exited $? on SIGTERM"
PID=
[ "$(cat "$T/db.sock" 2>/dev/null)" = precious ] || fail "shutdown deleted $T/db.sock"
[ ! -e "$T/control.ctl" ] || fail "nestord left its control socket behind"
echo "control.03: ok"
