#!/usr/bin/env bash
# VM test 01: a real Linux guest (QEMU TCG, virtio_blk, 1 vCPU) on nestord's
# vhost-user-blk socket (volume vm0: 64 MiB file, 2 queues, 1 reactor,
# adaptive polling). Asserts: the guest's O_DIRECT write of an 8 MiB pattern
# at 1 MiB reads back identically with O_DIRECT and, after drop_caches,
# buffered; the backing file holds exactly those bytes; nestord exits 0 on
# SIGTERM.
# usage: 01-direct.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"

nestord_start "${1:-${NESTORD:-}}"
"$HERE/run-guest.sh" --socket "$SOCK" --test direct --queues 2 --timeout 90 \
	--verify-file "$IMG" || { _nestord_log; exit 1; }
nestord_stop
echo "PASS: vm.01-direct"
