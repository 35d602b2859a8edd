#!/usr/bin/env bash
# docs.00-runner: the docs.* runner can fail. Each fixture under
# fixtures/ must end as stated: pass.md passes (state and a background
# process carry from block to block, nothing leaks onto the host's /run,
# a console transcript runs its `$ ` lines and not its output);
# a failing command, a bare (unclassified) block, a skip without a reason,
# a block over its limit and an expect that never holds each fail with
# their own message.
# usage: selftest.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$1 BUILD=$2
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
fail() { echo "FAIL: $*"; cat "$OUT"; exit 1; }

# run FIXTURE WANT_STATUS WANT_TEXT
run() {
	local rc=0
	timeout 60 python3 "$HERE/run_doc_blocks.py" --source "$SRC" --build "$BUILD" "$HERE/fixtures/$1" >"$OUT" 2>&1 || rc=$?
	[ "$rc" -ne 77 ] || { cat "$OUT"; exit 77; }
	[ "$rc" -eq "$2" ] || fail "$1: exit $rc, want $2"
	grep -qF -- "$3" "$OUT" || fail "$1: no '$3' in the output"
	echo "ok: $1: exit $rc, '$3'"
}

run pass.md 0 "PASS: 3 of 3 blocks run, 1 skipped"
[ ! -e /run/sleeper.pid ] || fail "pass.md wrote the host's /run"
grep -qx "a continued command" "$OUT" || fail "pass.md: the console block's continued command did not run"
run fail-command.md 1 "fail-command.md:3: bash exited with status 1"
grep -qx "not reached" "$OUT" && fail "fail-command.md: ran past the failing command"
run fail-bare.md 1 "fail-bare.md:3: a fenced block without an info string"
run fail-skip-reason.md 1 "'skip' needs a reason"
run fail-timeout.md 1 "still running after 1 s"
run fail-expect.md 1 'expect `test -e /run/never` failed'
