#!/usr/bin/env bash
# nestor-vm.02-boot: nestor-vm boots a real Linux guest (QEMU TCG, the
# tests/vm guest) on a nestord volume with the recipe: shared memfd memory,
# chardev reconnect, 1 vCPU pinned to CPU 0 away from the reactor on CPU 1,
# idle=poll, 2 queues of which 1 is a guest poll queue. The guest runs the
# iopoll workload (io_uring IOPOLL O_DIRECT writes and verified reads on the
# poll queue, no interrupts; see tests/vm/guest-init.sh).
# Asserts: nestor-vm exits 0 (QEMU's status), the console says
# "NESTOR-VM-RESULT: PASS", nestor-vm pinned vCPU 0 to CPU 0, the guest saw
# idle=poll, and nestord exits 0 on SIGTERM having served requests.
# Needs >= 2 usable CPUs (exit 77 = SKIP otherwise).
# usage: 02-boot.sh NESTOR_VM_BINARY NESTORD_BINARY GUEST_DIR
set -euo pipefail
VM=${1:?usage: $0 NESTOR_VM NESTORD GUEST_DIR}
NESTORD=${2:?usage: $0 NESTOR_VM NESTORD GUEST_DIR}
GUEST=${3:?usage: $0 NESTOR_VM NESTORD GUEST_DIR}

for f in "$GUEST/vmlinuz" "$GUEST/initrd.cpio.gz"; do
	[ -s "$f" ] || { echo "FAIL: $f missing (built by vm.00-build-guest / tests/vm/build-guest.sh)" >&2; exit 1; }
done
if ! taskset -c 0,1 true 2>/dev/null; then
	echo "SKIP: needs CPUs 0 and 1 (vCPU on 0, reactor on 1)"
	exit 77
fi

TMP=$(mktemp -d)
NESTORD_PID=
cleanup() {
	if [ -n "$NESTORD_PID" ] && kill -0 "$NESTORD_PID" 2>/dev/null; then
		kill -KILL "$NESTORD_PID" 2>/dev/null || true
		wait "$NESTORD_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
show() {
	for f in "$@"; do
		echo "---- $(basename "$f") (last 40 lines) ----" >&2
		tr -d '\r' <"$f" | tail -n 40 >&2 || true
	done
	echo "----" >&2
}

"$NESTORD" --socket-dir "$TMP" --volume v0,size=64M,backend=mem,queues=2 \
	--cpus 1 --poll-mode adaptive >"$TMP/nestord.log" 2>&1 &
NESTORD_PID=$!
for _ in $(seq 100); do
	[ -S "$TMP/v0.sock" ] && break
	kill -0 "$NESTORD_PID" 2>/dev/null || break
	sleep 0.1
done
[ -S "$TMP/v0.sock" ] || { echo "FAIL: nestord did not create $TMP/v0.sock" >&2; show "$TMP/nestord.log"; exit 1; }

rc=0
"$VM" --socket "$TMP/v0.sock" --vcpus 1 --poll-queues 1 --cpus 0 --reactor-cpus 1 \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.cpio.gz" --memory 256M \
	--append "panic=-1 loglevel=5 nestor.test=iopoll nestor.poll_queues=1 nestor.io_timeout=40" \
	--no-reboot --serial-log "$TMP/console.log" --timeout 60 >"$TMP/vm.out" 2>"$TMP/vm.err" || rc=$?
cat "$TMP/vm.err"
tr -d '\r' <"$TMP/console.log" | grep -a '^nestor-vm:' || true

ok=1
[ $rc -eq 0 ] || { echo "FAIL: nestor-vm exited $rc" >&2; ok=0; }
tr -d '\r' <"$TMP/console.log" | grep -aq '^NESTOR-VM-RESULT: PASS$' ||
	{ echo "FAIL: no 'NESTOR-VM-RESULT: PASS' on the console" >&2; ok=0; }
grep -q "vCPU 0 (thread [0-9]* 'CPU 0/TCG') pinned to CPU 0 (affinity now 0)" "$TMP/vm.err" ||
	{ echo "FAIL: vCPU 0 was not pinned to CPU 0" >&2; ok=0; }
# The guest kernel got the recipe's parameters (it echoes its command line).
tr -d '\r' <"$TMP/console.log" | grep -aq 'idle=poll virtio_blk.poll_queues=1' ||
	{ echo "FAIL: the kernel command line lacks idle=poll virtio_blk.poll_queues=1" >&2; ok=0; }
[ $ok = 1 ] || { show "$TMP/console.log" "$TMP/nestord.log"; exit 1; }

kill -TERM "$NESTORD_PID"
nrc=0
wait "$NESTORD_PID" || nrc=$?
NESTORD_PID=
[ $nrc -eq 0 ] || { echo "FAIL: nestord exited $nrc after SIGTERM" >&2; show "$TMP/nestord.log"; exit 1; }
n=$(grep -oP "reactor 0 cpu .* requests \K[0-9]+" "$TMP/nestord.log" | tail -n 1)
[ "${n:-0}" -gt 0 ] || { echo "FAIL: nestord's reactor completed no requests" >&2; show "$TMP/nestord.log"; exit 1; }
echo "nestord: reactor 0 (CPU 1) completed $n requests; exited 0"
echo "PASS: nestor-vm.02-boot"
