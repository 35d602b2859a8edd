# Sourced by the VM tests that stop and restart nestord under guest load
# (07, 08), after lib-nestord.sh and lib-guests.sh. The test defines GUEST
# (the guest directory), BIN (the nestord binary) and LOOP_SECS. Env:
# LOOP_QD (default 8), DELAY_US (default 10000; empty: none), RESTART_QUEUE
# (the queue a SIGKILL must catch requests on; default: any), RESTART_MIN
# (how many requests in flight a SIGKILL waits for; default 3),
# RESTART_VERIFY (the file run-guest.sh --verify-file checks; default the
# backing file $TMP/v0.img; empty: none).
# nestord (1 reactor, adaptive; ARGS, the same for every start) serves the
# 64 MiB file-backed volume v0 (2 queues, delay_us=DELAY_US: every request
# spends that long inside nestord); a test may replace ARGS after sourcing
# (e.g. a pool exporting a volume v0). One guest, g, runs the "loop" test over
# 4 MiB, and QEMU reconnects to a restarted nestord after 1 s (chardev
# reconnect=1).
# The inflight region (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) is the memfd
# nestord creates ("nestor-inflight") and QEMU keeps across restarts; the
# host reads it through QEMU's fd with "iopoll_io inflight".
#   restart_begin SEED [RUN-GUEST-ARGS...]   builds the guest, starts
#                         nestord and the guest (loop seed SEED, more
#                         run-guest.sh arguments), waits for the loop's
#                         first generation; "+T s" times count from it
#   restart_cycle K HOW   restart K: 1 s later (failing if the guest's loop
#                         has already ended) stop nestord, HOW = kill9:
#                         SIGKILL (a crash) at an instant when the region
#                         marks RESTART_MIN (3) requests in flight (on RESTART_QUEUE;
#                         within 5 s, else at once) (the TCG guest is slow to
#                         refill, so at a random instant nestord may hold
#                         none); the region then says how many per queue the
#                         restarted nestord must resubmit. Or HOW = term:
#                         SIGTERM (a clean stop: nestord drains the requests
#                         it holds and must exit 0, nestord_stop), after
#                         which the region must mark none in flight. Then
#                         start nestord again 0.3 s later and wait until the
#                         guest completes two more generations (30 s at most)
#   restart_check         after the restarts, waits for the guest and
#                         asserts: it reports zero write errors and reads
#                         back the last generation, and the backing file
#                         (RESTART_VERIFY) holds it (run-guest.sh); each restart stalled guest
#                         requests (> 0.5 s: held by the stopped nestord or
#                         issued while none ran), in as many distinct
#                         generations as restarts; the nestord started after
#                         each restart logged "queue Q: resubmitting N
#                         request(s)" for exactly the requests the region
#                         marked in flight on each queue Q after the stop
#                         (none after a SIGTERM), and with DELAY_US each
#                         SIGKILL caught at least one; the guest kernel
#                         logged no I/O or virtio errors.
LOOP_QD=${LOOP_QD:-8}
DELAY_US=${DELAY_US-10000}
RESTART_MIN=${RESTART_MIN:-3}
RESTART_VERIFY=${RESTART_VERIFY-$TMP/v0.img}
ARGS=(--volume "v0,size=64M,backend=file:$TMP/v0.img,queues=2${DELAY_US:+,delay_us=$DELAY_US}"
	--reactors 1 --poll-mode adaptive)
RESTART_AT=()  # line of nestord.log where each started nestord's output begins
RESTART_HOW=() # how the nestord before it ended: "" (first start), kill9, term
# Index K (restart K; 0: the first start, ""): when restart_cycle's stop of
# the nestord before it returned (date +%s.%N: a SIGKILLed one is gone), and
# how many generations the guest had completed just before that stop. Only
# recorded, for a test's own timings (ceph.04).
RESTART_STOPPED=("")
RESTART_GENS=("")
RESTART_T0=

