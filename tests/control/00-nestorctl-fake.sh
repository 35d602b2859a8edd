#!/usr/bin/env bash
# control.00-nestorctl-fake: nestorctl (tools/nestorctl) against a fake
# control socket (fake_server.py, canned replies of docs/rpc.md): the JSON
# request each subcommand sends, human tables and --json output, global
# options before and after the subcommand, socket resolution (-s, then
# $NESTOR_CONTROL_SOCKET, then /run/nestor/control.ctl), the exit code of
# every documented error, and exit 10 when nestord cannot be reached or
# replies nonsense (no socket, refused, closed, not JSON, wrong id, too
# long, too deep, timeout). No nestord involved: see the other control.*
# tests for the real thing.
# usage: 00-nestorctl-fake.sh NESTORCTL_BINARY
set -euo pipefail
CTL=${1:?usage: $0 NESTORCTL_BINARY}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d /tmp/nestorctl-test.XXXXXX)
SERVER_PID=
cleanup() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# /usr/bin/python3 starts faster than a pyenv shim.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
SOCK=$TMP/control.ctl
LOG=$TMP/requests.log
timeout 30 "$PY" "$HERE/fake_server.py" "$SOCK" "$LOG" "$TMP/ready" 2>"$TMP/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
	[ -e "$TMP/ready" ] && break
	sleep 0.05
done
[ -e "$TMP/ready" ] || { echo "FAIL: fake server did not start: $(cat "$TMP/server.err")" >&2; exit 1; }

# run WANT_RC ARGS...: runs nestorctl (bounded), stdout in $TMP/out, stderr
# in $TMP/err, the requests it sent in $LOG (emptied first); checks the exit
# code and that errors are one "nestorctl: ..." line.
run() {
	local want=$1 rc=0
	shift
	: >"$LOG"
	timeout 10 "$CTL" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [ "$rc" != "$want" ]; then
		fail "nestorctl $* exited $rc, want $want"$'\n'"stdout: $(cat "$TMP/out")"$'\n'"stderr: $(cat "$TMP/err")"
		return 0
	fi
	local a json=0
	for a in "$@"; do [ "$a" = --json ] && json=1; done
	if [ "$want" != 0 ] && [ $json = 0 ] && ! grep -q '^nestorctl: ' "$TMP/err"; then
		fail "nestorctl $*: no 'nestorctl: <message>' on stderr: $(cat "$TMP/err")"
	fi
	# --json: the error is one JSON object on stderr, carrying the exit code.
	if [ "$want" != 0 ] && [ $json = 1 ] &&
		! "$PY" -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["exit"]==int(sys.argv[2]) and e["message"], e' \
			"$TMP/err" "$want" 2>/dev/null; then
		fail "nestorctl $*: stderr is not a JSON error with exit $want: $(cat "$TMP/err")"
	fi
	return 0
}
# r WANT_RC ARGS...: run with -s on the fake socket.
r() {
	local want=$1
	shift
	run "$want" -s "$SOCK" "$@"
}
out_has() { grep -qF -- "$1" "$TMP/out" || fail "stdout lacks '$1':"$'\n'"$(cat "$TMP/out")"; }
err_has() { grep -qF -- "$1" "$TMP/err" || fail "stderr lacks '$1':"$'\n'"$(cat "$TMP/err")"; }
out_is() {
	local want
	want=$(cat)
	[ "$(cat "$TMP/out")" = "$want" ] || fail "stdout of $1:"$'\n'"$(cat "$TMP/out")"$'\n'"want:"$'\n'"$want"
}
# req_is METHOD PARAMS: exactly one request was sent, a JSON-RPC 2.0 call of
# METHOD with PARAMS (compact JSON with sorted keys; - when absent), as the
# fake server logs it.
req_is() {
	local got
	got=$(cat "$LOG")
	[ "$got" = "$1 $2" ] || fail "request: got '$got', want '$1 $2'"
}
no_req() { [ ! -s "$LOG" ] || fail "a request was sent: $(cat "$LOG")"; }
# json_is EXPR WANT: a Python expression over the JSON on stdout (as j).
json_is() {
	local got
	got=$("$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$TMP/out" "$1" 2>&1) || got="<bad JSON: $got>"
	[ "$got" = "$2" ] || fail "JSON $1 = '$got', want '$2':"$'\n'"$(cat "$TMP/out")"
}

# 1. Help and usage errors (exit 2, nothing sent).
run 0 --help
out_has "nestorctl volume create NAME --size SIZE [--preallocate]"
out_has "10  cannot reach nestord"
out_has '$NESTOR_CONTROL_SOCKET'
r 2
r 2 frobnicate
r 2 volume
r 2 volume create db0
no_req
r 2 volume create db0 --size 12X
err_has "--size"
no_req
r 2 volume resize db0 --size -1
r 2 --json volume create db0 --size 12X
r 2 --json volume
r 2 qos set db0
r 2 qos set db0 --read-iops 1K
r 2 call echo 'not json'
r 2 call echo 5
r 2 --timeout 0 volume list
no_req

