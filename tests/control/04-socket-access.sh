#!/usr/bin/env bash
# control.04: who may attach (issue #11). With a real nestord and a pool, a
# process running as another uid (65534, through setpriv) is refused or
# admitted exactly as the export says:
#   a) socket mode 0600, owned by root: connect fails with EACCES;
#   b) socket-group 65534, mode 0660: connect works, a vhost-user session
#      does verified I/O (nestor-io);
#   c) allow-uid without 65534: the connection is closed before any
#      vhost-user message and refused_connections counts it (stats_get,
#      Prometheus, the stats log lines; a log line names uid and export; root is not implicitly
#      admitted either); allow-uid listing it, or allow-gid 65534: admitted;
#   d) after a restart of nestord every setting is back (stored in the pool);
#   e) names are resolved at create time, bad names and modes are refused
#      naming the field; nestord --volume takes the same settings.
# Needs root (setpriv, chown); skipped (exit 77) otherwise.
# usage: 04-socket-access.sh NESTORD NESTORCTL NESTOR NESTOR_IO
set -euo pipefail
NESTORD=$1 CTL=$2 NESTOR=$3 NIO=$4
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: control.04 needs root (it runs clients as uid 65534 and chowns sockets)"
	exit 77
fi
command -v setpriv >/dev/null || { echo "SKIP: control.04 needs setpriv (util-linux)"; exit 77; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
T=$(mktemp -d)
chmod 755 "$T"  # uid 65534 must reach the sockets
PID=
cleanup() {
	[ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL ($(date +%T.%N)): $*" >&2
	echo "---- $T ----" >&2; ls -l "$T" >&2 || true
	echo "---- last nestor-io ----" >&2; cat "$T/nio" >&2 || true
	echo "---- nestord log ----" >&2; tail -n 45 "$T/log" >&2 || true
	exit 1
}
PORT=$((20000 + ($$ + 7) % 20000))
start() {
	timeout -k 5 100 "$NESTORD" --socket-dir "$T" --pool "$T/pool.img" --metrics-port "$PORT" >>"$T/log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do [ -S "$T/control.ctl" ] && break; sleep 0.05; done
	[ -S "$T/control.ctl" ] || fail "nestord did not create its control socket"
	# The control socket is bound before the exports are: its first answer
	# comes once every stored export listens.
	"$CTL" --timeout 20 export list >/dev/null || fail "nestord does not answer"
}
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# The errno name of a plain connect() to socket $1 as uid 65534 ("OK" if it connects).
connect_errno() {
	as_nobody "$PY" -c '
import errno, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))' "$1"
}
# A vhost-user session doing verified I/O, as uid 65534 (or as root with "root").
nio() {
	local who=$1 sock=$2
	if [ "$who" = root ]; then
		timeout 30 "$NIO" --socket "$sock" --bytes 1M --block-size 4096 --qd 4 >"$T/nio" 2>&1
	else
		as_nobody timeout 30 "$NIO" --socket "$sock" --bytes 1M --block-size 4096 --qd 4 >"$T/nio" 2>&1
	fi
}
stat_is() {  # stat_is PATH "uid:gid mode"
	local got
	got=$(stat -c '%u:%g %a' "$1" 2>&1) || true
	[ "$got" = "$2" ] || fail "$1 is '$got', want '$2'"
}
json() {  # json PYTHON-EXPRESSION-ON-r  (r: the last --json output)
	"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert '"$1"', r' "$T/out" || fail "$1: $(cat "$T/out")"
}
refused() {  # refused NAME: its refused_connections from stats_get
	"$CTL" --json stats "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["volumes"][0]["refused_connections"])'
}
export NESTOR_CONTROL_SOCKET=$T/control.ctl
SECONDS=0

"$NESTOR" pool create "$T/pool.img" --size 128M >/dev/null
start
for v in a b c g; do expect_rc 0 "$CTL" volume create "$v" --size 16M; done

