# shellcheck shell=bash
# Sourced by the Ceph tests: a throwaway single-node Ceph cluster (one
# monitor, one bluestore OSD on a sparse file, 127.0.0.1 only, cephx, the
# pool `rbd` initialised), following
# /work/shared/reference/ceph-test-cluster.md (Ceph 16 on Debian 12).
#
#   ceph_up DIR      creates the cluster under DIR (the caller's, created if
#                    missing) and exports CEPH_CONF_FILE=DIR/ceph.conf. Returns
#                    1 with a message on stderr (and the tail of the logs) on
#                    failure, after at most CEPH_UP_SECONDS (default 60).
#                    Prints the bring-up time to stderr.
#   ceph_down        stops every daemon ceph_up started (SIGTERM the osd, then
#                    the mon, SIGKILL what is left) and removes DIR. Idempotent,
#                    safe from a trap and after a half-done ceph_up; ~10 s at
#                    most.
#   ceph_rbd ARGS... rbd -c $CEPH_CONF_FILE --id admin ARGS (at most 60 s).
#   ceph_cli ARGS... ceph -c $CEPH_CONF_FILE ARGS (at most 30 s).
#   ceph_osd_kill    SIGKILLs the osd (the daemon, not its timeout wrapper) and
#                    returns at once; CEPH_OSD_KILLED is its pid.
#   ceph_osd_start   starts the osd again once the killed one is gone (retries
#                    while the old one still holds its pid file) and returns
#                    when it is active and a client write completes, at most
#                    CEPH_UP_SECONDS (default 60). Prints the time to stderr.
#                    Call both from the shell that ran ceph_up (not in a
#                    subshell): they wait for the daemons' wrappers.
#   ceph_osd_pid     prints the running osd's pid (the daemon, not its timeout
#                    wrapper), e.g. for a test that pauses it (SIGSTOP, then
#                    SIGCONT: requests wait at the client meanwhile); returns 1
#                    if it is not running.
#
# Each daemon runs in the foreground under `timeout` (CEPH_MAX_SECONDS,
# default 600), so even a test killed with SIGKILL leaves no daemon behind
# for longer than that. The cluster uses two free ports picked at random
# (the osd takes its own from 6800-7568), so two clusters can run at once.
# Needs ceph-mon, ceph-osd and ceph-common (scripts/install-deps.sh).

CEPH_DIR=
CEPH_CONF_FILE=
CEPH_DAEMONS=()  # "name:timeout-pid" of every daemon started, in start order

_ceph_log() { echo "ceph: $*" >&2; }
_ceph_now() { date +%s.%N; }
_ceph_secs() { awk -v a="$1" -v b="$(_ceph_now)" 'BEGIN { printf "%.1f", b - a }'; }

