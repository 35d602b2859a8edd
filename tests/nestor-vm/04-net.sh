#!/usr/bin/env bash
# nestor-vm.04-net: the network path of a function VM. The test builds a
# private network out of two network namespaces it creates (nothing touches
# the host's interfaces; the addresses exist only inside them):
#
#   namespace VM (nestor-vm runs here)      namespace PEER
#   tap0 (single queue) --+
#                         +-- br0 -- vm-veth ====== peer-veth 10.213.7.1/24
#   mq0 (multi_queue) ----+                         net_ping echo, UDP 7777
#
# and boots the VM-test guest (QEMU TCG, 1 vCPU on CPU 0, nestord's reactor
# on CPU 1) with `nestor-vm --net tap:tap0`. The guest (workload net of
# tests/vm/guest-init.sh) takes 10.213.7.2/24 and does 20 warm-up and COUNT
# measured UDP request/response exchanges with the peer (net_ping, one in
# flight), printing p50/p99 round-trip times.
#   1. default recipe, 1 vCPU on tap0: the guest kernel got
#      sysctl.net.core.busy_poll=50 and busy_read=50 from nestor-vm,
#      /proc/sys shows them, the socket has SO_BUSY_POLL=50; no reply lost;
#      p50 and p99 under bounds.
#   2. 2 vCPUs on the multi_queue tap mq0 (--no-idle-poll: both vCPUs share
#      CPU 0) with --net-busy-poll 0: the guest's eth0 has 2 rx and 2 tx
#      queues, the sysctls stay 0; no reply lost; bounds.
#   3. only with NESTOR_NET_COMPARE=1: run 1 with --net-busy-poll 0.
#   The echo peer saw exactly the datagrams sent.
#   Refusals (exit 2, QEMU never started): the single-queue tap for the
#   2-vCPU VM, the multi_queue tap for a 1-vCPU VM, a tap that does not
#   exist in the namespace, --net-vhost on without /dev/vhost-net.
# Prints the RTTs of every run (NESTOR_NET_COMPARE=1: the TCG figures of
# docs/function-vms.md, busy polling on and off).
# Cleans up the namespaces (and with them tap, bridge and veth), nestord
# and the echo peer on every exit path.
# Needs root (ip netns), /dev/net/tun, bridge and veth support and CPUs 0
# and 1 (exit 77 = SKIP otherwise).
# Env: NESTOR_NET_COUNT (default 1000) measured exchanges per run;
# NESTOR_NET_COMPARE=1 adds run 3.
# usage: 04-net.sh NESTOR_VM_BINARY NESTORD_BINARY GUEST_DIR
set -euo pipefail
VM=${1:?usage: $0 NESTOR_VM NESTORD GUEST_DIR}
NESTORD=${2:?usage: $0 NESTOR_VM NESTORD GUEST_DIR}
GUEST=${3:?usage: $0 NESTOR_VM NESTORD GUEST_DIR}
COUNT=${NESTOR_NET_COUNT:-1000}
# Bounds for a TCG guest on a shared 2-core machine (measured p50 about
# 0.1 ms, p99 a few ms): they catch a path that falls back to timeouts or
# retransmissions, not a slow emulator.
P50_MAX_US=20000
P99_MAX_US=200000

for f in "$GUEST/vmlinuz" "$GUEST/initrd.cpio.gz" "$GUEST/net_ping"; do
	[ -s "$f" ] || { echo "FAIL: $f missing (built by vm.00-build-guest / tests/vm/build-guest.sh)" >&2; exit 1; }
done
skip() { echo "SKIP: $*"; exit 77; }
taskset -c 0,1 true 2>/dev/null || skip "needs CPUs 0 and 1 (vCPU on 0, reactor on 1)"
[ "$(id -u)" -eq 0 ] || skip "needs root for ip netns"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

