#!/usr/bin/env bash
# VM test 16: one image, several frontends (issue #15 item 3,
# docs/function-vms.md "Shared read-only images").
#  1. A golden image (a file holding a known pattern at [1 MiB, 9 MiB)) is
#     exported read-only to three frontends at once (--volume
#     gold,...,readonly,frontends=3). Three QEMU guests boot on the same
#     socket at the same time; each checks that its disk is read-only and
#     reads the pattern back with O_DIRECT and buffered reads. Asserted:
#     all three PASS, and while they hold (before powering off) the export
#     has three sessions; the image is unchanged (sha256).
#  2. A writable export (default: one frontend) refuses a second frontend
#     while the first is attached: the second is closed at accept and
#     nestord logs why; once the first hangs up, the next one attaches.
#  3. Over the control socket: more than one frontend on a writable export
#     is refused with a message naming the rule; --readonly --frontends 2
#     and --frontends 2 --shared-writers are accepted, stored in the pool
#     and back after a restart.
# usage: 16-shared-readonly.sh NESTORD NESTORCTL NESTOR NESTOR_IO
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
NESTORD_BIN=$1 CTL=$2 NESTOR=$3 NIO=$4
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
fail() {
	echo "FAIL: $*" >&2
	_nestord_log
	exit 1
}
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
"$HERE/build-guest.sh" "$GUEST"

# ---- 1. three guests on one read-only image ----
SEED=0x901d0001 OFF=$((1 << 20)) LEN=$((8 << 20))
truncate -s 32M "$TMP/gold.img"
"$GUEST/iopoll_io" gen --seed $SEED --offset $OFF --length $LEN |
	dd of="$TMP/gold.img" bs=1M seek=1 conv=notrunc status=none
gold_sum=$(sha256sum <"$TMP/gold.img")
"$NESTOR" pool create "$TMP/pool" --size 64M >/dev/null
nestord_launch "$NESTORD_BIN" --pool "$TMP/pool" --journal-dir "$TMP/journal" \
	--volume "gold,backend=file:$TMP/gold.img,readonly,frontends=3" --volume "solo,size=16M"
for g in a b c; do
	guest_start "$g" --socket "$TMP/gold.sock" --test read --queues 1 --timeout 150 --hold 4 \
		--seed $SEED --offset $OFF --length $LEN
done
# Wait until every guest has its result; each holds 4 s after it, so the
# first ones are still attached when the last one answers... unless TCG is
# slow: then count the sessions at the first result instead.
for _ in $(seq 1500); do
	n=$(cat "$TMP"/{a,b,c}.console 2>/dev/null | tr -d '\r' | grep -ac '^NESTOR-VM-RESULT:' || true)
	[ "$n" -ge 1 ] && break
	sleep 0.1
done
nestord_stats "$TMP/stats"
sessions=$(grep -oP '^stats volume gold: sessions \K[0-9]+' "$TMP/stats")
rc=0
for g in a b c; do guest_wait "$g" || rc=1; done
[ $rc -eq 0 ] || fail "a guest failed"
# Three at once: at the first result line none has powered off yet (each
# holds 4 s), and every guest had booted (its disk found) by then.
[ "$sessions" = 3 ] || fail "with three guests up, gold has $sessions sessions (want 3)"
[ "$(sha256sum <"$TMP/gold.img")" = "$gold_sum" ] || fail "the golden image changed"
echo "three guests read the golden image at once (sessions 3), image unchanged ($(elapsed) s)"

# ---- 2. a writable export takes one frontend ----
# A frontend that connects and stays (a plain socket that sends nothing).
timeout 60 python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print("connected", flush=True); time.sleep(60)' \
	"$TMP/solo.sock" >"$TMP/holder.out" 2>&1 &
HOLDER=$!
for _ in $(seq 100); do grep -q connected "$TMP/holder.out" && break; sleep 0.1; done
sleep 0.5  # accepted by nestord
if timeout 30 "$NIO" --socket "$TMP/solo.sock" --bytes 1M >"$TMP/nio.out" 2>&1; then
	fail "a second frontend attached to a writable export"
fi
grep -q "volume solo: refused a frontend: 1 attached, the export allows 1" "$TMP/nestord.log" ||
	fail "no log line for the refused frontend: $(tail -n 5 "$TMP/nestord.log")"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true
ok=0
for _ in $(seq 50); do  # the first session ends once its frontend hung up
	if timeout 30 "$NIO" --socket "$TMP/solo.sock" --bytes 1M >"$TMP/nio.out" 2>&1; then ok=1; break; fi
	sleep 0.2
done
[ $ok = 1 ] || fail "the next frontend could not attach after the first left: $(cat "$TMP/nio.out")"
echo "writable export: a second frontend refused while the first is attached, admitted after"

# ---- 3. the control plane ----
export NESTOR_CONTROL_SOCKET=$TMP/control.ctl
ctl() { timeout 30 "$CTL" "$@"; }
ctl volume create rw --size 8M >/dev/null
ctl volume create ro --size 8M >/dev/null
ctl volume create sw --size 8M >/dev/null
if ctl export create rw --frontends 2 >"$TMP/out" 2>&1; then fail "--frontends 2 on a writable export accepted"; fi
grep -q "several frontends may attach only to a read-only export" "$TMP/out" || fail "message: $(cat "$TMP/out")"
ctl export create ro --readonly --frontends 2 >"$TMP/out" || fail "export ro: $(cat "$TMP/out")"
grep -q "up to 2 frontends" "$TMP/out" || fail "export create ro said: $(cat "$TMP/out")"
ctl export create sw --frontends 4 --shared-writers >/dev/null || fail "export sw"
nestord_stop
nestord_launch "$NESTORD_BIN" --pool "$TMP/pool" --journal-dir "$TMP/journal"
ctl --json export list >"$TMP/out"
python3 -c '
import json, sys
e = {x["name"]: x for x in json.load(open(sys.argv[1]))}
assert e["ro"]["frontends"] == 2 and e["ro"]["readonly"], e["ro"]
assert e["sw"]["frontends"] == 4 and not e["sw"]["readonly"], e["sw"]' "$TMP/out" ||
	fail "exports after the restart: $(cat "$TMP/out")"
nestord_stop
"$NESTOR" pool check "$TMP/pool" >/dev/null || fail "pool check"
echo "PASS: vm.16-shared-readonly ($(elapsed) s)"
