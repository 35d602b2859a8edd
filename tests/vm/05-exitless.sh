#!/usr/bin/env bash
# VM test 05: exitless I/O. nestord runs one busy-polling reactor
# (--poll-mode poll) pinned to CPU 1; QEMU (1 vCPU, 2 possible) is kept on
# CPU 0 with taskset so TCG is not starved. The guest loads virtio_blk with
# poll_queues=1 on the 2-queue device and runs the "iopoll" test (io_uring
# IORING_SETUP_IOPOLL O_DIRECT writes and verified reads of an 8 MiB
# pattern: ~2300 requests, ~2080 after the guest's plug merging). When the
# guest reports its result it holds 2 s before powering off; meanwhile the
# host sends nestord SIGUSR1 and asserts from the stats:
#   - the queue with the most requests (the guest's poll queue, carrying the
#     IOPOLL I/O) had >= 2000 requests and "calls 0": no interrupt was ever
#     injected for it;
#   - the reactor's kicks are far fewer than its requests (kicks * 20 <=
#     requests): while nestord polls, the guest does not notify it.
# Then the backing file holds the pattern and nestord exits 0 on SIGTERM.
# usage: 05-exitless.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}

[ "$(nproc)" -ge 2 ] || { echo "FAIL: needs 2 CPUs (nestord busy-polls CPU 1)" >&2; exit 1; }
t0=$(date +%s.%N)
"$HERE/build-guest.sh" "$GUEST"
nestord_launch "${1:-${NESTORD:-}}" \
	--volume "v0,size=64M,backend=file:$TMP/v0.img,queues=2" \
	--reactors 1 --cpus 1 --poll-mode poll

# run-guest.sh, and the QEMU it starts, inherit the CPU 0 affinity.
GUEST_WRAP=(taskset -c 0)
guest_start g --socket "$TMP/v0.sock" --test iopoll --queues 2 --timeout 120 --hold 2 \
	--verify-file "$TMP/v0.img"
guest_wait_console g '^NESTOR-VM-RESULT:' 120
nestord_stats "$TMP/stats"
guest_wait g || { echo "FAIL: guest" >&2; _nestord_log; exit 1; }
sed 's/^/  /' "$TMP/stats"

fail=0
stats_poll_queue_check "$TMP/stats" 2000 || fail=1
read -r rreq rkicks rcalls < <(awk '$2 == "reactor" {
	for (i = 1; i < NF; i++) v[$i] = $(i + 1)
	print v["requests"], v["kicks"], v["calls"] }' "$TMP/stats")
echo "reactor 0: requests $rreq kicks $rkicks calls $rcalls"
[ $((rkicks * 20)) -le "$rreq" ] || { echo "FAIL: reactor kicks $rkicks not far below its requests $rreq (want <= 1/20)" >&2; fail=1; }
[ $fail -eq 0 ] || { _nestord_log; exit 1; }
nestord_stop
echo "PASS: vm.05-exitless ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
