#!/usr/bin/env bash
# VM test 01: a real Linux guest (QEMU TCG, virtio_blk, 2 vCPUs so both
# queues carry I/O) on nestord's vhost-user-blk socket (volume vm0: 64 MiB
# file, 2 queues spread over 2 reactors, adaptive polling). Asserts: the guest's O_DIRECT write of an 8 MiB pattern
# at 1 MiB reads back identically with O_DIRECT and, after drop_caches,
# buffered; the backing file holds exactly those bytes; nestord exits 0 on
# SIGTERM; both reactors completed requests.
# usage: 01-direct.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"

NESTORD_REACTORS=2 nestord_start "${1:-${NESTORD:-}}"
"$HERE/run-guest.sh" --socket "$SOCK" --test direct --queues 2 --smp 2 --timeout 90 \
	--verify-file "$IMG" || { _nestord_log; exit 1; }
nestord_stop
# Both queues carried I/O: each reactor (one queue each) completed requests.
for r in 0 1; do
	n=$(grep -oP "reactor $r cpu .* requests \K[0-9]+" "$TMP/nestord.log" | tail -n 1)
	[ "${n:-0}" -gt 0 ] || { echo "FAIL: reactor $r completed no requests" >&2; _nestord_log; exit 1; }
	echo "reactor $r completed $n requests"
done
echo "PASS: vm.01-direct"
