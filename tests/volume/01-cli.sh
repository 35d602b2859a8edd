#!/usr/bin/env bash
# volume.01-cli: the offline tool `nestor` (tools/nestor) on pools in sparse
# files: pool create (refusing an existing pool and a file system without
# --force), info and list in text and JSON, volume create/resize/delete
# and the documented exit code of each error, pool check on a clean pool
# and on deliberately corrupted ones.
#
# Exit 7 (shrinking below written data) is not exercised: nothing writes
# volume data offline; the daemon tests cover the data path.
# usage: 01-cli.sh NESTOR_BINARY
set -euo pipefail
NESTOR=${1:?usage: $0 NESTOR_BINARY}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# run WANT_RC ARGS...: runs nestor (bounded), output in $TMP/out and
# $TMP/err; checks the exit code and that errors are "nestor: ..." lines.
run() {
	local want=$1 rc=0
	shift
	timeout 20 "$NESTOR" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if [ "$rc" != "$want" ]; then
		fail "nestor $* exited $rc, want $want"$'\n'"stdout: $(cat "$TMP/out")"$'\n'"stderr: $(cat "$TMP/err")"
		return 0
	fi
	if [ "$want" != 0 ] && [ "$want" != 1 ] && ! grep -q '^nestor: ' "$TMP/err"; then
		fail "nestor $*: no 'nestor: <message>' on stderr: $(cat "$TMP/err")"
	fi
	return 0
}
out_has() { grep -qF -- "$1" "$TMP/out" || fail "stdout lacks '$1':"$'\n'"$(cat "$TMP/out")"; }
err_has() { grep -qF -- "$1" "$TMP/err" || fail "stderr lacks '$1':"$'\n'"$(cat "$TMP/err")"; }
# json EXPR: evaluates a Python expression over the JSON on stdout (as j).
json() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$TMP/out" "$1"
}
json_is() {
	local got
	got=$(json "$1" 2>&1) || got="<bad JSON: $got>"
	[ "$got" = "$2" ] || fail "JSON $1 = '$got', want '$2':"$'\n'"$(cat "$TMP/out")"
}

P=$TMP/pool.img
M=$((1024 * 1024))

# 1. Help lists the exit codes; usage errors exit 2.
run 0 --help
out_has "Exit codes:"
out_has "7  would discard data"
run 2
run 2 pool frobnicate "$P"
run 2 volume create v --pool "$P"
run 2 pool create "$P" --size 12Q
run 2 pool create "$P"
[ ! -e "$P" ] || fail "pool create without --size created $P"

# 2. pool create: a sparse file of --size; a second create is refused.
run 0 pool create "$P" --size 256M
out_has "created pool $P"
[ "$(stat -c %s "$P")" = $((256 * M)) ] || fail "pool file is $(stat -c %s "$P") bytes"
[ $(($(stat -c %b "$P") * 512)) -lt $((16 * M)) ] || fail "pool file is not sparse"
[ ! -s "$TMP/err" ] || fail "log lines without -v: $(cat "$TMP/err")"
run 4 pool create "$P" --size 256M
err_has "already holds a nestor pool"
run 2 pool create "$TMP/tiny.img" --size 1M
[ ! -e "$TMP/tiny.img" ] || fail "a failed pool create left its new file behind"
run 2 pool create "$TMP/c3k.img" --size 64M --cluster-size 3K

# 3. A file holding ext4 is refused, and formatted with --force (which
#    erases the ext4 signature: a later create sees only the pool).
E=$TMP/ext4.img
truncate -s 64M "$E"
mkfs.ext4 -q -F "$E" >/dev/null 2>&1 || fail "mkfs.ext4 failed"
run 4 pool create "$E"
err_has "ext4"
if command -v blkid >/dev/null; then
	[ "$(blkid -p -s TYPE -o value "$E" 2>/dev/null || true)" = ext4 ] || fail "refused create touched the ext4"
fi
run 0 pool create "$E" --force --cluster-size 128K
run 4 pool create "$E"
err_has "already holds a nestor pool"
run 0 pool info "$E" --json
json_is "j['cluster_size']" 131072
json_is "j['size']" $((64 * M))
run 0 pool check "$E"

# 4. pool info, text and JSON.
run 0 pool info "$P"
out_has "uuid:"
out_has "cluster size:    64.0K (65536 bytes)"
out_has "checkpoint 0   offset 4096"
run 0 pool info "$P" --json
json_is "j['size']" $((256 * M))
json_is "j['cluster_size']" 65536
json_is "j['volumes']" 0
json_is "j['used_clusters']" 0
json_is "j['free_clusters'] == j['data_clusters'] > 0" True
json_is "j['layout']['checkpoint_offsets'][0]" 4096
json_is "j['layout']['data_offset'] >= j['layout']['log_offset'] + j['layout']['log_bytes']" True
json_is "len(j['uuid'])" 36
run 3 pool info "$TMP/missing.img"
truncate -s 16M "$TMP/zeros.img"
run 9 pool info "$TMP/zeros.img"
err_has "not a nestor pool"

