#!/usr/bin/env bash
# nestor-vm.01-dry-run: the QEMU command nestor-vm prints carries the recipe
# (shared memfd memory, chardev reconnect, num-queues = vCPUs + poll queues,
# idle=poll, virtio_blk.poll_queues, debug-threads for pinning), and
# nestor-vm refuses what breaks it with exit code 2 and a message:
# overlapping --cpus/--reactor-cpus, unknown reactor CPUs, missing
# hugepages, a missing socket. --net: the tap netdev (queues = vCPUs,
# vhost), the virtio-net device (mq, vectors, MAC), VFIO passthrough, the
# busy-poll sysctls on the kernel command line; bad specs, a missing tap,
# a non-tap interface and a missing PCI device refused. --clone-of: the dry run's volume_clone call
# and clone socket, clone name checks, an unreachable nestord (exit 1).
# usage: 01-dry-run.sh NESTOR_VM_BINARY
set -euo pipefail
VM=${1:?usage: $0 NESTOR_VM_BINARY}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_in FILE FIXED-STRING...
expect_in() {
	local f=$1
	shift
	for s in "$@"; do
		grep -qF -- "$s" "$f" || fail "'$s' missing from $(basename "$f"):"$'\n'"$(cat "$f")"
	done
}

# 1. The default recipe, 1 vCPU: 1 poll queue, 2 queues, maxcpus=2.
"$VM" --dry-run --socket /run/nestor/v0.sock --kernel /k --initrd /i \
	--cpus 0 --reactor-cpus 1 --append 'nestor.test=direct panic=-1' >"$TMP/out1" 2>"$TMP/err1" ||
	fail "dry-run 1 exited $?: $(cat "$TMP/err1")"
expect_in "$TMP/out1" \
	"-name nestor-vm,debug-threads=on" \
	"-accel tcg" \
	"-smp 1,maxcpus=2" \
	"-m 512M" \
	"-object memory-backend-memfd,id=mem,size=512M,share=on" \
	"-numa node,memdev=mem" \
	"-chardev socket,id=vhost0,path=/run/nestor/v0.sock,reconnect=1" \
	"-device vhost-user-blk-pci,id=disk0,chardev=vhost0,num-queues=2" \
	"-kernel /k" "-initrd /i" \
	"-append 'console=ttyS0 idle=poll virtio_blk.poll_queues=1 nestor.test=direct panic=-1'"
expect_in "$TMP/err1" "vCPU 0 -> CPU 0"
# One option per line, and the output is a valid shell command.
[ "$(grep -c '^  -' "$TMP/out1")" -ge 12 ] || fail "not one option per line: $(cat "$TMP/out1")"
bash -n "$TMP/out1" || fail "dry-run output is not valid shell"
# Re-parse the printed command and compare with what nestor-vm would run.
eval "set -- $(cat "$TMP/out1")"
[ "$1" = qemu-system-x86_64 ] || fail "argv[0] is '$1'"
args=("$@")
found=0
for i in "${!args[@]}"; do
	[ "${args[$i]}" = -append ] && [ "${args[$((i + 1))]}" = "console=ttyS0 idle=poll virtio_blk.poll_queues=1 nestor.test=direct panic=-1" ] && found=1
done
[ $found = 1 ] || fail "-append does not survive shell quoting"

# 2. Two disks, 2 vCPUs, explicit poll queues, no idle=poll, hugepage dir,
#    custom qemu, a path that needs QEMU comma escaping and shell quoting.
"$VM" --dry-run --socket /s/a.sock --socket "/s/b,c d.sock" --vcpus 2 --poll-queues 1 \
	--memory 1G --cpus 0,2 --reactor-cpus 1 --no-idle-poll --kernel /k --qemu /opt/q \
	--serial-log /tmp/log >"$TMP/out2" 2>"$TMP/err2" || fail "dry-run 2 exited $?: $(cat "$TMP/err2")"
expect_in "$TMP/out2" \
	"/opt/q" "-smp 2,maxcpus=3" "-m 1G" "size=1G,share=on" \
	"-device vhost-user-blk-pci,id=disk0,chardev=vhost0,num-queues=3" \
	"-device vhost-user-blk-pci,id=disk1,chardev=vhost1,num-queues=3" \
	"'socket,id=vhost1,path=/s/b,,c d.sock,reconnect=1'" \
	"-serial file:/tmp/log" \
	"-append 'console=ttyS0 virtio_blk.poll_queues=1'"
expect_in "$TMP/err2" "vCPU 0 -> CPU 0" "vCPU 1 -> CPU 2"
grep -q 'idle=poll' "$TMP/out2" && fail "--no-idle-poll still adds idle=poll"

# 3. --poll-queues 0: queues = vCPUs, no poll_queues parameter, no maxcpus.
"$VM" --dry-run --socket /s/a.sock --vcpus 2 --poll-queues 0 --cpus 0 --reactor-cpus 1 \
	--kernel /k >"$TMP/out3" 2>/dev/null || fail "dry-run 3 exited $?"
