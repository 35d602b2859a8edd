#!/usr/bin/env bash
# VM test 06: a guest killed mid-write does not disturb another. nestord (1
# reactor, adaptive) serves two 32 MiB file-backed volumes va and vb. Guest
# a runs the "loop" test (O_DIRECT 64 KiB write generations over 4 MiB, 8
# writes in flight, without pause); once it has written a generation, guest b starts the
# "direct" test on vb, and 2 s later guest a's QEMU is killed with SIGKILL
# (its writes in flight). Asserts:
#   - guest a was mid-write (generations written, no result line);
#   - guest b PASSes and vb.img holds its pattern;
#   - SIGUSR1 while b holds after its result: "stats volume va: sessions 0",
#     vb sessions 1, mapped_bytes = one guest's memory (256 MiB, + <16 MiB);
#   - after b powered off: both volumes have 0 sessions, mapped_bytes 0;
#   - nestord exits 0 on SIGTERM.
# usage: 06-vm-killed.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
MEM=256

t0=$(date +%s.%N)
"$HERE/build-guest.sh" "$GUEST"
nestord_launch "${1:-${NESTORD:-}}" \
	--volume "va,size=32M,backend=file:$TMP/va.img,queues=2" \
	--volume "vb,size=32M,backend=file:$TMP/vb.img,queues=2" \
	--reactors 1 --poll-mode adaptive

# stat_val FILE ERE-PREFIX: the number following the prefix.
stat_val() { grep -oP "^$2\K[0-9]+" "$1" | head -n 1; }
# stats_until OUT COND...: nestord_stats until the shell condition holds
# (session teardown after a disconnect is asynchronous), at most 5 s.
stats_until() {
	local out=$1 i
	shift
	for i in $(seq 25); do
		nestord_stats "$out"
		if eval "$*"; then return 0; fi
		sleep 0.2
	done
	return 1
}

guest_start a --socket "$TMP/va.sock" --test loop --loop-secs 100 --loop-qd 8 --queues 2 --timeout 120 \
	--seed 0x0a000000 --length $((4 << 20)) --mem $MEM
guest_wait_console a 'iopoll_io: loop: generation 1 ' 90
guest_start b --socket "$TMP/vb.sock" --test direct --queues 2 --timeout 120 --hold 2 \
	--seed 0x0b000000 --mem $MEM --verify-file "$TMP/vb.img"
sleep 2
guest_kill a KILL
guest_wait a >"$TMP/a.summary" 2>&1 && { cat "$TMP/a.summary"; echo "FAIL: guest a passed although killed" >&2; exit 1; }
gens=$(tr -d '\r' <"$TMP/a.console" | grep -ac 'iopoll_io: loop: generation [0-9]* (seed')
if tr -d '\r' <"$TMP/a.console" | grep -aq '^NESTOR-VM-RESULT:\|loop: generations'; then
	echo "FAIL: guest a had finished its loop before the kill" >&2
	tr -d '\r' <"$TMP/a.console" | tail -n 5 >&2
	exit 1
fi
echo "guest a killed mid-write after $gens generations"

guest_wait_console b '^NESTOR-VM-RESULT:' 120
stats_until "$TMP/stats1" '[ "$(stat_val "$TMP/stats1" "stats volume va: sessions ")" = 0 ]' || true
sed 's/^/  /' "$TMP/stats1"
rc=0
guest_wait b || rc=1
[ $rc -eq 0 ] || { echo "FAIL: guest b failed while a was killed" >&2; _nestord_log; exit 1; }
if tr -d '\r' <"$TMP/b.console" | grep -aiE 'I/O error|not a head|virtio.*(broken|error)|blk_update_request'; then
	echo "FAIL: guest b's kernel reported errors (above)" >&2
	exit 1
fi
sa=$(stat_val "$TMP/stats1" "stats volume va: sessions ")
sb=$(stat_val "$TMP/stats1" "stats volume vb: sessions ")
mapped=$(stat_val "$TMP/stats1" "stats memory: mapped_bytes ")
echo "with b up and a killed: sessions va=$sa vb=$sb, mapped_bytes $mapped"
fail=0
[ "$sa" = 0 ] || { echo "FAIL: volume va still has $sa session(s) after its QEMU was killed" >&2; fail=1; }
[ "$sb" = 1 ] || { echo "FAIL: volume vb has $sb session(s) while guest b is up, want 1" >&2; fail=1; }
[ "$mapped" -ge $((MEM << 20)) ] && [ "$mapped" -lt $(((MEM + 16) << 20)) ] ||
	{ echo "FAIL: mapped_bytes $mapped, want one guest's $MEM MiB" >&2; fail=1; }
[ $fail -eq 0 ] || { _nestord_log; exit 1; }

stats_until "$TMP/stats2" '[ "$(stat_val "$TMP/stats2" "stats memory: mapped_bytes ")" = 0 ] &&
	[ "$(stat_val "$TMP/stats2" "stats volume vb: sessions ")" = 0 ]' || {
	echo "FAIL: after both guests are gone:" >&2
	cat "$TMP/stats2" >&2
	_nestord_log
	exit 1
}
echo "after b powered off: $(grep -h 'sessions\|mapped' "$TMP/stats2" | sed 's/^stats //' | paste -sd, -)"
nestord_stop
echo "PASS: vm.06-vm-killed ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
