#!/usr/bin/env bash
# Builds OUTDIR/nestor-fio.so, the fio external ioengine over libnestor.
#
#   build-engine.sh OUTDIR [--lib LIBNESTOR_SO] [--include DIR] [--cc CC]
#                          [--fio-src DIR] [--force-fetch]
#
# An external engine must be compiled against the headers of the fio release
# that loads it (struct thread_data, io_u and ioengine_ops are not a stable
# ABI), including the generated config-host.h. This script:
#   1. takes the fio source from --fio-src / $NESTOR_FIO_SRC if given, else
#      fetches Debian's source of the installed fio package (same version)
#      once into OUTDIR/fio-src with a private APT configuration (nothing in
#      /etc/apt changes; no root needed) and runs fio's ./configure;
#   2. compiles nestor_engine.c with -include config-host.h and links it to
#      libnestor.so with an rpath, so `fio --ioengine=external:OUTDIR/nestor-fio.so`
#      needs no LD_LIBRARY_PATH.
# Without network (or any other fetch failure) it prints a warning, builds
# nothing and exits 0: the build goes on and the fio tests report SKIP. A
# failed fetch is retried after an hour, or at once with --force-fetch.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
out=$1
shift
lib=$repo/build/src/client/libnestor.so
inc=$repo/include
cc=${CC:-cc}
fio_src=${NESTOR_FIO_SRC:-}
force=0
while [ $# -gt 0 ]; do
  case $1 in
    --lib) lib=$2; shift 2 ;;
    --include) inc=$2; shift 2 ;;
    --cc) cc=$2; shift 2 ;;
    --fio-src) fio_src=$2; shift 2 ;;
    --force-fetch) force=1; shift ;;
    *) echo "build-engine: unknown argument $1" >&2; exit 2 ;;
  esac
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
so=$out/nestor-fio.so
cache=$out/fio-src
stamp=$cache/fetch-failed

warn() {
  echo "build-engine: WARNING: $*" >&2
  echo "build-engine: WARNING: nestor-fio.so not built; the fio.* tests will be skipped." >&2
}

