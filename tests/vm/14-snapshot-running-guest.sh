#!/usr/bin/env bash
# VM test 14: snapshots of a running guest's disk (issue #12, "Online").
# nestord --pool serves the thin volume v0 (2 queues, 1 reactor, adaptive).
# The guest runs the "loop" test on it: O_DIRECT write generations of the
# pattern (seed S+g in every 4 KiB block) over 8 MiB, 8 writes in flight,
# fdatasync after each generation, for LOOP_SECS. While it writes, the host
# takes SNAPSHOTS snapshots with `nestorctl snapshot create` (each timed).
# Asserts: the guest saw no write error and read back its last generation,
# its kernel logged no I/O error; each snapshot, exported read-only and
# dumped through libnestor, holds one instant of the loop: every block of
# the range holds generation g or g+1 of the pattern for one g (a
# generation starts only after the previous one's fdatasync), whole (no
# torn block), never anything else; a clone of the last snapshot reads the
# same bytes; `nestor pool check` is clean after nestord's SIGTERM.
# usage: 14-snapshot-running-guest.sh NESTORD NESTOR_VM_DUMP NESTOR NESTORCTL
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
LOOP_SECS=${LOOP_SECS:-12}
SNAPSHOTS=${SNAPSHOTS:-4}
SEED=0x6e657374 OFFSET=$((1 << 20)) LENGTH=$((8 << 20))

t0=$(date +%s.%N)
"$HERE/build-guest.sh" "$GUEST"
POOL=$TMP/pool.img
"$NESTOR" pool create "$POOL" --size 512M
"$NESTOR" volume create v0 --pool "$POOL" --size 64M
NESTORD_TIMEOUT=170 nestord_launch "$NESTORD_BIN" --pool "$POOL" --export-all --pool-queues 2 --reactors 1 \
	--poll-mode adaptive
ctl() { timeout 30 "$CTL" --socket "$TMP/control.ctl" "$@"; }

guest_start g --socket "$TMP/v0.sock" --test loop --loop-secs "$LOOP_SECS" --loop-qd 8 --queues 2 \
	--timeout 150 --offset "$OFFSET" --length "$LENGTH" --seed "$SEED"
guest_wait_console g 'loop: generation 2 ' 120
for k in $(seq "$SNAPSHOTS"); do
	s0=$(date +%s.%N)
	ctl snapshot create v0 "s$k" >/dev/null || { echo "FAIL: snapshot s$k" >&2; _nestord_log; exit 1; }
	echo "snapshot s$k under guest writes: $(awk -v a="$s0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", (b - a) * 1000 }') ms (nestorctl round trip)"
	sleep 1.5
done
guest_wait g || { echo "FAIL: guest (write errors or wrong read-back while snapshots were taken)" >&2; _nestord_log; exit 1; }
if tr -d '\r' <"$TMP/g.console" | grep -aiE 'I/O error|blk_update_request|virtio_blk.*(error|fail)'; then
	echo "FAIL: the guest kernel logged I/O errors" >&2
	exit 1
fi

# Each snapshot: one instant of the loop.
check_instant() { # DUMP_FILE NAME
	python3 - "$1" "$2" "$OFFSET" "$LENGTH" "$SEED" "$GUEST/iopoll_io" <<'EOF'
import subprocess, sys
path, name, off, length, seed0, gen = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5], 0), sys.argv[6]
data = open(path, "rb").read()[off:off + length]
seeds = {}
for i in range(0, length, 4096):
    head = data[i:i + 64].split(b"\0")[0].decode("ascii", "replace")
    if not head.startswith("NESTOR-VM blk="):
        sys.exit(f"FAIL: {name}: block {(off + i) // 4096} holds no pattern block ({head[:30]!r})")
    seeds.setdefault(int(head.split("seed=")[1][:8], 16), []).append(i)
gens = sorted(s - seed0 for s in seeds)
if gens[-1] - gens[0] > 1:
    sys.exit(f"FAIL: {name}: generations {gens} in one snapshot: not one instant")
for s, blocks in seeds.items():
    want = subprocess.run([gen, "gen", "--seed", str(s), "--offset", str(off), "--length", str(length)],
                          check=True, capture_output=True).stdout
    bad = [i for i in blocks if data[i:i + 4096] != want[i:i + 4096]]
    if bad:
        sys.exit(f"FAIL: {name}: {len(bad)} torn block(s) of generation {s - seed0}, first at {off + bad[0]}")
print(f"{name}: one instant: generations {gens} ({', '.join(str(len(b)) for b in seeds.values())} blocks)")
EOF
}
for k in $(seq "$SNAPSHOTS"); do
	ctl export create "s$k" --readonly >/dev/null || { echo "FAIL: export s$k read-only" >&2; _nestord_log; exit 1; }
	timeout 60 "$DUMP" "$TMP/s$k.sock" "$TMP/s$k.dump" || { echo "FAIL: dump s$k" >&2; _nestord_log; exit 1; }
	check_instant "$TMP/s$k.dump" "s$k"
done
ctl volume clone "s$SNAPSHOTS" c --export >/dev/null || { echo "FAIL: clone" >&2; _nestord_log; exit 1; }
timeout 60 "$DUMP" "$TMP/c.sock" "$TMP/c.dump" || { echo "FAIL: dump clone" >&2; exit 1; }
cmp -s "$TMP/c.dump" "$TMP/s$SNAPSHOTS.dump" || { echo "FAIL: the clone differs from its snapshot" >&2; exit 1; }
echo "clone c of s$SNAPSHOTS reads the same 64 MiB"
nestord_stop
"$NESTOR" pool check "$POOL" || { echo "FAIL: nestor pool check" >&2; exit 1; }
echo "PASS: vm.14-snapshot-running-guest ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
