# shellcheck shell=bash
# Sourced by the Ceph tests after lib-ceph.sh and lib-control.sh, once T
# (scratch directory), NESTORD and fail exist:
#   rbd_nestord_start VOLUME_SPEC...
#       nestord on the cluster ($CEPH_CONF_FILE, client.admin, one reactor,
#       sockets in $T/s, control socket $T/ctl, log appended to $T/log)
#       serving these volumes; sets PID (its `timeout` wrapper) and waits
#       for every volume's socket (30 s), failing the test if nestord exits.
#       RBD_NESTORD_ARGS: more nestord arguments (e.g. --ceph-op-timeout 5);
#       RBD_NESTORD_WRAP: a command to run nestord under (e.g. unshare ...);
#       RBD_NESTORD_MAX: timeout's bound in seconds (default 240).
rbd_nestord_start() {
	local args=() extra=() wrap=() v
	read -r -a extra <<<"${RBD_NESTORD_ARGS:-}"
	read -r -a wrap <<<"${RBD_NESTORD_WRAP:-}"
	for v in "$@"; do args+=(--volume "$v"); done
	rm -rf "$T/s"
	mkdir -p "$T/s"
	echo "---- nestord ${extra[*]} ${args[*]}" >>"$T/log"
	timeout -k 5 "${RBD_NESTORD_MAX:-240}" "${wrap[@]}" "$NESTORD" --socket-dir "$T/s" \
		--ceph-conf "$CEPH_CONF_FILE" --ceph-id admin --reactors 1 --control-socket "$T/ctl" \
		"${extra[@]}" "${args[@]}" >>"$T/log" 2>&1 &
	PID=$!
	for v in "$@"; do
		for _ in $(seq 600); do
			[ -S "$T/s/${v%%,*}.sock" ] && continue 2
			if ! alive "$PID"; then
				local rc=0
				wait "$PID" || rc=$?
				PID=
				fail "nestord exited $rc at start-up"
			fi
			sleep 0.05
		done
		fail "nestord did not create $T/s/${v%%,*}.sock in 30 s"
	done
}
