#!/bin/sh
# /init of the nestor VM-test initramfs (busybox-static + iopoll_io helper).
# Parameters come from the kernel command line:
#   nestor.test=direct|iopoll|fs|loop|clone|net|read|resize   workload (see below)
#   nestor.poll_queues=N        passed to insmod virtio_blk (default 0;
#                               the iopoll test forces >= 1)
#   nestor.offset=BYTES nestor.length=BYTES nestor.seed=N   pattern range
#   nestor.io_timeout=SEC       each I/O step must finish within SEC
#                               (default 60), else FAIL "... hung"
#   nestor.hold=SEC             after the result line, wait SEC seconds
#                               before powering off (the device stays
#                               attached, so the host can inspect the backend)
#   nestor.loop_secs=SEC        loop: duration of the write loop (default 10)
#   nestor.loop_qd=N            loop: writes in flight (default 1)
#   nestor.loop_iopoll=1        loop: write through an io_uring ring with
#                               IORING_SETUP_IOPOLL (needs a poll queue:
#                               nestor.poll_queues >= 1)
#   nestor.loop_nosync=1        loop: no fdatasync after each generation
#                               (the writes are never flushed)
#   nestor.loop_check=1         loop: read each generation back before the
#                               next one overwrites it (iopoll_io loop --check)
#   nestor.loop_discard=1       loop: discard the range before each
#                               generation (iopoll_io loop --discard)
#   nestor.tag=TAG              clone: this guest's name ([a-z0-9]); with
#                               nestor.seed (decimal) it picks the files
#                               of clone_tree TAG SEED (/fs-tree.sh)
#   nestor.net_ip=ADDR/LEN      net: eth0's address (default 10.213.7.2/24)
#   nestor.net_peer=IPV4        net: the UDP echo peer (default 10.213.7.1)
#   nestor.net_port=P           net: its port (default 7777)
#   nestor.net_count=N          net: measured exchanges (default 1000)
# Prints exactly one "NESTOR-VM-RESULT: PASS" or "NESTOR-VM-RESULT: FAIL <why>"
# line on the console, then powers off.
#
# direct: dd oflag=direct the pattern onto /dev/vda, read it back with
#   iflag=direct (4 KiB requests) and compare, drop caches, read it back
#   buffered and compare.
# iopoll: virtio_blk with poll_queues, require a poll hw queue (io_poll=1,
#   a debugfs hctx of type "poll"), then io_uring IORING_SETUP_IOPOLL O_DIRECT
#   write + verified reads, and require that the poll hctx dispatched requests.
# fs: insmod the ext4 modules, mke2fs (1 KiB blocks) on /dev/vda, write the
#   tree of /fs-tree.sh (deterministic content), sync, umount, drop caches,
#   mount read-only, check every file's sha256 and the file count, umount.
#   Prints "nestor-vm: fs: <sha256>  <path>" for every file.
#   nestor.fs_mkfs=0: no mke2fs; /dev/vda already holds an empty ext4
#   filesystem (made on the host), mounted as ext4 (default 1: mke2fs,
#   mounted as ext2).
# clone: /dev/vda holds the golden ext4 filesystem of vm.13-clones (the
#   files of fs_tree, written on the host): insmod the ext4 modules, mount,
#   require exactly the fs_tree files with their content (sha256), write
#   the files of clone_tree TAG SEED, sync, umount, drop caches, mount
#   read-only, check golden and own files again and the total file count.
#   Prints "nestor-vm: clone: <sha256>  <path>" for every own file.
# net: insmod failover, net_failover, virtio_net (the /modules/net/order);
#   wait for eth0, bring lo and eth0 (net_ip) up; print eth0's MAC and its
#   rx/tx queue counts, the net.core.busy_poll/busy_read sysctls, then
#   net_ping ping the UDP echo peer: 20 warm-up and net_count measured
#   request/response exchanges, "nestor-vm: net_ping: sent N received R
#   lost L rtt_us min .. p50 .. p90 .. p99 .. max .. mean ..". PASS when
#   no reply was lost.
# loop: iopoll_io loop: O_DIRECT write generations of the pattern (seed +
#   generation) over [offset, offset+length) for loop_secs, loop_qd writes
#   in flight, counting write
#   errors, then verify the last generation (see iopoll_io.c). Its output is
#   copied to the console as it happens ("nestor-vm: iopoll_io: loop: ...").
#   With loop_iopoll=1 it first requires a poll queue (as iopoll does) and
#   the writes are polled (iopoll_io loop --iopoll). loop_nosync=1: no
#   fdatasync (--no-sync); loop_check=1: every generation is read back and
#   checked before it is overwritten (--check); loop_discard=1: the range
#   is discarded before each generation (--discard).
# resize: online resize (vm.15-online-resize). Prints "resize: size0 S"
#   (/sys/block/vda/size, 512-byte sectors), then waits, at most io_timeout
#   seconds, for that size to grow while the device stays attached (the
#   host grows the volume); prints "resize: grown from S0 to S1 sectors";
#   then O_DIRECT io_uring writes of the pattern into the (at most) 1 MiB
#   past the old end, fdatasync, and verified reads of it (iopoll_io uring).
PATH=/bin:/sbin
export PATH