# _ceph_alive PID: the process exists and is not a zombie.
_ceph_alive() {
	local st
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
# _ceph_child PID: the pid of PID's (timeout's) child, the daemon itself.
_ceph_child() { awk '{ print $1 }' "/proc/$1/task/$1/children" 2>/dev/null; }

# _ceph_bounded SECS CMD...: CMD (a command, or one of our functions run in
# a child bash) under timeout.
_ceph_bounded() {
	local secs=$1
	shift
	if declare -F "$1" >/dev/null; then
		# shellcheck disable=SC2163  # the function named by $1
		export -f "$1"
		timeout -k 3 "$secs" bash -c '"$@"' bash "$@"
	else
		timeout -k 3 "$secs" "$@"
	fi
}

# _ceph_step SECS WHAT CMD...: runs CMD under timeout, at most SECS and at
# most what is left of the bring-up budget; its output goes to setup.log.
_ceph_step() {
	local secs=$1 what=$2 left rc=0
	shift 2
	left=$(awk -v d="$_CEPH_DEADLINE" -v n="$(_ceph_now)" 'BEGIN { l = int(d - n); print (l < 0 ? 0 : l) }')
	if [ "$left" -lt 1 ]; then
		_ceph_log "bring-up took longer than ${CEPH_UP_SECONDS:-60} s (at: $what)"
		return 1
	fi
	[ "$secs" -le "$left" ] || secs=$left
	echo "+ $(_ceph_secs "$_CEPH_T0") [$what] $*" >>"$CEPH_DIR/setup.log"
	_ceph_bounded "$secs" "$@" >>"$CEPH_DIR/setup.log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -ne 124 ] || _ceph_log "$what: timed out after $secs s"
		_ceph_log "$what failed (exit $rc): $*"
		return 1
	fi
}

# _ceph_until SECS WHAT CMD...: retries CMD every 0.3 s until it succeeds,
# for at most SECS (and the bring-up budget); each try at most 10 s (and
# what is left).
_ceph_until() {
	local secs=$1 what=$2 end try
	shift 2
	end=$(awk -v n="$(_ceph_now)" -v s="$secs" -v d="$_CEPH_DEADLINE" 'BEGIN { e = n + s; printf "%.3f", (e < d ? e : d) }')
	while :; do
		echo "+ $(_ceph_secs "$_CEPH_T0") [$what] $*" >>"$CEPH_DIR/setup.log"
		try=$(awk -v e="$end" -v n="$(_ceph_now)" 'BEGIN { t = int(e - n) + 1; print (t > 10 ? 10 : t) }')
		_ceph_bounded "$try" "$@" >>"$CEPH_DIR/setup.log" 2>&1 && return 0
		if awk -v e="$end" -v n="$(_ceph_now)" 'BEGIN { exit !(n >= e) }'; then
			_ceph_log "$what: not done after $(_ceph_secs "$_CEPH_T0") s of bring-up: $*"
			return 1
		fi
		_ceph_check_daemons "$what" || return 1
		sleep 0.3
	done
}

# _ceph_start NAME CMD...: starts a daemon in the foreground under timeout.
_ceph_start() {
	local name=$1
	shift
	echo "+ $(_ceph_secs "$_CEPH_T0") [start $name] $*" >>"$CEPH_DIR/setup.log"
	timeout -k 5 "${CEPH_MAX_SECONDS:-600}" "$@" </dev/null >>"$CEPH_DIR/$name.out" 2>&1 &
	CEPH_DAEMONS+=("$name:$!")
}

# A daemon that died during bring-up fails it at once, with its output.
_ceph_check_daemons() {
	local d
	for d in "${CEPH_DAEMONS[@]}"; do
		if ! _ceph_alive "${d#*:}"; then
			_ceph_log "${d%%:*} exited during bring-up ($1)"
			return 1
		fi
	done
}

_ceph_free_ports() {  # two free TCP ports on 127.0.0.1
	python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'
}

_ceph_fail_logs() {
	local f
	for f in "$CEPH_DIR/setup.log" "$CEPH_DIR"/*.out "$CEPH_DIR"/log/*.log; do
		[ -s "$f" ] || continue
		echo "---- ${f#"$CEPH_DIR"/} (tail) ----" >&2
		tail -n 15 "$f" >&2
	done
}

ceph_up() {
	local dir=$1 fsid p2 p1 conf uuid secret r
	if [ -n "$CEPH_DIR" ]; then
		_ceph_log "ceph_up: a cluster is already up in $CEPH_DIR"
		return 1
	fi
	for r in ceph-mon ceph-osd ceph ceph-authtool monmaptool rados rbd python3; do
		command -v "$r" >/dev/null || { _ceph_log "$r not found (scripts/install-deps.sh installs Ceph)"; return 1; }
	done
	# A stale environment makes the tools read another cluster's files.
	unset CEPH_CONF CEPH_ARGS CEPH_KEYRING
	_CEPH_T0=$(_ceph_now)
	_CEPH_DEADLINE=$(awk -v n="$_CEPH_T0" -v s="${CEPH_UP_SECONDS:-60}" 'BEGIN { printf "%.3f", n + s }')
	mkdir -p "$dir" || return 1
	CEPH_DIR=$(cd "$dir" && pwd) || return 1
	conf=$CEPH_DIR/ceph.conf
	mkdir -p "$CEPH_DIR/mon" "$CEPH_DIR/osd" "$CEPH_DIR/run" "$CEPH_DIR/log" || return 1
	fsid=$(cat /proc/sys/kernel/random/uuid)
	read -r p2 p1 < <(_ceph_free_ports) || { _ceph_log "no free ports"; return 1; }
	[ -n "$p1" ] || { _ceph_log "no free ports"; return 1; }
	cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $CEPH_DIR/ceph.client.admin.keyring
run dir = $CEPH_DIR/run
log file = $CEPH_DIR/log/\$name.log
pid file = $CEPH_DIR/run/\$name.pid
# The monitor's cluster and audit logs (default /var/log/ceph/).
mon cluster log file = $CEPH_DIR/log/ceph.\$channel.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon data avail warn = 1
mon data avail crit = 0
# No mgr runs: do not warn about it (the default grace is 120 s).
mon mgr mkfs grace = 100000000
# HEALTH_OK on a healthy cluster: no warning for the one replica, nor for
# global_id reclaim (every client here is current).
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
# A SIGKILLed client's exclusive lock stalls the next writer ~5 s, not ~30 s.
osd client watch timeout = 5

# admin socket only here: in [global] it would apply to clients too, and
# parallel clients collide on it.
[mon]
mon data = $CEPH_DIR/mon
keyring = $CEPH_DIR/mon/keyring
admin socket = $CEPH_DIR/run/\$name.asok

[osd]
osd data = $CEPH_DIR/osd
keyring = $CEPH_DIR/osd/keyring
admin socket = $CEPH_DIR/run/\$name.asok
osd objectstore = bluestore
# Sparse, and outside the osd data directory.
bluestore block path = $CEPH_DIR/osd-block
bluestore block create = true
bluestore block size = 6G
# Values below 896 MiB are ignored (and the osd then assumes 4 GiB).
osd memory target = 1073741824
EOF
	CEPH_CONF_FILE=$conf
	export CEPH_CONF_FILE
	local CEPH=(ceph -c "$conf" --connect-timeout 10)
	# Keys: mon., and client.admin with every cap, imported into the mon's.
	_ceph_step 10 "mon key" ceph-authtool --create-keyring "$CEPH_DIR/mon.keyring" --gen-key -n mon. \
		--cap mon 'allow *' || { _ceph_fail_logs; return 1; }
	_ceph_step 10 "admin key" ceph-authtool --create-keyring "$CEPH_DIR/ceph.client.admin.keyring" --gen-key \
		-n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' ||
		{ _ceph_fail_logs; return 1; }
	_ceph_step 10 "admin key import" ceph-authtool "$CEPH_DIR/mon.keyring" \
		--import-keyring "$CEPH_DIR/ceph.client.admin.keyring" || { _ceph_fail_logs; return 1; }
	# The monitor.
	_ceph_step 10 monmap monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]" \
		"$CEPH_DIR/monmap" || { _ceph_fail_logs; return 1; }
	_ceph_step 20 "mon mkfs" ceph-mon -c "$conf" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
		--keyring "$CEPH_DIR/mon.keyring" || { _ceph_fail_logs; return 1; }
	_ceph_start mon.a ceph-mon -c "$conf" -i a -f
	_ceph_until 30 "mon up" "${CEPH[@]}" mon stat || { _ceph_fail_logs; return 1; }
	# The osd: its cephx secret, mkfs (creates the sparse block file), start.
	uuid=$(cat /proc/sys/kernel/random/uuid)
	secret=$(timeout 10 ceph-authtool --gen-print-key) || { _ceph_log "ceph-authtool --gen-print-key failed"; return 1; }
	printf '{"cephx_secret": "%s"}\n' "$secret" >"$CEPH_DIR/osd-secret.json"
	_ceph_step 30 "osd new" "${CEPH[@]}" osd new "$uuid" -i "$CEPH_DIR/osd-secret.json" ||
		{ _ceph_fail_logs; return 1; }
	_ceph_step 10 "osd key" ceph-authtool --create-keyring "$CEPH_DIR/osd/keyring" --name osd.0 \
		--add-key "$secret" || { _ceph_fail_logs; return 1; }
	_ceph_step 30 "osd mkfs" ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" || { _ceph_fail_logs; return 1; }
	_ceph_start osd.0 ceph-osd -c "$conf" -i 0 -f
	_ceph_until 40 "osd up" _ceph_osd_up "${CEPH[@]}" || { _ceph_fail_logs; return 1; }
	# The pool, and every operation a test uses working once.
	_ceph_step 30 "pool create" "${CEPH[@]}" osd pool create rbd 8 8 || { _ceph_fail_logs; return 1; }
	_ceph_step 30 "rbd pool init" rbd -c "$conf" --id admin pool init rbd || { _ceph_fail_logs; return 1; }
	echo ceph-lib-probe >"$CEPH_DIR/probe"
	_ceph_until 40 "rados put" rados -c "$conf" --id admin -p rbd put ceph-lib-probe "$CEPH_DIR/probe" ||
		{ _ceph_fail_logs; return 1; }
	_ceph_step 20 "rados rm" rados -c "$conf" --id admin -p rbd rm ceph-lib-probe || { _ceph_fail_logs; return 1; }
	_ceph_until 40 "rbd create" rbd -c "$conf" --id admin create --size 1M rbd/ceph-lib-probe ||
		{ _ceph_fail_logs; return 1; }
	_ceph_step 20 "rbd ls" _ceph_rbd_ls_has "$conf" ceph-lib-probe || { _ceph_fail_logs; return 1; }
	_ceph_step 20 "rbd rm" rbd -c "$conf" --id admin rm --no-progress rbd/ceph-lib-probe ||
		{ _ceph_fail_logs; return 1; }
	_ceph_check_daemons "end of bring-up" || { _ceph_fail_logs; return 1; }
	_ceph_log "cluster up in $(_ceph_secs "$_CEPH_T0") s ($CEPH_DIR, mon 127.0.0.1:$p2)"
}

_ceph_osd_up() {  # CEPH... : osd.0 is up and in
	"$@" osd dump 2>/dev/null | grep -Eq '^osd\.0 up +in '
}
_ceph_rbd_ls_has() {  # CONF IMAGE
	rbd -c "$1" --id admin ls rbd | grep -qx "$2"
}

ceph_down() {
	local d name pid child i
	[ -n "$CEPH_DIR" ] || return 0
	local t0 list=()
	t0=$(_ceph_now)
	# The osd first, then the mon (reverse start order): SIGTERM, then wait
	# up to 4 s for each.
	for ((i = ${#CEPH_DAEMONS[@]} - 1; i >= 0; i--)); do list+=("${CEPH_DAEMONS[i]}"); done
	for d in "${list[@]}"; do
		name=${d%%:*} pid=${d#*:}
		_ceph_alive "$pid" || continue
		child=$(_ceph_child "$pid")
		kill -TERM "$pid" 2>/dev/null || true  # timeout passes it on to the daemon
		for _ in $(seq 40); do _ceph_alive "$pid" || break; sleep 0.1; done
		if _ceph_alive "$pid"; then
			_ceph_log "$name did not stop on SIGTERM: SIGKILL"
			[ -z "$child" ] || kill -KILL "$child" 2>/dev/null || true
			for _ in $(seq 10); do _ceph_alive "$pid" || break; sleep 0.1; done
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for d in "${CEPH_DAEMONS[@]}"; do wait "${d#*:}" 2>/dev/null || true; done
	# Whatever still runs from this cluster (a daemon orphaned by a killed
	# timeout) is named by its pid file.
	for pid in "$CEPH_DIR"/run/*.pid; do
		[ -f "$pid" ] || continue
		pid=$(cat "$pid" 2>/dev/null) || continue
		if [ -z "$pid" ] || ! grep -qF -- "$CEPH_DIR/ceph.conf" "/proc/$pid/cmdline" 2>/dev/null; then continue; fi
		kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 20); do _ceph_alive "$pid" || break; sleep 0.1; done
	done
	rm -rf "$CEPH_DIR"
	_ceph_log "cluster down in $(_ceph_secs "$t0") s"
	CEPH_DIR='' CEPH_CONF_FILE='' CEPH_DAEMONS=()
}

ceph_rbd() { timeout -k 5 60 rbd -c "$CEPH_CONF_FILE" --id admin "$@"; }
ceph_cli() { timeout -k 5 30 ceph -c "$CEPH_CONF_FILE" --connect-timeout 10 "$@"; }

# _ceph_osd_index: the index of osd.0's entry in CEPH_DAEMONS.
_ceph_osd_index() {
	local i
	for i in "${!CEPH_DAEMONS[@]}"; do
		[ "${CEPH_DAEMONS[i]%%:*}" != osd.0 ] || { echo "$i"; return 0; }
	done
	return 1
}

ceph_osd_pid() {
	local i pid child
	i=$(_ceph_osd_index) || return 1
	pid=${CEPH_DAEMONS[i]#*:}
	child=$(_ceph_child "$pid")
	if ! _ceph_alive "$pid" || [ -z "$child" ]; then return 1; fi
	echo "$child"
}

CEPH_OSD_KILLED=
ceph_osd_kill() {
	local i pid child
	i=$(_ceph_osd_index) || { _ceph_log "ceph_osd_kill: no osd started"; return 1; }
	pid=${CEPH_DAEMONS[i]#*:}
	child=$(_ceph_child "$pid")
	if ! _ceph_alive "$pid" || [ -z "$child" ]; then
		_ceph_log "ceph_osd_kill: osd.0 is not running"
		return 1
	fi
	kill -KILL "$child" || return 1
	CEPH_OSD_KILLED=$child
	_ceph_log "osd.0 (pid $child) SIGKILLed"
}

# _ceph_osd_active ASOK: the osd's admin socket says it is active (booted).
_ceph_osd_active() {
	ceph --admin-daemon "$1" status 2>/dev/null | grep -q '"state": "active"'
}

ceph_osd_start() {
	local i pid try conf=$CEPH_DIR/ceph.conf asok=$CEPH_DIR/run/osd.0.asok
	i=$(_ceph_osd_index) || { _ceph_log "ceph_osd_start: no osd started"; return 1; }
	pid=${CEPH_DAEMONS[i]#*:}
	if _ceph_alive "$pid" && [ "$(_ceph_child "$pid")" != "$CEPH_OSD_KILLED" ]; then
		_ceph_log "ceph_osd_start: osd.0 is running"
		return 1
	fi
	_CEPH_T0=$(_ceph_now)
	_CEPH_DEADLINE=$(awk -v n="$_CEPH_T0" -v s="${CEPH_UP_SECONDS:-60}" 'BEGIN { printf "%.3f", n + s }')
	# The killed daemon must be gone (or a zombie: PID 1 may reap it late)
	# before a new one can lock the pid file; its wrapper exits with it.
	for _ in $(seq 100); do
		if { [ -z "$CEPH_OSD_KILLED" ] || ! _ceph_alive "$CEPH_OSD_KILLED"; } && ! _ceph_alive "$pid"; then break; fi
		sleep 0.1
	done
	if _ceph_alive "$pid"; then
		_ceph_log "ceph_osd_start: the killed osd.0 (pid ${CEPH_OSD_KILLED:-?}) is still running after 10 s"
		return 1
	fi
	wait "$pid" 2>/dev/null || true
	for try in 1 2 3 4 5 6 7 8 9 10; do
		echo "---- restart $try" >>"$CEPH_DIR/osd.0.out"
		timeout -k 5 "${CEPH_MAX_SECONDS:-600}" ceph-osd -c "$conf" -i 0 -f </dev/null >>"$CEPH_DIR/osd.0.out" 2>&1 &
		pid=$!
		CEPH_DAEMONS[i]=osd.0:$pid
		echo "+ $(_ceph_secs "$_CEPH_T0") [restart osd.0, try $try] pid $pid" >>"$CEPH_DIR/setup.log"
		# A start that fails on the old pid file ends within a second or two.
		for _ in $(seq 30); do
			_ceph_alive "$pid" || break
			_ceph_osd_active "$asok" && break
			sleep 0.1
		done
		_ceph_alive "$pid" && break
		wait "$pid" 2>/dev/null || true
		if ! tail -n 5 "$CEPH_DIR/osd.0.out" | grep -q pidfile; then
			_ceph_log "ceph_osd_start: osd.0 exited at start"
			_ceph_fail_logs
			return 1
		fi
		_ceph_log "ceph_osd_start: the old osd.0 still holds the pid file (try $try)"
		sleep 0.5
	done
	_ceph_until 60 "osd active" _ceph_osd_active "$asok" || { _ceph_fail_logs; return 1; }
	_ceph_until 60 "rados put" rados -c "$conf" --id admin -p rbd put ceph-lib-probe "$CEPH_DIR/probe" ||
		{ _ceph_fail_logs; return 1; }
	_ceph_log "osd.0 restarted in $(_ceph_secs "$_CEPH_T0") s (pid $(_ceph_child "$pid"))"
}