# 2. Each subcommand's request and human output.
r 0 pool info
req_is pool_info -
out_is "pool info" <<'EOF'
path:           /var/lib/nestor/pool0.img
uuid:           9b0c5e2a-1111-2222-3333-444455556666
format version: 2
size:           100.0G (107374182400 bytes)
cluster size:   64.0K
data:           1638000 clusters (100.0G)
used:           2048 clusters (128.0M)
free:           1635952 clusters (99.9G)
reserved:       0 clusters (0B) promised, not yet written
volumes:        2
extents:        5
commit seq:     41 (40 commits)
log used:       16.0K
EOF

r 0 volume create db0 --size 20G
req_is volume_create '{"name":"db0","size":21474836480}'
out_is "volume create" <<<"volume db0 created (20.0G)"
r 0 volume create db1 --size 1048576 --preallocate
req_is volume_create '{"name":"db1","preallocate":true,"size":1048576}'
out_is "volume create --preallocate" <<<"volume db1 created (1.0M, preallocated)"

r 0 volume delete db0
req_is volume_delete '{"name":"db0"}'
out_is "volume delete" <<<"volume db0 deleted"
r 0 volume delete db0 --force
req_is volume_delete '{"force":true,"name":"db0"}'

r 0 volume resize db0 --size 40G
req_is volume_resize '{"name":"db0","size":42949672960}'
out_is "volume resize" <<<"volume db0 resized to 40.0G"
r 0 volume resize db0 --size 8KiB --force
req_is volume_resize '{"force":true,"name":"db0","size":8192}'

r 0 volume list
req_is volume_list -
out_is "volume list" <<'EOF'
NAME            TYPE      PARENT   SIZE  ALLOCATED  SHARED  FREES  RESERVED  EXTENTS  EXPORTED
db0             volume    -       40.0G       1.0M      0B   1.0M        0B        1  yes
scratch-volume  volume    -       20.0G         0B      0B     0B     20.0G        0  no
golden          snapshot  -        1.0G       4.0M    3.0M     0B        0B        2  no
fn1             clone     golden   1.0G      64.0K    3.9M  64.0K        0B        1  yes
fn2             clone     golden   1.0G         0B    4.0M     0B        0B        0  no
EOF

# Snapshots and clones.
r 0 snapshot create db0 db0.snap1
req_is snapshot_create '{"name":"db0.snap1","volume":"db0"}'
out_is "snapshot create" <<<"snapshot db0.snap1 of db0 created (db0 is now a clone of it)"
r 0 snapshot delete golden
req_is snapshot_delete '{"name":"golden"}'
out_is "snapshot delete" <<<"snapshot golden deleted"
r 0 snapshot delete golden --force
req_is snapshot_delete '{"force":true,"name":"golden"}'
r 6 snapshot delete busy
r 0 snapshot list
req_is snapshot_list -
out_is "snapshot list" <<'EOF'
NAME       PARENT  SIZE  ALLOCATED  SHARED  FREES  EXPORTED  CLONES
golden     -       1.0G       4.0M    3.0M     0B  no        fn1,fn2
golden.v2  fn1     1.0G         0B      0B     0B  yes       -
EOF
r 0 volume clone golden fn3
req_is volume_clone '{"name":"fn3","snapshot":"golden"}'
out_is "volume clone" <<<"clone fn3 of golden created"
r 0 volume clone golden fn3 --export --queues 2 --socket-mode 0660 --allow-uid 1000
req_is volume_clone '{"export":{"allow_uids":[1000],"queues":2,"socket_mode":"0660"},"name":"fn3","snapshot":"golden"}'
out_is "volume clone --export" <<'EOF'
clone fn3 of golden created
export fn3 created: /run/nestor/fn3.sock (2 queues)
EOF
r 0 volume clone golden fn3 --export
req_is volume_clone '{"export":{},"name":"fn3","snapshot":"golden"}'
r 2 volume clone golden fn3 --readonly
err_has "--readonly needs --export"
no_req
r 2 volume clone golden
no_req
r 0 volume inflate fn1
req_is volume_inflate '{"name":"fn1"}'
out_is "volume inflate" <<<"volume fn1 inflated: it has no parent"
r 0 volume decouple fn1
req_is volume_decouple '{"name":"fn1"}'
out_is "volume decouple" <<<"volume fn1 decoupled: its parent is now base"
r 2 snapshot frobnicate x
err_has "unknown subcommand 'frobnicate' for 'nestorctl snapshot'"
no_req
r 2 volume snapshot x y
err_has "unknown subcommand 'snapshot' for 'nestorctl volume'"
r 2 snapshot
err_has "'nestorctl snapshot' needs a subcommand"

