#!/usr/bin/env bash
# Installs the Debian 12 packages nestor needs to build, run and test
# (librbd-dev to build the RBD backend; ceph-mon, ceph-osd and ceph-common
# for the throwaway cluster of tests/ceph/: nothing starts by itself).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
PKGS=(build-essential cmake pkg-config liburing-dev libgtest-dev googletest
      libfmt-dev libcli11-dev nlohmann-json3-dev libabsl-dev libblkid-dev
      qemu-system-x86 qemu-utils busybox-static fio cpio gzip e2fsprogs python3 curl
      clang libclang-rt-14-dev llvm clang-format clang-tidy
      ceph-mon ceph-osd ceph-common librbd-dev help2man libsystemd-dev)
# --bench: also what `make bench` needs (plots).
[ "${1:-}" = "--bench" ] && PKGS+=(python3-matplotlib qemu-block-extra)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "install-deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
