#!/usr/bin/env bash
# ceph.02: a real Linux guest's filesystem on a Ceph RBD volume (issue #13),
# checked on the host from the image itself, with no guest and no nestord:
#  a. a throwaway single-node cluster (lib-ceph.sh); `rbd create --size
#     256M rbd/g1`;
#  b. nestord (one reactor) serves it: --volume g1,backend=rbd:rbd/g1,queues=1;
#  c. the guest of tests/vm (QEMU TCG, 1 vCPU, vhost-user-blk, 1 queue) runs
#     vm.03's "fs" test on it (guest-init.sh): busybox mke2fs (1 KiB blocks;
#     the on-disk format is ext2, mounted by the guest's ext4 driver), the
#     tree of fs-tree.sh (~4.5 MiB, 57 files, printed sha256 each), sync,
#     umount, drop caches, read-only remount and every sha256 checked,
#     then a clean poweroff. Its kernel must log no I/O error;
#  d. nestord exits 0 on SIGTERM (it closes the image: librbd's cache is
#     flushed, the exclusive lock released);
#  e. `rbd export rbd/g1` to a file; lib-fs-check.sh's fs_check_image on it:
#     e2fsck -fn clean, debugfs rdump yields exactly the tree's files, each
#     with the content the host generates itself and the sha256 the guest
#     printed.
# Prints the time of each phase. Every process is bounded (timeout); the
# trap kills QEMU and nestord and stops the cluster.
# Needs ceph-mon, ceph-osd, ceph-common, qemu-system-x86, e2fsprogs and the
# guest of vm.00-build-guest ($NESTOR_GUEST_DIR).
# usage: 02-guest-ext4.sh NESTORD
set -euo pipefail
NESTORD=${1:-}
[ -x "$NESTORD" ] || { echo "usage: $0 NESTORD" >&2; exit 2; }
CEPH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The VM helpers (lib-guests.sh runs $HERE/run-guest.sh).
HERE=$(cd "$CEPH_HERE/../vm" && pwd)
# shellcheck disable=SC2034  # GUEST and TMP: used by lib-fs-check.sh and lib-guests.sh
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
T=$(mktemp -d)
# shellcheck disable=SC2034
TMP=$T  # lib-guests.sh and lib-fs-check.sh work in $TMP
T0=$(date +%s.%N)
PID=''
. "$CEPH_HERE/lib-ceph.sh"
. "$HERE/fs-tree.sh"
. "$HERE/lib-fs-check.sh"
. "$HERE/lib-guests.sh"  # guest_start, guest_wait, nestor_pre_cleanup
PATH=$PATH:/usr/sbin:/sbin
for t in debugfs e2fsck qemu-system-x86_64; do
	command -v $t >/dev/null || { echo "FAIL: $t not found" >&2; exit 1; }
done

