#!/usr/bin/env bash
# Boots the nestor test guest (QEMU TCG, Debian 12 kernel, busybox initramfs)
# against a vhost-user-blk socket and runs one guest workload (see
# guest-init.sh). Exits 0 only if QEMU exits cleanly and the console shows
# "NESTOR-VM-RESULT: PASS"; on failure prints the tail of the console log.
# With --verify-file, then also asserts that the host file (the backend's
# backing file) holds exactly the pattern bytes in [offset, offset+length).
#
# usage: run-guest.sh --socket SOCK|--drive IMG --test direct|iopoll|fs|loop|read|resize
#          --queues N
#          [--smp N] [--timeout SEC] [--guest-dir DIR] [--poll-queues N]
#          [--offset BYTES] [--length BYTES] [--seed N] [--verify-file PATH]
#          [--log FILE] [--mem MiB] [--pidfile FILE] [--reconnect SEC]
#          [--hold SEC] [--loop-secs SEC] [--loop-qd N] [--loop-iopoll 0|1]
#          [--loop-nosync 0|1] [--loop-check 0|1] [--loop-discard 0|1]
#          [--fs-mkfs 0|1]
# Defaults: smp 1, timeout 90, offset 1 MiB, length 8 MiB, poll-queues 1 for
# iopoll (0 for direct), guest dir $NESTOR_GUEST_DIR or
# ~/.cache/nestor/guest (built/refreshed with build-guest.sh).
# --drive IMG replaces the vhost-user device by QEMU's own virtio-blk-pci on a
# raw file (a known-good device, used to check the harness itself).
# The guest gives each I/O step 2/3 of the timeout before reporting a hang.
# --pidfile: QEMU writes its PID there (so a test can kill the VM).
# --reconnect SEC: the vhost-user chardev reconnects to a restarted backend.
# --hold SEC: the guest waits SEC s after its result line before powering off.
# --loop-secs SEC, --loop-qd N: duration and writes in flight of the "loop"
# test's write loop (defaults 10 s, 1). --loop-iopoll 1: the loop writes
# through an IORING_SETUP_IOPOLL ring (polled completions); poll-queues
# then defaults to 1. --loop-nosync 1: no fdatasync after each generation
# (the writes are never flushed). --loop-check 1: each generation is read
# back and checked before the next one overwrites it. --loop-discard 1: the
# range is discarded before each generation.
# --fs-mkfs 0: the "fs" test makes no filesystem; the disk already holds an
# empty ext4 one (made on the host), mounted as ext4 (default 1: the
# guest's busybox mke2fs, mounted as ext2).
# For "loop", --verify-file checks the last generation written (its seed,
# SEED + G, is taken from the guest's "last-seed" line).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOCK= DRIVE= TEST= QUEUES= SMP=1 TMO=90 POLLQ= VERIFY= LOG= MEM=256
PIDFILE= RECONNECT= HOLD=0 LOOPSECS=10 LOOPQD=1 LOOPIOPOLL=0 LOOPNOSYNC=0 LOOPCHECK=0 LOOPDISCARD=0 FSMKFS=1
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
OFFSET=$((1 << 20)) LENGTH=$((8 << 20)) SEED=0x6e657374

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2; }
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || usage
	case "$1" in
	--socket) SOCK=$2 ;;
	--drive) DRIVE=$2 ;;
	--test) TEST=$2 ;;
	--queues) QUEUES=$2 ;;
	--smp) SMP=$2 ;;
	--timeout) TMO=$2 ;;
	--guest-dir) GUEST=$2 ;;
	--poll-queues) POLLQ=$2 ;;
	--offset) OFFSET=$2 ;;
	--length) LENGTH=$2 ;;
	--seed) SEED=$2 ;;
	--verify-file) VERIFY=$2 ;;
	--log) LOG=$2 ;;
	--mem) MEM=$2 ;;
	--pidfile) PIDFILE=$2 ;;
	--reconnect) RECONNECT=$2 ;;
	--hold) HOLD=$2 ;;
	--loop-secs) LOOPSECS=$2 ;;
	--loop-qd) LOOPQD=$2 ;;
	--loop-iopoll) LOOPIOPOLL=$2 ;;
	--loop-nosync) LOOPNOSYNC=$2 ;;
	--loop-check) LOOPCHECK=$2 ;;
	--loop-discard) LOOPDISCARD=$2 ;;
	--fs-mkfs) FSMKFS=$2 ;;
	*) usage ;;
	esac
	shift 2