r 0 export create db0
req_is export_create '{"name":"db0"}'
out_is "export create" <<<"export db0 created: /run/nestor/db0.sock (1 queue)"
r 0 export create db0 --queues 2 --readonly
req_is export_create '{"name":"db0","queues":2,"readonly":true}'
out_is "export create --queues 2 --readonly" <<<"export db0 created: /run/nestor/db0.sock (2 queues, read-only)"
r 0 export create db0 --socket-group kvm --socket-mode 0660 --socket-owner 0 --allow-uid libvirt-qemu,1000 --allow-uid 7 --allow-gid 5
req_is export_create '{"allow_gids":[5],"allow_uids":["libvirt-qemu",1000,7],"name":"db0","socket_group":"kvm","socket_mode":"0660","socket_owner":0}'

r 0 export delete db0
req_is export_delete '{"name":"db0"}'
out_is "export delete" <<<"export db0 deleted"
r 0 export delete db0 --force
req_is export_delete '{"force":true,"name":"db0"}'

r 0 export list
req_is export_list -
out_is "export list" <<'EOF'
NAME  QUEUES  RO   SESSIONS  QOS                     ACCESS                              SOCKET
db0        2  no          1  wiops=5000,wbps=100.0M  0:64055 0660 uids=1000,1001 gids=5  /run/nestor/db0.sock
logs       1  yes         0  -                       -                                   /run/nestor/logs.sock
EOF

r 0 qos set db0 --write-iops 5000
req_is qos_set '{"name":"db0","write_iops":5000}'
out_is "qos set" <<<"qos db0 set: read_iops unlimited, write_iops 5000, read_bps unlimited, write_bps unlimited"
r 0 qos set db0 --read-iops 0 --write-iops 7 --read-bps 100M --write-bps 4096
req_is qos_set '{"name":"db0","read_bps":104857600,"read_iops":0,"write_bps":4096,"write_iops":7}'
out_is "qos set (all)" <<<"qos db0 set: read_iops unlimited, write_iops 7, read_bps 100.0M/s, write_bps 4.0K/s"

r 0 qos get db0
req_is qos_get '{"name":"db0"}'
out_is "qos get" <<<"qos db0: read_iops unlimited, write_iops 5000, read_bps unlimited, write_bps 100.0M/s"

r 0 reactor list
req_is reactor_list -
out_is "reactor list" <<'EOF'
ID  CPU  MODE       BUSY  IDLE  SLEEP  EFFICIENCY  REQUESTS
 0    1  adaptive   1.2s  0.3s  58.1s       69.2%    240511
 1    -  poll      60.0s  0.0s   0.0s        0.5%         5
EOF

r 0 stats
req_is stats_get -
out_is "stats" <<'EOF'
db0
  ops          read 1000  write 500  flush 3  discard 0  write_zeroes 0
  bytes        read 3.9M  write 2.0M
  errors       0  throttled 7
  latency µs   mean 5.1  p50 4.1  p99 20.5  p99.9 65.5
  SESSION  QUEUE  REACTOR  REQUESTS  IN_FLIGHT  KICKS  CALLS
  db0#1        0        0      1503          0     10   1490
  db0#1        1        1        12          2      1     11

logs
  ops          read 0  write 0  flush 0  discard 0  write_zeroes 0
  bytes        read 0B  write 0B
  errors       1  throttled 0
  latency µs   mean 0.0  p50 0.0  p99 0.0  p99.9 0.0
  no live queues
EOF
r 0 stats db0
req_is stats_get '{"name":"db0"}'
out_has "p99.9 65.5"
[ "$(grep -c '^[a-z]' "$TMP/out")" = 1 ] || fail "stats db0 shows other volumes: $(cat "$TMP/out")"

# call: raw method and params, the result as JSON.
r 0 call echo '{"name":"x","n":[1,2]}'
req_is echo '{"n":[1,2],"name":"x"}'
json_is 'j["n"][1]' 2
r 2 call echo '[1,"a"]'
no_req
r 0 call volume_list
req_is volume_list -
json_is 'j[1]["name"]' scratch-volume