/bin/busybox mkdir -p /proc /sys /dev /tmp /sys/kernel/debug
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

say() { echo "nestor-vm: $*"; }
result() {
	sync
	if [ "${HOLD:-0}" -gt 0 ] 2>/dev/null; then
		echo "nestor-vm: holding ${HOLD} s before poweroff"
		echo "NESTOR-VM-RESULT: $*"
		sleep "$HOLD"
	else
		echo "NESTOR-VM-RESULT: $*"
	fi
	# Give the serial line a moment to drain before the power goes.
	sleep 0.2
	poweroff -f
	sleep 5
	exit 1
}
fail() { result "FAIL $*"; }

TEST=
POLLQ=0
OFFSET=1048576
LENGTH=8388608
SEED=0x6e657374
IOTMO=60
HOLD=0
LOOPSECS=10
LOOPQD=1
LOOPIOPOLL=0
LOOPNOSYNC=0
LOOPCHECK=0
LOOPDISCARD=0
TAG=
FSMKFS=1
NETIP=10.213.7.2/24
NETPEER=10.213.7.1
NETPORT=7777
NETCOUNT=1000
for w in $(cat /proc/cmdline); do
	case "$w" in
	nestor.test=*) TEST=${w#*=} ;;
	nestor.poll_queues=*) POLLQ=${w#*=} ;;
	nestor.offset=*) OFFSET=${w#*=} ;;
	nestor.length=*) LENGTH=${w#*=} ;;
	nestor.seed=*) SEED=${w#*=} ;;
	nestor.io_timeout=*) IOTMO=${w#*=} ;;
	nestor.hold=*) HOLD=${w#*=} ;;
	nestor.loop_secs=*) LOOPSECS=${w#*=} ;;
	nestor.loop_qd=*) LOOPQD=${w#*=} ;;
	nestor.loop_iopoll=*) LOOPIOPOLL=${w#*=} ;;
	nestor.loop_nosync=*) LOOPNOSYNC=${w#*=} ;;
	nestor.loop_check=*) LOOPCHECK=${w#*=} ;;
	nestor.loop_discard=*) LOOPDISCARD=${w#*=} ;;
	nestor.tag=*) TAG=${w#*=} ;;
	nestor.fs_mkfs=*) FSMKFS=${w#*=} ;;
	nestor.net_ip=*) NETIP=${w#*=} ;;
	nestor.net_peer=*) NETPEER=${w#*=} ;;
	nestor.net_port=*) NETPORT=${w#*=} ;;
	nestor.net_count=*) NETCOUNT=${w#*=} ;;
	esac
done
say "test=$TEST poll_queues=$POLLQ offset=$OFFSET length=$LENGTH seed=$SEED cpus=$(nproc) kernel=$(uname -r)"
case "$TEST" in
direct | fs | loop | read | resize) ;;
net) ;;
clone) case "$TAG" in "" | *[!a-z0-9]*) fail "clone: bad nestor.tag='$TAG'" ;; esac ;;
iopoll) [ "$POLLQ" -ge 1 ] 2>/dev/null || POLLQ=1 ;;
*) fail "unknown nestor.test='$TEST'" ;;
esac

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci; do
	[ -f /modules/$m.ko ] || continue
	insmod /modules/$m.ko || fail "insmod $m"
done
if [ "$POLLQ" -gt 0 ]; then
	insmod /modules/virtio_blk.ko poll_queues="$POLLQ" || fail "insmod virtio_blk poll_queues=$POLLQ"
