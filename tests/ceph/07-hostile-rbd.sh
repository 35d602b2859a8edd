#!/usr/bin/env bash
# ceph.07: hostile frontends against an RBD volume on a real cluster
# (issue #13; docs/ceph.md "Known limits"). librbd touches guest memory
# itself; a frontend that truncates its memfd under a request makes that
# access fault. The cases are hostile.01's gtest suite (tests/hostile),
# `Hostile.Rbd*`, which are skipped there (no cluster) and run here:
#  a. the cluster; rbd/h1 (64 MiB) imported from a file with 4 MiB of
#     random data at 32 MiB (in the cluster, never in nestord's librbd
#     cache, so a read of it waits for the OSD);
#  b. hostile_test --gtest_filter='Hostile.Rbd*' with NESTOR_HOSTILE_RBD=
#     rbd/h1 (its nestord serves it as `rbdv` beside its memory, file and
#     pool volumes), NESTOR_HOSTILE_CEPH_CONF and NESTOR_HOSTILE_OSD_PID:
#     Rbd1 pauses the OSD (SIGSTOP) under a 64 KiB read of that data,
#     truncates the frontend's memfd, resumes the OSD: librbd's thread
#     copies into the 16 lost pages and gets a zero page for each
#     (stats_get guest_faults_patched), the read completes, a memory
#     volume on the same reactor was served while the OSD was paused.
#     Rbd2 submits a 64 KiB write whose buffer is already gone: librbd's
#     copy (inside rbd_aio_writev, on the reactor) gets 16 zero pages, no
#     reactor unwinds, the write goes on (the image reads zeros there),
#     another client of the volume is not disturbed. Rbd3 does a write
#     whose second segment is gone 12 times: nestord's heap must not keep
#     the copies of the first (4 MiB each). Each time: nestord alive, the
#     data written before read back by a new client, `rbdv` ends with no
#     session and no request in flight, no fd leaked, the other volumes
#     served; the suite's nestord exits 0 on SIGTERM. All 3 cases must
#     have run (not skipped);
#  c. the OSD is running again (not left stopped); the image's lock was
#     released (`rbd lock ls` empty); the imported data is unchanged
#     (`rbd export`).
# Every process is bounded; the trap resumes and stops the cluster.
# Needs ceph-mon, ceph-osd, ceph-common (scripts/install-deps.sh).
# usage: 07-hostile-rbd.sh NESTORD HOSTILE_TEST
set -euo pipefail
NESTORD=$1 HOSTILE=$2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d)
T0=$(date +%s.%N)
OSD=''
. "$HERE/lib-ceph.sh"
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
cleanup() {
	local rc=$?
	set +eu  # nothing may stop the clean-up half way
	[ -z "$OSD" ] || kill -CONT "$OSD" 2>/dev/null  # never leave it paused
	ceph_down
	rm -rf "$T"
	echo "ceph.07-hostile-rbd: total $(elapsed) s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM INT
step() { echo "-- $(elapsed) s: $*"; }
M=$((1 << 20))

step "a. the cluster; rbd/h1 imported, 4 MiB of data at 32 MiB"
ceph_up "$T/ceph" || fail "no Ceph cluster"
truncate -s $((64 * M)) "$T/h1.raw"
dd if=/dev/urandom of="$T/h1.raw" bs=$M seek=32 count=4 conv=notrunc status=none
ceph_rbd import --no-progress "$T/h1.raw" rbd/h1 >"$T/err" 2>&1 || fail "rbd import: $(cat "$T/err")"
OSD=$(ceph_osd_pid) || fail "no osd pid"

step "b. Hostile.Rbd* against rbd/h1 (osd pid $OSD)"
rc=0
NESTORD=$NESTORD NESTOR_HOSTILE_RBD=rbd/h1 NESTOR_HOSTILE_CEPH_CONF=$CEPH_CONF_FILE NESTOR_HOSTILE_OSD_PID=$OSD \
	timeout -k 5 150 "$HOSTILE" --gtest_filter='Hostile.Rbd*' >"$T/gtest" 2>&1 || rc=$?
sed 's/^/   /' "$T/gtest"
[ "$rc" -eq 0 ] || fail "hostile_test Hostile.Rbd* exited $rc"
grep -q '^\[  PASSED  \] 3 tests' "$T/gtest" || fail "not all 3 Rbd cases passed"
if grep -q '^\[  SKIPPED \]' "$T/gtest"; then fail "an Rbd case was skipped"; fi

step "c. the OSD runs, the lock is released, the imported data is intact"
st=$(cut -d' ' -f3 "/proc/$OSD/stat" 2>/dev/null) || fail "the osd (pid $OSD) is gone"
[ "$st" != T ] || fail "the osd was left stopped"
ceph_rbd lock ls rbd/h1 >"$T/locks" 2>&1 || fail "rbd lock ls: $(cat "$T/locks")"
[ ! -s "$T/locks" ] || fail "rbd/h1 is still locked after nestord exited: $(cat "$T/locks")"
ceph_rbd export --no-progress rbd/h1 "$T/h1.out" >/dev/null 2>"$T/err" || fail "rbd export: $(cat "$T/err")"
cmp <(dd if="$T/h1.raw" bs=$M skip=32 count=4 status=none) <(dd if="$T/h1.out" bs=$M skip=32 count=4 status=none) ||
	fail "the data at 32 MiB changed (the hostile read must not write)"

step "d. done"
echo "PASS: ceph.07-hostile-rbd"
