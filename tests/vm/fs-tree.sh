# The file tree of the VM filesystem test (vm.03-filesystem), shared by the
# guest (/fs-tree.sh in the initramfs, busybox sh) and the host (bash).
# fs_tree prints one "PATH SIZE SEED" line per regular file; the content of
# PATH is the first SIZE bytes of the iopoll_io pattern at offset 0:
#   iopoll_io gen --seed SEED --offset 0 --bytes SIZE
# Sizes cover empty files, sub-block tails and (with 1 KiB blocks) direct,
# indirect and double-indirect blocks; "many/" spans several directory blocks.
fs_tree() {
	echo "empty 0 1"
	echo "one 1 2"
	echo "small.txt 100 3"
	echo "a/b4095 4095 4"
	echo "a/b4096 4096 5"
	echo "a/b/c/odd 65537 6"
	echo "a/b/c/big 3145728 7"
	echo "a/b/c/d/e/deep 12345 8"
	echo "big2 1048699 9"
	_i=0
	while [ $_i -lt 48 ]; do
		echo "many/file-with-a-longer-name-$_i $((_i * 517 + 1)) $((100 + _i))"
		_i=$((_i + 1))
	done
}

# clone_tree TAG SEED: the files that guest TAG of vm.13-clones writes on
# its own clone of the golden filesystem (which holds fs_tree), in the
# format of fs_tree. TAG is [a-z0-9]; SEED a decimal number.
clone_tree() {
	echo "own-$1/note 777 $2"
	echo "own-$1/data 1048576 $(($2 + 1))"
	echo "own-$1/sub/odd 70001 $(($2 + 2))"
}
