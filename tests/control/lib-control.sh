# Sourced by control tests once they have defined T (their scratch
# directory), PID (nestord's `timeout` wrapper's, or empty) and fail MESSAGE.
#   stop                  SIGTERM to nestord; it must exit 0
#   kill_nestord          SIGKILL to nestord and its wrapper (clean-up: a
#                         SIGKILLed `timeout` cannot pass the signal on, and
#                         nestord would outlive the test)
#   expect_rc CODE CMD... runs CMD (at most 60 s), which must exit CODE;
#                         its stdout and stderr are left in $T/out, $T/err
stop() {
	kill -TERM "$PID"
	wait "$PID" || fail "nestord exited $? on SIGTERM"
	PID=
}
kill_nestord() {
	[ -n "$PID" ] || return 0
	pkill -KILL -P "$PID" 2>/dev/null || true
	kill -KILL "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=
}
expect_rc() {
	local want=$1 rc=0
	shift
	timeout 60 "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T/err") $(cat "$T/out")"
}
