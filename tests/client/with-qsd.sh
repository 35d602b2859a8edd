#!/usr/bin/env bash
# Runs a command against a fresh qemu-storage-daemon vhost-user-blk export.
#   with-qsd.sh null|file NUM_QUEUES CMD ARGS...   (@SOCK@ / @IMG@ in ARGS are replaced)
# qsd runs under `timeout 60`, the command under `timeout 60`; both are reaped.
set -euo pipefail
kind=$1 queues=$2
shift 2
dir=$(mktemp -d "${TMPDIR:-/tmp}/nestor-qsd.XXXXXX")
sock=$dir/sock img=$dir/img
qsd_pid=
cleanup() {
  if [ -n "$qsd_pid" ]; then
    kill "$qsd_pid" 2>/dev/null || true
    wait "$qsd_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
case $kind in
  null) blockdev="driver=null-co,node-name=n0,size=1073741824,read-zeroes=on" ;;
  file) truncate -s 256M "$img"
        blockdev="driver=file,node-name=n0,filename=$img,cache.direct=off" ;;
  *) echo "with-qsd: unknown kind $kind" >&2; exit 2 ;;
esac
timeout 60 qemu-storage-daemon --blockdev "$blockdev" \
  --export "type=vhost-user-blk,id=e0,addr.type=unix,addr.path=$sock,node-name=n0,writable=on,num-queues=$queues" \
  >"$dir/qsd.log" 2>&1 &
qsd_pid=$!
for _ in $(seq 200); do
  [ -S "$sock" ] && break
  kill -0 "$qsd_pid" 2>/dev/null || { cat "$dir/qsd.log" >&2; exit 1; }
  sleep 0.05
done
[ -S "$sock" ] || { echo "with-qsd: no socket" >&2; cat "$dir/qsd.log" >&2; exit 1; }
sleep 0.05
args=()
for a in "$@"; do a=${a//@SOCK@/$sock}; args+=("${a//@IMG@/$img}"); done
rc=0
timeout 60 "${args[@]}" || rc=$?
if [ -s "$dir/qsd.log" ]; then echo "--- qsd log:"; cat "$dir/qsd.log"; fi
exit $rc
