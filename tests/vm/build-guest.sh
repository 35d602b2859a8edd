#!/usr/bin/env bash
# Builds the guest used by the nestor VM tests into OUTDIR:
#   OUTDIR/vmlinuz         Debian 12 kernel (linux-image-*-amd64, not installed:
#                          fetched with apt-get download, only vmlinuz and the
#                          virtio/virtio_blk modules are extracted)
#   OUTDIR/initrd.cpio.gz  busybox-static + /init (guest-init.sh) + the static
#                          io_uring helper iopoll_io + the virtio modules +
#                          the ext4 modules (ext4, jbd2, mbcache, crc16,
#                          crc32c_generic; ext2 is served by ext4) and
#                          /fs-tree.sh for the filesystem test + the
#                          virtio-net modules (failover, net_failover,
#                          virtio_net) and the static UDP helper net_ping
#                          for the network test (tests/nestor-vm/04-net.sh)
#   OUTDIR/iopoll_io       the same static helper, for host-side pattern checks
#   OUTDIR/net_ping        the same UDP helper, the host-side echo peer
# Idempotent and cached: does nothing if OUTDIR/stamp matches the current
# inputs (this script, guest-init.sh, iopoll_io.c, net_ping.c, fs-tree.sh, the busybox binary, the
# kernel package name). The extracted kernel is cached per package name in
# OUTDIR/kernel-<pkg>/, so script edits do not re-download it.
# Env: NESTOR_KERNEL_DEB=/path/linux-image-*.deb uses a local package instead.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
OUT=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Serialise concurrent builders (ctest -j).
exec 9>"$OUT/.lock"
flock 9

log() { echo "build-guest: $*" >&2; }

BUSYBOX=
for c in /bin/busybox /usr/bin/busybox "$(command -v busybox || true)"; do
	[ -n "$c" ] && [ -x "$c" ] && BUSYBOX=$c && break
done
[ -n "$BUSYBOX" ] || { log "busybox not found (apt-get install busybox-static)"; exit 1; }
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	log "$BUSYBOX is dynamically linked; install busybox-static"
	exit 1
fi

# --- resolve the kernel package -------------------------------------------
resolve_kpkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9].*-amd64$/ { print $2; exit }'
}
KDEB=${NESTOR_KERNEL_DEB:-}
if [ -n "$KDEB" ]; then
	KPKG=$(dpkg-deb -f "$KDEB" Package)_$(dpkg-deb -f "$KDEB" Version)
