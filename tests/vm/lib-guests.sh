# Sourced by VM tests that run guests in the background (after
# lib-nestord.sh, whose EXIT trap calls nestor_pre_cleanup defined here).
#   guest_start NAME RUN-GUEST-ARGS...   run-guest.sh in the background;
#                  console in $TMP/NAME.console, QEMU PID in $TMP/NAME.pid,
#                  run-guest output in $TMP/NAME.out; a command prefix in
#                  the array GUEST_WRAP (e.g. taskset -c 0) applies to it
#   guest_wait NAME            waits for run-guest.sh, prints its output
#                  (prefixed "[NAME]"), returns its exit status
#   guest_wait_console NAME ERE SECS   waits until the console has a line
#                  matching ERE; fails the test if the guest ended first or
#                  SECS passed
#   guest_kill NAME [SIG]      signals (default SIGKILL) that guest's QEMU
# The EXIT trap SIGKILLs every QEMU still running and reaps run-guest.sh.
GUEST_NAMES=()
GUEST_WRAP=()
declare -A GUEST_PID=()

guest_start() {
	local name=$1
	shift
	rm -f "$TMP/$name.pid" "$TMP/$name.console"
	"${GUEST_WRAP[@]}" "$HERE/run-guest.sh" --log "$TMP/$name.console" --pidfile "$TMP/$name.pid" "$@" \
		>"$TMP/$name.out" 2>&1 </dev/null &
	GUEST_PID[$name]=$!
	GUEST_NAMES+=("$name")
}

guest_wait() {
	local name=$1 rc=0
	wait "${GUEST_PID[$name]}" || rc=$?
	GUEST_PID[$name]=
	sed "s/^/[$name] /" "$TMP/$name.out"
	return $rc
}

guest_wait_console() {
	local name=$1 ere=$2 secs=$3 i
	for i in $(seq $((secs * 10))); do
		if [ -f "$TMP/$name.console" ] && tr -d '\r' <"$TMP/$name.console" | grep -aqE "$ere"; then
			return 0
		fi
		if ! kill -0 "${GUEST_PID[$name]}" 2>/dev/null; then
			echo "FAIL: guest $name ended before its console showed /$ere/" >&2
			guest_wait "$name" >&2 || true
			exit 1
		fi
		sleep 0.1
	done
	echo "FAIL: guest $name: no /$ere/ on the console within $secs s" >&2
	tr -d '\r' <"$TMP/$name.console" | tail -n 20 >&2 || true
	exit 1
}

# The QEMU PID of guest NAME, only if that process is still the QEMU that
# wrote the pid file (its command line names the file).
_guest_qemu_pid() {
	local pf=$TMP/$1.pid pid
	[ -s "$pf" ] || return 1
	pid=$(cat "$pf")
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pf" || return 1
	echo "$pid"
}

guest_kill() {
	local pid
	pid=$(_guest_qemu_pid "$1") || { echo "FAIL: guest $1 has no running QEMU" >&2; exit 1; }
	kill "-${2:-KILL}" "$pid"
	echo "guest $1: QEMU (PID $pid) sent SIG${2:-KILL}"
}

nestor_pre_cleanup() {
	local name pid i
	for name in "${GUEST_NAMES[@]}"; do
		[ -n "${GUEST_PID[$name]:-}" ] || continue
		# A guest being started may not have written its pid file yet.
		for i in $(seq 50); do
			kill -0 "${GUEST_PID[$name]}" 2>/dev/null || break
			if pid=$(_guest_qemu_pid "$name"); then
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		_guest_qemu_pid "$name" >/dev/null || kill -TERM "${GUEST_PID[$name]}" 2>/dev/null || true
		wait "${GUEST_PID[$name]}" 2>/dev/null || true
	done
	return 0
}
