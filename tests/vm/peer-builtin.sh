#!/usr/bin/env bash
# Harness self-check against a known-good device: runs a guest workload on
# QEMU's built-in virtio-blk-pci (2 queues, raw 64 MiB file) instead of a
# vhost-user backend. Asserts that the guest reports PASS and that the image
# holds the guest's pattern. With "iopoll" this proves the poll-queue test can
# pass (no vhost-user backend other than nestord serves poll queues here).
#
# usage: peer-builtin.sh [direct|iopoll]    (default iopoll)
# Env: NESTOR_GUEST_DIR (guest build dir), VM_TIMEOUT (seconds).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST=${1:-iopoll}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
truncate -s 64M "$TMP/disk.img"
"$HERE/run-guest.sh" --drive "$TMP/disk.img" --test "$TEST" --queues 2 \
	--timeout "${VM_TIMEOUT:-60}" --verify-file "$TMP/disk.img"
