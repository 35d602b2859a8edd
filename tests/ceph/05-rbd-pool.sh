#!/usr/bin/env bash
# ceph.05: a Ceph pool as nestord's pool (issue #13, docs/ceph.md):
# `nestord --pool rbd:rbd` on a throwaway single-node cluster (lib-ceph.sh),
# managed with the same nestorctl commands as a local pool; every effect is
# cross-checked with the `rbd` CLI, data through exports (control-blk-io,
# nestor-io). No VM.
#  a. an image and a snapshot made outside nestor (`rbd create`, `rbd snap
#     create`); `--pool rbd:nopool` exits 1 naming the pool (not created);
#  b. pool info: "kind":"rbd", "pool":"rbd", "volumes" (images);
#  c. volume create -> an RBD image; the name rules, EEXIST, a size not a
#     multiple of 4096 and --preallocate refused (nothing created);
#  d. the outside image and snapshot are listed (snapshot, parent, children)
#     and usable (an export each; the snapshot read-only); d2. a clone of
#     the outside snapshot (which nobody protected); the same snapshot name
#     on two images (made outside nestor) is listed as IMAGE@SNAP, which
#     every command takes;
#  e. an export is image metadata (`nestor.export`); snapshot create on the
#     exported volume under nestor-io (crash-consistent, I/O verified):
#     `rbd snap ls` shows it protected; snapshot names unique in the pool
#     (EEXIST for another image's snapshot or an image's name);
#  f. volume clone --export: `rbd info` names the parent rbd/db@s1; the
#     clone reads the snapshot's data, its writes show nowhere else;
#     volume list's parent/children in Ceph's model (s1's parent is db);
#  g. a snapshot exports read-only only (`nestor.export@s1` on db) and
#     refuses writes; export delete removes the key;
#  h. deletes refused: a snapshot with clones, a volume with snapshots
#     (both EBUSY naming them), an exported image without --force;
#  i. resize: grow (exported), shrink only with --force, snapshot refused;
#  j. decouple refused (EOPNOTSUPP, "inflate"); inflate = flatten, on the
#     exported clone under nestor-io (no parent in `rbd info`, data
#     intact); then the snapshot deletes;
#  k. the exports (a writable volume, a clone, a read-only snapshot) come
#     back after a restart with their settings (queues, socket mode, QoS),
#     after a SIGKILL at once (the dead holder's locks broken), and from a
#     nestord in another pid namespace (as on another host), with their
#     data;
#  l. a second nestord --export-all on the same Ceph pool while the first
#     runs: the first's writable exports are "in use" (logged, named,
#     metadata kept; export create and delete refused there, EBUSY), it
#     serves the rest (the first's read-only snapshot export, the other
#     images and snapshots, storing their exports) and keeps running; the
#     first keeps writing, and cannot export what the second holds;
#  m. --export-all --pool-queues 2: every image and snapshot exported
#     (snapshots read-only) and stored;
#  n. deletes through nestorctl empty the pool (`rbd ls`); SIGTERM: exit 0.
# Every daemon and client is bounded; the trap stops nestord(s) and the
# cluster. Needs ceph-mon, ceph-osd, ceph-common (scripts/install-deps.sh).
# usage: 05-rbd-pool.sh NESTORD NESTOR_IO BLK_IO NESTORCTL
set -euo pipefail
NESTORD=$1 NIO=$2 BLK=$3 CTL=$4
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d)
T0=$(date +%s.%N)
PID='' PID2='' IOPID=''
. "$HERE/lib-ceph.sh"
. "$HERE/../control/lib-control.sh"  # fail, stop, expect_rc, alive, kill_nestord
. "$HERE/lib-rbd-nestord.sh"
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
cleanup() {
	local rc=$?
	set +eu  # nothing may stop the clean-up half way
	[ -z "$IOPID" ] || { kill -KILL "$IOPID" 2>/dev/null; wait "$IOPID" 2>/dev/null; }
	[ -z "$PID" ] || kill_nestord PID
	[ -z "$PID2" ] || kill_nestord PID2
	ceph_down
	rm -rf "$T"
	echo "ceph.05-rbd-pool: total $(elapsed) s (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 143' TERM INT
step() { echo "-- $(elapsed) s: $*"; }
start() { RBD_NESTORD_MAX=120 rbd_nestord_pool_start rbd "$@"; }
# stop_unshared: stop (lib-control.sh) for a nestord run under `unshare
# --pid --fork`, which holds SIGTERM until its child exits: SIGTERM to
# nestord, the child of unshare, the child of timeout.
stop_unshared() {
	local u='' n=''
	read -r u <"/proc/$PID/task/$PID/children" || true
	[ -z "$u" ] || read -r n <"/proc/$u/task/$u/children" || true
	[ -n "$n" ] || fail "no nestord under unshare (pid ${u:-?})"
	kill -TERM "$n"
	wait "$PID" || fail "nestord (in its own pid namespace) exited $? on SIGTERM"
	PID=
}
export NESTOR_CONTROL_SOCKET=$T/ctl
# blk VOLUME|SOCKET_PATH write|check SEED OFFSET LEN
blk() {
	local sock=$T/s/$1.sock
	[[ $1 != */* ]] || sock=$1
	timeout 60 "$BLK" "$sock" "${@:2}" 2>"$T/blk" || fail "control-blk-io $*: $(cat "$T/blk")"
}
# rbdj FILE RBD_ARGS...: `rbd ARGS --format json` into $T/FILE.
rbdj() {
	local f=$T/$1
	shift
	ceph_rbd "$@" --format json >"$f" 2>"$T/rbderr" || fail "rbd $*: $(cat "$T/rbderr")"
}
# images: the pool's images, sorted, on one line (`rbd ls`).
images() { ceph_rbd ls rbd | sort | tr '\n' ' ' | sed 's/ $//'; }
images_are() {
	local got
	got=$(images)
	[ "$got" = "$1" ] || fail "rbd ls rbd: '$got', want '$1'"
}
# meta_keys IMAGE: the image's metadata keys, sorted, on one line.
meta_keys() {
	rbdj meta image-meta list "rbd/$1"
	# No metadata at all: no output, not {}.
	python3 -c 'import json, sys; s = open(sys.argv[1]).read().strip(); print(" ".join(sorted(json.loads(s) if s else {})))' \
		"$T/meta"
}
meta_has() { [[ " $(meta_keys "$1") " == *" $2 "* ]] || fail "rbd image-meta list rbd/$1 lacks $2: $(cat "$T/meta")"; }
meta_lacks() { [[ " $(meta_keys "$1") " != *" $2 "* ]] || fail "rbd image-meta list rbd/$1 still has $2: $(cat "$T/meta")"; }
M=$((1 << 20))

step "a. the cluster; rbd/ext (8 MiB) and rbd/ext@ext-snap made outside nestor; a missing pool"
ceph_up "$T/ceph" || fail "no Ceph cluster"
ceph_rbd create --size 8M rbd/ext || fail "rbd create rbd/ext"
ceph_rbd snap create --no-progress rbd/ext@ext-snap >/dev/null || fail "rbd snap create rbd/ext@ext-snap"
mkdir -p "$T/s2"
rc=0
timeout -k 5 60 "$NESTORD" --socket-dir "$T/s2" --ceph-conf "$CEPH_CONF_FILE" --ceph-id admin --reactors 1 \
	--control-socket "$T/ctl2" --pool rbd:nopool >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -eq 1 ] || fail "nestord --pool rbd:nopool exited $rc, want 1: $(cat "$T/err" "$T/out")"
err_has nopool
# As for an rbd: volume ("ceph pool 'nopool' does not exist"), not a file.
grep -i nopool "$T/err" | grep -qi ceph || fail "nestord --pool rbd:nopool: no message names the Ceph pool: $(cat "$T/err")"
echo "   --pool rbd:nopool: exit 1, $(grep -F nopool "$T/err" | head -n 1)"
ceph_cli osd pool ls >"$T/pools" 2>&1 || fail "ceph osd pool ls: $(cat "$T/pools")"
if grep -qx nopool "$T/pools"; then fail "nestord created the Ceph pool nopool"; fi

step "b. nestord --pool rbd:rbd; pool info"
start
expect_rc 0 "$CTL" --json pool info
py 'j["kind"] == "rbd" and j["pool"] == "rbd" and j["volumes"] == 1'
expect_rc 0 "$CTL" pool info
out_has rbd

step "c. volume create: an RBD image; names, EEXIST, sizes, --preallocate refused"
expect_rc 0 "$CTL" volume create db --size 16M
out_has "volume db created"
images_are "db ext"
rbdj info info rbd/db
py 'j["size"] == 16 << 20' "$T/info"
expect_rc 4 "$CTL" volume create db --size 16M
expect_rc 4 "$CTL" volume create ext --size 16M
expect_rc 2 "$CTL" volume create bad/name --size 16M
expect_rc 2 "$CTL" volume create .hidden --size 16M
expect_rc 2 "$CTL" volume create "$(head -c 64 /dev/zero | tr '\0' x)" --size 16M   # 64 characters: over the limit
expect_rc 2 "$CTL" volume create odd --size 1000
rc=0
timeout 60 "$CTL" volume create pre --size 16M --preallocate >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "volume create --preallocate succeeded on a Ceph pool"
grep -qi preallocat "$T/err" || fail "volume create --preallocate (exit $rc): stderr lacks 'preallocat': $(cat "$T/err")"
echo "   --preallocate: exit $rc, $(head -n 1 "$T/err")"
images_are "db ext"

step "d. the image and snapshot made outside nestor: listed, usable"
expect_rc 0 "$CTL" --json volume list
cp "$T/out" "$T/list-d"
py 'sorted(x["name"] for x in j) == ["db", "ext", "ext-snap"]'
py 'all(set(x) >= {"name", "size", "snapshot", "parent", "children", "exported", "allocated_bytes"} for x in j)'
py 'v("ext")["size"] == 8 << 20 and not v("ext")["snapshot"] and v("ext")["parent"] is None'
py 'v("ext")["children"] == ["ext-snap"] and not v("ext")["exported"]'
py 'v("ext-snap")["snapshot"] and v("ext-snap")["parent"] == "ext" and v("ext-snap")["children"] == []'
py 'v("db")["size"] == 16 << 20 and v("db")["parent"] is None and v("db")["children"] == [] and not v("db")["snapshot"]'
expect_rc 0 "$CTL" export create ext
blk ext write 5 0 $M
blk ext check 5 0 $M
expect_rc 0 "$CTL" export create ext-snap --readonly
blk ext-snap check 0 0 $M   # the snapshot was taken empty
meta_has ext nestor.export
meta_has ext nestor.export@ext-snap
expect_rc 0 "$CTL" export delete ext
expect_rc 0 "$CTL" export delete ext-snap
meta_lacks ext nestor.export
meta_lacks ext nestor.export@ext-snap

step "d2. snapshots made outside nestor: a clone of one; one name on two images is IMAGE@SNAP"
expect_rc 0 "$CTL" volume clone ext-snap ec --export   # not protected by whoever made it
blk ec check 0 0 $M
rbdj info info rbd/ec
py 'j["parent"]["image"] == "ext" and j["parent"]["snapshot"] == "ext-snap"' "$T/info"
expect_rc 0 "$CTL" volume delete ec --force
ceph_rbd snap create --no-progress rbd/ext@twin >/dev/null || fail "rbd snap create rbd/ext@twin"
ceph_rbd snap create --no-progress rbd/db@twin >/dev/null || fail "rbd snap create rbd/db@twin"
expect_rc 0 "$CTL" --json volume list
py 'sorted(x["name"] for x in j) == ["db", "db@twin", "ext", "ext-snap", "ext@twin"]'
py 'v("db@twin")["parent"] == "db" and v("db")["children"] == ["db@twin"] and v("ext@twin")["parent"] == "ext"'
py 'sorted(v("ext")["children"]) == ["ext-snap", "ext@twin"]'
expect_rc 4 "$CTL" snapshot create db twin   # the name is taken (twice)
expect_rc 0 "$CTL" export create ext@twin --readonly
blk "$T/s/ext@twin.sock" check 5 0 $M
expect_rc 0 "$CTL" export delete ext@twin
meta_lacks ext nestor.export@twin
expect_rc 0 "$CTL" snapshot delete ext@twin
expect_rc 0 "$CTL" --json volume list
py 'sorted(x["name"] for x in j) == ["db", "ext", "ext-snap", "twin"] and v("twin")["parent"] == "db"'
expect_rc 0 "$CTL" snapshot delete twin
rbdj snaps snap ls rbd/ext
py '[s["name"] for s in j] == ["ext-snap"]' "$T/snaps"
rbdj snaps snap ls rbd/db
py 'j == []' "$T/snaps"
images_are "db ext"

step "e. snapshot of the exported db under nestor-io; snapshot names unique in the pool"
expect_rc 0 "$CTL" export create db --queues 2
meta_has db nestor.export
blk db write 1 0 $((8 * M))
# nestor-io writes and verifies [8M, 16M) for 3 s across the snapshot.
timeout 60 "$NIO" --socket "$T/s/db.sock" --offset $((8 * M)) --bytes 8M --block-size 4096 --qd 8 --seconds 3 \
	>"$T/nio" 2>&1 &
IOPID=$!
sleep 1
expect_rc 0 "$CTL" snapshot create db s1
out_has "snapshot s1 of db created"
if grep -q "now a clone" "$T/out"; then fail "snapshot create on a Ceph pool says the volume became a clone: $(cat "$T/out")"; fi
rc=0
wait "$IOPID" || rc=$?
IOPID=
if [ "$rc" -ne 0 ] || ! grep -q "^OK" "$T/nio"; then fail "nestor-io across the snapshot (exit $rc): $(cat "$T/nio")"; fi
grep "^OK" "$T/nio" | sed 's/^/   /'
rbdj snaps snap ls rbd/db
py '[(s["name"], str(s["protected"]).lower()) for s in j] == [("s1", "true")]' "$T/snaps"
expect_rc 4 "$CTL" snapshot create db s1
expect_rc 4 "$CTL" snapshot create ext s1        # another image's snapshot
expect_rc 4 "$CTL" snapshot create db ext-snap   # made outside nestor
expect_rc 4 "$CTL" snapshot create db ext        # an image
expect_rc 4 "$CTL" volume create s1 --size 4M
expect_rc 3 "$CTL" snapshot create nope x
expect_rc 2 "$CTL" snapshot create db bad/name
rbdj snaps snap ls rbd/ext
py '[s["name"] for s in j] == ["ext-snap"]' "$T/snaps"
images_are "db ext"

step "f. volume clone s1 c1 --export: parent rbd/db@s1, copy-on-write both ways"
blk db write 2 0 $((4 * M))   # after the snapshot
expect_rc 0 "$CTL" volume clone s1 c1 --export --queues 2 --socket-mode 0660
out_has "clone c1 of s1 created"
out_has "$T/s/c1.sock"
images_are "c1 db ext"
rbdj info info rbd/c1
py 'j["parent"]["pool"] == "rbd" and j["parent"]["image"] == "db" and j["parent"]["snapshot"] == "s1"' "$T/info"
py 'j["size"] == 16 << 20' "$T/info"
blk c1 check 1 0 $((8 * M))           # the snapshot's data, not db's later writes
blk db check 2 0 $((4 * M))
blk db check 1 $((4 * M)) $((4 * M))
blk c1 write 3 0 $M
blk c1 check 1 $M $((7 * M))
blk db check 2 0 $M                   # the clone's writes stay in the clone
expect_rc 4 "$CTL" volume clone s1 db
expect_rc 4 "$CTL" volume clone s1 ext-snap
expect_rc 3 "$CTL" volume clone nope x
expect_rc 2 "$CTL" volume clone db x   # not a snapshot
images_are "c1 db ext"
expect_rc 0 "$CTL" --json volume list
py 'sorted(x["name"] for x in j) == ["c1", "db", "ext", "ext-snap", "s1"]'
py 'v("s1")["snapshot"] and v("s1")["parent"] == "db" and v("s1")["children"] == ["c1"] and not v("s1")["exported"]'
py 'v("db")["parent"] is None and v("db")["children"] == ["s1"] and v("db")["exported"]'
py 'v("c1")["parent"] == "s1" and v("c1")["children"] == [] and v("c1")["exported"] and not v("c1")["snapshot"]'
py 'v("s1")["size"] == 16 << 20 and v("c1")["size"] == 16 << 20'
expect_rc 0 "$CTL" --json snapshot list
py 'sorted(x["name"] for x in j) == ["ext-snap", "s1"]'
expect_rc 0 "$CTL" volume list
grep -Eq '^c1 +clone +s1 ' "$T/out" || fail "volume list: $(cat "$T/out")"
grep -Eq '^s1 +snapshot +db ' "$T/out" || fail "volume list: $(cat "$T/out")"
expect_rc 0 "$CTL" --json export list
py 'sorted((e["name"], e["queues"]) for e in j) == [("c1", 2), ("db", 2)]'

step "g. a snapshot exports read-only only, its export stored on its volume"
expect_rc 2 "$CTL" export create s1
err_has "read-only"
expect_rc 0 "$CTL" export create s1 --readonly
meta_has db nestor.export@s1
blk s1 check 1 0 $((8 * M))
if timeout 60 "$BLK" "$T/s/s1.sock" write 3 0 4096 2>"$T/blk"; then fail "a write to a snapshot succeeded"; fi
blk s1 check 1 0 $((8 * M))
expect_rc 0 "$CTL" export delete s1
meta_lacks db nestor.export@s1
meta_has db nestor.export
[ ! -e "$T/s/s1.sock" ] || fail "s1.sock left after export delete"

step "h. refused deletes: a snapshot with clones, a volume with snapshots, an exported image"
expect_rc 6 "$CTL" snapshot delete s1
err_has c1
expect_rc 6 "$CTL" snapshot delete s1 --force
err_has c1
expect_rc 6 "$CTL" volume delete s1 --force
err_has c1
expect_rc 6 "$CTL" volume delete db --force
err_has s1
expect_rc 6 "$CTL" volume delete c1
expect_rc 2 "$CTL" snapshot delete db
err_has "not a snapshot"
expect_rc 3 "$CTL" snapshot delete nope
expect_rc 3 "$CTL" volume delete nope
images_are "c1 db ext"
rbdj snaps snap ls rbd/db
py '[s["name"] for s in j] == ["s1"]' "$T/snaps"
expect_rc 0 "$CTL" --json export list
py 'sorted(e["name"] for e in j) == ["c1", "db"]'
blk c1 check 3 0 $M

step "i. resize: grow while exported, shrink only with --force, not a snapshot"
expect_rc 0 "$CTL" volume resize db --size 32M
rbdj info info rbd/db
py 'j["size"] == 32 << 20' "$T/info"
blk db write 4 $((24 * M)) $M   # a new connection sees the new size
blk db check 4 $((24 * M)) $M
rc=0
timeout 60 "$CTL" volume resize ext --size 4M >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "volume resize ext --size 4M (a shrink) without --force succeeded"
echo "   shrink without --force: exit $rc, $(head -n 1 "$T/err")"
rbdj info info rbd/ext
py 'j["size"] == 8 << 20' "$T/info"
expect_rc 0 "$CTL" volume resize ext --size 4M --force
rbdj info info rbd/ext
py 'j["size"] == 4 << 20' "$T/info"
rc=0
timeout 60 "$CTL" volume resize s1 --size 32M --force >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "volume resize of the snapshot s1 succeeded"
echo "   resize of a snapshot: exit $rc, $(head -n 1 "$T/err")"
expect_rc 0 "$CTL" --json volume list
py 'v("db")["size"] == 32 << 20 and v("s1")["size"] == 16 << 20 and v("ext")["size"] == 4 << 20'

step "j. decouple refused; inflate (flatten) of the exported c1 under nestor-io keeps the data; s1 then deletes"
expect_rc 9 "$CTL" volume decouple c1
err_has inflate
# nestor-io writes and verifies c1's [8M, 16M) for 2 s across the flatten.
timeout 60 "$NIO" --socket "$T/s/c1.sock" --offset $((8 * M)) --bytes 8M --block-size 4096 --qd 8 --seconds 2 \
	>"$T/nio" 2>&1 &
IOPID=$!
sleep 0.5
expect_rc 0 "$CTL" volume inflate c1
out_has "it has no parent"
rc=0
wait "$IOPID" || rc=$?
IOPID=
if [ "$rc" -ne 0 ] || ! grep -q "^OK" "$T/nio"; then fail "nestor-io across the inflate (exit $rc): $(cat "$T/nio")"; fi
rbdj info info rbd/c1
py '"parent" not in j' "$T/info"
blk c1 check 3 0 $M
blk c1 check 1 $M $((7 * M))
expect_rc 0 "$CTL" --json volume list
py 'v("c1")["parent"] is None and v("s1")["children"] == [] and v("db")["children"] == ["s1"]'
expect_rc 0 "$CTL" snapshot delete s1
rbdj snaps snap ls rbd/db
py 'j == []' "$T/snaps"
blk db check 2 0 $((4 * M))
blk c1 check 1 $M $((7 * M))

step "k. the exports come back after a restart, and in another pid namespace"
expect_rc 0 "$CTL" snapshot create db s2
expect_rc 0 "$CTL" export create s2 --readonly
meta_has db nestor.export
meta_has db nestor.export@s2
meta_has c1 nestor.export
expect_rc 0 "$CTL" --json export list
py 'sorted((e["name"], e["queues"], e["readonly"]) for e in j) == [("c1", 2, False), ("db", 2, False), ("s2", 1, True)]'
expect_rc 0 "$CTL" qos set db --read-iops 50000 --write-bps 200M
stop
start c1 db s2
expect_rc 0 "$CTL" --json export list
py 'sorted((e["name"], e["queues"], e["readonly"]) for e in j) == [("c1", 2, False), ("db", 2, False), ("s2", 1, True)]'
py 'all(e["persistent"] for e in j) and v("c1")["socket_mode"] == "0660"'
[ "$(stat -c %a "$T/s/c1.sock")" = 660 ] || fail "c1.sock has mode $(stat -c %a "$T/s/c1.sock") after the restart, want 660"
expect_rc 0 "$CTL" --json qos get db
py 'j["read_iops"] == 50000 and j["write_bps"] == 200 << 20 and j["write_iops"] == 0'
blk db check 2 0 $((4 * M))
blk db check 4 $((24 * M)) $M
blk s2 check 2 0 $((4 * M))
blk c1 check 3 0 $M
# SIGKILLed (a crash): the next nestord on this machine breaks the dead
# one's locks and serves the exports at once.
kill_nestord PID
t=$(date +%s.%N)
start c1 db s2
took=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "   after a SIGKILL: the exports back in $took s"
awk -v x="$took" 'BEGIN { exit !(x < 5) }' || fail "the exports took $took s to come back after a SIGKILL (want < 5)"
[ "$(grep -c "broke the lock of a nestord that died on this machine" "$T/log")" -ge 2 ] ||
	fail "no lock break of db and c1 in the log"
blk db check 4 $((24 * M)) $M
blk c1 check 3 0 $M
stop
RBD_NESTORD_WRAP="unshare --pid --fork --kill-child" start c1 db s2
expect_rc 0 "$CTL" --json export list
py 'sorted((e["name"], e["queues"], e["readonly"]) for e in j) == [("c1", 2, False), ("db", 2, False), ("s2", 1, True)]'
blk db check 2 0 $((4 * M))
blk s2 check 2 0 $((4 * M))
blk c1 check 3 0 $M
blk db write 6 $((28 * M)) $M

step "l. a second nestord --export-all on the same pool: the locked images are in use, the rest served"
expect_rc 0 "$CTL" snapshot create db s3   # no export stored: the second exports it
rm -rf "$T/s2" "$T/ctl2" "$T/log2"
mkdir -p "$T/s2"
timeout -k 5 120 "$NESTORD" --socket-dir "$T/s2" --ceph-conf "$CEPH_CONF_FILE" --ceph-id admin --reactors 1 \
	--control-socket "$T/ctl2" --pool rbd:rbd --export-all --pool-queues 2 >"$T/log2" 2>&1 &
PID2=$!
# in_use IMAGE: the second nestord logged IMAGE with "in use".
in_use() { grep -F "in use" "$T/log2" | grep -Eq "(^|[^a-z0-9_.-])$1([^a-z0-9_.-]|$)"; }
served2() {
	local v
	for v in s2 s3 ext ext-snap; do [ -S "$T/s2/$v.sock" ] || return 1; done
}
for _ in $(seq 600); do
	[ -S "$T/ctl2" ] && in_use db && in_use c1 && served2 && break
	alive "$PID2" || fail "the second nestord exited: $(cat "$T/log2")"
	sleep 0.05
done
if ! in_use db || ! in_use c1; then fail "the second nestord did not log db and c1 'in use' in 30 s: $(cat "$T/log2")"; fi
served2 || fail "the second nestord does not serve s2, s3, ext and ext-snap: $(ls "$T/s2") $(cat "$T/log2")"
grep -F "in use" "$T/log2" | sed 's/^/   second nestord: /'
sleep 1
alive "$PID2" || fail "the second nestord exited: $(cat "$T/log2")"
if [ -e "$T/s2/db.sock" ] || [ -e "$T/s2/c1.sock" ]; then fail "the second nestord exports a locked image: $(ls "$T/s2")"; fi
C2=("$CTL" -s "$T/ctl2")
expect_rc 0 "${C2[@]}" --json export list
py 'sorted((e["name"], e["queues"], e["readonly"]) for e in j) == [("ext", 2, False), ("ext-snap", 2, True), ("s2", 1, True), ("s3", 2, True)]'
meta_has db nestor.export@s3   # stored by the second, on an image the first holds
blk "$T/s2/s2.sock" check 2 0 $((4 * M))
blk "$T/s2/s3.sock" check 2 0 $((4 * M))
blk "$T/s2/s3.sock" check 6 $((28 * M)) $M
blk "$T/s2/ext.sock" check 5 0 $M
expect_rc 6 "${C2[@]}" export create db   # the first holds it
expect_rc 6 "${C2[@]}" volume delete c1 --force
expect_rc 6 "${C2[@]}" volume resize db --size 48M   # the first serves it: only it may (its export's size)
err_has "serves it"
rbdj info info rbd/db
py 'j["size"] == 32 << 20' "$T/info"
expect_rc 6 "$CTL" export create ext      # the second holds it
images_are "c1 db ext"
blk db write 7 $((28 * M)) $M   # the first still holds db and writes
blk db check 7 $((28 * M)) $M
blk c1 write 8 $M $M
c=''
read -r c <"/proc/$PID2/task/$PID2/children" || true
kill -TERM "${c:-$PID2}"   # nestord itself: its wrapper would SIGKILL it 5 s later
rc=0
wait "$PID2" || rc=$?
PID2=
[ "$rc" -eq 0 ] || fail "the second nestord exited $rc on SIGTERM: $(tail -n 20 "$T/log2")"
meta_has db nestor.export
meta_has c1 nestor.export
blk db check 7 $((28 * M)) $M
blk c1 check 8 $M $M
stop_unshared

step "m. --export-all --pool-queues 2: every image and snapshot exported and stored"
RBD_NESTORD_ARGS="--export-all --pool-queues 2" start c1 db s2 s3 ext ext-snap
expect_rc 0 "$CTL" --json export list
py 'sorted((e["name"], e["queues"], e["readonly"]) for e in j) == [("c1", 2, False), ("db", 2, False), ("ext", 2, False), ("ext-snap", 2, True), ("s2", 1, True), ("s3", 2, True)]'
meta_has ext nestor.export
meta_has ext nestor.export@ext-snap
blk ext check 5 0 $M
blk ext-snap check 0 0 $M
blk db check 7 $((28 * M)) $M

step "n. deletes through nestorctl; the pool is empty"
expect_rc 0 "$CTL" volume delete c1 --force
images_are "db ext"
[ ! -e "$T/s/c1.sock" ] || fail "c1.sock left after volume delete"
expect_rc 6 "$CTL" volume delete db --force
err_has s2
expect_rc 6 "$CTL" snapshot delete s2   # exported
expect_rc 0 "$CTL" snapshot delete s2 --force
meta_lacks db nestor.export@s2
expect_rc 0 "$CTL" snapshot delete s3 --force
meta_lacks db nestor.export@s3
rbdj snaps snap ls rbd/db
py 'j == []' "$T/snaps"
expect_rc 0 "$CTL" volume delete db --force
expect_rc 0 "$CTL" volume delete ext-snap --force   # a snapshot without clones
expect_rc 0 "$CTL" volume delete ext --force
images_are ""
expect_rc 0 "$CTL" --json volume list
py 'j == []'
expect_rc 0 "$CTL" --json pool info
py 'j["volumes"] == 0'
stop

step "o. done"
echo "PASS: ceph.05-rbd-pool"