# 5. Volumes: create, the error of each refusal, list.
run 0 volume create a --pool "$P" --size 1G
out_has "created volume a: 1.0G, thin"
run 4 volume create a --pool "$P" --size 4M
err_has "already exists"
run 2 volume create "bad/name" --pool "$P" --size 4M
run 2 volume create c --pool "$P" --size 1000
err_has "volume size 1000 is below the minimum of 4096 bytes"
run 2 volume create c --pool "$P" --size 65535
err_has "volume size 65535 is not a multiple of 4096 bytes"
# Issue #10: the limits (docs/volumes.md, "Limits") name themselves.
run 2 volume create big --pool "$P" --size 18446744073709547520
err_has "size 18446744073709547520 exceeds the maximum volume size of 4611686018427387904 bytes"
run 2 volume create big --pool "$P" --size 16777216T
err_has "overflows 64 bits"
run 2 volume create "$(printf 'n%.0s' $(seq 64))" --pool "$P" --size 4M
err_has "the limit is 1 to 63"
run 5 volume create big --pool "$P" --size 512M --preallocate
run 0 volume create b --pool "$P" --size 64M --preallocate
run 3 volume create c --pool "$TMP/missing.img" --size 4M
run 0 volume list --pool "$P"
out_has "NAME"
out_has "ALLOCATED"
# NAME TYPE PARENT SIZE ALLOCATED SHARED FREES RESERVED EXTENTS EXPORTED CHILDREN
grep -Eq '^a +volume +- +1\.0G +0B +(-|0B) +(-|0B) +0B +0 +no +-$' "$TMP/out" || fail "list row of a: $(cat "$TMP/out")"
grep -Eq '^b +volume +- +64\.0M +0B +(-|0B) +(-|0B) +64\.0M +0 +no +-$' "$TMP/out" || fail "list row of b: $(cat "$TMP/out")"
run 0 volume list --pool "$P" --json
json_is "[v['name'] for v in j['volumes']]" "['a', 'b']"
json_is "j['volumes'][0]['size']" $((1024 * M))
json_is "j['volumes'][1]['reserved_bytes']" $((64 * M))
json_is "j['volumes'][1]['allocated_bytes']" 0
run 0 pool info "$P" --json
json_is "j['volumes']" 2
json_is "j['reserved_bytes']" $((64 * M))
json_is "j['commit_seq'] >= 2" True

# 6. Resize: grow and shrink (empty volumes), a reservation that does not
#    fit, unknown volumes.
run 0 volume resize a --pool "$P" --size 2G
out_has "1.0G -> 2.0G"
run 0 volume resize a --pool "$P" --size 512M
run 0 volume resize b --pool "$P" --size 32M
run 5 volume resize b --pool "$P" --size 1G
run 2 volume resize b --pool "$P" --size 0
run 2 volume resize a --pool "$P" --size 18446744073709547520
err_has "exceeds the maximum volume size"
run 3 volume resize nope --pool "$P" --size 4M
run 0 volume list --pool "$P" --json
json_is "[(v['name'], v['size'], v['reserved_bytes']) for v in j['volumes']]" \
	"[('a', $((512 * M)), 0), ('b', $((32 * M)), $((32 * M)))]"

# 7. Delete.
run 3 volume delete nope --pool "$P"
run 0 volume delete a --pool "$P"
run 3 volume delete a --pool "$P"
run 0 volume list --pool "$P" --json
json_is "[v['name'] for v in j['volumes']]" "['b']"

# 8. -v shows the volume manager's log lines (hidden by default).
run 0 -v volume list --pool "$P"
err_has "INFO"
run 0 volume list --pool "$P" -v
err_has "INFO"

# 9. check: clean, then corrupted copies.
run 0 pool check "$P"
out_has "clean"
run 0 pool check "$P" --json
json_is "j['clean']" True
json_is "j['problems']" "[]"
json_is "j['volumes']" 1
cp --sparse=always "$P" "$TMP/bad-ckpt.img"
dd if=/dev/urandom of="$TMP/bad-ckpt.img" bs=512 seek=8 count=1 conv=notrunc status=none
run 8 pool check "$TMP/bad-ckpt.img"
err_has "corrupt"
run 8 volume list --pool "$TMP/bad-ckpt.img"
run 8 volume create x --pool "$TMP/bad-ckpt.img" --size 4M
cp --sparse=always "$P" "$TMP/bad-super.img"
printf 'garbage!' | dd of="$TMP/bad-super.img" bs=1 seek=64 conv=notrunc status=none
# A damaged superblock is read from its copy in checkpoint slot 0: the
# pool opens (same state), check reports the damage (exit 1).
run 1 pool check "$TMP/bad-super.img" --json
json_is "j['clean']" False
json_is "'superblock damaged' in j['problems'][0]" True
json_is "j['volumes']" 1
# With that copy damaged too, nothing is left to open it with.
cp --sparse=always "$TMP/bad-super.img" "$TMP/bad-both.img"
dd if=/dev/urandom of="$TMP/bad-both.img" bs=512 seek=8 count=1 conv=notrunc status=none
run 8 pool check "$TMP/bad-both.img" --json
json_is "j['clean']" False
err_has "superblock"
# A corrupt pool is still refused by create without --force.
run 4 pool create "$TMP/bad-super.img"
run 4 pool create "$TMP/bad-both.img"
# The original is untouched by all of the above.
run 0 pool check "$P"

if [ $fails -ne 0 ]; then
	echo "volume.01-cli: $fails failure(s)" >&2
	exit 1
fi
echo "volume.01-cli: ok"
