# Sourced by control tests once they have defined T (their scratch
# directory), PID (nestord's, or empty) and fail MESSAGE.
#   stop                  SIGTERM to nestord; it must exit 0
#   expect_rc CODE CMD... runs CMD (at most 60 s), which must exit CODE;
#                         its stdout and stderr are left in $T/out, $T/err
stop() {
	kill -TERM "$PID"
	wait "$PID" || fail "nestord exited $? on SIGTERM"
	PID=
}
expect_rc() {
	local want=$1 rc=0
	shift
	timeout 60 "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T/err") $(cat "$T/out")"
}