expect_in "$TMP/out3" "-smp 2 " "num-queues=2" "-append 'console=ttyS0 idle=poll'"
grep -q 'poll_queues' "$TMP/out3" && fail "--poll-queues 0 still sets poll_queues"

# expect_refused NAME MESSAGE-FIXED-STRING nestor-vm-args...
expect_refused() {
	local name=$1 msg=$2 rc=0
	shift 2
	"$VM" "$@" >"$TMP/rout" 2>"$TMP/rerr" || rc=$?
	if [ $rc -ne 2 ]; then
		fail "$name: exit code $rc, want 2 (stderr: $(cat "$TMP/rerr"))"
	elif ! grep -qF -- "$msg" "$TMP/rerr"; then
		fail "$name: message lacks '$msg': $(cat "$TMP/rerr")"
	elif [ -s "$TMP/rout" ]; then
		fail "$name: printed a command although refused: $(cat "$TMP/rout")"
	else
		echo "refused as expected ($name): $(head -n 1 "$TMP/rerr")"
	fi
}

expect_refused overlap "overlaps --reactor-cpus 1 on CPU 1" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0-1 --reactor-cpus 1
expect_refused overlap-many "on CPUs 1,3" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0-3 --reactor-cpus 1,3,5
expect_refused no-reactor-cpus "--reactor-cpus" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0
expect_refused nothing-to-boot "nothing to boot" \
	--dry-run --socket /s/a.sock --cpus 0 --reactor-cpus 1
expect_refused bad-cpu-list "--cpus" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 3-1 --reactor-cpus 1
expect_refused bad-accel "--accel" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --accel xen
expect_refused too-many-queues "at most 64" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --vcpus 40
# Host facts are refused for a real run (QEMU is never started: --qemu /bin/false).
expect_refused missing-socket "$TMP/none.sock" \
	--socket "$TMP/none.sock" --kernel /bin/sh --cpus 0 --reactor-cpus 1 --qemu /bin/false
# --allow-shared-cpus turns the overlap into a warning.
"$VM" --dry-run --socket /s/a.sock --kernel /k --cpus 0-1 --reactor-cpus 1 --allow-shared-cpus \
	>/dev/null 2>"$TMP/err4" || fail "--allow-shared-cpus still refused: $(cat "$TMP/err4")"
expect_in "$TMP/err4" "warning: --cpus 0-1 overlaps --reactor-cpus 1 on CPU 1"

# Hugepages: refused when the pools cannot hold guest memory; otherwise the
# dry-run shows a hugetlb memfd.
need=$((512 / 2))
free2m=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
if [ "$free2m" -lt "$need" ]; then
	expect_refused no-hugepages "free" \
		--socket "$TMP/none.sock" --kernel /bin/sh --cpus 0 --reactor-cpus 1 --hugepages --qemu /bin/false
else
	echo "hugepages: $free2m free 2 MiB pages; refusal not testable here"
fi
"$VM" --dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --hugepages \
	>"$TMP/out5" 2>/dev/null || fail "--hugepages --dry-run exited $?"
expect_in "$TMP/out5" "share=on,hugetlb=on,hugetlbsize=" "prealloc=on"

# --clone-of: the dry run contacts nothing, shows the volume_clone call and
# puts the clone's planned socket (beside --control) first, --socket after.
"$VM" --dry-run --clone-of gold-snap --control /run/n/control.ctl --clone-name fn1-disk --keep \
	--socket /s/extra.sock --kernel /k --cpus 0 --reactor-cpus 1 >"$TMP/out6" 2>"$TMP/err6" ||
	fail "--clone-of --dry-run exited $?: $(cat "$TMP/err6")"
expect_in "$TMP/out6" "-chardev socket,id=vhost0,path=/run/n/fn1-disk.sock,reconnect=1" \
	"-chardev socket,id=vhost1,path=/s/extra.sock,reconnect=1"
expect_in "$TMP/err6" 'volume_clone {"snapshot":"gold-snap","name":"fn1-disk","export":{"queues":2}} on /run/n/control.ctl' \
	"(and keep the clone: --keep)" "2 disks x 2 queues"
# Default clone name: SNAP-NAME-PID; no --socket needed.
"$VM" --dry-run --clone-of gold-snap --control /run/n/control.ctl --name fn2 --kernel /k --cpus 0 \
	--reactor-cpus 1 >"$TMP/out7" 2>"$TMP/err7" || fail "--clone-of default name exited $?: $(cat "$TMP/err7")"
grep -qE -- '-chardev socket,id=vhost0,path=/run/n/gold-snap-fn2-[0-9]+[.]sock,reconnect=1' "$TMP/out7" ||
	fail "default clone socket missing: $(cat "$TMP/out7")"
expect_in "$TMP/err7" "and volume_delete"
expect_refused bad-clone-name "--clone-name: volume name '-x' must not start" \
	--dry-run --clone-of gold-snap --clone-name -x --kernel /k --cpus 0 --reactor-cpus 1
expect_refused keep-without-clone "need --clone-of" \
	--dry-run --socket /s/a.sock --keep --kernel /k --cpus 0 --reactor-cpus 1
