# shellcheck shell=bash
# Sourced by control (and ceph) tests once they have defined T (their
# scratch directory) and PID (nestord's `timeout` wrapper's, or empty).
#   fail MESSAGE          the test fails, with the end of $T/log (unless the
#                         test defined its own fail first)
#   stop                  SIGTERM to nestord; it must exit 0
#   nestord_pid           nestord's own pid (under timeout, unshare, ...)
#   alive PID             the process runs (an exited child stays a zombie
#                         until waited for, and kill -0 succeeds on it)
#   kill_nestord [VAR]    SIGKILL to the nestord whose `timeout` wrapper's pid
#                         is in VAR (default PID), then the wrapper; VAR is
#                         emptied
#   expect_rc CODE CMD... runs CMD (at most 60 s), which must exit CODE;
#                         its stdout and stderr are left in $T/out, $T/err
#   out_has TEXT, err_has TEXT   $T/out (stdout) or $T/err (stderr) of the
#                         last expect_rc holds TEXT
#   blk SOCK ARGS...      control-blk-io ($BLK, when the test defines it) on
#                         $T/SOCK.sock: write|check SEED OFFSET LEN, or
#                         zeroes|discard OFFSET LEN
#   py EXPR [FILE]        a Python assertion over the JSON in FILE (default
#                         $T/out, nestorctl --json's stdout) as j, with
#                         v(name) the entry of that name in a list
# SIGTERM to nestord itself, not to its `timeout -k 5` wrapper: the
# wrapper would pass it on but SIGKILL nestord 5 s later, and a clean stop
# may take longer (closing RBD images on a slow cluster).
# Under a wrapper that holds SIGTERM itself (unshare --fork), nestord is
# one level further down: the first process named nestord is signalled.
# nestord_pid: the pid of nestord itself under $PID's wrappers (signal it,
# not `timeout`: timeout passes a signal on and SIGKILLs 5 s later).
nestord_pid() {
	local p=$PID c
	for _ in 1 2 3; do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" != nestord ] || break
		c=$(cat "/proc/$p/task/$p/children" 2>/dev/null || true)
		c=${c%% *}
		[ -n "$c" ] || break
		p=$c
	done
	echo "$p"
}
stop() {
	kill -TERM "$(nestord_pid)"
	wait "$PID" || fail "nestord exited $? on SIGTERM"
	PID=
}
declare -F fail >/dev/null || fail() {
	echo "FAIL: $*" >&2
	echo "---- nestord log ----" >&2
	tail -n 30 "$T/log" >&2 || true
	exit 1
}
alive() { [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null || echo Z)" != Z ]; }
# SIGKILL to the wrapper alone would leave nestord running (timeout cannot
# pass it on), and to its whole process group would leave nestord a zombie
# for PID 1 to reap. So nestord first (timeout reaps it and exits), then
# what is left.
kill_nestord() {
	local var=${1:-PID} c p
	p=${!var}
	[ -n "$p" ] || return 0
	c=$(cat "/proc/$p/task/$p/children" 2>/dev/null || true)
	# shellcheck disable=SC2086  # one pid or none
	[ -z "$c" ] || kill -KILL $c 2>/dev/null || true
	for _ in $(seq 20); do
		alive "$p" || break
		sleep 0.1
	done
	kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	printf -v "$var" ''
}
expect_rc() {
	local want=$1 rc=0
	shift
	timeout 60 "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T/err") $(cat "$T/out")"
}
py() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
def v(n):
    l = (j.get("volumes") or j.get("snapshots")) if isinstance(j, dict) else j
    return next(x for x in l if x["name"] == n)
assert eval(sys.argv[2]), sys.argv[2]
' "${2:-$T/out}" "$1" 2>"$T/pyerr" || fail "$1: $(tail -n 1 "$T/pyerr"): $(cat "${2:-$T/out}")"
}
err_has() { grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"; }
out_has() { grep -qF -- "$1" "$T/out" || fail "stdout lacks '$1': $(cat "$T/out")"; }
blk() { timeout 60 "$BLK" "$T/$1.sock" "${@:2}" 2>"$T/blk" || fail "control-blk-io $*: $(cat "$T/blk")"; }