else
	insmod /modules/virtio_blk.ko || fail "insmod virtio_blk"
fi

i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "no /dev/vda after 10 s"
	sleep 0.1
done
SIZE=$(cat /sys/block/vda/size)
NHW=$(ls -d /sys/block/vda/mq/* 2>/dev/null | wc -l)
say "/dev/vda: $((SIZE / 2048)) MiB, $NHW hw queues, io_poll=$(cat /sys/block/vda/queue/io_poll 2>/dev/null)"
dmesg | grep -i 'virtio_blk' | sed 's/^/nestor-vm: dmesg: /'
[ $((SIZE * 512)) -ge $((OFFSET + LENGTH)) ] || fail "device too small: $((SIZE * 512)) bytes < $((OFFSET + LENGTH))"

# bounded DESC CMD...: run CMD (stdout+stderr to /tmp/out) with a deadline of
# IOTMO seconds. A backend that never completes a request leaves the task in
# an unkillable wait, so do not wait for it: report FAIL and power off.
bounded() {
	desc=$1
	shift
	"$@" > /tmp/out 2>&1 &
	pid=$!
	ticks=0
	while kill -0 $pid 2>/dev/null; do
		ticks=$((ticks + 1))
		if [ $ticks -gt $((IOTMO * 10)) ]; then
			sed 's/^/nestor-vm: /' /tmp/out
			fail "$desc hung: no completion after ${IOTMO} s"
		fi
		sleep 0.1
	done
	wait $pid
}

# bounded_live DESC CMD...: like bounded, but CMD's output goes to the
# console as it is produced, each line prefixed with "nestor-vm: ".
bounded_live() {
	desc=$1
	shift
	echo 1 > /tmp/rc
	( "$@" 2>&1; echo $? > /tmp/rc ) | while IFS= read -r l; do echo "nestor-vm: $l"; done &
	pid=$!
	ticks=0
	while kill -0 $pid 2>/dev/null; do
		ticks=$((ticks + 1))
		[ $ticks -gt $((IOTMO * 10)) ] && fail "$desc hung: no completion after ${IOTMO} s"
		sleep 0.1
	done
	wait $pid
	return "$(cat /tmp/rc)"
}

# Sum of the interrupts of all virtio request queues.
req_irqs() {
	awk '/virtio[0-9]+-req/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i }
		END { print s + 0 }' /proc/interrupts
}

H=/bin/iopoll_io
PAT="--seed $SEED --offset $OFFSET --length $LENGTH"

run_direct() {
	[ $((OFFSET % 1048576)) -eq 0 ] && [ $((LENGTH % 1048576)) -eq 0 ] ||
		fail "direct test needs offset/length in whole MiB"
	$H gen $PAT > /tmp/pat || fail "pattern generation"
	want=$(md5sum < /tmp/pat | cut -d' ' -f1)
	# 128 KiB direct writes (multi-segment requests), then flush.
	bounded "O_DIRECT write" dd if=/tmp/pat of=/dev/vda bs=131072 seek=$((OFFSET / 131072)) \
		oflag=direct conv=notrunc,fsync status=none || fail "O_DIRECT write: $(cat /tmp/out)"
	say "O_DIRECT write of $LENGTH bytes done"
	# 4 KiB direct reads.
	bounded "O_DIRECT read" dd if=/dev/vda of=/tmp/rd bs=4096 skip=$((OFFSET / 4096)) \
		count=$((LENGTH / 4096)) iflag=direct status=none || fail "O_DIRECT read: $(cat /tmp/out)"
	got=$(md5sum < /tmp/rd | cut -d' ' -f1)
	if [ "$got" != "$want" ]; then
		$H verify $PAT - < /tmp/rd 2>&1 | sed 's/^/nestor-vm: /'
		fail "O_DIRECT read-back differs (md5 $got != $want)"
	fi
	say "O_DIRECT read-back OK (md5 $got)"
	rm -f /tmp/rd
	sync
	echo 3 > /proc/sys/vm/drop_caches || fail "drop_caches"
	bounded "buffered read" dd if=/dev/vda of=/tmp/rd bs=1048576 skip=$((OFFSET / 1048576)) \
		count=$((LENGTH / 1048576)) status=none || fail "buffered read: $(cat /tmp/out)"
	if ! cmp -s /tmp/pat /tmp/rd; then
		$H verify $PAT - < /tmp/rd 2>&1 | sed 's/^/nestor-vm: /'
		fail "buffered read-back differs"
	fi
	say "buffered read-back after drop_caches OK"
	rm -f /tmp/rd /tmp/pat
	result PASS
}

# Fails unless /dev/vda has a poll hw queue (io_poll=1 and, when debugfs
# shows them, a hctx of type "poll").
require_poll_queue() {
	[ "$(cat /sys/block/vda/queue/io_poll 2>/dev/null)" = "1" ] ||
		fail "no poll queue: /sys/block/vda/queue/io_poll=$(cat /sys/block/vda/queue/io_poll 2>/dev/null) ($NHW hw queues; device needs >= 2 queues and guest >= 2 possible CPUs)"
	if [ -d /sys/kernel/debug/block/vda ]; then
		types=$(cat /sys/kernel/debug/block/vda/hctx*/type | tr '\n' ' ')
		say "hctx types: $types"
		case "$types" in *poll*) ;; *) fail "io_poll=1 but no hctx of type poll ($types)" ;; esac
	fi
}

