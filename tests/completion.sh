#!/usr/bin/env bash
# cli.completion: the bash completions of contrib/bash-completion complete
# nestorctl's and nestor's subcommands and options as their --help lists
# them, and image names from a running nestord.
# usage: completion.sh SOURCE_DIR NESTORCTL NESTOR NESTORD
set -euo pipefail
SRC=$1 CTL=$2 ADM=$3 NESTORD=$4
T=$(mktemp -d)
PID=
trap '[ -z "$PID" ] || kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
. "$SRC/contrib/bash-completion/nestorctl"
. "$SRC/contrib/bash-completion/nestor"
fails=0
# expect FN WANT WORD...: completing the last WORD gives exactly WANT.
expect() {
	local fn=$1 want=$2
	shift 2
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	"$fn"
	local got="${COMPREPLY[*]}"
	if [ "$got" != "$want" ]; then
		echo "FAIL: ${*:2}<TAB>: got '$got', want '$want'" >&2
		fails=$((fails + 1))
	else
		echo "ok: ${*:2}<TAB> -> $got"
	fi
}
expect _nestorctl "volume" "$CTL" vo
expect _nestorctl "create clone" "$CTL" volume c
expect _nestorctl "--size" "$CTL" volume create db --si
expect _nestorctl "snapshot stats status" "$CTL" s
expect _nestorctl "--json" "$CTL" -s /x --js
expect _nestorctl "create check" "$ADM" pool c
expect _nestor "create check" "$ADM" pool c
expect _nestor "--preallocate" "$ADM" volume create v --pool p --pre
# Names from a running nestord.
timeout 60 "$NESTORD" --socket-dir "$T" --volume m1,size=1M,backend=mem >"$T/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -S "$T/control.ctl" ] && break; sleep 0.05; done
expect _nestorctl "" "$CTL" -s "$T/control.ctl" volume delete ""
"$ADM" pool create "$T/p.img" --size 64M >/dev/null
kill "$PID"
wait "$PID" || true
timeout 60 "$NESTORD" --socket-dir "$T" --pool "$T/p.img" >"$T/log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -S "$T/control.ctl" ] && break; sleep 0.05; done
"$CTL" -s "$T/control.ctl" volume create alpha --size 4M >/dev/null
"$CTL" -s "$T/control.ctl" volume create beta --size 4M >/dev/null
expect _nestorctl "alpha beta" "$CTL" -s "$T/control.ctl" volume delete ""
expect _nestorctl "alpha" "$CTL" -s "$T/control.ctl" export create al
[ "$fails" -eq 0 ] || exit 1
echo "PASS: cli.completion"
