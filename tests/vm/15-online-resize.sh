#!/usr/bin/env bash
# VM test 15: online resize (issue #15). nestord --pool serves the thin
# volume v0 (64 MiB, 1 queue, 1 reactor, adaptive) to a TCG guest running
# the "resize" workload of guest-init.sh. The guest reads
# /sys/block/vda/size; the host grows v0 to 96 MiB with `nestorctl volume
# resize` while the guest stays attached. Asserts: the guest sees 196608
# sectors without reconnecting (nestord told QEMU on the backend channel,
# CONFIG_CHANGE_MSG, and QEMU acknowledged it), then writes and reads back
# the 1 MiB past the old end (O_DIRECT); while it is still attached, a
# shrink to 80 MiB is refused with a message naming the 96 MiB it sees and
# changes nothing; after it left, a new connection (libnestor,
# nestor-vm-dump) sees 96 MiB and reads the guest's pattern past the old
# end; with nobody connected the exported volume shrinks to 80 MiB and the
# next connection reads 80 MiB, the guest's data intact; `nestor pool
# check` is clean after nestord's SIGTERM.
# usage: 15-online-resize.sh NESTORD NESTOR_VM_DUMP NESTOR NESTORCTL
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"

NESTORD_BIN=${1:-${NESTORD:-}}
DUMP=${2:-${NESTOR_VM_DUMP:-}}
NESTOR=${3:-${NESTOR_CLI:-}}
CTL=${4:-${NESTORCTL:-}}
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
[ -x "$DUMP" ] && [ -x "$NESTOR" ] && [ -x "$CTL" ] ||
	{ echo "usage: $0 NESTORD NESTOR_VM_DUMP NESTOR NESTORCTL" >&2; exit 2; }
SEED=0x6e657374 OLD=$((64 << 20)) NEW=$((96 << 20)) SHRINK=$((80 << 20))
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "FAIL: $*" >&2; _nestord_log; exit 1; }

t0=$(date +%s.%N)
"$HERE/build-guest.sh" "$GUEST"
POOL=$TMP/pool.img
"$NESTOR" pool create "$POOL" --size 256M
"$NESTOR" volume create v0 --pool "$POOL" --size "$OLD"
NESTORD_TIMEOUT=110 nestord_launch "$NESTORD_BIN" --pool "$POOL" --export-all --pool-queues 1 --reactors 1 \
	--poll-mode adaptive
ctl() { timeout 30 "$CTL" --socket "$TMP/control.ctl" "$@"; }
vol_size() { ctl --json volume list | python3 -c 'import json, sys
print(next(v["size"] for v in json.load(sys.stdin) if v["name"] == "v0"))'; }

# The guest waits at most 2/3 of its timeout for the new size, then holds
# its device 4 s after its result so the shrink below meets it attached.
guest_start g --socket "$TMP/v0.sock" --test resize --queues 1 --timeout 75 --hold 4
guest_wait_console g 'resize: size0 131072 sectors' 50
g0=$(date +%s.%N)
ctl volume resize v0 --size "$NEW" >/dev/null || fail "volume resize v0 to $NEW"
guest_wait_console g 'resize: grown from 131072 to 196608 sectors' 30
echo "the guest saw 196608 sectors $(since "$g0") s after nestorctl was called (console poll every 0.1 s)"
guest_wait_console g 'NESTOR-VM-RESULT: ' 40
tr -d '\r' <"$TMP/g.console" | grep -aq 'NESTOR-VM-RESULT: PASS' ||
	{ guest_wait g >&2 || true; fail "the guest's I/O past the old end"; }

# Still attached (holding): a shrink below what it sees is refused.
_guest_qemu_pid g >/dev/null || fail "the guest left before the shrink attempt (hold too short?)"
rc=0
out=$(ctl volume resize v0 --size "$SHRINK" --force 2>&1) || rc=$?
[ $rc -ne 0 ] || fail "shrinking to $SHRINK under an attached guest succeeded"
echo "shrink under the guest refused (exit $rc): $out"
grep -q "v0.*sees $NEW bytes" <<<"$out" || fail "the refusal does not name v0 and the $NEW bytes the guest sees"
[ "$(vol_size)" = "$NEW" ] || fail "v0 is $(vol_size) bytes after the refused shrink, want $NEW"
guest_wait g || fail "guest"
grep -q 'config change sent to the frontend' "$TMP/nestord.log" || fail "nestord sent no config change"
grep -q 'the frontend acknowledged the config change' "$TMP/nestord.log" || fail "QEMU did not acknowledge it"
if tr -d '\r' <"$TMP/g.console" | grep -aiE 'I/O error|blk_update_request|virtio_blk.*(error|fail)'; then
	fail "the guest kernel logged I/O errors"
fi

# A new connection: the whole 96 MiB, with the guest's pattern past the old end.
timeout 60 "$DUMP" "$TMP/v0.sock" "$TMP/v0.dump" || fail "dump v0"
[ "$(stat -c %s "$TMP/v0.dump")" = "$NEW" ] || fail "a new connection reads $(stat -c %s "$TMP/v0.dump") bytes, want $NEW"
"$GUEST/iopoll_io" verify --seed "$SEED" --offset "$OLD" --length $((1 << 20)) "$TMP/v0.dump" ||
	fail "the volume does not hold the guest's pattern past the old end"
echo "a new connection sees $NEW bytes and the guest's 1 MiB past the old end"
# Nobody connected now: the exported volume shrinks, and stays served.
ctl volume resize v0 --size "$SHRINK" >/dev/null || fail "shrinking v0 to $SHRINK with nobody connected"
[ "$(vol_size)" = "$SHRINK" ] || fail "v0 is $(vol_size) bytes after the shrink, want $SHRINK"
timeout 60 "$DUMP" "$TMP/v0.sock" "$TMP/v0.dump" || fail "dump v0 after the shrink"
[ "$(stat -c %s "$TMP/v0.dump")" = "$SHRINK" ] ||
	fail "after the shrink a new connection reads $(stat -c %s "$TMP/v0.dump") bytes, want $SHRINK"
"$GUEST/iopoll_io" verify --seed "$SEED" --offset "$OLD" --length $((1 << 20)) "$TMP/v0.dump" ||
	fail "the guest's data below the new end did not survive the shrink"
echo "with nobody connected v0 shrank to $SHRINK bytes, still exported, the guest's data intact"
nestord_stop
"$NESTOR" pool check "$POOL" || { echo "FAIL: nestor pool check" >&2; exit 1; }
echo "PASS: vm.15-online-resize ($(since "$t0") s)"
