#!/usr/bin/env bash
# Peer check of the VM harness itself: runs a guest workload against Debian's
# qemu-storage-daemon (vhost-user-blk export of a 64 MiB raw file, 2 queues)
# instead of nestord. Asserts that the guest reports PASS and that the image
# file holds the guest's pattern afterwards.
#
# usage: peer-qsd.sh [direct|iopoll]    (default direct)
# The iopoll variant is EXPECTED TO FAIL with qemu-storage-daemon 7.2 (it
# cannot serve a guest poll queue); it exists to show that the iopoll test
# can fail. Env: NESTOR_GUEST_DIR (guest build dir), VM_TIMEOUT (seconds).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST=${1:-direct}
TMO=${VM_TIMEOUT:-60}
command -v qemu-storage-daemon >/dev/null || { echo "peer-qsd: qemu-storage-daemon not installed" >&2; exit 1; }

TMP=$(mktemp -d)
QSD_PID=
cleanup() {
	if [ -n "$QSD_PID" ] && kill -0 "$QSD_PID" 2>/dev/null; then
		kill -TERM "$QSD_PID" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$QSD_PID" 2>/dev/null || break
			sleep 0.1
		done
		# timeout leads its own process group: this reaches the daemon too.
		kill -KILL -- "-$QSD_PID" 2>/dev/null || true
		wait "$QSD_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

IMG=$TMP/disk.img
SOCK=$TMP/qsd.sock
truncate -s 64M "$IMG"
timeout 300 qemu-storage-daemon \
	--blockdev "driver=file,node-name=n0,filename=$IMG,cache.direct=off" \
	--export "type=vhost-user-blk,id=e0,addr.type=unix,addr.path=$SOCK,node-name=n0,writable=on,num-queues=2" \
	>"$TMP/qsd.log" 2>&1 &
QSD_PID=$!

for _ in $(seq 100); do
	[ -S "$SOCK" ] && break
	kill -0 "$QSD_PID" 2>/dev/null || break
	sleep 0.1
done
[ -S "$SOCK" ] || { echo "peer-qsd: qemu-storage-daemon did not create $SOCK" >&2; cat "$TMP/qsd.log" >&2; exit 1; }

rc=0
"$HERE/run-guest.sh" --socket "$SOCK" --test "$TEST" --queues 2 --timeout "$TMO" --verify-file "$IMG" || rc=$?
if [ -s "$TMP/qsd.log" ]; then
	echo "---- qemu-storage-daemon log ----"
	cat "$TMP/qsd.log"
fi
exit $rc
