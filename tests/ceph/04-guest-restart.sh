#!/usr/bin/env bash
# ceph.04: nestord SIGKILLed and restarted under a writing guest on a Ceph
# RBD volume (issue #13): vm.07 (tests/vm/lib-restart.sh) with rbd/v0 in
# place of the backing file.
#
#  a. a throwaway single-node cluster (lib-ceph.sh);
#  b. nestord (1 reactor, adaptive; --ceph-conf, --ceph-id admin) serves
#     --volume v0,backend=rbd:rbd/v0,size=64M,queues=2 (the image is
#     created by size=) on $TMP/v0.sock; the guest (QEMU TCG, chardev
#     reconnect=1) runs the "loop" test: O_DIRECT 64 KiB write generations
#     (the seed + generation number in every 4 KiB block) over 4 MiB at
#     1 MiB, LOOP_QD (default 8) in flight, fdatasync after each, for
#     LOOP_SECS (default 8);
#  c. while it loops, the host SIGKILLs nestord KILLS times (default 2),
#     each at an instant when the inflight region marks RESTART_MIN
#     (default 3) requests in flight (within 5 s, else at once), starts it
#     again 0.3 s later with the same arguments (it must become ready within
#     10 s: it finds the image's exclusive lock held by the dead nestord)
#     and waits for two more generations;
#  d. nestord exits 0 on SIGTERM (librbd flushes and closes the image);
#  e. `rbd export rbd/v0` to a file.
# Asserts (lib-restart.sh restart_check): each kill stalled guest requests
# (> 0.5 s), in as many distinct generations as kills; the nestord started
# after each kill logged "queue Q: resubmitting N request(s)" for exactly
# the N requests the region marked in flight on queue Q after the kill; the
# guest reports zero write errors and reads back the last generation in
# every block; its kernel logged no I/O or virtio errors. And: the kills
# caught requests in flight (the region marked > 0 after at least one of
# them: with no delay_us, a write librbd's cache acknowledges may complete
# between the region's count and the SIGKILL, so one kill may catch none);
# the first nestord broke no lock (a new image); each nestord started after
# a kill logged "broke the lock of a nestord that died on this machine",
# less than 5 s after the SIGKILL (the dead holder's lock taken over at
# once, not after the cluster's watch timeout, 5 s here); after the
# SIGTERM `rbd lock ls rbd/v0` lists no lock; the exported image
# is 64 MiB, holds the last generation in every 4 KiB block of the 4 MiB
# (iopoll_io verify, run-guest.sh's --verify-file checker, with the
# loop's last seed) and zeros everywhere else.
# The export is taken after the clean stop, not from restart_check
# (RESTART_VERIFY is empty): there the guest has finished but nestord still
# holds the image open and locked, and what another client reads would not
# show that the stop loses nothing.
# Prints, per kill: when the restarted nestord broke the lock and was ready,
# counted from the moment the SIGKILLed nestord was gone (restart_cycle's
# stop returned; 0.3 s of it is the test's pause before the start), and the
# guest's longest request across it (its
# stall: held by the killed nestord or issued while none ran, until
# resubmitted or served after QEMU reconnected 1 s later); and the time of
# each phase.
# Every process is bounded (timeout); the trap kills QEMU and nestord and
# stops the cluster. Needs ceph-mon, ceph-osd, ceph-common, qemu-system-x86
# and the guest of vm.00-build-guest ($NESTOR_GUEST_DIR).
# Env: LOOP_SECS, LOOP_QD, KILLS (more kills need more LOOP_SECS, about
# 3 s each), RESTART_MIN; RBD_CLIENT_CONF: lines added to the cluster's
# ceph.conf under [client] (read by nestord's librbd: e.g. "rbd cache =
# false"); LOOP_CHECK (default 1): the guest reads each generation back
# and checks it before the next one overwrites it (--loop-check 1), so the
# generation a kill interrupted must read back whole after its fdatasync,
# not only the last one. This is what caught librbd's writeback cache
# losing acknowledged writes with the SIGKILLed nestord (7 of 9 runs, 4 to
# 187 of the interrupted generation's 1024 blocks read back the generation
# before): nestord now serves RBD writethrough (rbd_cache_max_dirty = 0,
# rados_cluster.cc).
# usage: 04-guest-restart.sh NESTORD   (or env NESTORD)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
CEPH_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The VM helpers (lib-guests.sh runs $HERE/run-guest.sh).
HERE=$(cd "$CEPH_HERE/../vm" && pwd)
# Read by lib-restart.sh:
# shellcheck disable=SC2034 # delay_us= is for file backends (RBD requests take ~1 ms)
DELAY_US=
# shellcheck disable=SC2034 # no backing file: the exported image is checked below
RESTART_VERIFY=
# shellcheck source=../vm/lib-nestord.sh
. "$HERE/lib-nestord.sh"
# shellcheck source=../vm/lib-guests.sh
. "$HERE/lib-guests.sh"
# shellcheck source=../vm/lib-restart.sh
. "$HERE/lib-restart.sh"
# shellcheck source=lib-ceph.sh
. "$CEPH_HERE/lib-ceph.sh"
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
BIN=${1:-${NESTORD:-}}
[ -x "$BIN" ] || { echo "usage: $0 NESTORD (or env NESTORD)" >&2; exit 2; }
LOOP_SECS=${LOOP_SECS:-8}
KILLS=${KILLS:-2}
LOOP_CHECK=${LOOP_CHECK:-1}
M=$((1 << 20))
OFFSET=$M LENGTH=$((4 * M)) # run-guest.sh's default offset, lib-restart.sh's length

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)
TIMES=''
# QEMU, then nestord (the cluster must outlive its client), then the
# cluster (under $TMP), then $TMP (_nestord_cleanup).
cleanup() {
	local rc=$? c
	set +eu # nothing may stop the clean-up half way
	nestor_pre_cleanup
	GUEST_NAMES=()
	if [ -n "$NESTORD_PID" ] && kill -0 "$NESTORD_PID" 2>/dev/null; then
		# nestord first, so that its timeout wrapper reaps it (killed with
		# the wrapper's group, it would be left for PID 1 to reap).
		c=$(nestord_main_pid 2>/dev/null) && kill -KILL "$c" 2>/dev/null
		for _ in $(seq 30); do
			[ "$(cut -d' ' -f3 "/proc/$NESTORD_PID/stat" 2>/dev/null || echo Z)" != Z ] || break
			sleep 0.1
		done
		kill -KILL -- "-$NESTORD_PID" 2>/dev/null
		wait "$NESTORD_PID" 2>/dev/null
	fi
	NESTORD_PID=
	ceph_down
	_nestord_cleanup
	echo "ceph.04-guest-restart: ${TIMES}total $(secs "$T0") s (exit $rc)" >&2
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; _nestord_log; exit 1; }
step() { echo "-- $(secs "$T0") s: $*"; }

