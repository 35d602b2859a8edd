# Sourced by VM tests whose guest ran the "fs" test (guest-init.sh): checks,
# on the host, a dump of the volume the guest left behind.
#   fs_check_image IMG CONSOLE_LOG
# asserts e2fsck -fn finds IMG clean and that debugfs rdump yields exactly
# the files of fs-tree.sh, each with the content the host generates itself
# and the sha256 the guest printed on CONSOLE_LOG. Needs $GUEST (for
# iopoll_io), $TMP, e2fsprogs. Returns non-zero (with reasons on stderr).
fs_check_image() {
	local img=$1 console=$2 n=0 bad=0 path size seed want guest got files
	PATH=$PATH:/usr/sbin:/sbin
	e2fsck -fn "$img" >"$TMP/fsck.out" 2>&1 || {
		echo "FAIL: e2fsck -fn found problems:" >&2
		cat "$TMP/fsck.out" >&2
		return 1
	}
	echo "e2fsck -fn: clean ($(tail -n 1 "$TMP/fsck.out"))"
	rm -rf "$TMP/out"
	mkdir "$TMP/out"
	debugfs -R "rdump / $TMP/out" "$img" >"$TMP/debugfs.out" 2>&1 || {
		echo "FAIL: debugfs rdump" >&2
		cat "$TMP/debugfs.out" >&2
		return 1
	}
	while read -r path size seed; do
		n=$((n + 1))
		want=$("$GUEST/iopoll_io" gen --seed "$seed" --offset 0 --bytes "$size" | sha256sum | cut -d' ' -f1)
		guest=$(tr -d '\r' <"$console" | awk -v p="$path" '$1 == "nestor-vm:" && $2 == "fs:" && $4 == p { print $3 }')
		if [ ! -f "$TMP/out/$path" ]; then
			echo "FAIL: $path missing from the filesystem" >&2
			bad=$((bad + 1))
			continue
		fi
		got=$(sha256sum <"$TMP/out/$path" | cut -d' ' -f1)
		if [ "$got" != "$want" ] || [ "$guest" != "$want" ]; then
			echo "FAIL: $path: sha256 on the volume $got, expected $want, guest printed ${guest:-nothing}" >&2
			bad=$((bad + 1))
		fi
	done < <(fs_tree)
	files=$(cd "$TMP/out" && find . -path ./lost+found -prune -o -type f -print | wc -l)
	[ "$files" -eq "$n" ] || { echo "FAIL: $files files on the volume, expected $n" >&2; bad=$((bad + 1)); }
	[ $bad -eq 0 ] || return 1
	echo "all $n files read back on the host (debugfs) with the expected content"
}
