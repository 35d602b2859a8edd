# shellcheck shell=bash
# Sourced by the Ceph tests after lib-ceph.sh and lib-control.sh, once T
# (scratch directory), NESTORD and fail exist:
#   rbd_nestord_start VOLUME_SPEC...
#       nestord on the cluster ($CEPH_CONF_FILE, client.admin, one reactor,
#       sockets in $T/s, control socket $T/ctl, log appended to $T/log)
#       serving these volumes; sets PID (its `timeout` wrapper) and waits
#       for every volume's socket (30 s), failing the test if nestord exits.
#   rbd_nestord_pool_start CEPH_POOL [EXPORT...]
#       the same with --pool rbd:CEPH_POOL (a Ceph pool as nestord's pool,
#       docs/ceph.md) instead of volumes; waits for the control socket and
#       for the socket of every EXPORT named (the exports it must restore).
#   RBD_NESTORD_ARGS: more nestord arguments (e.g. --ceph-op-timeout 5,
#       --export-all); RBD_NESTORD_WRAP: a command to run nestord under
#       (e.g. unshare ...); RBD_NESTORD_MAX: timeout's bound in seconds
#       (default 240).
rbd_nestord_start() {
	local args=() v
	for v in "$@"; do args+=(--volume "$v"); done
	_rbd_nestord_run "${args[@]}"
	for v in "$@"; do _rbd_nestord_wait "$T/s/${v%%,*}.sock"; done
}
rbd_nestord_pool_start() {
	local pool=$1 v
	shift
	rm -f "$T/ctl"  # a stale one (after a SIGKILL) would count as up
	_rbd_nestord_run --pool "rbd:$pool"
	_rbd_nestord_wait "$T/ctl"
	for v in "$@"; do _rbd_nestord_wait "$T/s/$v.sock"; done
}
# _rbd_nestord_run NESTORD_ARGS...: starts nestord in the background.
_rbd_nestord_run() {
	local extra=() wrap=()
	read -r -a extra <<<"${RBD_NESTORD_ARGS:-}"
	read -r -a wrap <<<"${RBD_NESTORD_WRAP:-}"
	rm -rf "$T/s"
	mkdir -p "$T/s"
	echo "---- nestord ${extra[*]} $*" >>"$T/log"
	timeout -k 5 "${RBD_NESTORD_MAX:-240}" "${wrap[@]}" "$NESTORD" --socket-dir "$T/s" \
		--ceph-conf "$CEPH_CONF_FILE" --ceph-id admin --reactors 1 --control-socket "$T/ctl" \
		"${extra[@]}" "$@" >>"$T/log" 2>&1 &
	PID=$!
}
# _rbd_nestord_wait SOCKET: waits (30 s) for SOCKET; fails the test if
# nestord exits first.
_rbd_nestord_wait() {
	for _ in $(seq 600); do
		[ -S "$1" ] && return 0
		if ! alive "$PID"; then
			local rc=0
			wait "$PID" || rc=$?
			PID=
			fail "nestord exited $rc at start-up (waiting for $1)"
		fi
		sleep 0.05
	done
	fail "nestord did not create $1 in 30 s"
}
