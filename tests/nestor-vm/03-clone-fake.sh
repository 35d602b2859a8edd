#!/usr/bin/env bash
# nestor-vm.03-clone-fake: the --clone-of life cycle against a stand-in for
# nestord's control socket (clone_fake.py) and a stand-in for QEMU (this
# script, run as --qemu: it records its argv and that the clone's socket
# existed, then exits with FAKE_QEMU_EXIT or sleeps until signalled).
# Asserted, in order of the calls the fake logged:
#  1. a normal exit: volume_clone {snapshot, name, export:{queues}} before
#     QEMU, the clone's socket is QEMU's first disk (before --socket), then
#     export_delete {force} and volume_delete; QEMU's status is passed on;
#  2. --keep: only export_delete;
#  3. SIGTERM to nestor-vm while QEMU runs: forwarded to QEMU, then the same
#     clean-up; the default clone name is SNAP-NAME-PID;
#  4. --timeout: exit 124 after the clean-up;
#  5. an unknown snapshot: exit 1, the message names it, QEMU never runs.
# usage: 03-clone-fake.sh NESTOR_VM_BINARY
set -euo pipefail
if [ "${1:-}" = --fake-qemu ]; then
	shift
	printf '%s\n' "$@" >"$FAKE_DIR/qemu.argv"
	path=$(printf '%s\n' "$@" | grep -oP '^socket,id=vhost0,path=\K[^,]+' || true)
	[ -S "$path" ] && echo "socket-present $path" >>"$FAKE_DIR/qemu.argv"
	if [ -n "${FAKE_QEMU_SLEEP:-}" ]; then
		trap 'echo "qemu got TERM" >>"$FAKE_DIR/qemu.argv"; exit 0' TERM
		sleep "$FAKE_QEMU_SLEEP" &
		wait $!
	fi
	exit "${FAKE_QEMU_EXIT:-0}"
