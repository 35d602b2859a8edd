#!/usr/bin/env bash
# VM test 09: a guest filesystem on a thin pool volume. `nestor` formats a
# 256 MiB pool file and creates two thin 64 MiB volumes, vm0 and other;
# nestord --pool serves both (2 queues each, 2 reactors). The guest makes
# an ext2 filesystem on vm0 and writes the tree of fs-tree.sh (as vm.03).
# Then, on the host, through libnestor: vm0 holds exactly that filesystem
# (e2fsck clean, every file's content), "other" (never written) reads all
# zeros although vm0's bytes sit in the same pool file; after SIGTERM,
# `nestor pool check` finds the pool clean and vm0 allocated only part of
# its 64 MiB (thin).
# usage: 09-pool-volume.sh NESTORD_BINARY NESTOR_VM_DUMP_BINARY NESTOR_BINARY
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/fs-tree.sh"
. "$HERE/lib-fs-check.sh"

NESTORD_BIN=${1:-${NESTORD:-}}
DUMP=${2:-${NESTOR_VM_DUMP:-}}
NESTOR=${3:-${NESTOR_CLI:-}}
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
[ -x "$DUMP" ] && [ -x "$NESTOR" ] || { echo "usage: $0 NESTORD_BINARY NESTOR_VM_DUMP_BINARY NESTOR_BINARY" >&2; exit 2; }

t0=$(date +%s.%N)
POOL=$TMP/pool.img
"$NESTOR" pool create "$POOL" --size 256M
"$NESTOR" volume create vm0 --pool "$POOL" --size 64M
"$NESTOR" volume create other --pool "$POOL" --size 64M
NESTORD_TIMEOUT=160 nestord_launch "$NESTORD_BIN" --pool "$POOL" --export-all --pool-queues 2 --reactors 2
"$HERE/run-guest.sh" --socket "$TMP/vm0.sock" --test fs --queues 2 --timeout 120 \
	--log "$TMP/console.log" || { _nestord_log; exit 1; }

timeout 60 "$DUMP" "$TMP/vm0.sock" "$TMP/vm0.dump" || { echo "FAIL: nestor-vm-dump vm0" >&2; _nestord_log; exit 1; }
fs_check_image "$TMP/vm0.dump" "$TMP/console.log" || exit 1
timeout 60 "$DUMP" "$TMP/other.sock" "$TMP/other.dump" || { echo "FAIL: nestor-vm-dump other" >&2; _nestord_log; exit 1; }
cmp -s "$TMP/other.dump" <(head -c 64M /dev/zero) || { echo "FAIL: the never-written volume does not read zeros" >&2; exit 1; }
echo "volume other (never written) reads 64 MiB of zeros"
nestord_stop

"$NESTOR" pool check "$POOL" || { echo "FAIL: nestor pool check" >&2; exit 1; }
alloc=$("$NESTOR" volume list --pool "$POOL" --json |
	python3 -c 'import json,sys; print(next(v["allocated_bytes"] for v in json.load(sys.stdin)["volumes"] if v["name"] == "vm0"))')
echo "vm0 allocated $alloc of 67108864 bytes"
[ "$alloc" -gt 0 ] && [ "$alloc" -lt 67108864 ] || { echo "FAIL: vm0 allocation $alloc is not thin" >&2; exit 1; }
echo "PASS: vm.09-pool-volume ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