# a) root-owned, mode 0600: uid 65534 cannot connect.
expect_rc 0 "$CTL" export create a --socket-mode 0600
stat_is "$T/a.sock" "0:0 600"
[ "$(connect_errno "$T/a.sock")" = EACCES ] || fail "a: connect as 65534: $(connect_errno "$T/a.sock"), want EACCES"
nio root "$T/a.sock" || fail "a: root's session failed: $(cat "$T/nio")"

# b) group 65534, mode 0660: uid 65534 (gid 65534) attaches and does I/O.
expect_rc 0 "$CTL" export create b --socket-group 65534 --socket-mode 0660
stat_is "$T/b.sock" "0:65534 660"
[ "$(connect_errno "$T/b.sock")" = OK ] || fail "b: connect as 65534: $(connect_errno "$T/b.sock")"
nio nobody "$T/b.sock" || fail "b: session as 65534 failed: $(cat "$T/nio")"
[ "$(refused b)" = 0 ] || fail "b: refused_connections $(refused b), want 0"

# c) anyone may connect (0666) but only uid 1000 is admitted.
expect_rc 0 "$CTL" export create c --socket-mode 0666 --allow-uid 1000
stat_is "$T/c.sock" "0:0 666"
if nio nobody "$T/c.sock"; then fail "c: uid 65534 was admitted: $(cat "$T/nio")"; fi
[ "$(refused c)" = 1 ] || fail "c: refused_connections $(refused c), want 1"
grep -q "volume c: refused a connection from uid 65534 gid 65534" "$T/log" || fail "c: no refusal log line"
if nio root "$T/c.sock"; then fail "c: root was admitted although not listed"; fi
[ "$(refused c)" = 2 ] || fail "c: refused_connections $(refused c), want 2"
expect_rc 0 "$CTL" stats c
grep -q "refused_connections 2" "$T/out" || fail "human stats: $(cat "$T/out")"
curl -sf "http://127.0.0.1:$PORT/metrics" >"$T/metrics" || fail "metrics endpoint"
grep -q '^nestor_volume_refused_connections_total{volume="c"} 2$' "$T/metrics" || fail "metrics: $(grep refused "$T/metrics")"
# Nothing was served to the refused clients; the listed uid gets in.
expect_rc 0 "$CTL" export delete c
expect_rc 0 "$CTL" export create c --socket-mode 0666 --allow-uid 1000,nobody
nio nobody "$T/c.sock" || fail "c: listed uid 65534 refused: $(cat "$T/nio")"
[ "$(refused c)" = 0 ] || fail "c: refused_connections $(refused c) after re-export, want 0"
# By group: gid 65534 admitted, uid not listed.
expect_rc 0 "$CTL" export create g --socket-mode 0666 --allow-uid 1000 --allow-gid 65534
nio nobody "$T/g.sock" || fail "g: gid 65534 refused: $(cat "$T/nio")"
[ "$(refused g)" = 0 ] || fail "g: refused_connections $(refused g), want 0"

# e) errors name the field; nothing is exported.
expect_rc 0 "$CTL" volume create e --size 16M
expect_rc 2 "$CTL" export create e --socket-group no-such-group-nestor
grep -q "socket_group: no group 'no-such-group-nestor'" "$T/err" || fail "unknown group: $(cat "$T/err")"
expect_rc 2 "$CTL" export create e --socket-owner no-such-user-nestor
grep -q "socket_owner: no user" "$T/err" || fail "unknown user: $(cat "$T/err")"
expect_rc 2 "$CTL" export create e --socket-mode 0888
grep -q "socket_mode" "$T/err" || fail "bad mode: $(cat "$T/err")"
expect_rc 2 "$CTL" call export_create '{"name":"e","allow_uids":"1000"}'
grep -q "allow_uids" "$T/err" || fail "bad allow_uids: $(cat "$T/err")"
[ ! -e "$T/e.sock" ] || fail "a refused export_create left $T/e.sock"
# Owner by name, mode as an integer (384 = 0600): the owner attaches.
expect_rc 0 "$CTL" call export_create '{"name":"e","socket_owner":"nobody","socket_mode":384}'
stat_is "$T/e.sock" "65534:0 600"
nio nobody "$T/e.sock" || fail "e: owner 65534 refused: $(cat "$T/nio")"
expect_rc 0 "$CTL" export delete e

