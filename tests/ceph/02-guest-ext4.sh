#!/usr/bin/env bash
# ceph.02: a real Linux guest's filesystems on Ceph RBD volumes (issue #13),
# checked on the host from the images themselves, with no guest and no
# nestord:
#  a. a throwaway single-node cluster (lib-ceph.sh); `rbd create --size
#     256M rbd/g1`; an empty ext4 filesystem (mkfs.ext4 on the host: 4 KiB
#     blocks, journal, extents, metadata_csum) `rbd import`ed as rbd/g2
#     (256 MiB);
#  b. one nestord (one reactor) serves both, 1 queue each:
#     --volume g1,backend=rbd:rbd/g1,queues=1 (and g2);
#  c. the guest of tests/vm (QEMU TCG, 1 vCPU, vhost-user-blk, 1 queue) runs
#     vm.03's "fs" test on g1 (guest-init.sh): busybox mke2fs in the guest
#     (1 KiB blocks: the on-disk format is ext2, no journal), mounted by
#     the guest's ext4 driver; the tree of fs-tree.sh (~4.6 MiB, 57 files,
#     the sha256 of each printed), sync, umount, drop caches, read-only
#     remount and every sha256 checked, clean poweroff;
#  c2. a second guest runs the same test on g2 without mke2fs
#     (--fs-mkfs 0): it mounts the host's ext4 as ext4, so the writes go
#     through the journal (FLUSH and FUA requests);
#  Each guest's kernel must log no I/O or filesystem error; nestorctl
#  stats must count no errors on either volume (and prints the flushes);
#  d. nestord exits 0 on SIGTERM (it closes the images: librbd's cache is
#     flushed, the exclusive locks released);
#  e. `rbd export` of each image to a file, checked with lib-fs-check.sh's
#     fs_check_image: e2fsck -fn clean, debugfs rdump yields exactly the
#     tree's files, each with the content the host generates itself and the
#     sha256 that guest printed.
# Prints the time of each phase. Every process is bounded (timeout); the
# trap kills QEMU and nestord and stops the cluster.
# Needs ceph-mon, ceph-osd, ceph-common, qemu-system-x86, e2fsprogs
# (mkfs.ext4, e2fsck, debugfs), python3 and the guest of vm.00-build-guest
# ($NESTOR_GUEST_DIR).
# usage: 02-guest-ext4.sh NESTORD NESTORCTL
set -euo pipefail
NESTORD=${1:-} CTL=${2:-}
[ -x "$NESTORD" ] && [ -x "$CTL" ] || { echo "usage: $0 NESTORD NESTORCTL" >&2; exit 2; }
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
# fail (with the tail of $T/log, nestord's log), alive, kill_nestord
. "$CEPH_HERE/../control/lib-control.sh"
PATH=$PATH:/usr/sbin:/sbin
for t in mkfs.ext4 debugfs e2fsck qemu-system-x86_64 python3; do
	command -v $t >/dev/null || { echo "FAIL: $t not found" >&2; exit 1; }
