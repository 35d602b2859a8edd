#!/usr/bin/env bash
# VM test 08: nestord is stopped and restarted under polled guest I/O.
# Like 07 (lib-restart.sh), but the guest's writes go through a virtio poll
# queue and are completed by polling, and nestord is restarted three times,
# once after a clean stop:
#
# nestord (1 reactor, adaptive) serves the 64 MiB file-backed volume v0 (2
# queues, delay_us=DELAY_US, default 10000: every request spends 10 ms
# inside nestord). The guest (1 vCPU, 2 possible; QEMU chardev
# reconnect=1) loads virtio_blk with poll_queues=1 (queue 0 interrupt-
# driven, queue 1 the poll queue) and runs the "loop" test with
# --loop-iopoll 1: O_DIRECT write generations over 4 MiB, LOOP_QD (default
# 8) in flight through an io_uring ring set up with IORING_SETUP_IOPOLL
# (completions reaped by polling the poll queue; no interrupt), fdatasync
# after each, for LOOP_SECS (default 12). While it loops, the host restarts
# nestord as RESTARTS says (default "kill9 term kill9"): SIGKILL (a crash,
# at an instant when the inflight region marks 3 polled writes in flight
# on queue 1), then SIGTERM (a clean stop: nestord drains the requests it
# holds and must exit 0), then SIGKILL again; after each it starts nestord
# on the same volume and socket and waits until the guest completes two
# more generations.
# Asserts (lib-restart.sh): every restart stalled guest requests (> 0.5 s:
# held by the stopped nestord or issued while none ran) in a distinct
# generation; the nestord started after each SIGKILL resubmitted exactly
# the requests the region marked in flight, per queue (and each SIGKILL
# caught some), the one started after the SIGTERM none (the region marked
# none after the clean stop); zero guest write errors; the last generation
# reads back in every block and the backing file holds it; no kernel I/O or
# virtio errors.
# And the poll queue carried the I/O: when the guest has its result (and
# holds 1 s), nestord's SIGUSR1 stats (the last nestord's counters) show
# that the queue with the most requests had >= 200 requests (the loop's
# writes, ~180 a generation, outnumber the default queue's: a flush a
# generation and 64 read-back requests) and "calls 0": no interrupt was
# injected for it.
# Finally nestord exits 0 on SIGTERM.
# Env: LOOP_SECS, LOOP_QD, RESTARTS (kill9|term words; each takes about
# 3 s of the loop), DELAY_US (empty: none; then a SIGKILL may catch none).
# usage: 08-restart-poll-queue.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
. "$HERE/lib-restart.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
BIN=${1:-${NESTORD:-}}
LOOP_SECS=${LOOP_SECS:-12}
RESTARTS=${RESTARTS:-kill9 term kill9}
RESTART_QUEUE=1 # the guest's poll queue: SIGKILLs must catch polled writes

t0=$(date +%s.%N)
restart_begin 0x08000000 --loop-iopoll 1 --poll-queues 1 --hold 1
if ! tr -d '\r' <"$TMP/g.console" | grep -aq 'loop: started.*(io_uring IOPOLL)'; then
	echo "FAIL: the guest's loop does not write through an IOPOLL ring" >&2
	tr -d '\r' <"$TMP/g.console" | grep -a 'nestor-vm:' >&2 || true
	exit 1
fi
k=0
for how in $RESTARTS; do
	k=$((k + 1))
	restart_cycle "$k" "$how"
done

# The queues' counters, while the guest (holding after its result) is still
# attached: they go away with the session.
guest_wait_console g '^NESTOR-VM-RESULT:' 60
nestord_stats "$TMP/stats"
restart_check
grep '^stats queue ' "$TMP/stats" | sed 's/^/  /'
echo "(counters of the last nestord)"
stats_poll_queue_check "$TMP/stats" 200 || { _nestord_log; exit 1; }
nestord_stop
echo "PASS: vm.08-restart-poll-queue ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