# export_list shows the settings.
expect_rc 0 "$CTL" --json export list
json 'next(e for e in r if e["name"]=="a")["socket_mode"]=="0600"'
json 'next(e for e in r if e["name"]=="b")["socket_group"]==65534 and next(e for e in r if e["name"]=="b")["socket_mode"]=="0660"'
json 'next(e for e in r if e["name"]=="c")["allow_uids"]==[1000,65534] and next(e for e in r if e["name"]=="c")["allow_gids"]==[]'
json 'next(e for e in r if e["name"]=="g")["allow_gids"]==[65534]'
expect_rc 0 "$CTL" export list
grep -q "0:65534 0660" "$T/out" || fail "human export list: $(cat "$T/out")"

# d) restart: everything comes back from the pool.
stop
start
stat_is "$T/a.sock" "0:0 600"
stat_is "$T/b.sock" "0:65534 660"
stat_is "$T/c.sock" "0:0 666"
[ "$(connect_errno "$T/a.sock")" = EACCES ] || fail "after restart: a admits 65534"
nio nobody "$T/b.sock" || fail "after restart: b refused 65534: $(cat "$T/nio")"
nio nobody "$T/c.sock" || fail "after restart: c refused 65534: $(cat "$T/nio")"
expect_rc 0 "$CTL" export delete c
expect_rc 0 "$CTL" export create c --socket-mode 0666 --allow-uid 1000
stop
start
if nio nobody "$T/c.sock"; then fail "after restart: c admitted 65534"; fi
[ "$(refused c)" = 1 ] || fail "after restart: c refused_connections $(refused c), want 1"
expect_rc 0 "$CTL" --json export list
json 'next(e for e in r if e["name"]=="c")["allow_uids"]==[1000]'
# SIGUSR1's stats lines carry the counter ($PID is timeout's; nestord is its child).
NPID=$(ps -o pid= --ppid "$PID" | tr -d ' ')
kill -USR1 "$NPID"
for _ in $(seq 100); do grep -q "stats volume c: " "$T/log" && break; sleep 0.05; done
grep -q "stats volume c: sessions 0 refused_connections 1 " "$T/log" || fail "no refused_connections in the stats lines"
stop
"$NESTOR" pool check "$T/pool.img" >/dev/null || fail "pool check"

# nestord --volume takes the same settings (not stored: quick-form).
mkdir -m 755 "$T/q"
timeout -k 5 60 "$NESTORD" --socket-dir "$T/q" \
	--volume q,size=16M,socket-group=nogroup,socket-mode=0660,allow-uid=65534 >>"$T/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -S "$T/q/control.ctl" ] && break; sleep 0.05; done
"$CTL" -s "$T/q/control.ctl" --timeout 20 export list >/dev/null || fail "--volume: nestord does not answer"
stat_is "$T/q/q.sock" "0:65534 660"
nio nobody "$T/q/q.sock" || fail "--volume: 65534 refused: $(cat "$T/nio")"
if nio root "$T/q/q.sock"; then fail "--volume: root admitted although not listed"; fi
stop
rc=0
timeout 10 "$NESTORD" --socket-dir "$T/q" --volume q,size=16M,socket-mode=999 >"$T/err" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "socket-mode" "$T/err" || fail "--volume socket-mode=999: exit $rc: $(cat "$T/err")"
echo "PASS: control.04-socket-access (${SECONDS}s)"