done
[ -n "$SOCK$DRIVE" ] && [ -n "$TEST" ] && [ -n "$QUEUES" ] || usage
case "$TEST" in
direct | fs | read | resize) POLLQ=${POLLQ:-0} ;;
loop) [ "$LOOPIOPOLL" = 1 ] && POLLQ=${POLLQ:-1} || POLLQ=${POLLQ:-0} ;;
iopoll) POLLQ=${POLLQ:-1} ;;
*) echo "run-guest: unknown test '$TEST'" >&2; exit 2 ;;
esac
if [ -n "$SOCK" ]; then
	[ -S "$SOCK" ] || { echo "run-guest: $SOCK is not a socket" >&2; exit 2; }
	DEV=(-chardev "socket,id=char0,path=$SOCK${RECONNECT:+,reconnect=$RECONNECT}"
		-device "vhost-user-blk-pci,chardev=char0,num-queues=$QUEUES")
	WHAT="socket=$SOCK"
else
	[ -f "$DRIVE" ] || { echo "run-guest: $DRIVE is not a file" >&2; exit 2; }
	DEV=(-drive "file=$DRIVE,if=none,id=d0,format=raw,cache=none"
		-device "virtio-blk-pci,drive=d0,num-queues=$QUEUES")
	WHAT="drive=$DRIVE (QEMU virtio-blk)"
fi

"$HERE/build-guest.sh" "$GUEST"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG=${LOG:-$WORK/console.log}

# The guest's virtio_blk sizes its queues by the number of *possible* CPUs
# (and keeps one interrupt-driven queue), so poll queues need >= 2 possible
# CPUs: with a single vCPU, declare a second, hot-pluggable one.
SMPARG=$SMP
if [ "$POLLQ" -gt 0 ] && [ "$SMP" -lt 2 ]; then
	SMPARG="$SMP,maxcpus=2"
fi

APPEND="console=ttyS0 panic=-1 quiet nestor.test=$TEST nestor.poll_queues=$POLLQ"
APPEND+=" nestor.offset=$OFFSET nestor.length=$LENGTH nestor.seed=$SEED"
APPEND+=" nestor.io_timeout=$((TMO * 2 / 3))"
[ "$HOLD" = 0 ] || APPEND+=" nestor.hold=$HOLD"
[ "$TEST" != loop ] || APPEND+=" nestor.loop_secs=$LOOPSECS nestor.loop_qd=$LOOPQD nestor.loop_iopoll=$LOOPIOPOLL"
[ "$TEST" != loop ] || [ "$LOOPNOSYNC$LOOPCHECK$LOOPDISCARD" = 000 ] ||
	APPEND+=" nestor.loop_nosync=$LOOPNOSYNC nestor.loop_check=$LOOPCHECK nestor.loop_discard=$LOOPDISCARD"
[ "$TEST" != fs ] || [ "$FSMKFS" = 1 ] || APPEND+=" nestor.fs_mkfs=$FSMKFS"
PIDARG=()
[ -z "$PIDFILE" ] || PIDARG=(-pidfile "$PIDFILE")

echo "run-guest: test=$TEST queues=$QUEUES smp=$SMPARG poll_queues=$POLLQ $WHAT timeout=${TMO}s"
t0=$(date +%s.%N)
rc=0
timeout --kill-after=5 "$TMO" qemu-system-x86_64 \
	-accel tcg -nodefaults -no-user-config -display none -monitor none \
	-smp "$SMPARG" -m "${MEM}M" \
	-object "memory-backend-memfd,id=mem,size=${MEM}M,share=on" -numa node,memdev=mem \
	"${DEV[@]}" "${PIDARG[@]}" \
	-serial stdio -no-reboot \
	-kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.cpio.gz" \
	-append "$APPEND" </dev/null >"$LOG" 2>&1 || rc=$?
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

tr -d '\r' <"$LOG" | grep -a '^nestor-vm:' || true
if [ $rc -eq 0 ] && tr -d '\r' <"$LOG" | grep -aq '^NESTOR-VM-RESULT: PASS$'; then
	echo "run-guest: PASS ($TEST, ${secs}s)"
else
	why="qemu exit status $rc"
	[ $rc -eq 124 ] && why="timed out after ${TMO}s"
	res=$(tr -d '\r' <"$LOG" | grep -a '^NESTOR-VM-RESULT:' | tail -n 1 || true)
	echo "run-guest: FAIL ($TEST, ${secs}s): ${res:-no result line}; $why" >&2
	echo "---- last 40 lines of $LOG ----" >&2
	tr -d '\r' <"$LOG" | tail -n 40 >&2
	echo "----" >&2
	exit 1
fi

if [ -n "$VERIFY" ] && [ "$TEST" = loop ]; then
	SEED=$(tr -d '\r' <"$LOG" | grep -aoP 'iopoll_io: loop: generations [0-9]+ last-seed \K0x[0-9a-f]+' | tail -n 1)
	[ -n "$SEED" ] || { echo "run-guest: FAIL: no last-seed line from the loop test" >&2; exit 1; }
fi
if [ -n "$VERIFY" ]; then
	"$GUEST/iopoll_io" verify --seed "$SEED" --offset "$OFFSET" --length "$LENGTH" "$VERIFY" || {
		echo "run-guest: FAIL: $VERIFY does not hold the guest's pattern" >&2
		exit 1
	}
fi