# The lines of nestord.log written by the nestord started at restart I (0:
# the first start): (RESTART_AT[I], RESTART_AT[I+1]].
nestord_log_of() {
	local i=$1 to='$'
	[ "$i" -eq $((${#RESTART_AT[@]} - 1)) ] || to=${RESTART_AT[$((i + 1))]}
	sed -n "$((RESTART_AT[i] + 1)),${to}p" "$TMP/nestord.log"
}
# Seconds since UTC midnight: of the first log line on stdin matching ERE
# (nestord's lines start with the UTC time of day), or of an epoch time.
log_tod() { awk -v e="$1" '$0 ~ e && $1 ~ /^[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\./ {
	split($1, t, ":"); printf "%.6f\n", t[1] * 3600 + t[2] * 60 + t[3]; exit }'; }
epoch_tod() { awk -v e="$1" 'BEGIN { printf "%.6f\n", e - 86400 * int(e / 86400) }'; }
tod_diff() { awk -v a="$1" -v b="$2" 'BEGIN { d = b - a; if (d < -43200) d += 86400; printf "%.2f", d }'; }

step "a. the cluster"
t=$(now)
ceph_up "$TMP/ceph" || fail "no Ceph cluster"
TIMES+="cluster up $(secs "$t") s, "
[ -z "${RBD_CLIENT_CONF:-}" ] || printf '[client]\n%s\n' "$RBD_CLIENT_CONF" >>"$CEPH_CONF_FILE"

step "b. nestord serves rbd/v0 (64 MiB, created; 2 queues); the guest's write loop starts"
ARGS=(--volume "v0,backend=rbd:rbd/v0,size=64M,queues=2" --ceph-conf "$CEPH_CONF_FILE" --ceph-id admin
	--reactors 1 --poll-mode adaptive)
echo "nestord ${ARGS[*]}"
t=$(now)
restart_begin 0xce040000 --loop-check "$LOOP_CHECK"
TIMES+="guest up $(secs "$t") s, "

step "c. $KILLS SIGKILL(s) of nestord under the loop, each followed by a restart"
t=$(now)
for k in $(seq "$KILLS"); do
	restart_cycle "$k" kill9
done
restart_check
TIMES+="loop and kills $(secs "$t") s, "

# The lock: the first nestord found none (a new image); each one started
# after a kill broke the dead one's, and how long after the kill.
BROKE='broke the lock of a nestord that died on this machine'
nestord_log_of 0 >"$TMP/log.0" # (a file: grep -q on a pipe could end it early, and pipefail fail it)
if grep -q "$BROKE" "$TMP/log.0"; then fail "the first nestord broke a lock on a new image"; fi
bad=0 caught=0
for i in $(seq "$KILLS"); do
	nestord_log_of "$i" >"$TMP/log.$i"
	killed=$(epoch_tod "${RESTART_STOPPED[i]}")
	ready=$(tod_diff "$killed" "$(log_tod 'nestord ready' <"$TMP/log.$i")")
	broke=none
	if grep -q "$BROKE" "$TMP/log.$i"; then broke=$(tod_diff "$killed" "$(log_tod "$BROKE" <"$TMP/log.$i")"); fi
	# The guest's longest request in the generations after the stop, up to
	# the next stop's ("generation G: write at O took S s", > 0.5 s only).
	hi=${RESTART_GENS[$((i + 1))]:-1000000000}
	stall=$(tr -d '\r' <"$TMP/g.console" |
		sed -n 's/.*loop: generation \([0-9]*\): .* took \([0-9.]*\) s.*/\1 \2/p' |
		awk -v lo="${RESTART_GENS[i]}" -v hi="$hi" '$1 > lo && $1 <= hi && $2 > m { m = $2; g = $1 }
			END { if (g) printf "%.2f s (generation %d)", m, g; else print "none over 0.5 s" }')
	lock="broke the dead one's lock at $broke s" tl="lock broken $broke s"
	[ "$broke" != none ] || lock="logged no lock break" tl="no lock break"
	echo "restart $i: after the SIGKILL, the restarted nestord (started 0.3 s after it) $lock and was" \
		"ready at $ready s; the guest's longest request across it: $stall (QEMU reconnects 1 s after" \
		"the disconnect)"
	TIMES+="restart $i: $tl, ready $ready s, guest stall ${stall%% (*}, "
	if [ "$broke" = none ]; then
		echo "FAIL: restart $i: the restarted nestord did not log \"$BROKE\"" >&2
		bad=1
	elif ! awk -v x="$broke" 'BEGIN { exit !(x < 5) }'; then
		echo "FAIL: restart $i: the lock was broken $broke s after the SIGKILL (want < 5 s)" >&2
		bad=1
	fi
	held=$(sed -n 's/^inflight: total \([0-9]*\)$/\1/p' "$TMP/inflight.$i")
	caught=$((caught + ${held:-0}))
done
if [ "$caught" -eq 0 ]; then
	echo "FAIL: no SIGKILL caught a request in flight" >&2
	bad=1
fi
[ "$bad" -eq 0 ] || fail "the lock takeover or the kills (above)"

step "d. nestord exits 0 on SIGTERM"
last=$(tr -d '\r' <"$TMP/g.console" | grep -aoP 'iopoll_io: loop: generations [0-9]+ last-seed \K0x[0-9a-f]+' | tail -n 1)
[ -n "$last" ] || fail "no last-seed line from the guest's loop"
nestord_stop
ceph_rbd lock ls rbd/v0 >"$TMP/locks" 2>&1 || fail "rbd lock ls rbd/v0: $(cat "$TMP/locks")"
if grep -q . "$TMP/locks"; then fail "rbd/v0 is still locked after nestord's clean stop: $(cat "$TMP/locks")"; fi

step "e. rbd export rbd/v0: the last generation ($last) in every block the loop wrote, zeros elsewhere"
t=$(now)
ceph_rbd export --no-progress rbd/v0 "$TMP/v0.raw" >/dev/null 2>"$TMP/err" || fail "rbd export: $(cat "$TMP/err")"
TIMES+="export $(secs "$t") s, "
size=$(stat -c %s "$TMP/v0.raw")
[ "$size" -eq $((64 * M)) ] || fail "rbd export rbd/v0: $size bytes, want 64 MiB"
"$GUEST/iopoll_io" verify --seed "$last" --offset "$OFFSET" --length "$LENGTH" "$TMP/v0.raw" ||
	fail "the exported rbd/v0 does not hold the guest's last generation ($last)"
cmp -s -n "$OFFSET" "$TMP/v0.raw" /dev/zero || fail "the exported rbd/v0 is not zero before the loop's range"
tail -c +$((OFFSET + LENGTH + 1)) "$TMP/v0.raw" | cmp -s - <(head -c $((size - OFFSET - LENGTH)) /dev/zero) ||
	fail "the exported rbd/v0 is not zero after the loop's range"
echo "the exported rbd/v0 holds the last generation ($last) in every 4 KiB block of [1 MiB, 5 MiB), zeros elsewhere"
echo "PASS: ceph.04-guest-restart ($(secs "$T0") s)"
