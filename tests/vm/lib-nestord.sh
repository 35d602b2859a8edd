# Sourced by the numbered VM tests: start/stop one nestord serving a single
# 64 MiB file-backed volume "vm0" with 2 queues, in a private temp dir.
#   nestord_start NESTORD_BINARY    sets TMP, NESTORD_PID, SOCK, IMG
#   nestord_stop                    SIGTERM, asserts exit status 0
# Everything is reaped by an EXIT trap; nestord itself runs under timeout,
# which makes itself a process-group leader: NESTORD_PID is that timeout
# process, and signals to -NESTORD_PID reach nestord too.

NESTORD_PID=
TMP=$(mktemp -d)
SOCK=$TMP/vm0.sock
IMG=$TMP/vm0.img

_nestord_cleanup() {
	if [ -n "$NESTORD_PID" ] && kill -0 "$NESTORD_PID" 2>/dev/null; then
		kill -KILL -- "-$NESTORD_PID" 2>/dev/null || true
		wait "$NESTORD_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap _nestord_cleanup EXIT

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
