#!/usr/bin/env bash
# ceph.06: a function VM on a clone of a golden RBD snapshot (issue #13),
# vm.13-clones on a Ceph pool, with one VM:
#  a. a throwaway single-node cluster (lib-ceph.sh); nestord --pool rbd:rbd
#     (one reactor);
#  b. the golden image: the host makes an ext4 filesystem holding the files
#     of fs-tree.sh (mkfs.ext4 -d, 64 MiB), `nestorctl volume create gold`,
#     writes the image onto it through an export (nestor-vm-dump --load),
#     reads it back (equal), unexports it, `nestorctl snapshot create gold
#     gold-snap`: `rbd snap ls` shows it protected and `rbd export
#     rbd/gold@gold-snap` is the golden image (sha256);
#  c. nestor-vm --clone-of gold-snap (no --keep, the default clone name;
#     TCG, 1 vCPU): it clones and exports the snapshot over the control
#     socket and boots the test guest on the clone, whose "clone" workload
#     (guest-init.sh) mounts it, requires exactly the golden files intact,
#     writes its own files, syncs, unmounts, remounts read-only and checks
#     everything, then holds (nestor.hold) with the disk attached;
#  d. meanwhile on the host: `rbd info` gives the clone the parent
#     rbd/gold@gold-snap, `volume list` the parent gold-snap; the clone read
#     with `rbd export` holds the golden files and the guest's (e2fsck -fn
#     clean, every file's content); the snapshot and gold still read the
#     golden image;
#  e. SIGTERM to nestor-vm: it forwards it to QEMU, then deletes the export
#     and the clone: gone from `rbd ls` and `volume list`, gold-snap has no
#     children (`rbd children`);
#  f. nestord exits 0 on SIGTERM; gold and gold-snap remain in Ceph.
# Prints the time of each phase. Every process is bounded (timeout); the
# trap stops nestor-vm (and its QEMU), nestord and the cluster.
# Needs ceph-mon, ceph-osd, ceph-common, qemu-system-x86, e2fsprogs
# (mkfs.ext4 -d, e2fsck, debugfs), python3 and the guest of
# vm.00-build-guest ($NESTOR_GUEST_DIR).
# usage: 06-golden-clone.sh NESTORD NESTOR_VM NESTORCTL NESTOR_VM_DUMP
set -euo pipefail
NESTORD=${1:-} VM=${2:-} CTL=${3:-} DUMP=${4:-}
for b in "$NESTORD" "$VM" "$CTL" "$DUMP"; do
	[ -x "$b" ] || { echo "usage: $0 NESTORD NESTOR_VM NESTORCTL NESTOR_VM_DUMP" >&2; exit 2; }
done
CEPH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_HERE=$(cd "$CEPH_HERE/../vm" && pwd)
# shellcheck disable=SC2034  # GUEST and TMP: used by lib-fs-check.sh
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
T=$(mktemp -d)
# shellcheck disable=SC2034
TMP=$T/fs-check  # lib-fs-check.sh works in $TMP (its $TMP/out is a directory; $T/out is expect_rc's)
mkdir "$TMP"
T0=$(date +%s.%N)
PID='' VMPID=''
. "$CEPH_HERE/lib-ceph.sh"
# shellcheck source=../vm/fs-tree.sh
. "$VM_HERE/fs-tree.sh"       # fs_tree, clone_tree
# shellcheck source=../vm/lib-fs-check.sh
. "$VM_HERE/lib-fs-check.sh"  # fs_check_files
. "$CEPH_HERE/../control/lib-control.sh"  # fail, stop, alive, kill_nestord, expect_rc
. "$CEPH_HERE/lib-rbd-nestord.sh"
PATH=$PATH:/usr/sbin:/sbin
for t in mkfs.ext4 debugfs e2fsck qemu-system-x86_64 python3; do
	command -v $t >/dev/null || { echo "FAIL: $t not found" >&2; exit 1; }