TMP=$(mktemp -d)
NS=nestor-vm-net-$$
PEER=nestor-vm-peer-$$
NESTORD_PID=
ECHO_PID=
cleanup() {
	# SIGTERM to timeout(1) reaches the echo peer too (SIGKILL would orphan it).
	if [ -n "$ECHO_PID" ]; then
		kill -TERM "$ECHO_PID" 2>/dev/null || true
		wait "$ECHO_PID" 2>/dev/null || true
	fi
	if [ -n "$NESTORD_PID" ] && kill -0 "$NESTORD_PID" 2>/dev/null; then
		kill -KILL "$NESTORD_PID" 2>/dev/null || true
		wait "$NESTORD_PID" 2>/dev/null || true
	fi
	ip netns del "$NS" 2>/dev/null || true
	ip netns del "$PEER" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
trap "exit 143" TERM INT HUP
show() {
	for f in "$@"; do
		echo "---- $(basename "$f") (last 40 lines) ----" >&2
		tr -d '\r' <"$f" | tail -n 40 >&2 || true
	done
	echo "----" >&2
}

# --- the private network ------------------------------------------------------
ip netns add "$NS" 2>"$TMP/netns.err" || skip "ip netns add failed: $(cat "$TMP/netns.err")"
ip netns add "$PEER" || skip "ip netns add failed"
{
	ip -n "$NS" link set lo up &&
		ip -n "$PEER" link set lo up &&
		ip -n "$NS" link add br0 type bridge &&
		ip -n "$NS" tuntap add dev tap0 mode tap &&
		ip -n "$NS" tuntap add dev mq0 mode tap multi_queue &&
		ip -n "$NS" link add vm-veth type veth peer name peer-veth netns "$PEER" &&
		ip -n "$NS" link set tap0 master br0 up &&
		ip -n "$NS" link set mq0 master br0 up &&
		ip -n "$NS" link set vm-veth master br0 up &&
		ip -n "$NS" link set br0 up &&
		ip -n "$PEER" addr add 10.213.7.1/24 dev peer-veth &&
		ip -n "$PEER" link set peer-veth up
} 2>"$TMP/setup.err" || skip "cannot build the test network (bridge, tap, veth): $(cat "$TMP/setup.err")"

timeout 120 ip netns exec "$PEER" "$GUEST/net_ping" echo --port 7777 --seconds 110 >"$TMP/echo.log" 2>&1 &
ECHO_PID=$!

"$NESTORD" --socket-dir "$TMP" --volume v0,size=64M,backend=mem,queues=4 \
	--cpus 1 --poll-mode adaptive >"$TMP/nestord.log" 2>&1 &
NESTORD_PID=$!
for _ in $(seq 100); do
	[ -S "$TMP/v0.sock" ] && break
	kill -0 "$NESTORD_PID" 2>/dev/null || break
	sleep 0.1
done
[ -S "$TMP/v0.sock" ] || { echo "FAIL: nestord did not create $TMP/v0.sock" >&2; show "$TMP/nestord.log"; exit 1; }
grep -q 'listening on UDP port 7777' "$TMP/echo.log" || sleep 0.5
grep -q 'listening on UDP port 7777' "$TMP/echo.log" ||
	{ echo "FAIL: the echo peer did not start" >&2; show "$TMP/echo.log"; exit 1; }

echo "[$SECONDS s] network, echo peer and nestord up"
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_refused NAME MESSAGE nestor-vm-args...: a real run in the VM
# namespace exits 2 naming the problem; QEMU (/bin/false) is never run.
expect_refused() {
	local name=$1 msg=$2 rc=0
	shift 2
	ip netns exec "$NS" "$VM" --socket "$TMP/v0.sock" --kernel "$GUEST/vmlinuz" --cpus 0 --reactor-cpus 1 \
		--qemu /bin/false "$@" >"$TMP/rout" 2>"$TMP/rerr" || rc=$?
	if [ $rc -ne 2 ] || ! grep -qF -- "$msg" "$TMP/rerr" || grep -q 'QEMU pid' "$TMP/rerr"; then
		fail "$name: exit $rc, want 2 with '$msg': $(cat "$TMP/rerr")"
	else
		echo "refused as expected ($name): $(head -n 1 "$TMP/rerr")"
	fi
}
expect_refused single-queue-tap-2-vcpus "tap tap0 is not multi_queue" --vcpus 2 --net tap:tap0
expect_refused mq-tap-1-vcpu "tap mq0 is multi_queue" --net tap:mq0
expect_refused missing-tap "tap nope0 does not exist in this network namespace" --net tap:nope0
if [ ! -e /dev/vhost-net ]; then
	expect_refused vhost-on "--net-vhost on: /dev/vhost-net cannot be opened" --net tap:tap0 --net-vhost on
fi

# boot NAME NESTOR-VM-ARGS...: boots the net workload; leaves the console in
# $TMP/NAME.console and nestor-vm's stderr in $TMP/NAME.err.
boot() {
	local name=$1 rc=0 t0 t1
	shift
	echo "[$SECONDS s] boot $name"
	t0=$(date +%s.%N)
	ip netns exec "$NS" "$VM" --socket "$TMP/v0.sock" --cpus 0 --reactor-cpus 1 \
		--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.cpio.gz" --memory 256M --poll-queues 0 \
		--append "panic=-1 loglevel=5 nestor.test=net nestor.net_ip=10.213.7.2/24 nestor.net_peer=10.213.7.1 nestor.net_count=$COUNT nestor.io_timeout=50" \
		--no-reboot --serial-log "$TMP/$name.console" --timeout 60 "$@" >/dev/null 2>"$TMP/$name.err" || rc=$?
	t1=$(date +%s.%N)
	tr -d '\r' <"$TMP/$name.console" >"$TMP/$name.log"
	grep -a '^nestor-vm: \(net\|net_ping\):' "$TMP/$name.log" | sed "s/^/[$name] /" || true
	echo "[$name] nestor-vm exited $rc after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
	[ $rc -eq 0 ] || fail "$name: nestor-vm exited $rc: $(tail -n 5 "$TMP/$name.err")"
	grep -aq '^NESTOR-VM-RESULT: PASS$' "$TMP/$name.log" ||
		{ fail "$name: no 'NESTOR-VM-RESULT: PASS' on the console"; show "$TMP/$name.log" "$TMP/$name.err"; }
}

# check_rtt NAME: no reply lost, p50/p99 within the bounds; prints them.
check_rtt() {
	local line p50 p99
	line=$(grep -a '^nestor-vm: net_ping: sent' "$TMP/$1.log" || true)
	[ -n "$line" ] || { fail "$1: no net_ping result"; return; }
	echo "$line" | grep -q "sent $COUNT received $COUNT lost 0 " || fail "$1: replies lost: $line"
	p50=$(echo "$line" | sed -n 's/.* p50 \([0-9.]*\) .*/\1/p')
	p99=$(echo "$line" | sed -n 's/.* p99 \([0-9.]*\) .*/\1/p')
	[ -n "$p50" ] && [ -n "$p99" ] || { fail "$1: cannot parse '$line'"; return; }
	awk -v a="$p50" -v b="$P50_MAX_US" 'BEGIN { exit !(a < b) }' || fail "$1: p50 $p50 us >= $P50_MAX_US us"
	awk -v a="$p99" -v b="$P99_MAX_US" 'BEGIN { exit !(a < b) }' || fail "$1: p99 $p99 us >= $P99_MAX_US us"
	echo "RTT $1: p50 $p50 us, p99 $p99 us ($COUNT UDP exchanges, 64 bytes)"
}

# 1. The recipe: busy polling on (nestor-vm's default, 50 us), 1 vCPU.
boot busy --net tap:tap0
grep -q 'nic0: tap tap0 (52:54:00:[0-9a-f:]*), 1 queue pair, QEMU virtio-net (no vhost-net), guest busy_poll/busy_read 50 us' \
	"$TMP/busy.err" || fail "busy: the launch plan lacks the nic0 line: $(grep nic0 "$TMP/busy.err")"
grep -aq '^nestor-vm: net: busy_poll=50 busy_read=50$' "$TMP/busy.log" ||
	fail "busy: the guest's sysctls are not 50"
grep -aq 'socket SO_BUSY_POLL=50 us' "$TMP/busy.log" || fail "busy: the guest's socket does not busy-poll"
check_rtt busy

# 2. Multiqueue without busy polling: 2 vCPUs (--no-idle-poll: both share
#    CPU 0), 2 queue pairs on the multi_queue tap, --net-busy-poll 0.
boot mq --net tap:mq0 --vcpus 2 --no-idle-poll --net-busy-poll 0
grep -q 'nic0: tap mq0 (52:54:00:[0-9a-f:]*), 2 queue pairs, .*, no guest busy polling' "$TMP/mq.err" ||
	fail "mq: the launch plan lacks 2 queue pairs without busy polling: $(grep nic0 "$TMP/mq.err")"
grep -aq '^nestor-vm: net: eth0 .* 2 rx queues, 2 tx queues$' "$TMP/mq.log" ||
	fail "mq: the guest's eth0 does not use 2 queue pairs"
grep -aq '^nestor-vm: net: busy_poll=0 busy_read=0$' "$TMP/mq.log" || fail "mq: the guest's sysctls are not 0"
grep -aq 'socket SO_BUSY_POLL=0 us' "$TMP/mq.log" || fail "mq: the guest's socket busy-polls"
check_rtt mq

# 3. NESTOR_NET_COMPARE=1 only (the measurement of docs/function-vms.md):
#    run 1 again without busy polling, for the same-shape comparison.
runs=2
if [ "${NESTOR_NET_COMPARE:-0}" = 1 ]; then
	runs=3
	boot nobusy --net tap:tap0 --net-busy-poll 0
	grep -aq '^nestor-vm: net: busy_poll=0 busy_read=0$' "$TMP/nobusy.log" || fail "nobusy: the guest's sysctls are not 0"
	check_rtt nobusy
fi

echo "[$SECONDS s] stopping the echo peer and nestord"
kill -TERM "$ECHO_PID" 2>/dev/null || true
wait "$ECHO_PID" 2>/dev/null || true
ECHO_PID=
# 20 warm-up + COUNT exchanges per run.
want=$((runs * (20 + COUNT)))
grep -q "^net_ping: echo: $want datagrams$" "$TMP/echo.log" ||
	fail "the echo peer did not see exactly $want datagrams: $(tail -n 1 "$TMP/echo.log")"
kill -TERM "$NESTORD_PID"
nrc=0
wait "$NESTORD_PID" || nrc=$?
NESTORD_PID=
[ $nrc -eq 0 ] || fail "nestord exited $nrc after SIGTERM"
echo "[$SECONDS s] done"

if [ $fails -ne 0 ]; then
	echo "FAIL: nestor-vm.04-net ($fails failures)" >&2
	exit 1
fi
echo "PASS: nestor-vm.04-net"
