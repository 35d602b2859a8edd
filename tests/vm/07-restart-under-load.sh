#!/usr/bin/env bash
# VM test 07: nestord crashes and restarts under guest load.
# Exercises the in-flight tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD):
# a restarted nestord must resubmit exactly the requests the killed one held.
#
# nestord (1 reactor, adaptive) serves the 64 MiB file-backed volume v0 (2
# queues). The guest (QEMU chardev reconnect=1) runs the "loop" test: O_DIRECT
# 64 KiB write generations (the pattern's seed + generation number in every
# 4 KiB block) over 4 MiB, LOOP_QD (default 8) writes in flight through
# io_uring (one in each of LOOP_QD stripes, so they reach nestord
# unmerged), fdatasync after each generation, for LOOP_SECS (default 8);
# every failed write or fdatasync is reported and counted. While it loops,
# the host kills nestord with SIGKILL twice, each time at an instant when
# the inflight region marks 3 requests in flight, and restarts it each time
# with the same volume (same backing file, same socket path); after each
# restart it waits until the guest completes two more generations
# (lib-restart.sh). The volume has delay_us=DELAY_US (default 10000; empty:
# none): every request spends 10 ms inside nestord.
# Asserts: each kill stalled guest requests (writes or flushes that took
# > 0.5 s, as QEMU reconnects after 1 s; in two different generations); the
# nestord started after each kill logged "queue Q: resubmitting N
# request(s)" for exactly the N requests the region marked in flight on
# queue Q after the kill (and each kill caught some); the guest reports
# zero write errors and reads back the last generation in every block; its
# kernel logged no I/O or virtio errors; the backing file holds that
# generation; the restarted nestord exits 0 on SIGTERM.
# Env: LOOP_SECS, LOOP_QD, KILLS (default 2; more kills need more LOOP_SECS,
# about 3 s each), DELAY_US.
# usage: 07-restart-under-load.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/lib-guests.sh"
. "$HERE/lib-restart.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
BIN=${1:-${NESTORD:-}}
LOOP_SECS=${LOOP_SECS:-8}
KILLS=${KILLS:-2}

t0=$(date +%s.%N)
restart_begin 0x07000000
for k in $(seq "$KILLS"); do
	restart_cycle "$k" kill9
done
restart_check
nestord_stop
echo "PASS: vm.07-restart-under-load ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
