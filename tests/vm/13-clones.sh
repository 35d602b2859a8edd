#!/usr/bin/env bash
# VM test 13: function images. One golden ext4 image, three function VMs
# booted at once on three clones of its snapshot with
# `nestor-vm --clone-of` (issue 12, item 5; docs/function-vms.md,
# "Function images").
#  1. nestord --pool serves a 256 MiB pool. The host makes an ext4
#     filesystem holding the files of fs-tree.sh (mkfs.ext4 -d) and writes
#     it onto the 64 MiB volume "gold" through an export (nestor-vm-dump
#     --load; all-zero clusters skipped), reads it back (equal), then
#     `nestorctl snapshot create gold gold-snap`. The snapshot's content is
#     read back (sha256 = the image's).
#  2. Three nestor-vm --clone-of gold-snap --keep run at once (TCG, 1 vCPU,
#     no poll queues, no idle=poll): each creates and exports its clone
#     (clone-a, -b, -c) over the control socket, boots the test guest whose
#     "clone" workload (guest-init.sh) mounts the clone, requires exactly
#     the golden files intact, writes its own files (clone_tree TAG SEED),
#     syncs, remounts and checks everything. Asserted: all three QEMUs ran at
#     the same time; each nestor-vm exits 0 with PASS on its console and
#     unexports (but keeps) its clone.
#  3. On the host: each clone is a child of gold-snap and holds exactly the
#     golden files plus its own (e2fsck clean, contents checked, no other
#     guest's file); the snapshot still reads the golden image (sha256).
#  4. Deleting each clone frees exactly its delete_frees_bytes (= its
#     allocated_bytes: what it wrote, copy-on-write) in free_clusters; after
#     the three, the pool's free clusters are back to before the VMs.
#  5. One VM without --keep (default clone name), stopped with SIGTERM to
#     nestor-vm once its guest has passed (the guest holds): nestor-vm
#     forwards it to QEMU, then deletes the export and the clone; the pool's
#     free clusters are back.
#  6. --clone-of an unknown snapshot and an unreachable --control fail with
#     exit 1 and a message naming the problem; nothing is left behind.
#  7. nestord exits 0 on SIGTERM; `nestor pool check` finds the pool clean
#     (reference counts included); gold-snap and gold remain.
# Needs e2fsprogs (mkfs.ext4 -d, debugfs, e2fsck) and python3 on the host.
# usage: 13-clones.sh NESTORD NESTOR_VM NESTORCTL NESTOR_VM_DUMP NESTOR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/fs-tree.sh"
. "$HERE/lib-fs-check.sh"

NESTORD_BIN=${1:-${NESTORD:-}}
VM=${2:-${NESTOR_VM:-}}
CTL=${3:-${NESTORCTL:-}}
DUMP=${4:-${NESTOR_VM_DUMP:-}}
NESTOR=${5:-${NESTOR_CLI:-}}
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
for b in "$NESTORD_BIN" "$VM" "$CTL" "$DUMP" "$NESTOR"; do
	[ -x "$b" ] || { echo "usage: $0 NESTORD NESTOR_VM NESTORCTL NESTOR_VM_DUMP NESTOR" >&2; exit 2; }
done
PATH=$PATH:/usr/sbin:/sbin
for t in mkfs.ext4 debugfs e2fsck python3; do
	command -v $t >/dev/null || { echo "FAIL: $t not found (apt-get install e2fsprogs python3)" >&2; exit 1; }
done
"$HERE/build-guest.sh" "$GUEST"

