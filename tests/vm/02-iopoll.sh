#!/usr/bin/env bash
# VM test 02: guest poll queues. The guest loads virtio_blk with
# poll_queues=1 on nestord's 2-queue vhost-user-blk device (1 vCPU, 2
# possible CPUs). Asserts: the guest has a poll hw queue (io_poll=1, a
# debugfs hctx of type poll); io_uring IORING_SETUP_IOPOLL O_DIRECT writes
# of an 8 MiB pattern, fdatasync and verified reads (64 KiB sequential, 4 KiB
# scrambled) complete without hanging and without interrupts; a buffered
# re-read matches; the backing file holds the pattern; nestord exits 0 on
# SIGTERM. (qemu-storage-daemon 7.2 fails this test: see peer-qsd.sh.)
# usage: 02-iopoll.sh NESTORD_BINARY   (or env NESTORD)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib-nestord.sh"

nestord_start "${1:-${NESTORD:-}}"
"$HERE/run-guest.sh" --socket "$SOCK" --test iopoll --queues 2 --timeout 90 \
	--verify-file "$IMG" || { _nestord_log; exit 1; }
nestord_stop
echo "PASS: vm.02-iopoll"
