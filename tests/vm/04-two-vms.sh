#!/usr/bin/env bash
# VM test 04: two guests at once on one nestord. nestord (1 reactor,
# adaptive) serves two 32 MiB file-backed volumes, va and vb (2 queues
# each); two QEMU guests (1 vCPU each) run concurrently, one per volume, each
# running the "direct" test with its own seed: O_DIRECT write of an 8 MiB
# pattern at 1 MiB, O_DIRECT and buffered read-back verified in the guest.
# Asserts: both guests PASS; each backing file holds exactly its own guest's
# pattern at [1 MiB, 9 MiB) (so not the other's) and zeroes everywhere else;
# both guests were attached at once (SIGUSR1 when the first guest reports
# its result, while it holds 3 s before powering off: both volumes show one
# session, and both guests' memory is mapped); nestord exits 0 on SIGTERM.
# usage: 04-two-vms.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}

t0=$(date +%s.%N)
"$HERE/build-guest.sh" "$GUEST"
nestord_launch "${1:-${NESTORD:-}}" \
	--volume "va,size=32M,backend=file:$TMP/va.img,queues=2" \
	--volume "vb,size=32M,backend=file:$TMP/vb.img,queues=2" \
	--reactors 1 --poll-mode adaptive

SEED_A=0x0a0a0001 SEED_B=0x0b0b0002
OFF=$((1 << 20)) LEN=$((8 << 20))
guest_start a --socket "$TMP/va.sock" --test direct --queues 2 --timeout 120 --hold 3 \
	--seed $SEED_A --offset $OFF --length $LEN --verify-file "$TMP/va.img"
guest_start b --socket "$TMP/vb.sock" --test direct --queues 2 --timeout 120 --hold 3 \
	--seed $SEED_B --offset $OFF --length $LEN --verify-file "$TMP/vb.img"
# At the first result line neither guest has powered off yet.
for i in $(seq 1200); do
	cat "$TMP/a.console" "$TMP/b.console" 2>/dev/null | grep -aq '^NESTOR-VM-RESULT:' && break
	sleep 0.1
done
nestord_stats "$TMP/stats"
sed 's/^/  /' "$TMP/stats"
sessions_a=$(grep -oP '^stats volume va: sessions \K[0-9]+' "$TMP/stats")
sessions_b=$(grep -oP '^stats volume vb: sessions \K[0-9]+' "$TMP/stats")
mapped=$(grep -oP '^stats memory: mapped_bytes \K[0-9]+' "$TMP/stats")
rc=0
guest_wait a || rc=1
guest_wait b || rc=1
[ $rc -eq 0 ] || { echo "FAIL: a guest failed" >&2; _nestord_log; exit 1; }
[ "$sessions_a" = 1 ] && [ "$sessions_b" = 1 ] || {
	echo "FAIL: with both guests up, sessions va=$sessions_a vb=$sessions_b (want 1 and 1)" >&2
	exit 1
}
echo "both guests attached at once: sessions va=1 vb=1, mapped_bytes $mapped ($((mapped >> 20)) MiB)"
[ "$mapped" -ge $((2 * 256 << 20)) ] || { echo "FAIL: mapped_bytes $mapped < two guests' 256 MiB" >&2; exit 1; }

# Each file: its own pattern (run-guest --verify-file checked it), the other
# seed's pattern nowhere in range, zeroes outside the range.
for v in a b; do
	img=$TMP/v$v.img
	other=$SEED_B
	[ $v = a ] || other=$SEED_A
	if "$GUEST/iopoll_io" verify --seed $other --offset $OFF --length 4096 "$img" >/dev/null 2>&1; then
		echo "FAIL: v$v.img holds the other guest's pattern" >&2
		exit 1
	fi
	[ "$(stat -c %s "$img")" -eq $((32 << 20)) ] || { echo "FAIL: v$v.img size $(stat -c %s "$img")" >&2; exit 1; }
	cmp -n $OFF "$img" /dev/zero || { echo "FAIL: v$v.img: non-zero bytes before the guest's range" >&2; exit 1; }
	tail -c +$((OFF + LEN + 1)) "$img" | cmp -n $(((32 << 20) - OFF - LEN)) - /dev/zero ||
		{ echo "FAIL: v$v.img: non-zero bytes after the guest's range" >&2; exit 1; }
	echo "v$v.img: own pattern in [$OFF, $((OFF + LEN))), zeroes elsewhere"
done

nestord_stop
for r in $(grep -oP 'stats reactor 0 .* requests \K[0-9]+' "$TMP/nestord.log" | tail -n 1); do
	echo "reactor 0 completed $r requests for both guests"
done
echo "PASS: vm.04-two-vms ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