# read: a shared read-only image (several guests at once). The device must
# be read-only (VIRTIO_BLK_F_RO: /sys/block/vda/ro) and hold the pattern at
# [offset, offset+length): 4 KiB O_DIRECT reads and, after drop_caches,
# buffered reads are compared with it. Nothing is written.
run_read() {
	[ "$(cat /sys/block/vda/ro)" = 1 ] || fail "read: /dev/vda is not read-only"
	$H gen $PAT > /tmp/pat || fail "pattern generation"
	want=$(md5sum < /tmp/pat | cut -d' ' -f1)
	bounded "O_DIRECT read" dd if=/dev/vda of=/tmp/rd bs=4096 skip=$((OFFSET / 4096)) \
		count=$((LENGTH / 4096)) iflag=direct status=none || fail "O_DIRECT read: $(cat /tmp/out)"
	got=$(md5sum < /tmp/rd | cut -d' ' -f1)
	[ "$got" = "$want" ] || fail "O_DIRECT read differs from the image (md5 $got != $want)"
	say "read-only device, O_DIRECT read OK (md5 $got)"
	rm -f /tmp/rd
	echo 3 > /proc/sys/vm/drop_caches || fail "drop_caches"
	bounded "buffered read" dd if=/dev/vda of=/tmp/rd bs=1048576 skip=$((OFFSET / 1048576)) \
		count=$((LENGTH / 1048576)) status=none || fail "buffered read: $(cat /tmp/out)"
	cmp -s /tmp/pat /tmp/rd || fail "buffered read differs from the image"
	say "buffered read OK"
	rm -f /tmp/rd /tmp/pat
	result PASS
}

run_iopoll() {
	[ $((OFFSET % 1048576)) -eq 0 ] && [ $((LENGTH % 1048576)) -eq 0 ] ||
		fail "iopoll test needs offset/length in whole MiB"
	require_poll_queue
	irq0=$(req_irqs)
	bounded "io_uring IOPOLL workload" $H uring --dev /dev/vda --iopoll --bs 65536 --qd 8 $PAT
	rc=$?
	sed 's/^/nestor-vm: /' /tmp/out
	[ $rc -eq 0 ] || fail "io_uring IOPOLL workload failed (rc=$rc): $(tail -n 1 /tmp/out)"
	irq1=$(req_irqs)
	# The workload is 2 * LENGTH/64KiB + LENGTH/4KiB requests (2304 for 8 MiB)
	# plus one flush. Poll queues have no interrupt vector: had the requests
	# been served by an interrupt-driven queue, each would have cost up to one
	# interrupt.
	say "request-queue interrupts during IOPOLL workload: $((irq1 - irq0))"
	[ $((irq1 - irq0)) -lt 64 ] || fail "IOPOLL I/O was completed by interrupts ($((irq1 - irq0))), not by polling"
	# Cross-check through the page cache path too.
	sync
	echo 3 > /proc/sys/vm/drop_caches
	bounded "buffered re-read" dd if=/dev/vda of=/tmp/rd bs=1048576 skip=$((OFFSET / 1048576)) \
		count=$((LENGTH / 1048576)) status=none || fail "buffered re-read: $(cat /tmp/out)"
	$H verify $PAT - < /tmp/rd > /tmp/out 2>&1 || fail "buffered re-read: $(tail -n 1 /tmp/out)"
	say "buffered re-read OK"
	result PASS
}