restart_launch() {
	local at=0
	[ ! -f "$TMP/nestord.log" ] || at=$(wc -l <"$TMP/nestord.log")
	RESTART_AT+=("$at")
	RESTART_HOW+=("${1:-}")
	nestord_launch "$BIN" "${ARGS[@]}"
}

loop_gens() { tr -d '\r' <"$TMP/g.console" | grep -ac 'iopoll_io: loop: generation [0-9]* (seed' || true; }
loop_over() { tr -d '\r' <"$TMP/g.console" | grep -aq 'iopoll_io: loop: generations [0-9]* last-seed'; }
_restart_since() { awk -v a="$RESTART_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "+%.1f s", b - a }'; }

restart_begin() {
	local seed=$1
	shift
	"$HERE/build-guest.sh" "$GUEST"
	restart_launch
	guest_start g --socket "$TMP/v0.sock" --reconnect 1 --test loop --loop-secs "$LOOP_SECS" \
		--loop-qd "$LOOP_QD" --queues 2 --timeout 150 --length $((4 << 20)) --seed "$seed" \
		${RESTART_VERIFY:+--verify-file "$RESTART_VERIFY"} "$@"
	guest_wait_console g 'iopoll_io: loop: generation 1 ' 90
	RESTART_T0=$(date +%s.%N)
}

# QEMU's fd of the inflight region.
_restart_region() {
	local qp f
	qp=$(_guest_qemu_pid g) || { echo "FAIL: guest g has no running QEMU" >&2; exit 1; }
	for f in /proc/"$qp"/fd/*; do
		case "$(readlink "$f" 2>/dev/null)" in *nestor-inflight*) echo "$f"; return 0 ;; esac
	done
	echo "FAIL: QEMU (PID $qp) holds no nestor-inflight region" >&2
	exit 1
}

# Stops nestord as HOW says; what the region then marks in flight goes to
# $TMP/inflight.K ("inflight: queue Q: N" lines).
_restart_stop() {
	local k=$1 how=$2 reg pid rc=0
	reg=$(_restart_region)
	case "$how" in
	kill9)
		pid=$(nestord_main_pid) || exit 1
		# Bash would report the wrapper's death ("Killed") on stderr.
		{
			"$GUEST/iopoll_io" inflight --kill "$pid" ${RESTART_QUEUE:+--queue "$RESTART_QUEUE"} \
				--min "$RESTART_MIN" --seconds 5 "$reg" >"$TMP/inflight.$k" 2>"$TMP/inflight.err" || rc=1
			nestord_killed
		} 2>/dev/null
		cat "$TMP/inflight.err" >&2
		[ "$rc" -eq 0 ] || exit 1
		;;
	term)
		nestord_stop # asserts exit status 0
		"$GUEST/iopoll_io" inflight "$reg" >"$TMP/inflight.$k" || exit 1
		;;
	*) echo "restart_cycle: unknown HOW '$how'" >&2; exit 2 ;;
	esac
}

restart_cycle() {
	local k=$1 how=$2 before mid ok i
	sleep 1
	if loop_over; then
		echo "FAIL: the guest's loop ended before restart $k (raise LOOP_SECS)" >&2
		exit 1
	fi
	before=$(loop_gens)
	_restart_stop "$k" "$how"
	RESTART_STOPPED+=("$(date +%s.%N)")
	RESTART_GENS+=("$before")
	echo "restart $k ($how, $(_restart_since) into the loop): guest had written $before generations;" \
		"in flight in the region: $(grep 'queue' "$TMP/inflight.$k" | sed 's/^inflight: //' | paste -sd, -)" \
		"$(sed -n 's/^inflight: killed [0-9]* \(after .*\)/(killed \1)/p' "$TMP/inflight.$k")"
	sleep 0.3
	restart_launch "$how"
	# Nothing completes while nestord is down (QEMU reconnects after 1 s), so
	# generations logged from now on need the restarted nestord.
	mid=$(loop_gens)
	echo "restart $k: nestord started (PID $(nestord_main_pid)), guest at $mid generations"
	ok=0
	for i in $(seq 300); do
		[ "$(loop_gens)" -ge $((mid + 2)) ] && { ok=1; break; }
		loop_over && { ok=1; break; }
		kill -0 "${GUEST_PID[g]}" 2>/dev/null || break
		sleep 0.1
	done
	if [ $ok -ne 1 ]; then
		echo "FAIL: restart $k: the guest made no progress within 30 s of nestord's restart ($(loop_gens) generations)" >&2
		tr -d '\r' <"$TMP/g.console" | tail -n 8 >&2
		_nestord_log
		exit 1
	fi
	echo "restart $k: guest resumed ($(loop_gens) generations, $(_restart_since))"
}

restart_check() {
	local rc=0 n=$((${#RESTART_AT[@]} - 1)) stalled i to fail=0
	guest_wait g >"$TMP/g.summary" 2>&1 || rc=1
	grep -v 'generation [0-9]* (seed' "$TMP/g.summary" || true
	[ $rc -eq 0 ] || { echo "FAIL: guest (write errors or wrong read-back after nestord restarts)" >&2; _nestord_log; exit 1; }
	stalled=$(tr -d '\r' <"$TMP/g.console" |
		grep -aoP 'loop: generation \K[0-9]+(?=: (write at [0-9]+|read at [0-9]+|fdatasync|discard) took)' | sort -u | wc -l)
	echo "generations with requests stalled across a restart: $stalled (restarts: $n)"
	[ "$stalled" -ge "$n" ] || { echo "FAIL: the restarts did not catch guest requests in flight" >&2; exit 1; }
	# The log of the nestord started by restart i: lines (RESTART_AT[i], RESTART_AT[i+1]].
	# "Q N" lines: what the region held after the stop, what that nestord resubmitted.
	# (A SIGKILL between nestord publishing a completion and clearing its flag
	# would rightly leave one more in the region than is resubmitted: a window
	# of two stores, not seen in practice.)
	for i in $(seq "$n"); do
		to='$'
		[ "$i" -eq "$n" ] || to=${RESTART_AT[$((i + 1))]}
		sed -n "$((RESTART_AT[i] + 1)),${to}p" "$TMP/nestord.log" |
			grep -oP 'queue \K[0-9]+(?=: resubmitting [0-9]+ request)|resubmitting \K[0-9]+' |
			paste -d' ' - - | sort -n >"$TMP/resub.$i" || true
		sed -n 's/^inflight: queue \([0-9]*\): \([0-9]*\)$/\1 \2/p' "$TMP/inflight.$i" |
			awk '$2 > 0' | sort -n >"$TMP/held.$i"
		echo "restart $i (${RESTART_HOW[i]}): in flight in the region [$(paste -sd, "$TMP/held.$i")]," \
			"resubmitted [$(paste -sd, "$TMP/resub.$i")] (queue count)"
		if ! cmp -s "$TMP/held.$i" "$TMP/resub.$i"; then
			echo "FAIL: restart $i (${RESTART_HOW[i]}): the restarted nestord did not resubmit exactly" \
				"the requests the inflight region marked in flight" >&2
			fail=1
		fi
		if [ "${RESTART_HOW[i]}" = kill9 ] && [ -n "$DELAY_US" ] && [ ! -s "$TMP/held.$i" ]; then
			echo "FAIL: restart $i: the SIGKILL caught no request in flight (delay_us=$DELAY_US)" >&2
			fail=1
		fi
	done
	# Kernel complaints (virtio ring errors, I/O errors) on the console.
	if tr -d '\r' <"$TMP/g.console" | grep -aiE 'I/O error|not a head|virtio.*(broken|error)|blk_update_request'; then
		echo "FAIL: the guest kernel reported errors (above)" >&2
		fail=1
	fi
	[ $fail -eq 0 ] || { _nestord_log; exit 1; }
}
