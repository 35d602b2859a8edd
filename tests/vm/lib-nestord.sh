# Sourced by the numbered VM tests: start/stop one nestord serving a single
# 64 MiB file-backed volume "vm0" with 2 queues, in a private temp dir.
#   nestord_start NESTORD_BINARY    sets TMP, NESTORD_PID, SOCK, IMG
#   nestord_stop                    SIGTERM, asserts exit status 0
# Everything is reaped by an EXIT trap; nestord itself runs under timeout,
# which makes itself a process-group leader: NESTORD_PID is that timeout
# process, and signals to -NESTORD_PID reach nestord too.
#
# For tests with other volumes, modes or restarts:
#   nestord_launch NESTORD_BINARY ARG...   start nestord --socket-dir $TMP
#                         ARG... (volumes, flags); waits for "nestord ready";
#                         the log is appended to $TMP/nestord.log, so
#                         restarts keep one log. Sets NESTORD_PID.
#   nestord_main_pid      prints the PID of nestord itself (the timeout
#                         wrapper's child; SIGUSR1 would kill the wrapper)
#   nestord_killed        reap the wrapper of a nestord the test SIGKILLed
#                         itself (a crash; by nestord_main_pid)
#   nestord_stats OUT     SIGUSR1, wait for the whole "stats" block (up to
#                         the "stats memory:" line) and write its lines to OUT
#   stats_poll_queue_check OUT MIN   the queue with the most requests in
#                         the stats block OUT (the guest's poll queue, when
#                         its polled I/O dominates) served >= MIN requests
#                         and got "calls 0" (no interrupt was injected);
#                         prints that queue's counters; says why and
#                         returns 1 otherwise
#   nestor_pre_cleanup    if the test defines this function, the EXIT trap
#                         runs it first (e.g. to kill its VMs)

NESTORD_PID=
TMP=$(mktemp -d)
SOCK=$TMP/vm0.sock
IMG=$TMP/vm0.img

_nestord_cleanup() {
	if declare -F nestor_pre_cleanup >/dev/null; then nestor_pre_cleanup || true; fi
	if [ -n "$NESTORD_PID" ] && kill -0 "$NESTORD_PID" 2>/dev/null; then
		kill -KILL -- "-$NESTORD_PID" 2>/dev/null || true
		wait "$NESTORD_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap _nestord_cleanup EXIT
# Run the EXIT trap on these signals too (bash's default would skip it).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

_nestord_log() {
	echo "---- nestord log ----" >&2
	tail -n 60 "$TMP/nestord.log" >&2 || true
	echo "----" >&2
}

nestord_start() {
	local bin=$1
	[ -x "$bin" ] || { echo "usage: $0 NESTORD_BINARY (or env NESTORD)" >&2; exit 2; }
	timeout -k 5 120 "$bin" --socket-dir "$TMP" \
		--volume "vm0,size=64M,backend=file:$IMG,queues=2" \
		--reactors "${NESTORD_REACTORS:-1}" --poll-mode "${NESTORD_MODE:-adaptive}" >"$TMP/nestord.log" 2>&1 &
	NESTORD_PID=$!
	local i
	for i in $(seq 100); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$NESTORD_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "FAIL: nestord did not create $SOCK" >&2
	_nestord_log
	exit 1
}

nestord_stop() {
	# timeout forwards SIGTERM to nestord and reports its exit status.
	kill -TERM "$NESTORD_PID"
	local i
	for i in $(seq 100); do
		kill -0 "$NESTORD_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$NESTORD_PID" 2>/dev/null; then
		echo "FAIL: nestord still running 10 s after SIGTERM (killed)" >&2
		_nestord_log
		exit 1  # the EXIT trap kills the process group
	fi
	local rc=0
	wait "$NESTORD_PID" || rc=$?
	NESTORD_PID=
	if [ $rc -eq 137 ]; then
		echo "FAIL: nestord did not exit within 5 s of SIGTERM (timeout -k killed it)" >&2
		_nestord_log
		exit 1
	elif [ $rc -ne 0 ]; then
		echo "FAIL: nestord exited with status $rc after SIGTERM" >&2
		_nestord_log
		exit 1
	fi
	echo "nestord exited 0 after SIGTERM"
}

nestord_launch() {
	local bin=$1
	shift
	[ -x "$bin" ] || { echo "usage: $0 NESTORD_BINARY (or env NESTORD)" >&2; exit 2; }
	local before=0
	[ ! -f "$TMP/nestord.log" ] || before=$(grep -c 'nestord ready' "$TMP/nestord.log" || true)
	timeout -k 5 "${NESTORD_TIMEOUT:-170}" "$bin" --socket-dir "$TMP" "$@" >>"$TMP/nestord.log" 2>&1 &
	NESTORD_PID=$!
	local i n
	for i in $(seq 100); do
		n=$(grep -c 'nestord ready' "$TMP/nestord.log" 2>/dev/null || true)
		[ "${n:-0}" -gt "$before" ] && return 0
		kill -0 "$NESTORD_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "FAIL: nestord did not become ready: $bin --socket-dir $TMP $*" >&2
	_nestord_log
	exit 1
}

nestord_main_pid() {
	local c
	c=$(cat "/proc/$NESTORD_PID/task/$NESTORD_PID/children" 2>/dev/null || true)
	c=${c%% *}
	[ -n "$c" ] || { echo "FAIL: no nestord process under timeout PID $NESTORD_PID" >&2; return 1; }
	echo "$c"
}

nestord_killed() {
	wait "$NESTORD_PID" 2>/dev/null || true
	NESTORD_PID=
}

nestord_stats() {
	local out=$1 pid before i
	pid=$(nestord_main_pid) || exit 1
	before=$(wc -l <"$TMP/nestord.log")
	kill -USR1 "$pid"
	for i in $(seq 100); do
		if tail -n "+$((before + 1))" "$TMP/nestord.log" | grep -q ' stats memory: '; then
			tail -n "+$((before + 1))" "$TMP/nestord.log" | grep -o ' stats .*' | sed 's/^ //' |
				sed '/^stats memory: /q' >"$out"
			return 0
		fi
		sleep 0.05
	done
	echo "FAIL: nestord logged no stats within 5 s of SIGUSR1" >&2
	_nestord_log
	exit 1
}

stats_poll_queue_check() {
	local out=$1 min=$2 q qreq qcalls qsupp qkicks rc=0
	read -r q qreq qcalls qsupp qkicks < <(awk '$2 == "queue" {
		for (i = 1; i < NF; i++) v[$i] = $(i + 1)
		print $3 "/" $4, v["requests"], v["calls"], v["calls_suppressed"], v["kicks"] }' "$out" |
		sort -k2,2nr | head -n 1)
	echo "busiest queue $q: requests $qreq calls $qcalls calls_suppressed $qsupp kicks $qkicks"
	[ "${qreq:-0}" -ge "$min" ] || { echo "FAIL: busiest queue served ${qreq:-0} requests, want >= $min (the polled I/O)" >&2; rc=1; }
	[ "${qcalls:-x}" = 0 ] || { echo "FAIL: the poll queue $q got ${qcalls:-no} calls (interrupts), want 0" >&2; rc=1; }
	return $rc
}
