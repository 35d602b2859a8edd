#!/usr/bin/env bash
# package.01-deb: `make deb`'s package (CPack, packaging/CMakeLists.txt),
# built from this build tree, installed into a throwaway root (dpkg -x: no
# dpkg database, nothing outside the root touched) and exercised there
# (issue #16):
#  1. the package's metadata: name nestor, dependencies found by
#     dpkg-shlibdeps (liburing, librbd), every file under /usr;
#  2. the installed binaries answer --version with this build's version;
#     the man pages and the bash completion are where man and bash look;
#     the systemd unit starts the package's nestord;
#  3. smoke: the installed nestord serves a memory volume and a pool;
#     the installed nestorctl creates and exports a volume and reports
#     status; the installed nestor-io writes and verifies data, and
#     verifies it again after nestord restarts;
#  4. libnestor: a C program built against the installed header and
#     library (pkg-config --cflags --libs nestor, from the root) connects,
#     writes, reads back and compares.
# usage: package.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
T=$(mktemp -d)
PID=
cleanup() {
	[ -z "$PID" ] || kill "$PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	[ ! -f "$T/log" ] || tail -n 20 "$T/log" >&2
	exit 1
}
now() { date +%s.%N; }
t0=$(now)

# 1. Build the package (what `make deb` runs) into $T.
(cd "$BUILD" && timeout 300 cpack -G DEB -B "$T/pkg" >"$T/cpack.log" 2>&1) || fail "cpack: $(tail -20 "$T/cpack.log")"
deb=$(ls "$T"/pkg/*.deb)
[ -f "$deb" ] || fail "no .deb in $T/pkg"
echo "package: $(basename "$deb") ($(du -h "$deb" | cut -f1)) in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s"
[ "$(dpkg-deb -f "$deb" Package)" = nestor ] || fail "package name: $(dpkg-deb -f "$deb" Package)"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in liburing librbd1 librados2 libsystemd0; do
	[[ $depends == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
dpkg-deb -c "$deb" | awk '{ print $6 }' | grep -v '^\./usr/' | grep -v '^\./$' && fail "files outside /usr"
R=$T/root
dpkg -x "$deb" "$R"

# 2. What got installed, and its version.
for f in usr/sbin/nestord usr/bin/nestorctl usr/bin/nestor usr/bin/nestor-vm usr/bin/nestor-io \
	usr/include/nestor/nestor.h usr/lib/pkgconfig/nestor.pc usr/share/man/man8/nestord.8 \
	usr/share/man/man8/nestorctl.8 usr/share/man/man1/nestor-io.1 \
	usr/share/bash-completion/completions/nestorctl usr/share/doc/nestor/docs/usage.md \
	usr/lib/systemd/system/nestord.service usr/share/doc/nestor/examples/nestord.conf; do
	[ -e "$R/$f" ] || fail "the package has no /$f"
done
ls "$R"/usr/lib/libnestor.so* >/dev/null 2>&1 || fail "no libnestor.so"
# The unit starts the package's own nestord (control.07 runs it that way).
unit_bin=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$R/usr/lib/systemd/system/nestord.service")
[ -x "$R$unit_bin" ] || fail "the unit's ExecStart $unit_bin is not in the package"
want=$("$BUILD/src/daemon/nestord" --version)
got=$("$R/usr/sbin/nestord" --version)
[ "$got" = "$want" ] || fail "installed nestord says '$got', the build '$want'"
"$R/usr/bin/nestorctl" --version >/dev/null || fail "nestorctl --version"

# 3. Smoke test with the installed binaries only.
S=$T/run
start() {
	timeout -k 5 60 "$R/usr/sbin/nestord" --socket-dir "$S" "$@" >>"$T/log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do [ -S "$S/control.ctl" ] && return 0; sleep 0.05; done
	fail "installed nestord did not start"
}
stop() {
	kill -TERM "$(cat "/proc/$PID/task/$PID/children")" 2>/dev/null || kill -TERM "$PID"
	wait "$PID" || fail "installed nestord exited $? on SIGTERM"
	PID=
}
"$R/usr/bin/nestor" pool create "$T/pool.img" --size 256M >/dev/null || fail "installed nestor pool create"
start --pool "$T/pool.img" --volume m0,size=16M,backend=mem
CTL=("$R/usr/bin/nestorctl" -s "$S/control.ctl")
"${CTL[@]}" volume create db --size 64M >/dev/null || fail "installed nestorctl volume create"
"${CTL[@]}" export create db --queues 2 >/dev/null || fail "installed nestorctl export create"
"${CTL[@]}" status >"$T/status" || fail "installed nestorctl status"
grep -q "^exports: *2 (db, m0)" "$T/status" || fail "status: $(cat "$T/status")"
timeout 60 "$R/usr/bin/nestor-io" --socket "$S/db.sock" --queues 2 --bytes 8M --seed 0x1234 >"$T/nio" 2>&1 ||
	fail "installed nestor-io: $(cat "$T/nio")"
stop
start --pool "$T/pool.img"
timeout 60 "$R/usr/bin/nestor-io" --socket "$S/db.sock" --bytes 8M --seed 0x1234 --verify-only >"$T/nio" 2>&1 ||
	fail "installed nestor-io --verify-only after a restart: $(cat "$T/nio")"

# 4. libnestor from the package: build and run a client.
cat >"$T/client.c" <<'C'
#include <nestor/nestor.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char** argv) {
  struct nestor_options o;
  nestor_options_init(&o);
  o.socket_path = argv[1];
  nestor_dev* dev = NULL;
  if (nestor_connect(&o, &dev) != 0) { fprintf(stderr, "connect: %s\n", nestor_last_error()); return 1; }
  nestor_queue* q = nestor_get_queue(dev, 0);
  char* w = nestor_buf_alloc(dev, 4096, 4096);
  char* r = nestor_buf_alloc(dev, 4096, 4096);
  memset(w, 0x5a, 4096);
  memset(r, 0, 4096);
  int rc = nestor_write(q, 1 << 20, w, 4096);
  if (rc == 0) rc = nestor_read(q, 1 << 20, r, 4096);
  if (rc == 0 && memcmp(w, r, 4096) != 0) rc = 99;
  printf("capacity %llu, rc %d\n", (unsigned long long)nestor_capacity(dev), rc);
  nestor_close(dev);
  return rc == 0 ? 0 : 1;
}
C
pcdir=$R/usr/lib/pkgconfig
# nestor.pc is relocatable (its prefix is relative to where it is), so in
# the throwaway root it names the root's /usr.
flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs nestor) || fail "pkg-config nestor"
inc=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=includedir nestor)
[ "$(realpath -m "$inc")" = "$R/usr/include" ] || fail "pkg-config nestor names $inc, not the root's /usr/include"
# shellcheck disable=SC2086  # the flags are words
cc -o "$T/client" "$T/client.c" $flags || fail "building a client against the installed libnestor ($flags)"
LD_LIBRARY_PATH=$R/usr/lib timeout 30 "$T/client" "$S/db.sock" >"$T/client.out" 2>&1 ||
	fail "the libnestor client: $(cat "$T/client.out")"
grep -q "capacity 67108864, rc 0" "$T/client.out" || fail "the libnestor client: $(cat "$T/client.out")"
stop
echo "PASS: package.01-deb ($(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s)"
