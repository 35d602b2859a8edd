#!/usr/bin/env bash
# cli.version: every binary answers --version (issue #16) with exit 0 and
# one line "PROGRAM VERSION (pool format N)", where VERSION is `git
# describe --tags --always` of the source tree (plus "-dirty" for a tree
# with changes) when it is built from git, and N the pool format nestor
# writes (volume/format.h).
# usage: version.sh SOURCE_DIR BINARY...
set -euo pipefail
SRC=$1
shift
want_format=$(sed -n 's/^inline constexpr uint32_t kFormatVersion = \([0-9]*\);/\1/p' "$SRC/src/volume/format.h")
[ -n "$want_format" ] || { echo "FAIL: no kFormatVersion in format.h" >&2; exit 1; }
describe=''
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
	describe=$(git -C "$SRC" describe --tags --always)
fi
for bin in "$@"; do
	prog=$(basename "$bin")
	[ "$prog" = nestor-admin ] && prog=nestor
	out=$(timeout 10 "$bin" --version) || { echo "FAIL: $bin --version exited $?" >&2; exit 1; }
	[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "FAIL: $bin --version printed several lines: $out" >&2; exit 1; }
	re="^$prog ([^ ]+) \\(pool format ([0-9]+)\\)\$"
	[[ $out =~ $re ]] || { echo "FAIL: $bin --version: '$out' is not '$prog VERSION (pool format N)'" >&2; exit 1; }
	[ "${BASH_REMATCH[2]}" = "$want_format" ] ||
		{ echo "FAIL: $bin says pool format ${BASH_REMATCH[2]}, format.h has $want_format" >&2; exit 1; }
	if [ -n "$describe" ]; then
		v=${BASH_REMATCH[1]}
		[ "${v%-dirty}" = "$describe" ] ||
			{ echo "FAIL: $bin says version $v, the tree is $describe (rebuild?)" >&2; exit 1; }
	fi
	echo "ok: $out"
done
echo "PASS: cli.version"