done

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
TIMES=''
cleanup() {
	local rc=$?
	set +eu  # nothing may stop the clean-up half way
	nestor_pre_cleanup  # SIGKILLs a QEMU still running, reaps run-guest.sh
	kill_nestord PID
	ceph_down
	rm -rf "$T"
	echo "ceph.02-guest-ext4: ${TIMES}total $(secs "$T0") s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
step() { echo "-- $(secs "$T0") s: $*"; }
M=$((1 << 20))

step "a. the cluster; rbd/g1 (256 MiB, empty); rbd/g2 (256 MiB, an empty ext4 made on the host)"
t=$(now)
ceph_up "$T/ceph" || fail "no Ceph cluster"
T_UP=$(secs "$t")
TIMES+="cluster up $T_UP s, "
ceph_rbd create --size 256M rbd/g1 || fail "rbd create rbd/g1"
# lazy_itable_init=0: no background inode-table zeroing in the guest.
truncate -s 256M "$T/g2.img"
mkfs.ext4 -q -F -L nestor -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$T/g2.img" ||
	fail "mkfs.ext4"
echo "   g2: $(dumpe2fs -h "$T/g2.img" 2>/dev/null | grep -i '^Filesystem features' | tr -s ' ')"
ceph_rbd import --no-progress "$T/g2.img" rbd/g2 >/dev/null 2>"$T/err" || fail "rbd import: $(cat "$T/err")"
rm -f "$T/g2.img"

step "b. nestord serves rbd/g1 and rbd/g2 (1 queue each, 1 reactor)"
mkdir -p "$T/s"
timeout -k 5 240 "$NESTORD" --socket-dir "$T/s" --ceph-conf "$CEPH_CONF_FILE" --ceph-id admin \
	--reactors 1 --volume g1,backend=rbd:rbd/g1,queues=1 --volume g2,backend=rbd:rbd/g2,queues=1 \
	>"$T/log" 2>&1 &
PID=$!
for v in g1 g2; do
	for _ in $(seq 600); do
		[ -S "$T/s/$v.sock" ] && continue 2
		if ! alive "$PID"; then
			rc=0
			wait "$PID" || rc=$?
			PID=
			fail "nestord exited $rc at start-up"
		fi
		sleep 0.05
	done
	fail "nestord did not create $T/s/$v.sock in 30 s"
done

# guest NAME VOLUME RUN-GUEST-ARGS...: the "fs" test on VOLUME; its kernel
# logs no I/O or filesystem error.
guest() {
	local name=$1 vol=$2 t
	shift 2
	t=$(now)
	guest_start "$name" --socket "$T/s/$vol.sock" --test fs --queues 1 --timeout 150 "$@"
	guest_wait "$name" || fail "guest $name failed on $vol (console above; nestord's log below)"
	echo "   guest $name on $vol: $(secs "$t") s"
	TIMES+="guest $name $(secs "$t") s, "
	# The guest's console (with "quiet", the kernel's errors and warnings).
	if tr -d '\r' <"$T/$name.console" |
		grep -aiE 'I/O error|blk_update_request|virtio_blk.*(error|fail)|EXT[24]-fs (error|warning)|JBD2.*(error|abort)'; then
		fail "guest $name: its kernel logged I/O or filesystem errors (above)"
	fi
	echo "   guest $name: no I/O or filesystem error in its kernel log"
	alive "$PID" || fail "nestord is gone after guest $name"
}

step "c. guest a on g1: mke2fs, the file tree, sync, remount, check, poweroff"
guest a g1

step "c2. guest b on g2: the host's ext4 (journal), the file tree, sync, remount, check, poweroff"
guest b g2 --fs-mkfs 0
tr -d '\r' <"$T/b.console" | grep -aq '^nestor-vm: fs: mounted /dev/vda as ext4$' || fail "guest b did not mount g2 as ext4"

# Per-volume counters: no error, and what the guests sent.
timeout 30 "$CTL" -s "$T/s/control.ctl" --json stats >"$T/stats" 2>&1 || fail "nestorctl stats: $(cat "$T/stats")"
python3 - "$T/stats" <<'PY' || fail "nestorctl stats: $(cat "$T/stats")"
import json, sys
d = json.load(open(sys.argv[1]))
vols = {v["name"]: v for v in d["volumes"]}
bad = 0
for n in ("g1", "g2"):
    v = vols[n]
    print(f"   {n}: reads {v['read_ops']} ({v['read_bytes'] >> 10} KiB), writes {v['write_ops']} "
          f"({v['write_bytes'] >> 10} KiB), flushes {v['flush_ops']}, discards {v['discard_ops']}, "
          f"write-zeroes {v['write_zeroes_ops']}, errors {v['errors']}")
    if v["errors"] != 0 or v["write_ops"] == 0:
        bad = 1
sys.exit(bad)
PY

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

step "e. rbd export rbd/g1 and rbd/g2; each filesystem checked from its exported image"
for v in g1:a g2:b; do
	img=${v%:*} name=${v#*:}
	t=$(now)
	ceph_rbd export --no-progress "rbd/$img" "$T/$img.raw" >/dev/null 2>"$T/err" || fail "rbd export: $(cat "$T/err")"
	TIMES+="export $img $(secs "$t") s, "
	[ "$(stat -c %s "$T/$img.raw")" -eq $((256 * M)) ] ||
		fail "rbd export rbd/$img: $(stat -c %s "$T/$img.raw") bytes, want 256 MiB"
	echo "   rbd/$img: exported 256 MiB ($(du -k "$T/$img.raw" | cut -f1) KiB allocated) in $(secs "$t") s"
	t=$(now)
	fs_check_image "$T/$img.raw" "$T/$name.console" ||
		fail "the exported rbd/$img does not hold guest $name's filesystem"
	TIMES+="check $img $(secs "$t") s, "
	rm -f "$T/$img.raw"
done

step "f. done"
echo "times: ${TIMES}total $(secs "$T0") s"
echo "PASS: ceph.02-guest-ext4"