alive() { [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null || echo Z)" != Z ]; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
# PID is timeout's: nestord itself first (timeout reaps it and exits), then
# what is left (as ceph.01 does).
kill_nestord() {
	local c
	c=$(cat "/proc/$PID/task/$PID/children" 2>/dev/null || true)
	# shellcheck disable=SC2086  # one pid or none
	[ -z "$c" ] || kill -KILL $c 2>/dev/null || true
	for _ in $(seq 20); do
		alive "$PID" || break
		sleep 0.1
	done
	kill -KILL -- "-$PID" 2>/dev/null || kill -KILL "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=
}
TIMES=''
cleanup() {
	local rc=$?
	set +eu  # nothing may stop the clean-up half way
	nestor_pre_cleanup  # SIGKILLs a QEMU still running, reaps run-guest.sh
	[ -z "$PID" ] || kill_nestord
	ceph_down
	rm -rf "$T"
	echo "ceph.02-guest-ext4: ${TIMES}total $(secs "$T0") s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
nestord_log() {
	echo "---- nestord log (tail) ----" >&2
	tail -n 40 "$T/nestord.log" >&2 || true
}
fail() {
	echo "FAIL: $*" >&2
	nestord_log
	exit 1
}
step() { echo "-- $(secs "$T0") s: $*"; }
M=$((1 << 20))

step "a. the cluster, and rbd/g1 (256 MiB)"
t=$(now)
ceph_up "$T/ceph" || fail "no Ceph cluster"
ceph_rbd create --size 256M rbd/g1 || fail "rbd create rbd/g1"
T_UP=$(secs "$t")
TIMES+="cluster up $T_UP s, "

step "b. nestord serves rbd/g1 as g1 (1 queue, 1 reactor)"
mkdir -p "$T/s"
timeout -k 5 240 "$NESTORD" --socket-dir "$T/s" --ceph-conf "$CEPH_CONF_FILE" --ceph-id admin \
	--reactors 1 --volume g1,backend=rbd:rbd/g1,queues=1 >"$T/nestord.log" 2>&1 &
PID=$!
for _ in $(seq 600); do
	[ -S "$T/s/g1.sock" ] && break
	if ! alive "$PID"; then
		rc=0
		wait "$PID" || rc=$?
		PID=
		fail "nestord exited $rc at start-up"
	fi
	sleep 0.05
done
[ -S "$T/s/g1.sock" ] || fail "nestord did not create $T/s/g1.sock in 30 s"

step "c. the guest: mke2fs, the file tree, sync, remount, check, poweroff"
t=$(now)
guest_start g --socket "$T/s/g1.sock" --test fs --queues 1 --timeout 150
guest_wait g || fail "the guest failed (console above; nestord's log below)"
T_GUEST=$(secs "$t")
TIMES+="guest $T_GUEST s, "
# The guest's kernel (console, loglevel 4 with "quiet": errors show).
if tr -d '\r' <"$T/g.console" | grep -aiE 'I/O error|blk_update_request|virtio_blk.*(error|fail)|EXT[24]-fs (error|warning)'; then
	fail "the guest kernel logged I/O or filesystem errors (above)"
fi
echo "   guest kernel log: no I/O or filesystem error"
alive "$PID" || fail "nestord is gone after the guest's run"

step "d. nestord exits 0 on SIGTERM"
kill -TERM "$PID"
for _ in $(seq 150); do
	alive "$PID" || break
	sleep 0.1
done
if alive "$PID"; then fail "nestord still running 15 s after SIGTERM"; fi
rc=0
wait "$PID" || rc=$?
PID=
[ "$rc" -eq 0 ] || fail "nestord exited $rc after SIGTERM"
if grep -aiE '\b(error|fail)' "$T/nestord.log"; then
	fail "nestord logged errors (above)"
fi

step "e. rbd export rbd/g1, then the filesystem checked from the exported image"
t=$(now)
ceph_rbd export --no-progress rbd/g1 "$T/g1.raw" >/dev/null 2>"$T/err" || fail "rbd export: $(cat "$T/err")"
T_EXPORT=$(secs "$t")
TIMES+="export $T_EXPORT s, "
[ "$(stat -c %s "$T/g1.raw")" -eq $((256 * M)) ] || fail "rbd export: $(stat -c %s "$T/g1.raw") bytes, want 256 MiB"
echo "   exported $(($(stat -c %s "$T/g1.raw") / M)) MiB ($(du -k "$T/g1.raw" | cut -f1) KiB allocated) in $T_EXPORT s"
t=$(now)
fs_check_image "$T/g1.raw" "$T/g.console" || fail "the exported image does not hold the guest's filesystem"
T_CHECK=$(secs "$t")
TIMES+="host check $T_CHECK s, "

step "f. done"
echo "times: cluster up $T_UP s, guest $T_GUEST s, export $T_EXPORT s, host check $T_CHECK s, total $(secs "$T0") s"
echo "PASS: ceph.02-guest-ext4"