# ---- 1. fio source -------------------------------------------------------
fetch_fio_source() {
  local want dl aptdir conf
  # The engine must match the fio that will load it: the installed package.
  want=$(dpkg-query -W -f='${Version}' fio 2>/dev/null || true)
  if [ -z "$want" ]; then
    echo "build-engine: fio is not installed; fetching Debian's current fio source" >&2
  fi
  aptdir=$cache/apt
  rm -rf "$aptdir" "$cache/dl"
  mkdir -p "$aptdir/sources.list.d" "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$cache/dl"
  local src
  for src in /etc/apt/sources.list.d/*.sources; do
    [ -e "$src" ] || continue
    sed -E 's/^Types:.*/Types: deb deb-src/' "$src" >"$aptdir/sources.list.d/$(basename "$src")"
  done
  if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list >"$aptdir/sources.list.d/from-sources-list.list"
  fi
  conf=$aptdir/apt.conf
  cat >"$conf" <<EOF
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "$aptdir/sources.list.d";
Dir::State::Lists "$aptdir/lists";
Dir::Cache "$aptdir/cache";
Acquire::Retries "1";
Acquire::http::Timeout "20";
APT::Sandbox::User "root";
EOF
  export APT_CONFIG=$conf
  echo "build-engine: fetching the fio${want:+ $want} source (private apt lists in $aptdir)" >&2
  if ! apt-get update -qq >"$aptdir/update.log" 2>&1; then
    tail -n 5 "$aptdir/update.log" >&2
    return 1
  fi
  # dpkg-source (dpkg-dev, part of build-essential) unpacks and patches; without
  # it, unpack the upstream tarball (Debian's patches touch only the build).
  # (apt-get update exits 0 when some index fails: the errors show up here.)
  local only=()
  command -v dpkg-source >/dev/null || only=(--download-only)
  if ! (cd "$cache/dl" && apt-get source -qq "${only[@]}" "fio${want:+=$want}") >"$aptdir/source.log" 2>&1; then
    grep -h '^[EW]:' "$aptdir/update.log" | head -n 5 >&2
    tail -n 5 "$aptdir/source.log" >&2
    return 1
  fi
  if [ ${#only[@]} -gt 0 ]; then
    (cd "$cache/dl" && tar xf fio_*.orig.tar.*) || return 1
  fi
  local d
  d=$(find "$cache/dl" -mindepth 2 -maxdepth 2 -name fio.h -printf '%h\n' | head -n 1)
  [ -n "$d" ] || { echo "build-engine: no fio.h in the fetched source" >&2; return 1; }
  rm -rf "$cache/tree"
  mv "$d" "$cache/tree"
  rm -rf "$cache/dl" "$aptdir/lists" "$aptdir/cache"  # ~40 MB of package lists
  return 0
}

configure_fio() {  # $1: fio source tree
  [ -f "$1/config-host.h" ] && return 0
  echo "build-engine: configuring fio in $1" >&2
  (cd "$1" && ./configure --disable-native) >"$1/nestor-configure.log" 2>&1 \
    || { tail -n 20 "$1/nestor-configure.log" >&2; return 1; }
}

if [ -n "$fio_src" ]; then
  [ -f "$fio_src/fio.h" ] || { echo "build-engine: $fio_src is not a fio source tree" >&2; exit 1; }
  tree=$fio_src
else
  tree=$cache/tree
  if [ ! -f "$tree/fio.h" ]; then
    mkdir -p "$cache"
    if [ "$force" = 0 ] && [ -f "$stamp" ] && [ -n "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
      warn "fetching the fio source failed less than an hour ago ($(cat "$stamp")); rerun with --force-fetch, remove $stamp, or pass --fio-src / NESTOR_FIO_SRC"
      exit 0
    fi
    if ! fetch_fio_source; then
      echo "$(date -u +%FT%TZ)" >"$stamp"
      warn "could not fetch the fio source with apt-get source (no network or no deb-src access?); pass --fio-src DIR or NESTOR_FIO_SRC=DIR with the source of the installed fio"
      exit 0
    fi
    rm -f "$stamp"
  fi
fi
configure_fio "$tree" || { warn "fio's ./configure failed in $tree"; exit 0; }

# Warn when the headers are not those of the fio on PATH.
if command -v fio >/dev/null; then
  have=$(fio --version 2>/dev/null || true)
  src_ver=$(sed -n 's/^DEF_VER=//p' "$tree/FIO-VERSION-GEN" 2>/dev/null || true)
  if [ -n "$src_ver" ] && [ "$have" != "$src_ver" ]; then
    echo "build-engine: WARNING: headers are $src_ver but 'fio --version' is $have; the engine may crash" >&2
  fi
fi

# ---- 2. the engine -------------------------------------------------------
[ -f "$lib" ] || { echo "build-engine: $lib not found (build target nestor first)" >&2; exit 1; }
src=$here/nestor_engine.c
if [ -f "$so" ] && [ "$so" -nt "$src" ] && [ "$so" -nt "$inc/nestor/nestor.h" ] && [ "$so" -nt "$lib" ] \
   && [ "$so" -nt "$0" ] && [ "$so" -nt "$tree/config-host.h" ]; then
  exit 0
fi
libdir=$(cd "$(dirname "$lib")" && pwd)
echo "build-engine: compiling $so" >&2
# Same defines as fio's own build (Makefile CPPFLAGS, config-host.mak).
"$cc" -std=gnu11 -O2 -g -Wall -Wno-unused-parameter -shared -fPIC -rdynamic \
  -D_GNU_SOURCE -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64 -DFIO_INC_DEBUG \
  -include "$tree/config-host.h" -I"$tree" -I"$inc" \
  "$src" -o "$so.tmp" \
  "$libdir/$(basename "$lib")" -Wl,-rpath,"$libdir" -lpthread
mv -f "$so.tmp" "$so"
