#!/usr/bin/env bash
# fio.01-smoke: fio with the nestor-fio.so external ioengine against
#   (a) nestord (mem backend, 2 queues, adaptive polling) and
#   (b) Debian's qemu-storage-daemon (file image, 2 queues),
# each with busy-polled and blocking completions (fio thread model), plus a
# process-model run against nestord. Jobs: random writes then crc32c verify
# (2 jobs, one queue each), 4k random reads at iodepth 32 for 1 s, mixed
# reads/writes of 4k-128k with fsync, and random trims.
# Passes when fio exits 0 and its JSON shows error 0, I/O done and every
# written block verified for every job.
#
#   01-smoke.sh ENGINE_SO NESTORD
# Exit 77 (ctest SKIP) when the engine was not built (fio source not
# fetched), fio or python3 is missing.
set -euo pipefail
engine=$1 nestord=$2
SKIP=77

skip() { echo "SKIP: $*"; exit $SKIP; }
[ -f "$engine" ] || skip "$engine was not built: tools/fio/build-engine.sh could not fetch Debian's fio source (see its warning in the build log; pass NESTOR_FIO_SRC or -DNESTOR_FIO_SOURCE_DIR)"
command -v fio >/dev/null || skip "fio is not installed (scripts/install-deps.sh)"
command -v python3 >/dev/null || skip "python3 is not installed"
[ -x "$nestord" ] || { echo "FAIL: nestord not found at $nestord"; exit 1; }

# NESTOR_SANITIZE builds: libnestor.so needs the ASan runtime loaded first,
# and fio itself is not leak-clean.
fio_env=()
asan=$(ldd "$engine" 2>/dev/null | awk '/libasan/ {print $3; exit}')
if [ -n "$asan" ]; then
  fio_env=(env "LD_PRELOAD=$asan" "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/nestor-fio.XXXXXX")
pids=()
cleanup() {  # SIGTERM the backends we started; SIGKILL any still there after 5 s
  local p i
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      echo "WARNING: backend pid $p ignored SIGTERM for 5 s; sending SIGKILL"
      kill -9 "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

# wait_socket PID SOCK LOG
wait_socket() {
  local i
  for i in $(seq 200); do
    [ -S "$2" ] && return 0
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  echo "FAIL: no socket $2"
  cat "$3"
  exit 1
}

# jobfile SOCK POLL THREAD
jobfile() {
  cat <<EOF
[global]
ioengine=external:$engine
socket=$1
nestor_poll=$2
$( [ "$3" = 1 ] && echo thread )
filename=nestor

[write-verify]
rw=randwrite
bs=4k
size=16M
offset_increment=16M
numjobs=2
iodepth=16
verify=crc32c
do_verify=1

[randread-qd32]
stonewall
rw=randread
bs=4k
iodepth=32
time_based
runtime=1

[mixed-fsync]
stonewall
rw=randrw
bsrange=4k-128k
iodepth=8
fsync=16
time_based
runtime=300ms

[trim]
stonewall
rw=randtrim
bs=64k
size=8M
iodepth=4
EOF
}

check_json() {  # JSON_FILE LABEL
  python3 - "$1" "$2" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
start = 0 if text.startswith("{") else text.index("\n{") + 1  # engine notes may precede the JSON
jobs = json.loads(text[start:])["jobs"]
label, bad = sys.argv[2], []
expect = {"write-verify": 2, "randread-qd32": 1, "mixed-fsync": 1, "trim": 1}
seen = {}
for j in jobs:
    name = j["jobname"]
    seen[name] = seen.get(name, 0) + 1
    r, w, t = (j[d]["total_ios"] for d in ("read", "write", "trim"))
    s = j["sync"]["total_ios"]
    print(f"  {label} {name}: error={j['error']} reads={r} writes={w} trims={t} syncs={s} "
          f"read_iops={j['read']['iops']:.0f} write_iops={j['write']['iops']:.0f}")
    if j["error"] != 0:
        bad.append(f"{name}: error {j['error']}")
    if name == "write-verify" and not (w > 0 and r == w):
        bad.append(f"{name}: {w} blocks written but {r} verified")
    if name == "randread-qd32" and r == 0:
        bad.append(f"{name}: no reads")
    if name == "mixed-fsync" and not (r > 0 and w > 0 and s > 0):
        bad.append(f"{name}: reads {r} writes {w} syncs {s}")
    if name == "trim" and t == 0:
        bad.append(f"{name}: no trims")
if seen != expect:
    bad.append(f"jobs {seen}, expected {expect}")
if bad:
    print(f"FAIL {label}: " + "; ".join(bad))
    sys.exit(1)
EOF
}

fails=0
run_fio() {  # LABEL SOCK POLL THREAD
  local label=$1 out=$dir/$1.json rc=0
  jobfile "$2" "$3" "$4" >"$dir/$label.fio"
  # In $dir: fio drops verify state files into its working directory.
  (cd "$dir" && timeout 30 "${fio_env[@]}" fio --output-format=json --output="$out" "$dir/$label.fio") \
    >"$dir/$label.log" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL $label: fio exited $rc"
    cat "$dir/$label.log" "$out" 2>/dev/null | tail -n 40
    fails=$((fails + 1))
    return
  fi
  check_json "$out" "$label" || fails=$((fails + 1))
}

# (a) nestord
mkdir -p "$dir/nd"
# frontends=2,shared-writers: the process model connects once per job
# (write-verify's two jobs write disjoint ranges).
"$nestord" --socket-dir "$dir/nd" --volume v0,size=64M,backend=mem,queues=2,frontends=2,shared-writers --reactors 1 \
  --poll-mode adaptive >"$dir/nestord.log" 2>&1 &
pids+=($!)
wait_socket "${pids[-1]}" "$dir/nd/v0.sock" "$dir/nestord.log"
run_fio nestord-poll "$dir/nd/v0.sock" 1 1
run_fio nestord-block "$dir/nd/v0.sock" 0 1
run_fio nestord-process "$dir/nd/v0.sock" 1 0  # one connection per job process

# (b) qemu-storage-daemon (accepts one client: thread model only)
if command -v qemu-storage-daemon >/dev/null; then
  truncate -s 64M "$dir/qsd.img"
  qemu-storage-daemon --blockdev "driver=file,node-name=n0,filename=$dir/qsd.img" \
    --export "type=vhost-user-blk,id=e0,addr.type=unix,addr.path=$dir/qsd.sock,node-name=n0,writable=on,num-queues=2" \
    >"$dir/qsd.log" 2>&1 &
  pids+=($!)
  wait_socket "${pids[-1]}" "$dir/qsd.sock" "$dir/qsd.log"
  run_fio qsd-poll "$dir/qsd.sock" 1 1
  run_fio qsd-block "$dir/qsd.sock" 0 1
else
  echo "NOTE: qemu-storage-daemon not installed: part (b) not run"
fi

for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "FAIL: a backend (pid $p) died"; fails=$((fails + 1)); }
done
if [ $fails -ne 0 ]; then
  echo "--- nestord log:"; cat "$dir/nestord.log"
  [ -f "$dir/qsd.log" ] && { echo "--- qsd log:"; cat "$dir/qsd.log"; }
  echo "fio.01-smoke: $fails run(s) failed"
  exit 1
fi
echo "fio.01-smoke: all runs passed"
