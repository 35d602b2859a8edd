#!/usr/bin/env bash
# VM test 03: a filesystem on a nestor volume. The guest (1 vCPU) makes an
# ext2 filesystem (busybox mke2fs, 1 KiB blocks, mounted by the ext4 driver)
# on nestord's 64 MiB file-backed volume vm0, writes the tree of fs-tree.sh
# (deterministic content, ~4.5 MiB in 57 files over nested directories),
# syncs, unmounts, remounts read-only after drop_caches and checks every
# file's sha256 (guest-init.sh, test "fs"). Then, with the VM gone and
# nestord still serving, the host reads the whole volume back through
# libnestor (nestor-vm-dump) and asserts: the image equals the backing file;
# e2fsck -fn finds it clean; debugfs rdump yields exactly the tree's files
# each with the content the host generates itself (and the sha256 the guest
# printed). nestord exits 0 on SIGTERM.
# Needs e2fsprogs (debugfs, e2fsck) on the host.
# usage: 03-filesystem.sh NESTORD_BINARY NESTOR_VM_DUMP_BINARY
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"
. "$HERE/fs-tree.sh"
. "$HERE/lib-fs-check.sh"

NESTORD_BIN=${1:-${NESTORD:-}}
DUMP=${2:-${NESTOR_VM_DUMP:-}}
GUEST=${NESTOR_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nestor/guest}
[ -x "$DUMP" ] || { echo "usage: $0 NESTORD_BINARY NESTOR_VM_DUMP_BINARY" >&2; exit 2; }
PATH=$PATH:/usr/sbin:/sbin
for t in debugfs e2fsck; do
	command -v $t >/dev/null || { echo "FAIL: $t not found (apt-get install e2fsprogs)" >&2; exit 1; }
done

t0=$(date +%s.%N)
nestord_start "$NESTORD_BIN"
"$HERE/run-guest.sh" --socket "$SOCK" --test fs --queues 2 --timeout 120 \
	--log "$TMP/console.log" || { _nestord_log; exit 1; }

# The volume as libnestor sees it, through nestord's socket.
timeout 60 "$DUMP" "$SOCK" "$TMP/dump.img" || { echo "FAIL: nestor-vm-dump" >&2; _nestord_log; exit 1; }
cmp "$TMP/dump.img" "$IMG" || { echo "FAIL: volume read through libnestor differs from the backing file" >&2; exit 1; }
echo "volume read through libnestor equals the backing file ($(stat -c %s "$TMP/dump.img") bytes)"
fs_check_image "$TMP/dump.img" "$TMP/console.log" || exit 1
nestord_stop
echo "PASS: vm.03-filesystem ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
