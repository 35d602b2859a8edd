# Sourced by VM tests that check, on the host, a filesystem a guest left on
# a volume (a dump of the volume).
#   fs_check_image IMG CONSOLE_LOG
#       the guest ran the "fs" test (guest-init.sh): fs_check_files with the
#       files of fs-tree.sh, and each file's sha256 is also the one the guest
#       printed on CONSOLE_LOG ("nestor-vm: fs: SUM PATH").
#   fs_check_files IMG TREE_FILE
#       e2fsck -fn finds IMG clean and debugfs rdump yields exactly the files
#       listed in TREE_FILE ("PATH SIZE SEED" lines, as fs_tree prints them;
#       lost+found aside), each with the content the host generates itself
#       (iopoll_io gen). Leaves the files in $TMP/out.
# Need $GUEST (for iopoll_io), $TMP, e2fsprogs. Return non-zero (with
# reasons on stderr).
fs_check_files() {
	local img=$1 tree=$2 n=0 bad=0 path size seed want got files
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
		if [ ! -f "$TMP/out/$path" ]; then
			echo "FAIL: $path missing from the filesystem" >&2
			bad=$((bad + 1))
			continue
		fi
		want=$("$GUEST/iopoll_io" gen --seed "$seed" --offset 0 --bytes "$size" | sha256sum | cut -d' ' -f1)
		got=$(sha256sum <"$TMP/out/$path" | cut -d' ' -f1)
		if [ "$got" != "$want" ]; then
			echo "FAIL: $path: sha256 on the volume $got, expected $want" >&2
			bad=$((bad + 1))
		fi
	done <"$tree"
	files=$(cd "$TMP/out" && find . -path ./lost+found -prune -o -type f -print | wc -l)
	[ "$files" -eq "$n" ] || {
		echo "FAIL: $files files on the volume, expected $n:" >&2
		(cd "$TMP/out" && find . -path ./lost+found -prune -o -type f -print | sort) >&2
		bad=$((bad + 1))
	}
	[ $bad -eq 0 ] || return 1
	echo "all $n files read back on the host (debugfs) with the expected content"
}

fs_check_image() {
	local img=$1 console=$2 bad=0 path size seed want guest
	fs_tree >"$TMP/fs-tree.txt"
	fs_check_files "$img" "$TMP/fs-tree.txt" || return 1
	while read -r path size seed; do
		want=$(sha256sum <"$TMP/out/$path" | cut -d' ' -f1)
		guest=$(tr -d '\r' <"$console" | awk -v p="$path" '$1 == "nestor-vm:" && $2 == "fs:" && $4 == p { print $3 }')
		if [ "$guest" != "$want" ]; then
			echo "FAIL: $path: the guest printed sha256 ${guest:-nothing}, the volume holds $want" >&2
			bad=$((bad + 1))
		fi
	done <"$TMP/fs-tree.txt"
	[ $bad -eq 0 ] || return 1
	echo "the guest printed the same sha256 for every file"
}