else
	KPKG=$(resolve_kpkg || true)
	if [ -z "$KPKG" ]; then
		# Without package lists we can still reuse an earlier extraction.
		cached=$(ls -d "$OUT"/kernel-linux-image-* 2>/dev/null | tail -n 1 || true)
		if [ -n "$cached" ] && [ -f "$cached/done" ]; then
			KPKG=${cached##*/kernel-}
			log "apt-cache cannot resolve linux-image-amd64; reusing cached $KPKG"
		else
			log "apt-cache does not know linux-image-amd64; running apt-get update"
			SUDO=""
			[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
			$SUDO apt-get update -qq >&2 || true
			KPKG=$(resolve_kpkg || true)
			[ -n "$KPKG" ] || { log "cannot resolve the Debian kernel package (apt-cache depends linux-image-amd64)"; exit 1; }
		fi
	fi
fi

INPUTS_HASH=$( {
	sha256sum "$HERE/build-guest.sh" "$HERE/guest-init.sh" "$HERE/iopoll_io.c" "$HERE/net_ping.c" "$HERE/fs-tree.sh" \
		"$BUSYBOX" | awk '{ print $1 }'
	echo "$KPKG"
} | sha256sum | awk '{ print $1 }')

if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$INPUTS_HASH" ] &&
	[ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.cpio.gz" ] && [ -x "$OUT/iopoll_io" ] && [ -x "$OUT/net_ping" ]; then
	log "up to date ($OUT, $KPKG)"
	exit 0
fi

TMP=$(mktemp -d "$OUT/.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# --- kernel -----------------------------------------------------------------
KDIR=$OUT/kernel-$KPKG
# Modules for the filesystem test, in insmod order (modinfo depends: ext4
# needs jbd2, mbcache, crc16; jbd2 and ext4 soft-depend on crypto-crc32c).
FSMODS="crc16 mbcache crc32c_generic jbd2 ext4"
# Modules for the network test, in insmod order (virtio_net needs
# net_failover, which needs failover).
NETMODS="failover net_failover virtio_net"
# A cache from before the filesystem modules were extracted is redone.
if [ ! -f "$KDIR/done" ] || [ ! -f "$KDIR/modules/ext4.ko" ] || [ ! -f "$KDIR/modules/virtio_net.ko" ]; then
	rm -rf "$KDIR"
	if [ -z "$KDEB" ]; then
		log "downloading $KPKG"
		(cd "$TMP" && apt-get download "$KPKG" >&2 2>"$TMP/apt.err") || {
			cat "$TMP/apt.err" >&2
			log "apt-get download $KPKG failed"
			exit 1
		}
		KDEB=$(ls "$TMP"/"$KPKG"_*.deb)
	fi
	mkdir -p "$TMP/kx"
	dpkg-deb --fsys-tarfile "$KDEB" | tar -x -C "$TMP/kx" --wildcards \
		'./boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' \
		'./lib/modules/*/kernel/drivers/block/virtio_blk.ko' \
		'./lib/modules/*/kernel/fs/ext4/ext4.ko' './lib/modules/*/kernel/fs/jbd2/jbd2.ko' \
		'./lib/modules/*/kernel/fs/mbcache.ko' './lib/modules/*/kernel/lib/crc16.ko' \
		'./lib/modules/*/kernel/crypto/crc32c_generic.ko' \
		'./lib/modules/*/kernel/drivers/net/virtio_net.ko' './lib/modules/*/kernel/drivers/net/net_failover.ko' \
		'./lib/modules/*/kernel/net/core/failover.ko'
	mkdir -p "$KDIR.new/modules"
	cp "$TMP"/kx/boot/vmlinuz-* "$KDIR.new/vmlinuz"
	find "$TMP/kx/lib/modules" -name '*.ko' -exec cp {} "$KDIR.new/modules/" \;
	for m in virtio_ring virtio virtio_pci virtio_blk $FSMODS $NETMODS; do
		[ -f "$KDIR.new/modules/$m.ko" ] || { log "$m.ko missing from $KPKG"; exit 1; }
	done
	touch "$KDIR.new/done"
	rm -rf "$TMP/kx" "$TMP"/*.deb
	mv "$KDIR.new" "$KDIR"
	# Keep only the current kernel.
	for d in "$OUT"/kernel-*; do
		[ "$d" = "$KDIR" ] || rm -rf "$d"
	done
fi

# --- static helper ----------------------------------------------------------
log "compiling iopoll_io (static)"
gcc -static -O2 -Wall -Wextra -o "$TMP/iopoll_io" "$HERE/iopoll_io.c" -luring
log "compiling net_ping (static)"
gcc -static -O2 -Wall -Wextra -o "$TMP/net_ping" "$HERE/net_ping.c"

# --- initramfs --------------------------------------------------------------
R=$TMP/root
mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,modules}
cp "$BUSYBOX" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
cp "$TMP/iopoll_io" "$R/bin/iopoll_io"
cp "$TMP/net_ping" "$R/bin/net_ping"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	[ ! -f "$KDIR/modules/$m.ko" ] || cp "$KDIR/modules/$m.ko" "$R/modules/"
done
mkdir -p "$R/modules/fs"
for m in $FSMODS; do
	cp "$KDIR/modules/$m.ko" "$R/modules/fs/"
done
echo "$FSMODS" > "$R/modules/fs/order"
mkdir -p "$R/modules/net"
for m in $NETMODS; do
	cp "$KDIR/modules/$m.ko" "$R/modules/net/"
done
echo "$NETMODS" > "$R/modules/net/order"
install -m 0644 "$HERE/fs-tree.sh" "$R/fs-tree.sh"
install -m 0755 "$HERE/guest-init.sh" "$R/init"
(cd "$R" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -9n > "$TMP/initrd.cpio.gz")

install -m 0644 "$KDIR/vmlinuz" "$TMP/vmlinuz.new"
mv -f "$TMP/vmlinuz.new" "$OUT/vmlinuz"
mv -f "$TMP/initrd.cpio.gz" "$OUT/initrd.cpio.gz"
mv -f "$TMP/iopoll_io" "$OUT/iopoll_io"
mv -f "$TMP/net_ping" "$OUT/net_ping"
echo "$INPUTS_HASH" > "$OUT/stamp"
log "built $OUT (kernel $KPKG, initrd $(stat -c %s "$OUT/initrd.cpio.gz") bytes)"