fi
VM=${1:?usage: $0 NESTOR_VM_BINARY}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d)
FAKE_PID=
cleanup() {
	[ -z "$FAKE_PID" ] || kill "$FAKE_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
export FAKE_DIR=$TMP
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

timeout 120 python3 "$HERE/clone_fake.py" "$TMP" &
FAKE_PID=$!
for _ in $(seq 100); do [ -f "$TMP/ready" ] && break; sleep 0.1; done
[ -f "$TMP/ready" ] || { echo "FAIL: clone_fake.py did not start" >&2; exit 1; }

fakeq() { cat "$TMP/qemu.argv"; }
calls() { cut -d' ' -f1 "$TMP/requests.log" | tr '\n' ' '; }

run() { # run NAME EXPECTED-EXIT nestor-vm-args...
	local name=$1 want=$2 rc=0
	shift 2
	rm -f "$TMP/requests.log" "$TMP/qemu.argv"
	timeout 60 "$VM" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "$name: exit $rc, want $want: $(cat "$TMP/$name.err")"
}

# --qemu: a wrapper that runs this script as the fake QEMU.
cat >"$TMP/qemu" <<EOS
#!/bin/sh
exec "$HERE/03-clone-fake.sh" --fake-qemu "\$@"
EOS
chmod +x "$TMP/qemu"
VMARGS=(--control "$TMP/control.ctl" --kernel /bin/sh --allow-shared-cpus --poll-queues 0 --qemu "$TMP/qemu")

# 1. normal exit, status passed on.
FAKE_QEMU_EXIT=3 run normal 3 --clone-of gold-snap --clone-name c1 --socket "$TMP/control.ctl" "${VMARGS[@]}"
[ "$(calls)" = "volume_clone export_delete volume_list volume_delete " ] || fail "normal: calls $(calls)"
grep -qx 'volume_clone {"export":{"queues":1},"name":"c1","snapshot":"gold-snap"}' "$TMP/requests.log" ||
	fail "normal: volume_clone params: $(cat "$TMP/requests.log")"
grep -qx 'export_delete {"force":true,"name":"c1"}' "$TMP/requests.log" || fail "normal: export_delete: $(cat "$TMP/requests.log")"
grep -qx "socket,id=vhost0,path=$TMP/c1.sock,reconnect=1" "$TMP/qemu.argv" || fail "normal: clone not disk 0: $(fakeq)"
grep -qx "socket,id=vhost1,path=$TMP/control.ctl,reconnect=1" "$TMP/qemu.argv" || fail "normal: --socket not disk 1"
grep -qx "socket-present $TMP/c1.sock" "$TMP/qemu.argv" || fail "normal: the clone's socket was not there for QEMU"
[ ! -e "$TMP/c1.sock" ] || fail "normal: export socket left behind"
grep -q "clone 'c1' deleted (it held 65536 bytes of its own: 65536 bytes freed)" "$TMP/normal.err" ||
	fail "normal: no deletion message: $(cat "$TMP/normal.err")"

# 2. --keep: the clone stays.
run keep 0 --clone-of gold-snap --clone-name c2 --keep "${VMARGS[@]}"
[ "$(calls)" = "volume_clone export_delete " ] || fail "keep: calls $(calls)"
grep -q "clone 'c2' unexported and kept" "$TMP/keep.err" || fail "keep: message: $(cat "$TMP/keep.err")"

# 3. SIGTERM to nestor-vm while QEMU runs; default name.
rm -f "$TMP/requests.log" "$TMP/qemu.argv"
FAKE_QEMU_SLEEP=60 timeout 60 "$VM" --clone-of gold-snap --name fn "${VMARGS[@]}" >/dev/null 2>"$TMP/term.err" &
vmpid=$!
for _ in $(seq 100); do grep -q socket-present "$TMP/qemu.argv" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
kill -TERM $vmpid
rc=0
wait $vmpid || rc=$?
grep -q "qemu got TERM" "$TMP/qemu.argv" || fail "term: QEMU did not get the SIGTERM: $(cat "$TMP/term.err")"
grep -q "forwarding to QEMU" "$TMP/term.err" || fail "term: not forwarded: $(cat "$TMP/term.err")"
name=$(grep -oP '^volume_delete \{"force":true,"name":"\Kgold-snap-fn-[0-9]+' "$TMP/requests.log" || true)
[ -n "$name" ] || fail "term: no volume_delete of gold-snap-fn-PID: $(cat "$TMP/requests.log")"
echo "term: nestor-vm exit $rc, clone $name deleted"

# 4. --timeout: 124, cleaned up.
FAKE_QEMU_SLEEP=60 run timeout 124 --clone-of gold-snap --clone-name c4 --timeout 1 "${VMARGS[@]}"
grep -q '^volume_delete {"force":true,"name":"c4"}' "$TMP/requests.log" || fail "timeout: clone not deleted: $(calls)"

# 5. an unknown snapshot.
run missing 1 --clone-of missing --clone-name c5 "${VMARGS[@]}"
grep -q "cannot clone snapshot 'missing' as 'c5': no snapshot 'missing'" "$TMP/missing.err" ||
	fail "missing: message: $(cat "$TMP/missing.err")"
[ ! -e "$TMP/qemu.argv" ] || fail "missing: QEMU was started"
[ "$(calls)" = "volume_clone " ] || fail "missing: calls $(calls)"

[ "$(timeout 10 python3 - "$TMP/control.ctl" <<'EOP'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"volume_list"}\n')
print(" ".join(v["name"] for v in json.loads(s.makefile().readline())["result"]))
EOP
)" = c2 ] || fail "only the --keep clone c2 should remain"

if [ $fails -ne 0 ]; then
	echo "FAIL: nestor-vm.03-clone-fake ($fails failures)" >&2
	exit 1
fi
echo "PASS: nestor-vm.03-clone-fake"