expect_refused no-disk "--socket or --clone-of" --dry-run --kernel /k --cpus 0 --reactor-cpus 1
# A real run against no nestord: exit 1, the socket named, QEMU never run.
rc=0
"$VM" --clone-of gold-snap --control "$TMP/none.ctl" --kernel /bin/sh --cpus 0 --reactor-cpus 1 \
	--qemu /bin/false >"$TMP/out8" 2>"$TMP/err8" || rc=$?
[ $rc -eq 1 ] || fail "unreachable nestord: exit $rc, want 1: $(cat "$TMP/err8")"
expect_in "$TMP/err8" "cannot clone snapshot 'gold-snap'" "cannot reach nestord at $TMP/none.ctl" "is nestord running?"
grep -q "QEMU pid" "$TMP/err8" && fail "QEMU started without a clone"

# --net: a tap (virtio-net, one queue pair per vCPU) and a VF (vfio-pci).
# Neither exists here: with --dry-run that is a warning.
"$VM" --dry-run --socket /s/a.sock --kernel /k --vcpus 2 --cpus 0,2 --reactor-cpus 1 \
	--net tap:fn0,mac=52:54:00:0a:0b:0c --net vf:3b:02.1 --net-vhost off >"$TMP/out9" 2>"$TMP/err9" ||
	fail "--net dry-run exited $?: $(cat "$TMP/err9")"
expect_in "$TMP/out9" \
	"-netdev tap,id=net0,ifname=fn0,script=no,downscript=no,vhost=off,queues=2" \
	"-device virtio-net-pci,id=nic0,netdev=net0,mac=52:54:00:0a:0b:0c,mq=on,vectors=6" \
	"-device vfio-pci,id=nic1,host=0000:3b:02.1" \
	"sysctl.net.core.busy_poll=50 sysctl.net.core.busy_read=50'"
expect_in "$TMP/err9" "warning: --net tap:fn0: tap fn0 does not exist in this network namespace" \
	"warning: --net vf:0000:3b:02.1: no PCI device 0000:3b:02.1" \
	"nic0: tap fn0 (52:54:00:0a:0b:0c), 2 queue pairs, QEMU virtio-net (no vhost-net), guest busy_poll/busy_read 50 us" \
	"nic1: VF 0000:3b:02.1 passed through (vfio-pci)"
# 1 vCPU: a single-queue tap, no mq; --net-busy-poll 20; --net-vhost on.
"$VM" --dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net tap:fn1 --net-busy-poll 20 \
	--net-vhost on >"$TMP/out10" 2>"$TMP/err10" || fail "--net 1 vCPU dry-run exited $?: $(cat "$TMP/err10")"
expect_in "$TMP/out10" "-netdev tap,id=net0,ifname=fn1,script=no,downscript=no,vhost=on" \
	"-device virtio-net-pci,id=nic0,netdev=net0,mac=52:54:00:" \
	"sysctl.net.core.busy_poll=20 sysctl.net.core.busy_read=20'"
grep -qE 'ifname=fn1,.*queues=|mq=on' "$TMP/out10" && fail "1 vCPU: multiqueue options: $(grep netdev "$TMP/out10")"
# --net-busy-poll 0: no sysctls.
"$VM" --dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net tap:fn1 --net-busy-poll 0 \
	>"$TMP/out11" 2>/dev/null || fail "--net-busy-poll 0 exited $?"
grep -q 'sysctl' "$TMP/out11" && fail "--net-busy-poll 0 still sets sysctls"
expect_refused net-bad-kind "--net bridge:br0: unknown kind" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net bridge:br0
expect_refused net-bad-option "unknown tap option 'queues=2'" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net tap:fn0,queues=2
expect_refused net-bad-pci "a PCI address is [DDDD:]BB:DD.F" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net vf:3b:02
expect_refused net-busy-poll-alone "need --net" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net-busy-poll 10
expect_refused net-vhost-bad "--net-vhost must be auto, on or off" \
	--dry-run --socket /s/a.sock --kernel /k --cpus 0 --reactor-cpus 1 --net tap:fn0 --net-vhost yes
# A real run refuses what the host lacks (QEMU is never started: --qemu /bin/false).
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$TMP/s.sock"
expect_refused net-missing-tap "tap nestor-none0 does not exist in this network namespace" \
	--socket "$TMP/s.sock" --kernel /bin/sh --cpus 0 --reactor-cpus 1 --qemu /bin/false --net tap:nestor-none0
expect_refused net-not-a-tap "lo is not a tap device" \
	--socket "$TMP/s.sock" --kernel /bin/sh --cpus 0 --reactor-cpus 1 --qemu /bin/false --net tap:lo
expect_refused net-no-pci-device "no PCI device 0000:ff:1f.7" \
	--socket "$TMP/s.sock" --kernel /bin/sh --cpus 0 --reactor-cpus 1 --qemu /bin/false --net vf:ff:1f.7

# --help works and exits 0.
"$VM" --help >/dev/null || fail "--help exited $?"

if [ $fails -ne 0 ]; then
	echo "FAIL: nestor-vm.01-dry-run ($fails failures)" >&2
	exit 1
fi
echo "PASS: nestor-vm.01-dry-run"