CONTROL=$TMP/control.ctl
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
ctl() { timeout 30 "$CTL" -s "$CONTROL" "$@"; }
# call METHOD [JSON]: the raw result of one RPC.
call() { ctl call "$@"; }
# jq-like look-ups with python3: vol NAME FIELD (from volume_list),
# pool FIELD (from pool_info).
vol() {
	call volume_list | python3 -c '
import json, sys
name, field = sys.argv[1], sys.argv[2]
r = json.load(sys.stdin)
vols = r["volumes"] if isinstance(r, dict) else r
v = [v for v in vols if v["name"] == name]
if not v:
    print("absent")
elif field == "-":
    print(json.dumps(v[0]))
else:
    x = v[0].get(field)
    print(" ".join(sorted(x)) if isinstance(x, list) else json.dumps(x) if isinstance(x, (bool, type(None))) else x)
' "$1" "$2"
}
pool() { call pool_info | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# free_clusters_reach N: pool free_clusters becomes N within 10 s (a delete
# may hand its clusters back at the next commit); prints the last value.
free_clusters_reach() {
	local want=$1 got i
	for i in $(seq 100); do
		got=$(pool free_clusters)
		[ "$got" -eq "$want" ] && break
		sleep 0.1
	done
	echo "$got"
	[ "$got" -eq "$want" ]
}

# Every nestor-vm runs under timeout in its own process group; the EXIT
# trap stops them with SIGTERM first (nestor-vm then cleans up its clone),
# SIGKILL for the whole group 15 s later.
declare -A VMPID=()
nestor_pre_cleanup() {
	local t i
	for t in "${!VMPID[@]}"; do
		[ -n "${VMPID[$t]}" ] && kill -TERM "${VMPID[$t]}" 2>/dev/null || true
	done
	for t in "${!VMPID[@]}"; do
		[ -n "${VMPID[$t]}" ] || continue
		for i in $(seq 150); do
			kill -0 "${VMPID[$t]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-${VMPID[$t]}" 2>/dev/null || true
		wait "${VMPID[$t]}" 2>/dev/null || true
	done
	return 0
}
show() {
	local f
	for f in "$@"; do
		echo "---- $(basename "$f") (last 30 lines) ----" >&2
		tr -d '\r' <"$f" | tail -n 30 >&2 || true
	done
	echo "----" >&2
}

# vm_start TAG SEED [NESTOR-VM-ARGS...]: nestor-vm --clone-of gold-snap in
# the background, guest workload "clone" as TAG; console $TMP/TAG.console,
# nestor-vm's stderr $TMP/TAG.err.
vm_start() {
	local t=$1 seed=$2
	shift 2
	timeout -k 10 240 "$VM" --clone-of gold-snap --control "$CONTROL" --name "fn-$t" "$@" \
		--allow-shared-cpus --vcpus 1 --poll-queues 0 --no-idle-poll --memory 192M \
		--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.cpio.gz" \
		--append "panic=-1 quiet nestor.test=clone nestor.tag=$t nestor.seed=$seed nestor.io_timeout=150${HOLD:+ nestor.hold=$HOLD}" \
		--no-reboot --serial-log "$TMP/$t.console" --timeout 200 \
		</dev/null >"$TMP/$t.out" 2>"$TMP/$t.err" &
	VMPID[$t]=$!
}
vm_wait() {
	local t=$1 rc=0
	wait "${VMPID[$t]}" || rc=$?
	VMPID[$t]=
	return $rc
}
passed() { [ -f "$TMP/$1.console" ] && tr -d '\r' <"$TMP/$1.console" | grep -aq '^NESTOR-VM-RESULT: PASS$'; }

# snapshot_sha OUT: sha256 of gold-snap's whole content, read through a
# read-only export of the snapshot.
snapshot_sha() {
	ctl export create gold-snap --readonly >/dev/null
	timeout 60 "$DUMP" "$TMP/gold-snap.sock" "$TMP/snap.dump" >/dev/null
	ctl export delete gold-snap >/dev/null
	sha256sum <"$TMP/snap.dump" | cut -d' ' -f1
}

# --- 1. the golden image and its snapshot ----------------------------------
POOL=$TMP/pool.img
"$NESTOR" pool create "$POOL" --size 256M >/dev/null
NESTORD_TIMEOUT=400 nestord_launch "$NESTORD_BIN" --pool "$POOL" --reactors 1 --poll-mode adaptive
[ -S "$CONTROL" ] || { echo "FAIL: no control socket $CONTROL" >&2; _nestord_log; exit 1; }

mkdir "$TMP/tree"
fs_tree >"$TMP/gold-tree.txt"
while read -r path size seed; do
	mkdir -p "$TMP/tree/$(dirname "$path")"
	"$GUEST/iopoll_io" gen --seed "$seed" --offset 0 --bytes "$size" >"$TMP/tree/$path"
done <"$TMP/gold-tree.txt"
# lazy_itable_init=0: no background inode-table zeroing in the guests.
mkfs.ext4 -q -F -L gold -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard \
	-d "$TMP/tree" "$TMP/gold.img" 64M
rm -rf "$TMP/tree"
GOLD_SHA=$(sha256sum <"$TMP/gold.img" | cut -d' ' -f1)
ctl volume create gold --size 64M >/dev/null
ctl export create gold --queues 1 >/dev/null
timeout 60 "$DUMP" --load "$TMP/gold.sock" "$TMP/gold.img"
timeout 60 "$DUMP" "$TMP/gold.sock" "$TMP/gold.back" >/dev/null
cmp "$TMP/gold.img" "$TMP/gold.back" || { echo "FAIL: gold reads back differently from the image" >&2; exit 1; }
ctl export delete gold >/dev/null
rm -f "$TMP/gold.back"
fs_check_files "$TMP/gold.img" "$TMP/gold-tree.txt" || exit 1
ctl snapshot create gold gold-snap
[ "$(vol gold-snap snapshot)" = true ] || { echo "FAIL: gold-snap is not a snapshot: $(vol gold-snap -)" >&2; exit 1; }
sha=$(snapshot_sha)
[ "$sha" = "$GOLD_SHA" ] || { echo "FAIL: gold-snap reads sha256 $sha, the image is $GOLD_SHA" >&2; exit 1; }
CLUSTER=$(pool cluster_size)
FREE_BASE=$(pool free_clusters)
echo "golden: ext4 image with $(wc -l <"$TMP/gold-tree.txt") files on gold, snapshot gold-snap (sha256 ${GOLD_SHA:0:16}...," \
	"$(vol gold allocated_bytes) bytes allocated); pool free clusters $FREE_BASE x $CLUSTER bytes ($(elapsed) s)"

# --- 2. three VMs at once, each on its own clone ---------------------------
TAGS=(a b c)
declare -A SEED=([a]=1000 [b]=2000 [c]=3000 [d]=4000)
tv=$(date +%s.%N)
for t in "${TAGS[@]}"; do
	vm_start $t "${SEED[$t]}" --clone-name "clone-$t" --keep
done
# All three QEMUs up at the same moment (each prints its pid; none exited).
together=0
for i in $(seq 1200); do
	up=$(cat "$TMP"/{a,b,c}.err 2>/dev/null | grep -c '^nestor-vm: QEMU pid ' || true)
	down=$(cat "$TMP"/{a,b,c}.err 2>/dev/null | grep -c '^nestor-vm: QEMU exited' || true)
	if [ "$up" = 3 ] && [ "$down" = 0 ]; then
		exports=$(call export_list | python3 -c 'import json, sys; print(" ".join(sorted(e["name"] for e in json.load(sys.stdin))))')
		[ "$exports" = "clone-a clone-b clone-c" ] && together=1
		break
	fi
	[ "$down" = 0 ] || break
	sleep 0.1
done
rc=0
for t in "${TAGS[@]}"; do
	vrc=0
	vm_wait $t || vrc=$?
	if [ $vrc -ne 0 ] || ! passed $t; then
		echo "FAIL: VM $t: nestor-vm exited $vrc$(passed $t || echo ', no PASS on the console')" >&2
		show "$TMP/$t.err" "$TMP/$t.console"
		rc=1
	fi
done
[ $rc -eq 0 ] || { _nestord_log; exit 1; }
[ $together = 1 ] || { echo "FAIL: the three VMs were never running at the same time (exports: ${exports:-?})" >&2; exit 1; }
for t in "${TAGS[@]}"; do
	grep '^nestor-vm: clone ' "$TMP/$t.err" | sed "s/^/[$t] /"
	grep -q "clone 'clone-$t' unexported and kept" "$TMP/$t.err" ||
		{ echo "FAIL: VM $t: nestor-vm did not unexport and keep clone-$t" >&2; show "$TMP/$t.err"; exit 1; }
	tr -d '\r' <"$TMP/$t.console" | grep -a '^nestor-vm: clone: [a-z]' | sed "s/^/[$t] /"
done
echo "three VMs booted at once on clone-a, clone-b, clone-c and passed ($(awk -v a="$tv" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"

# --- 3. what each clone holds; the snapshot is unchanged -------------------
exports=$(call export_list | python3 -c 'import json, sys; print(" ".join(sorted(e["name"] for e in json.load(sys.stdin))))')
[ -z "$exports" ] || { echo "FAIL: exports left after the VMs: $exports" >&2; exit 1; }
children=$(vol gold-snap children)
[ "$children" = "clone-a clone-b clone-c gold" ] || { echo "FAIL: gold-snap's children are '$children'" >&2; exit 1; }
for t in "${TAGS[@]}"; do
	[ "$(vol clone-$t parent)" = gold-snap ] || { echo "FAIL: clone-$t: $(vol clone-$t -)" >&2; exit 1; }
	ctl export create clone-$t --queues 1 >/dev/null
	timeout 60 "$DUMP" "$TMP/clone-$t.sock" "$TMP/clone-$t.dump" >/dev/null
	ctl export delete clone-$t >/dev/null
	{ cat "$TMP/gold-tree.txt"; clone_tree $t "${SEED[$t]}"; } >"$TMP/tree-$t.txt"
	echo "clone-$t:"
	fs_check_files "$TMP/clone-$t.dump" "$TMP/tree-$t.txt" >"$TMP/check-$t" 2>&1 || {
		sed 's/^/  /' "$TMP/check-$t"
		exit 1
	}
	sed 's/^/  /' "$TMP/check-$t"
	rm -f "$TMP/clone-$t.dump"
done
sha=$(snapshot_sha)
[ "$sha" = "$GOLD_SHA" ] || { echo "FAIL: after the VMs, gold-snap reads sha256 $sha, want $GOLD_SHA" >&2; exit 1; }
echo "gold-snap unchanged (sha256 ${sha:0:16}... = the golden image)"

# --- 4. deleting each clone frees exactly its own clusters -----------------
for t in "${TAGS[@]}"; do
	frees=$(vol clone-$t delete_frees_bytes)
	alloc=$(vol clone-$t allocated_bytes)
	shared=$(vol clone-$t shared_bytes)
	[[ "$frees$alloc$shared" =~ ^[0-9]+$ ]] && [[ "$frees" =~ ^[0-9]+$ ]] && [[ "$shared" =~ ^[0-9]+$ ]] || {
		echo "FAIL: volume_list lacks the space of clone-$t: allocated_bytes $alloc shared_bytes $shared" \
			"delete_frees_bytes $frees: $(vol clone-$t -)" >&2
		exit 1
	}
	f0=$(pool free_clusters)
	ctl volume delete clone-$t >/dev/null
	f1=$(free_clusters_reach $((f0 + frees / CLUSTER))) || true
	freed=$(((f1 - f0) * CLUSTER))
	echo "clone-$t: allocated_bytes $alloc shared_bytes $shared delete_frees_bytes $frees; delete freed $freed bytes ($((f1 - f0)) clusters)"
	[ "$frees" -gt 0 ] || { echo "FAIL: clone-$t would free nothing, yet its guest wrote files" >&2; exit 1; }
	[ "$freed" -eq "$frees" ] || { echo "FAIL: deleting clone-$t freed $freed bytes, delete_frees_bytes said $frees" >&2; exit 1; }
	[ "$alloc" -eq "$frees" ] || { echo "FAIL: clone-$t: allocated_bytes $alloc != delete_frees_bytes $frees" >&2; exit 1; }
	[ "$(vol clone-$t name)" = absent ] || { echo "FAIL: clone-$t still listed" >&2; exit 1; }
done
f1=$(free_clusters_reach "$FREE_BASE") ||
	{ echo "FAIL: free clusters $f1 after deleting the clones, $FREE_BASE before the VMs" >&2; exit 1; }
echo "after deleting the three clones the pool has its $FREE_BASE free clusters back"

# --- 5. without --keep, stopped by SIGTERM: the clone goes away -------------
f0=$(pool free_clusters)
HOLD=100 vm_start d "${SEED[d]}"
for i in $(seq 1800); do
	passed d && break
	kill -0 "${VMPID[d]}" 2>/dev/null || break
	sleep 0.1
done
passed d || { echo "FAIL: VM d did not pass" >&2; show "$TMP/d.err" "$TMP/d.console"; exit 1; }
clone_d=$(grep -oP "^nestor-vm: clone '\K[^']+(?=' of snapshot 'gold-snap' created)" "$TMP/d.err")
[[ "$clone_d" =~ ^gold-snap-fn-d-[0-9]+$ ]] || { echo "FAIL: default clone name '$clone_d'" >&2; exit 1; }
alloc=$(vol "$clone_d" allocated_bytes)
[ "$alloc" != absent ] && [ "$alloc" -gt 0 ] || { echo "FAIL: running clone $clone_d: allocated_bytes $alloc" >&2; exit 1; }
kill -TERM "${VMPID[d]}"  # timeout forwards it to nestor-vm
vrc=0
vm_wait d || vrc=$?
grep -q "forwarding to QEMU" "$TMP/d.err" || { echo "FAIL: nestor-vm did not forward SIGTERM" >&2; show "$TMP/d.err"; exit 1; }
grep -q "clone '$clone_d' deleted" "$TMP/d.err" || { echo "FAIL: nestor-vm did not delete $clone_d" >&2; show "$TMP/d.err"; exit 1; }
[ "$(vol "$clone_d" name)" = absent ] || { echo "FAIL: $clone_d still exists after nestor-vm exited" >&2; exit 1; }
f1=$(free_clusters_reach "$f0") || { echo "FAIL: free clusters $f1, $f0 before VM d" >&2; exit 1; }
echo "VM d (no --keep) on $clone_d: passed, SIGTERM to nestor-vm (exit $vrc): export and clone deleted," \
	"$alloc bytes freed, free clusters back to $f0"

# --- 6. clear errors, nothing left behind -----------------------------------
before=$(call volume_list | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
for case in snap control; do
	args=(--clone-of gold-snap --control "$CONTROL")
	[ $case = snap ] && args=(--clone-of no-such-snap --control "$CONTROL")
	[ $case = control ] && args=(--clone-of gold-snap --control "$TMP/absent.ctl")
	erc=0
	timeout 30 "$VM" "${args[@]}" --allow-shared-cpus --kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.cpio.gz" \
		</dev/null >/dev/null 2>"$TMP/err-$case" || erc=$?
	echo "  $case: exit $erc: $(grep -v '^nestor-vm: warning' "$TMP/err-$case" | head -n 1)"
	[ $erc -eq 1 ] || { echo "FAIL: $case case: nestor-vm exited $erc, want 1" >&2; exit 1; }
done
grep -q "cannot clone snapshot 'no-such-snap'" "$TMP/err-snap" || { echo "FAIL: unknown snapshot: unclear message" >&2; exit 1; }
grep -q "cannot reach nestord at $TMP/absent.ctl" "$TMP/err-control" || { echo "FAIL: unreachable: unclear message" >&2; exit 1; }
after=$(call volume_list | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$before" = "$after" ] || { echo "FAIL: $before volumes before the failed runs, $after after" >&2; exit 1; }
echo "unknown snapshot and unreachable nestord: exit 1 with a clear message, nothing created"

# --- 7. offline check ---------------------------------------------------------
nestord_stop
"$NESTOR" pool check "$POOL" || { echo "FAIL: nestor pool check" >&2; exit 1; }
names=$("$NESTOR" volume list --pool "$POOL" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(" ".join(sorted(v["name"] for v in (r["volumes"] if isinstance(r, dict) else r))))')
[ "$names" = "gold gold-snap" ] || { echo "FAIL: the pool holds '$names', want 'gold gold-snap'" >&2; exit 1; }
echo "PASS: vm.13-clones ($(elapsed) s)"
