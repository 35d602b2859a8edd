#!/usr/bin/env bash
# volume.02-repair: damaged metadata is loud and recovery is explicit
# (issue #10, item 2), with the offline tool on real pool files.
#   1. A flipped byte in a log entry that later commits follow: pool check
#      exits 1 naming the entry; nestor pool repair saves the metadata area,
#      says what was lost (the damaged entry, and a later record that needed
#      it), and leaves a pool that checks clean and keeps the rest.
#   2. A damaged superblock: check exits 1 ("superblock damaged", the copy
#      in the checkpoint header was used); repair rewrites it byte for byte.
#   3. A damaged *last* entry after a clean close (the seal): check exits 1;
#      repair makes the pool clean again.
# usage: 02-repair.sh NESTOR_BINARY
set -euo pipefail
NESTOR=${1:?usage: $0 NESTOR_BINARY}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
run() {  # run WANT_RC ARGS...
	local want=$1 rc=0
	shift
	timeout 30 "$NESTOR" --journal-dir none "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ "$rc" = "$want" ] || fail "nestor $* exited $rc, want $want"$'\n'"$(cat "$TMP/out" "$TMP/err")"
	return 0
}
out_has() { grep -qF -- "$1" "$TMP/out" || fail "stdout lacks '$1':"$'\n'"$(cat "$TMP/out")"; }
out_lacks() { ! grep -qF -- "$1" "$TMP/out" || fail "stdout has '$1':"$'\n'"$(cat "$TMP/out")"; }
# log_entries POOL: "offset seq" of every log entry header (magic NLOG).
log_entries() {
	python3 - "$1" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'NNESTOPL' or True
log_off, log_bytes = struct.unpack_from('<QQ', data, 72)
for off in range(log_off, log_off + log_bytes, 4096):
    magic, crc, seq = struct.unpack_from('<IIQ', data, off)
    if magic == 0x474f4c4e:
        print(off, seq)
EOF
}
flip() {  # flip POOL OFFSET
	python3 -c 'import sys; f = open(sys.argv[1], "r+b"); o = int(sys.argv[2]); f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 0x20]))' "$1" "$2"
}

make_pool() {  # one commit (one log entry) per command
	local p=$1
	run 0 pool create "$p" --size 64M
	run 0 volume create a --pool "$p" --size 4M     # seq 1
	run 0 volume create b --pool "$p" --size 4M     # seq 2
	run 0 volume create c --pool "$p" --size 4M     # seq 3
	run 0 volume resize b --pool "$p" --size 8M     # seq 4
	run 0 volume create d --pool "$p" --size 4M     # seq 5
}

# 1. Damage in the middle of the log.
P=$TMP/mid.img
make_pool "$P"
entry2=$(log_entries "$P" | awk '$2 == 2 {print $1}')
[ -n "$entry2" ] || fail "no log entry with seq 2 found"
flip "$P" $((entry2 + 32 + 6))   # inside its first record (the name)
run 1 pool check "$P"
out_has "log entry 2"
out_has "later commits follow"
run 0 pool repair "$P" --backup "$TMP/mid.bak"
out_has "saved to $TMP/mid.bak"
out_has "lost or fixed: log entry 2"
out_has "replay went on at entry 3"
out_has "clean after repair"
[ "$(stat -c %s "$TMP/mid.bak")" = "$(python3 -c 'import struct,sys; print(struct.unpack_from("<Q", open(sys.argv[1],"rb").read(), 88)[0])' "$P")" ] ||
	fail "backup is not the whole metadata area"
run 0 pool check "$P"
run 0 volume list --pool "$P" --json
for v in a c d; do out_has "\"$v\""; done
out_lacks '"b"'   # its create was in the damaged entry; its resize went with it
run 0 volume create e --pool "$P" --size 4M   # usable again
run 0 pool check "$P"

# 2. A damaged superblock.
P=$TMP/sb.img
make_pool "$P"
head -c 4096 "$P" >"$TMP/sb.good"
flip "$P" 20
run 1 pool check "$P"
out_has "superblock damaged"
run 0 volume list --pool "$P" --json   # opens from the copy: identical state
for v in a b c d; do out_has "\"$v\""; done
run 0 pool repair "$P" --backup "$TMP/sb.bak"
out_has "clean after repair"
cmp -s <(head -c 4096 "$P") "$TMP/sb.good" || fail "repair did not restore the superblock"
run 0 pool check "$P"

# 3. The last entry damaged after a clean close.
P=$TMP/last.img
make_pool "$P"
last=$(log_entries "$P" | awk '$2 == 5 {print $1}')
flip "$P" $((last + 32 + 6))
run 1 pool check "$P"
out_has "closed cleanly after log entry 5"
run 0 pool repair "$P" --backup "$TMP/last.bak"
out_has "clean after repair"
run 0 volume list --pool "$P" --json
for v in a b c; do out_has "\"$v\""; done
out_lacks '"d"'
run 0 pool check "$P"

if [ "$fails" -ne 0 ]; then
	echo "volume.02-repair: $fails failure(s)" >&2
	exit 1
fi
echo "volume.02-repair: OK"