run_fs() {
	for m in $(cat /modules/fs/order); do
		insmod /modules/fs/$m.ko || fail "insmod $m"
	done
	. /fs-tree.sh
	FSTYPE=ext2
	if [ "$FSMKFS" = 0 ]; then
		FSTYPE=ext4
	else
		bounded "mke2fs" mke2fs -b 1024 -L nestor /dev/vda || fail "mke2fs: $(tail -n 3 /tmp/out)"
	fi
	mkdir -p /mnt
	bounded "mount" mount -t "$FSTYPE" /dev/vda /mnt || fail "mount: $(cat /tmp/out)"
	say "fs: mounted /dev/vda as $FSTYPE"
	fs_tree > /tmp/tree
	: > /tmp/manifest
	n=0
	bytes=0
	while read -r path size seed; do
		case "$path" in */*) mkdir -p "/mnt/${path%/*}" ;; esac
		$H gen --seed "$seed" --offset 0 --bytes "$size" > "/mnt/$path" || fail "writing /mnt/$path"
		sum=$($H gen --seed "$seed" --offset 0 --bytes "$size" | sha256sum | cut -d' ' -f1)
		echo "$sum  /mnt/$path" >> /tmp/manifest
		say "fs: $sum  $path"
		n=$((n + 1))
		bytes=$((bytes + size))
	done < /tmp/tree
	bounded "sync" sync || fail "sync: $(cat /tmp/out)"
	bounded "umount" umount /mnt || fail "umount: $(cat /tmp/out)"
	say "fs: wrote $n files, $bytes bytes; unmounted"
	echo 3 > /proc/sys/vm/drop_caches
	bounded "mount -o ro" mount -t "$FSTYPE" -o ro /dev/vda /mnt || fail "remount: $(cat /tmp/out)"
	bounded "sha256sum -c" sha256sum -c /tmp/manifest || {
		grep -v ': OK$' /tmp/out | sed 's/^/nestor-vm: /'
		fail "fs: files differ after remount"
	}
	got=$(find /mnt -type f | wc -l)
	[ "$got" -eq "$n" ] || fail "fs: $got files after remount, want $n"
	bounded "umount" umount /mnt || fail "umount: $(cat /tmp/out)"
	say "fs: all $n files verified after remount"
	result PASS
}

# manifest TREE-FILE: "sha256  /mnt/path" lines for sha256sum -c.
manifest() {
	while read -r path size seed; do
		echo "$($H gen --seed "$seed" --offset 0 --bytes "$size" | sha256sum | cut -d' ' -f1)  /mnt/$path"
	done < "$1"
}

# check_files MANIFEST N WHAT: every file of MANIFEST matches and /mnt
# holds exactly N regular files (lost+found aside).
check_files() {
	bounded "sha256sum -c ($3)" sha256sum -c "$1" || {
		grep -v ': OK$' /tmp/out | sed 's/^/nestor-vm: /'
		fail "clone: $3: files differ"
	}
	got=$(find /mnt -path /mnt/lost+found -prune -o -type f -print | wc -l)
	[ "$got" -eq "$2" ] || {
		find /mnt -path /mnt/lost+found -prune -o -type f -print | sed 's/^/nestor-vm: file: /'
		fail "clone: $3: $got files, want $2"
	}
}

run_clone() {
	for m in $(cat /modules/fs/order); do
		insmod /modules/fs/$m.ko || fail "insmod $m"
	done
	. /fs-tree.sh
	mkdir -p /mnt
	bounded "mount" mount -t ext4 /dev/vda /mnt || fail "mount ext4: $(cat /tmp/out)"
	fs_tree > /tmp/gold
	manifest /tmp/gold > /tmp/gold.sums
	ngold=$(wc -l < /tmp/gold)
	check_files /tmp/gold.sums "$ngold" "golden files"
	say "clone: $ngold golden files present and intact"
	clone_tree "$TAG" "$SEED" > /tmp/own
	while read -r path size seed; do
		mkdir -p "/mnt/${path%/*}"
		$H gen --seed "$seed" --offset 0 --bytes "$size" > "/mnt/$path" || fail "writing /mnt/$path"
	done < /tmp/own
	manifest /tmp/own > /tmp/own.sums
	sed 's|  /mnt/|  |; s/^/nestor-vm: clone: /' /tmp/own.sums
	bounded "sync" sync || fail "sync: $(cat /tmp/out)"
	bounded "umount" umount /mnt || fail "umount: $(cat /tmp/out)"
	echo 3 > /proc/sys/vm/drop_caches
	bounded "mount -o ro" mount -t ext4 -o ro /dev/vda /mnt || fail "remount: $(cat /tmp/out)"
	cat /tmp/gold.sums /tmp/own.sums > /tmp/all.sums
	check_files /tmp/all.sums $((ngold + $(wc -l < /tmp/own))) "after remount"
	bounded "umount" umount /mnt || fail "umount: $(cat /tmp/out)"
	say "clone: $TAG wrote $(wc -l < /tmp/own) files; golden and own files verified after remount"
	result PASS
}

run_loop() {
	pollarg=
	if [ "$LOOPIOPOLL" = 1 ]; then
		require_poll_queue
		pollarg=--iopoll
	fi
	[ "$LOOPNOSYNC" = 1 ] && pollarg="$pollarg --no-sync"
	[ "$LOOPCHECK" = 1 ] && pollarg="$pollarg --check"
	[ "$LOOPDISCARD" = 1 ] && pollarg="$pollarg --discard"
	bounded_live "write loop" $H loop --dev /dev/vda $pollarg --bs 65536 --qd "$LOOPQD" --seconds "$LOOPSECS" $PAT ||
		fail "write loop failed"
	result PASS
}

run_net() {
	for m in $(cat /modules/net/order); do
		insmod /modules/net/$m.ko || fail "insmod $m"
	done
	i=0
	while [ ! -d /sys/class/net/eth0 ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "net: no eth0 after 10 s (no virtio-net device?)"
		sleep 0.1
	done
	ip link set lo up
	ip addr add "$NETIP" dev eth0 || fail "net: ip addr add $NETIP dev eth0"
	ip link set eth0 up || fail "net: ip link set eth0 up"
	say "net: eth0 $(cat /sys/class/net/eth0/address) $NETIP, $(ls -d /sys/class/net/eth0/queues/rx-* | wc -l) rx queues, $(ls -d /sys/class/net/eth0/queues/tx-* | wc -l) tx queues"
	say "net: busy_poll=$(cat /proc/sys/net/core/busy_poll) busy_read=$(cat /proc/sys/net/core/busy_read)"
	bounded "net_ping" /bin/net_ping ping --peer "$NETPEER" --port "$NETPORT" --count "$NETCOUNT"
	rc=$?
	sed 's/^/nestor-vm: /' /tmp/out
	[ $rc -eq 0 ] || fail "net: UDP exchanges with $NETPEER:$NETPORT failed (rc=$rc): $(tail -n 1 /tmp/out)"
	result PASS
}

run_resize() {
	s0=$(cat /sys/block/vda/size)
	say "resize: size0 $s0 sectors; waiting for the volume to grow"
	t0=$(date +%s)
	while [ "$(cat /sys/block/vda/size)" = "$s0" ]; do
		[ $(($(date +%s) - t0)) -gt "$IOTMO" ] && fail "resize: /sys/block/vda/size still $s0 after ${IOTMO} s"
		sleep 0.1
	done
	s1=$(cat /sys/block/vda/size)
	say "resize: grown from $s0 to $s1 sectors (within $(($(date +%s) - t0)) s of the first look)"
	dmesg | grep -iE 'capacity|new size' | sed 's/^/nestor-vm: dmesg: /'
	[ "$s1" -gt "$s0" ] || fail "resize: the size went from $s0 down to $s1 sectors"
	off=$((s0 * 512))
	len=$(((s1 - s0) * 512))
	[ $len -gt 1048576 ] && len=1048576
	bounded "I/O past the old end" $H uring --dev /dev/vda --seed "$SEED" --offset "$off" --length "$len" \
		--bs 65536 --qd 4 || {
		sed 's/^/nestor-vm: /' /tmp/out
		fail "resize: write+read past the old end failed"
	}
	sed 's/^/nestor-vm: /' /tmp/out
	say "resize: wrote and read back $len bytes at $off, past the old end"
	result PASS
}

case "$TEST" in
direct) run_direct ;;
read) run_read ;;
iopoll) run_iopoll ;;
fs) run_fs ;;
loop) run_loop ;;
clone) run_clone ;;
net) run_net ;;
resize) run_resize ;;
esac
fail "unreachable"
