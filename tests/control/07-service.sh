#!/usr/bin/env bash
# control.07: nestord run the way packaging/systemd/nestord.service runs it
# (issue #16): the unit's ExecStart (--config FILE, with the shipped example
# nestord.conf edited only for paths), its capability bounding set and
# NoNewPrivileges (setpriv), readiness over a NOTIFY_SOCKET the test
# provides (READY=1 only once the exports are up), SIGHUP reloading what can
# be reloaded (RELOADING=1, then READY=1), a broken file leaving the daemon
# serving, the watchdog fed, STOPPING=1 and exit 0 on SIGTERM, a start-up
# failure told to the service manager; and `systemd-analyze verify` of the
# unit. Needs root (the bounding set, a socket handed to another user).
# usage: 07-service.sh SOURCE_DIR NESTORD NESTORCTL NESTOR
set -euo pipefail
SRC=$1 NESTORD=$2 CTL=$3 NESTOR=$4
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root"; exit 77; }
UNIT=$SRC/packaging/systemd/nestord.service
T=$(mktemp -d)
PID= LISTENER=
cleanup() {
	kill_nestord
	[ -z "$LISTENER" ] || kill "$LISTENER" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib-control.sh"
SD=$T/run
export NESTOR_CONTROL_SOCKET=$SD/control.ctl

# ---- the unit file itself ----
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
exec_start=$(unit_value ExecStart)
[ "$exec_start" = "/usr/sbin/nestord --config /etc/nestor/nestord.conf" ] || fail "ExecStart: $exec_start"
[ "$(unit_value Type)" = notify ] || fail "Type= is not notify"
[ "$(unit_value NoNewPrivileges)" = yes ] || fail "NoNewPrivileges"
[ "$(unit_value RuntimeDirectoryPreserve)" = yes ] || fail "the journal's directory must outlive a failed nestord"
sed "s|/usr/sbin/nestord|$NESTORD|" "$UNIT" >"$T/nestord.service"
timeout 60 systemd-analyze verify --man=no "$T/nestord.service" >"$T/verify" 2>&1 ||
	fail "systemd-analyze verify: $(cat "$T/verify")"
# CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER ... as setpriv's -all,+chown,+fowner,...
caps=-all
for c in $(unit_value CapabilityBoundingSet); do caps+=",+$(echo "${c#CAP_}" | tr 'A-Z' 'a-z')"; done

# ---- a service manager's notification socket ----
cat >"$T/notify.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    while True:
        out.write(s.recv(4096).decode().replace("\n", "|") + "\n")
PY
timeout 120 python3 "$T/notify.py" "$T/notify" "$T/notes" &
LISTENER=$!
for _ in $(seq 50); do [ -S "$T/notify" ] && break; sleep 0.1; done
# wait_note PATTERN N: the Nth notification matching PATTERN arrives (10 s)
wait_note() {
	for _ in $(seq 100); do
		[ "$(grep -c -- "$1" "$T/notes" 2>/dev/null || true)" -ge "${2:-1}" ] && return 0
		sleep 0.1
	done
	fail "no notification '$1' (#${2:-1}); got: $(cat "$T/notes" 2>/dev/null)"
}

# ---- the config: the shipped example, with this test's paths ----
"$NESTOR" pool create "$T/pool" --size 64M >/dev/null
conf() {  # conf READ_IOPS LEVEL [EXTRA]: write the config file
	sed -e "s|^socket-dir = .*|socket-dir = \"$SD\"|" -e "s|^pool = .*|pool = \"$T/pool\"|" \
		-e "s|^log-level = .*|log-level = \"$2\"|" "$SRC/packaging/nestord.conf" >"$T/nestord.conf"
	cat >>"$T/nestord.conf" <<-CONF
		journal-dir = "$T/journal"
		volume = ["a,size=4M,read_iops=$1,socket-owner=nobody,socket-mode=0660", "b,size=4M"]
		${3:-}
	CONF
}
conf 100 info
start_unit_way() {
	timeout -k 5 120 env NOTIFY_SOCKET="$T/notify" WATCHDOG_USEC=1000000 \
		setpriv --no-new-privs --inh-caps=-all --bounding-set "$caps" \
		"$NESTORD" --config "$T/nestord.conf" >>"$T/log" 2>&1 &
	PID=$!
}
start_unit_way
wait_note READY=1
# Ready means served: the sockets were there before READY=1 was sent.
[ -S "$SD/a.sock" ] && [ -S "$SD/b.sock" ] || fail "READY=1 before the exports were up"
grep -q "READY=1|STATUS=serving 2 export(s)" "$T/notes" || fail "status: $(cat "$T/notes")"
# The bounding set is enough to hand a socket to another user.
[ "$(stat -c '%U %a' "$SD/a.sock")" = "nobody 660" ] || fail "a.sock: $(stat -c '%U %a' "$SD/a.sock")"
wait_note WATCHDOG=1 3  # fed every 500 ms while the reactor answers
expect_rc 0 "$CTL" --json qos get a
py 'j["read_iops"] == 100'

# ---- SIGHUP: QoS and log level applied, the rest reported ----
expect_rc 0 "$CTL" qos set b --read-iops 7  # set at runtime: an unrelated reload keeps it
conf 250 debug "reactors = 2"
kill -HUP "$(nestord_pid)"
wait_note RELOADING=1
wait_note READY=1 2
expect_rc 0 "$CTL" --json qos get a
py 'j["read_iops"] == 250'
expect_rc 0 "$CTL" --json qos get b
py 'j["read_iops"] == 7'
grep -q "reload: log level debug" "$T/log" || fail "log level not reloaded"
grep -q "reload: --reactors (1 -> 2) changed: it needs a restart" "$T/log" || fail "--reactors change not reported"
expect_rc 0 "$CTL" --json reactor list
py 'len(j) == 1'

# ---- a broken file: an error, the daemon keeps serving ----
echo 'log-level = "loud"' >>"$T/nestord.conf"  # set twice, and not a level

kill -HUP "$(nestord_pid)"
wait_note READY=1 3
grep -q "reload: --config .*'log-level' is set twice.*; keeping the running settings" "$T/log" ||
	fail "a broken config was not reported"
grep -q "STATUS=the last reload failed" "$T/notes" || fail "the failed reload is not in the status"
expect_rc 0 "$CTL" --json qos get a
py 'j["read_iops"] == 250'

# ---- SIGTERM: STOPPING=1, exit 0 ----
stop
grep -q "STOPPING=1" "$T/notes" || fail "no STOPPING=1"

# ---- a start-up failure reaches the service manager ----
sed -i "s|^pool = .*|pool = \"$T/no-such-pool\"|" "$T/nestord.conf"
sed -i '$d' "$T/nestord.conf"  # the broken line
start_unit_way
wait "$PID" && fail "nestord started without its pool"
PID=
wait_note "STATUS=start-up failed: .*no-such-pool"
echo "control.07-service: OK"