# 3. --json, before or after the subcommand; -s after it too.
r 0 --json volume list
json_is 'j[0]["size"]' 42949672960
json_is 'j[1]["reserved_bytes"]' 21474836480
run 0 volume list --json -s "$SOCK"
req_is volume_list -
json_is 'len(j)' 5
r 0 pool info --json
json_is 'j["free_clusters"]' 1635952
r 0 volume delete db0 --json
json_is 'j' True
r 0 --json volume list
json_is 'j[3]["parent"]' golden
json_is 'j[2]["children"]' "['fn1', 'fn2']"
json_is 'j[3]["delete_frees_bytes"]' 65536
r 0 snapshot list --json
json_is 'j[0]["snapshot"]' True
r 0 --json volume clone golden fn3 --export
json_is 'j["export"]["socket"]' /run/nestor/fn3.sock
r 0 --json qos set db0 --write-bps 1M
json_is 'j["write_bps"]' 1048576
r 0 reactor list --json
json_is 'j[0]["poll_efficiency"]' 0.692
r 0 --json stats db0
json_is 'j["volumes"][0]["latency_ns"]["p999"]' 65536
r 0 export list --json
json_is 'j[0]["qos"]["write_iops"]' 5000
r 0 --json export create db0 --queues 3
json_is 'j["queues"]' 3
r 0 qos get db0 --json
json_is 'j["write_bps"]' 104857600

# 4. Socket resolution: -s, else $NESTOR_CONTROL_SOCKET, else the default.
NESTOR_CONTROL_SOCKET=$SOCK run 0 volume list
req_is volume_list -
NESTOR_CONTROL_SOCKET=$TMP/nope run 0 -s "$SOCK" volume list
req_is volume_list -
NESTOR_CONTROL_SOCKET=$TMP/nope run 10 volume list
err_has "cannot reach nestord at $TMP/nope"
if [ ! -e /run/nestor/control.ctl ]; then
	NESTOR_CONTROL_SOCKET= run 10 volume list
	err_has "/run/nestor/control.ctl"
	env -u NESTOR_CONTROL_SOCKET timeout 10 "$CTL" volume list >"$TMP/out" 2>"$TMP/err" && fail "default socket: exit 0" || {
		rc=$?
		[ "$rc" = 10 ] || fail "default socket: exit $rc, want 10"
	}
	err_has "/run/nestor/control.ctl"
fi

# 5. Application errors: message on stderr, exit code of docs/rpc.md.
r 3 volume delete missing
err_has "nestorctl: no volume 'missing'"
r 3 stats missing
r 4 volume create taken --size 1G
err_has "nestorctl: volume 'taken' exists"
r 4 --json export create taken
[ ! -s "$TMP/out" ] || fail "error printed on stdout: $(cat "$TMP/out")"
# nestord's error object as sent (code, message, data.errno) plus exit.
"$PY" -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["code"]==-17 and e["data"]["errno"]=="EEXIST" and e["exit"]==4, e' "$TMP/err" ||
	fail "--json error lacks nestord's code/errno: $(cat "$TMP/err")"
r 3 volume delete missing --json
run 10 --json -s "$TMP/none.ctl" volume list
r 5 volume create full --size 1G
r 6 volume delete busy
r 6 export delete busy
r 6 export delete codeonly
err_has "busy (code only)"
r 7 volume resize written --size 4K
r 8 volume create corrupt --size 1G
r 2 volume create bad --size 1000
err_has "multiple of 4096"
r 9 export create nopool
err_has "nestorctl: nestord runs without --pool"
r 9 qos get eio
r 2 qos set rpcparams --read-iops 1
r 2 call no_such_method
err_has "unknown method"
r 2 call volume_delete '{"name":"rpcparams"}'

# 6. Cannot reach nestord, or nonsense replies: exit 10.
run 10 -s "$TMP/missing.ctl" volume list
err_has "cannot reach nestord at $TMP/missing.ctl"
no_req
"$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TMP/stale.ctl"
run 10 -s "$TMP/stale.ctl" volume list
err_has "refused"
run 10 -s "$TMP/$(printf 'x%.0s' $(seq 120))" volume list
err_has "too long"
r 10 volume delete toomany
err_has "too many connections"
r 10 volume delete hangup
err_has "closed the connection"
r 10 volume delete garbage
err_has "malformed reply"
r 10 volume delete wrongid
err_has "wrong id"
r 10 volume delete huge
err_has "16 MiB"
r 10 volume delete deep
err_has "nested too deeply"
r 10 stats badshape
err_has "malformed reply"
start=$(date +%s%N)
r 10 --timeout 0.5 volume delete silent
err_has "timed out"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
[ "$elapsed_ms" -lt 3000 ] || fail "--timeout 0.5 took ${elapsed_ms} ms"
# The server is still fine after all that.
r 0 volume list
req_is volume_list -

if [ "$fails" != 0 ]; then
	echo "control.00-nestorctl-fake: $fails failure(s)" >&2
	exit 1
fi
echo "control.00-nestorctl-fake: ok"
