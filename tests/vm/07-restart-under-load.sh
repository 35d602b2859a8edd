#!/usr/bin/env bash
# VM test 07: nestord crashes and restarts under guest load.
# Exercises the in-flight tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD):
# nestord must log that it resubmitted the requests the killed one held.
#
# nestord (1 reactor, adaptive) serves the 64 MiB file-backed volume v0 (2
# queues). The guest (QEMU chardev reconnect=1) runs the "loop" test: O_DIRECT
# 64 KiB write generations (the pattern's seed + generation number in every
# 4 KiB block) over 4 MiB, LOOP_QD (default 8) writes in flight through
# io_uring, fdatasync after each generation, for LOOP_SECS (default 8);
# every failed write or fdatasync is reported and counted. While it loops,
# the host kills nestord with SIGKILL twice and restarts it each time with
# the same volume (same backing file, same socket path); after each restart
# it waits until the guest completes two more generations. Asserts: each
# kill caught guest requests in flight (writes or flushes that took > 1 s,
# QEMU's reconnect delay, in two different generations); the guest reports
# zero write errors and reads back the last generation in every block; its
# kernel logged no I/O or virtio errors; the backing file holds that
# generation; the restarted nestord exits 0 on SIGTERM.
# The volume has delay_us=DELAY_US (default 2000; empty: none): every
# request spends 2 ms inside nestord, so each SIGKILL catches requests that
# nestord had taken from the ring but not completed (the ones the
# INFLIGHT_SHMFD tracking must resubmit); the restarted nestord's log must
# show "resubmitting N request(s)" at least once.
# Env: LOOP_SECS, LOOP_QD, KILLS (default 2; more kills need more LOOP_SECS,
# about 1.5 s each), DELAY_US.
# usage: 07-restart-under-load.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
BIN=${1:-${NESTORD:-}}
LOOP_SECS=${LOOP_SECS:-8}
LOOP_QD=${LOOP_QD:-8}
KILLS=${KILLS:-2}
DELAY_US=${DELAY_US:-2000}
ARGS=(--volume "v0,size=64M,backend=file:$TMP/v0.img,queues=2${DELAY_US:+,delay_us=$DELAY_US}"
	--reactors 1 --poll-mode adaptive)

t0=$(date +%s.%N)
"$HERE/build-guest.sh" "$GUEST"
nestord_launch "$BIN" "${ARGS[@]}"

gens() { tr -d '\r' <"$TMP/g.console" | grep -ac 'iopoll_io: loop: generation [0-9]* (seed' || true; }
loop_over() { tr -d '\r' <"$TMP/g.console" | grep -aq 'iopoll_io: loop: generations [0-9]* last-seed'; }

guest_start g --socket "$TMP/v0.sock" --reconnect 1 --test loop --loop-secs "$LOOP_SECS" --loop-qd "$LOOP_QD" \
	--queues 2 --timeout 150 --length $((4 << 20)) --seed 0x07000000 --verify-file "$TMP/v0.img"
guest_wait_console g 'iopoll_io: loop: generation 1 ' 90
tl=$(date +%s.%N)
since() { awk -v a="$tl" -v b="$(date +%s.%N)" 'BEGIN { printf "+%.1f s", b - a }'; }

for k in $(seq "$KILLS"); do
	sleep 1
	if loop_over; then
		echo "FAIL: the guest's loop ended before kill $k (raise LOOP_SECS)" >&2
		exit 1
	fi
	before=$(gens)
	nestord_kill9
	echo "kill $k ($(since) into the loop): guest had written $before generations"
	sleep 0.3
	nestord_launch "$BIN" "${ARGS[@]}"
	# Nothing completes while nestord is down (QEMU reconnects after 1 s), so
	# generations logged from now on need the restarted nestord.
	mid=$(gens)
	echo "kill $k: nestord restarted (PID $(nestord_main_pid)), guest at $mid generations"
	# The guest must make progress again: two more generations.
	ok=0
	for i in $(seq 300); do
		[ "$(gens)" -ge $((mid + 2)) ] && { ok=1; break; }
		loop_over && { ok=1; break; }
		kill -0 "${GUEST_PID[g]}" 2>/dev/null || break
		sleep 0.1
	done
	if [ $ok -ne 1 ]; then
		echo "FAIL: kill $k: the guest made no progress within 30 s of nestord's restart ($(gens) generations)" >&2
		tr -d '\r' <"$TMP/g.console" | tail -n 8 >&2
		_nestord_log
		exit 1
	fi
	echo "kill $k: guest resumed ($(gens) generations, $(since))"
done

rc=0
guest_wait g >"$TMP/g.summary" 2>&1 || rc=1
grep -v 'generation [0-9]* (seed' "$TMP/g.summary" || true
[ $rc -eq 0 ] || { echo "FAIL: guest (write errors or wrong read-back after nestord restarts)" >&2; _nestord_log; exit 1; }
stalled=$(tr -d '\r' <"$TMP/g.console" | grep -aoP 'loop: generation \K[0-9]+(?=: (write at [0-9]+|fdatasync) took)' | sort -u | wc -l)
echo "generations with requests stalled across a restart: $stalled"
[ "$stalled" -ge "$KILLS" ] || { echo "FAIL: the kills did not catch guest requests in flight" >&2; exit 1; }
resub=$(grep -c 'resubmitting [0-9]* request' "$TMP/nestord.log" || true)
grep 'resubmitting [0-9]* request' "$TMP/nestord.log" | sed 's/^/  nestord: /' || true
if [ -n "$DELAY_US" ] && [ "$resub" -lt 1 ]; then
	echo "FAIL: no restarted nestord resubmitted requests in flight (expected with delay_us=$DELAY_US)" >&2
	exit 1
fi
# Kernel complaints (virtio ring errors, I/O errors) on the console.
if tr -d '\r' <"$TMP/g.console" | grep -aiE 'I/O error|not a head|virtio.*(broken|error)|blk_update_request'; then
	echo "FAIL: the guest kernel reported errors (above)" >&2
	exit 1
fi
nestord_stop
echo "PASS: vm.07-restart-under-load ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
