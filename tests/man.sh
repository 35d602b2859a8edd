#!/usr/bin/env bash
# cli.man: the man pages help2man made from the binaries (build/man) exist,
# carry the binary's --version line, and document the options its --help
# lists (every long option appears in the page), for each binary.
# usage: man.sh MAN_DIR BINARY:PAGE...
set -euo pipefail
DIR=$1
shift
for spec in "$@"; do
	bin=${spec%%:*} page=$DIR/${spec#*:}
	[ -s "$page" ] || { echo "FAIL: $page is missing or empty" >&2; exit 1; }
	grep -q '^\.SH NAME' "$page" || { echo "FAIL: $page has no NAME section" >&2; exit 1; }
	ver=$("$bin" --version)
	# help2man puts the version line in the .TH header.
	grep -qF "\"$ver\"" "$page" || { echo "FAIL: $page is not from this build ($ver)" >&2; exit 1; }
	# Every long option of --help is in the page (help2man escapes '-' as '\-').
	n=0
	for opt in $("$bin" --help | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u); do
		esc=${opt//-/\\\\-}
		grep -q -- "$esc" "$page" || { echo "FAIL: $page does not mention $opt" >&2; exit 1; }
		n=$((n + 1))
	done
	echo "ok: $page ($n options)"
done
echo "PASS: cli.man"