done
for f in vmlinuz initrd.cpio.gz iopoll_io; do
	[ -e "$GUEST/$f" ] || { echo "FAIL: no $GUEST/$f (ctest -R vm.00 builds the guest)" >&2; exit 1; }
done

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
TIMES=''
# stop_vm: SIGTERM to nestor-vm (timeout passes it on; nestor-vm forwards
# it to QEMU and cleans up its clone), SIGKILL to its process group 15 s
# later; reaps it.
stop_vm() {
	[ -n "$VMPID" ] || return 0
	kill -TERM "$VMPID" 2>/dev/null || true
	for _ in $(seq 150); do
		alive "$VMPID" || break
		sleep 0.1
	done
	kill -KILL -- "-$VMPID" 2>/dev/null || true
	VMRC=0
	wait "$VMPID" || VMRC=$?
	VMPID=
}
cleanup() {
	local rc=$?
	set +eu  # nothing may stop the clean-up half way
	stop_vm
	[ -z "$PID" ] || kill_nestord PID
	ceph_down
	rm -rf "$T"
	echo "ceph.06-golden-clone: ${TIMES}total $(secs "$T0") s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
step() { echo "-- $(secs "$T0") s: $*"; }
show() {
	local f
	for f in "$@"; do
		echo "---- $(basename "$f") (last 30 lines) ----" >&2
		tr -d '\r' <"$f" | tail -n 30 >&2 || true
	done
}
export NESTOR_CONTROL_SOCKET=$T/ctl
ctl() { timeout 60 "$CTL" "$@"; }
# vol NAME FIELD: FIELD of NAME's volume_list entry (a list: sorted and
# space-separated; "absent" if there is no such image).
vol() {
	ctl --json volume list | python3 -c '
import json, sys
name, field = sys.argv[1], sys.argv[2]
v = [v for v in json.load(sys.stdin) if v["name"] == name]
if not v:
    print("absent")
else:
    x = v[0].get(field)
    print(" ".join(sorted(x)) if isinstance(x, list) else json.dumps(x) if isinstance(x, (bool, type(None))) else x)
' "$1" "$2"
}
# rbd_sha SPEC: sha256 of `rbd export SPEC` (an image or image@snapshot).
rbd_sha() {
	rm -f "$T/export.raw"
	ceph_rbd export --no-progress "rbd/$1" "$T/export.raw" >/dev/null 2>"$T/err" ||
		fail "rbd export rbd/$1: $(cat "$T/err")"
	sha256sum <"$T/export.raw" | cut -d' ' -f1
	rm -f "$T/export.raw"
}
SEED=1000

step "a. the cluster; nestord --pool rbd:rbd"
t=$(now)
ceph_up "$T/ceph" || fail "no Ceph cluster"
TIMES+="cluster up $(secs "$t") s, "
RBD_NESTORD_MAX=400 rbd_nestord_pool_start rbd

step "b. the golden ext4 image on gold (written through an export), snapshot gold-snap"
t=$(now)
mkdir "$T/tree"
fs_tree >"$T/gold-tree.txt"
while read -r path size seed; do
	mkdir -p "$T/tree/$(dirname "$path")"
	"$GUEST/iopoll_io" gen --seed "$seed" --offset 0 --bytes "$size" >"$T/tree/$path"
done <"$T/gold-tree.txt"
# lazy_itable_init=0: no background inode-table zeroing in the guest.
mkfs.ext4 -q -F -L gold -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard \
	-d "$T/tree" "$T/gold.img" 64M || fail "mkfs.ext4 -d"
rm -rf "$T/tree"
GOLD_SHA=$(sha256sum <"$T/gold.img" | cut -d' ' -f1)
expect_rc 0 "$CTL" volume create gold --size 64M
expect_rc 0 "$CTL" export create gold
timeout 60 "$DUMP" --load "$T/s/gold.sock" "$T/gold.img" >"$T/out" 2>&1 || fail "nestor-vm-dump --load: $(cat "$T/out")"
timeout 60 "$DUMP" "$T/s/gold.sock" "$T/gold.back" >"$T/out" 2>&1 || fail "nestor-vm-dump: $(cat "$T/out")"
cmp "$T/gold.img" "$T/gold.back" || fail "gold reads back differently from the image"
rm -f "$T/gold.back"
expect_rc 0 "$CTL" export delete gold
expect_rc 0 "$CTL" snapshot create gold gold-snap
[ "$(vol gold-snap snapshot)" = true ] || fail "gold-snap is not a snapshot"
[ "$(vol gold-snap parent)" = gold ] || fail "gold-snap's parent is $(vol gold-snap parent), want gold"
ceph_rbd snap ls rbd/gold --format json >"$T/snaps" 2>&1 || fail "rbd snap ls: $(cat "$T/snaps")"
python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert [(x["name"], str(x["protected"]).lower()) for x in s] == [("gold-snap", "true")], s' "$T/snaps" ||
	fail "rbd snap ls rbd/gold: $(cat "$T/snaps")"
sha=$(rbd_sha gold@gold-snap)
[ "$sha" = "$GOLD_SHA" ] || fail "rbd export rbd/gold@gold-snap: sha256 $sha, the golden image is $GOLD_SHA"
TIMES+="golden image $(secs "$t") s, "
echo "   golden: ext4 with $(wc -l <"$T/gold-tree.txt") files on gold, snapshot gold-snap = the image (sha256 ${GOLD_SHA:0:16}...)"

step "c. nestor-vm --clone-of gold-snap (no --keep): the guest checks the golden files, writes its own"
t=$(now)
timeout -k 10 240 "$VM" --clone-of gold-snap --control "$T/ctl" --name fn-a \
	--allow-shared-cpus --vcpus 1 --poll-queues 0 --no-idle-poll --memory 192M \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.cpio.gz" \
	--append "panic=-1 quiet nestor.test=clone nestor.tag=a nestor.seed=$SEED nestor.io_timeout=150 nestor.hold=120" \
	--no-reboot --serial-log "$T/a.console" --timeout 200 \
	</dev/null >"$T/a.out" 2>"$T/a.err" &
VMPID=$!
passed() { [ -f "$T/a.console" ] && tr -d '\r' <"$T/a.console" | grep -aq '^NESTOR-VM-RESULT: PASS$'; }
for _ in $(seq 1800); do
	passed && break
	alive "$VMPID" || break
	[ -f "$T/a.console" ] && tr -d '\r' <"$T/a.console" | grep -aq '^NESTOR-VM-RESULT: FAIL' && break
	sleep 0.1
done
passed || { show "$T/a.err" "$T/a.console"; fail "the guest did not pass"; }
TIMES+="VM $(secs "$t") s, "
echo "   guest passed in $(secs "$t") s (holding, its disk attached)"
tr -d '\r' <"$T/a.console" | grep -a '^nestor-vm: clone: [a-z]' | sed 's/^/   [guest] /'
CLONE=$(grep -oP "^nestor-vm: clone '\K[^']+(?=' of snapshot 'gold-snap' created)" "$T/a.err" || true)
[[ "$CLONE" =~ ^gold-snap-fn-a-[0-9]+$ ]] || { show "$T/a.err"; fail "default clone name '$CLONE'"; }

step "d. on the host: the clone $CLONE holds the golden files and the guest's; gold-snap unchanged"
t=$(now)
ceph_rbd ls rbd >"$T/ls" || fail "rbd ls"
grep -qx "$CLONE" "$T/ls" || fail "rbd ls lacks the clone $CLONE: $(cat "$T/ls")"
ceph_rbd info "rbd/$CLONE" --format json >"$T/info" 2>&1 || fail "rbd info: $(cat "$T/info")"
python3 -c '
import json, sys
p = json.load(open(sys.argv[1])).get("parent") or {}
assert (p.get("pool"), p.get("image"), p.get("snapshot")) == ("rbd", "gold", "gold-snap"), p' "$T/info" ||
	fail "rbd info rbd/$CLONE: the parent is not rbd/gold@gold-snap: $(cat "$T/info")"
[ "$(vol "$CLONE" parent)" = gold-snap ] ||
	fail "volume list: $CLONE's parent is $(vol "$CLONE" parent)"
[ "$(vol "$CLONE" exported)" = true ] || fail "volume list: $CLONE is not exported while its VM runs"
[ "$(vol gold-snap children)" = "$CLONE" ] || fail "volume list: gold-snap's children are '$(vol gold-snap children)'"
ceph_rbd export --no-progress "rbd/$CLONE" "$T/clone.raw" >/dev/null 2>"$T/err" || fail "rbd export rbd/$CLONE: $(cat "$T/err")"
{ cat "$T/gold-tree.txt"; clone_tree a "$SEED"; } >"$T/tree-a.txt"
fs_check_files "$T/clone.raw" "$T/tree-a.txt" >"$T/check" 2>&1 || { cat "$T/check" >&2; fail "the clone does not hold the golden files and the guest's"; }
sed 's/^/   /' "$T/check"
rm -f "$T/clone.raw"
sha=$(rbd_sha gold@gold-snap)
[ "$sha" = "$GOLD_SHA" ] || fail "after the VM, rbd/gold@gold-snap reads sha256 $sha, want $GOLD_SHA"
sha=$(rbd_sha gold)
[ "$sha" = "$GOLD_SHA" ] || fail "after the VM, rbd/gold reads sha256 $sha, want $GOLD_SHA"
TIMES+="host check $(secs "$t") s, "
echo "   gold-snap and gold unchanged (sha256 ${GOLD_SHA:0:16}... = the golden image)"

step "e. SIGTERM to nestor-vm: QEMU stops, the export and the clone are deleted"
t=$(now)
alive "$VMPID" || { show "$T/a.err"; fail "nestor-vm exited before the SIGTERM (the guest holds 120 s)"; }
VMRC=0
stop_vm
echo "   nestor-vm exit $VMRC after SIGTERM ($(secs "$t") s)"
grep -q "forwarding to QEMU" "$T/a.err" || { show "$T/a.err"; fail "nestor-vm did not forward SIGTERM"; }
grep -q "clone '$CLONE' deleted" "$T/a.err" || { show "$T/a.err"; fail "nestor-vm did not delete $CLONE"; }
# A Ceph pool does not say what a delete frees: nestor-vm must not make up 0.
if grep -q "clone '$CLONE' deleted.*0 bytes freed" "$T/a.err"; then fail "nestor-vm: $(grep deleted "$T/a.err")"; fi
grep '^nestor-vm: clone ' "$T/a.err" | sed 's/^/   /'
ceph_rbd ls rbd >"$T/ls" || fail "rbd ls"
if grep -qx "$CLONE" "$T/ls"; then fail "rbd ls still has $CLONE after nestor-vm exited"; fi
[ "$(vol "$CLONE" name)" = absent ] || fail "volume list still has $CLONE"
[ -z "$(vol gold-snap children)" ] || fail "gold-snap still has children: $(vol gold-snap children)"
ceph_rbd children rbd/gold@gold-snap >"$T/children" 2>&1 || fail "rbd children: $(cat "$T/children")"
[ ! -s "$T/children" ] || fail "rbd children rbd/gold@gold-snap: $(cat "$T/children")"
expect_rc 0 "$CTL" --json export list
[ "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$T/out")" = 0 ] ||
	fail "exports left after nestor-vm: $(cat "$T/out")"

step "f. nestord exits 0 on SIGTERM; gold and gold-snap remain"
stop
ceph_rbd ls rbd >"$T/ls" || fail "rbd ls"
[ "$(tr '\n' ' ' <"$T/ls")" = "gold " ] || fail "rbd ls rbd: $(cat "$T/ls"), want gold"
ceph_rbd snap ls rbd/gold >"$T/snaps" || fail "rbd snap ls"
grep -qw gold-snap "$T/snaps" || fail "rbd snap ls rbd/gold: $(cat "$T/snaps")"

step "g. done"
echo "times: ${TIMES}total $(secs "$T0") s"
echo "PASS: ceph.06-golden-clone"
