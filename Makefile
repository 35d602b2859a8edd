# nestor: top-level entry points. See README.md.
#   make run    install deps, build, start nestord on an embedded default,
#               drive a verifying workload through libnestor, stop.
#   make test   install deps, build, run every test (unit, integration, VM).
#   make bench  fio side by side: bare io_uring, nestord (3 modes), qsd.
#   make bench-volume  pool open time and metadata size at 1M/10M extents;
#               thin pool volume vs raw file through the same nestord.
#   make bench-volume-journal  first writes with the process-crash journal
#               on vs off.
#   make bench-rbd  RBD volumes: nestord vs librbd (fio) vs qemu-storage-daemon.
#   make bench-snapshots  pool open with 10M extents over 1,000 clones;
#               clone/snapshot operations; clone reads and copy-on-write
#               vs plain volumes and vs qcow2 (qemu-storage-daemon).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
SANITIZE ?= OFF
WERROR ?= OFF
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test bench clean build-asan test-asan build-tsan test-tsan fuzz format format-check tidy install deb

# Checked builds (clang; docs/testing.md). Each has its own build folder.
#   make test-asan  ASan + UBSan build (with the fuzz targets): unit, daemon,
#                   hostile, volume, control tests and the fuzz corpus replays.
#   make test-tsan  TSan build with clang -Wthread-safety as an error: the
#                   tests with several threads (reactors, volumes, control, QoS).
#   make fuzz       every fuzz target for FUZZ_SECONDS each (ASan build).
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_SECONDS ?= 60
ASAN_TESTS ?= ^(unit|daemon|hostile|volume|control|fuzz)[.]
TSAN_TESTS ?= ^(unit[.](base|virtio|vhost|volume|volume[.](snapshot|snapshot-online|space|committed-view)|control|daemon|client)|daemon[.]0[1-46]-[a-z-]+|control[.]01-[a-z-]+|hostile[.]01-suite)$$
CLANG_ENV = CC=clang CXX=clang++

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DNESTOR_SANITIZE=$(SANITIZE) -DNESTOR_WERROR=$(WERROR) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run-demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure --timeout 600 -j 1

# Install into PREFIX (default /usr/local; packaging/CMakeLists.txt says
# what goes where), or build the Debian package build/packages/*.deb.
PREFIX ?= /usr/local
install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

deb: build
	@cd $(BUILD) && cpack -G DEB -B packages && ls -l packages/*.deb

# QUICK=1: 1 s runs (about 3 minutes). Results in bench/results/.
bench: build
	@scripts/install-deps.sh --bench
	@/usr/bin/python3 bench/run_bench.py --build $(BUILD) $(if $(QUICK),--quick)

# Thin volumes (docs/benchmarks.md, "Thin volumes"). QUICK=1: 1M extents,
# 1 s runs (about 1 minute); full: 1M and 10M extents, 1 s x 15 interleaved
# reps (about 20 minutes on a quiet machine).
# POOL_DIR: where the pool-open benchmark's sparse pool file goes (ext4).
POOL_DIR ?= /var/tmp
.PHONY: bench-volume
bench-volume: build
	@$(BUILD)/bench/pool_open_bench --dir $(POOL_DIR) $(if $(QUICK),--extents 1M --repeat 1)
	@/usr/bin/python3 bench/volume_bench.py --build $(BUILD) $(if $(QUICK),--quick)

# First writes (QD1, QD32) with the process-crash journal on vs off
# (--journal-dir none), interleaved (docs/benchmarks.md, "First writes with
# the process-crash journal"). QUICK=1: 2 reps (about a minute); full: 9 reps
# of 64 KiB and 4 KiB clusters (about 5 minutes on a quiet machine).
.PHONY: bench-volume-journal
bench-volume-journal: build
	@/usr/bin/python3 bench/volume_bench.py --build $(BUILD) --journal-compare $(if $(QUICK),--quick)

# Snapshots and clones (docs/benchmarks.md, "Snapshots and clones"): one
# command, one results directory (bench/results/snapshots-<timestamp>/).
# QUICK=1: 1M extents over 100 clones, 100 clones, 2 reps (a few minutes);
# full: 10M over 1,000 clones, 1,000 clones, 11 reps (about 20 minutes on a
# quiet machine). POOL_DIR as for bench-volume (ext4: the open and ops pools).
# RBD volumes (docs/ceph.md): nestord vs fio's rbd engine vs
# qemu-storage-daemon on a throwaway single-node Ceph cluster. QUICK=1: 2
# reps of 2 s (about 2 minutes); full: 5 reps of 5 s (about 6 minutes).
.PHONY: bench-rbd
bench-rbd: build
	@scripts/install-deps.sh --bench
	@/usr/bin/python3 bench/rbd_bench.py --build $(BUILD) $(if $(QUICK),--quick)

.PHONY: bench-snapshots
bench-snapshots: build
	@scripts/install-deps.sh --bench
	@/usr/bin/python3 bench/snapshot_bench.py --build $(BUILD) --pool-dir $(POOL_DIR) $(if $(QUICK),--quick)

build-asan: deps
	@$(CLANG_ENV) cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DNESTOR_SANITIZE=address -DNESTOR_FUZZ=ON -DNESTOR_WERROR=$(WERROR) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Sanitized code runs several times slower: the randomized crash and
# sequence tests run fewer iterations (their seeds are printed as always).
SANITIZED_ENV = NESTOR_CRASH_ITERATIONS=40 NESTOR_PROCESS_CRASH_ITERATIONS=8 NESTOR_SEQUENCE_STEPS=100

test-asan: build-asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(SANITIZED_ENV) \
	  ctest --output-on-failure --timeout 600 -j 1 -R '$(ASAN_TESTS)'

# Only what TSAN_TESTS run (the whole tree still compiles in the other
# builds; -Wthread-safety covers every library these link): a full TSan
# build would cost CI minutes for tools no TSan test starts.
TSAN_TARGETS ?= nestord nestorctl base_test virtio_test vhost_test volume_test volume_snapshot_test \
  volume_snapshot_online_test volume_space_test volume_committed_view_test control_test daemon_test \
  client_unit_test nestord_client_test pool_volumes_test qos_fairness_test client_killed_test \
  pool_sigkill_test control_plane_test hostile_test

build-tsan: deps
	@$(CLANG_ENV) cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) \
	  -DNESTOR_SANITIZE=thread -DNESTOR_THREAD_SAFETY=ON -DNESTOR_WERROR=$(WERROR) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS) --target $(TSAN_TARGETS)

test-tsan: build-tsan
	@cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tsan.supp \
	  $(SANITIZED_ENV) GTEST_FILTER='-LogDamage.Every*' ctest --output-on-failure --timeout 600 -j 1 -R '$(TSAN_TESTS)'

fuzz: build-asan
	@fuzz/run-all.sh $(ASAN_BUILD) $(FUZZ_SECONDS)

# Style guard (.clang-format, .clang-tidy; docs/testing.md).
FORMAT_FILES = $(shell git ls-files '*.cc' '*.h' '*.c' '*.hpp')
format: deps
	@clang-format -i $(FORMAT_FILES)

format-check: deps
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: clean"

# clang-tidy with .clang-tidy's checks over the normal build's compile
# database (minutes: not in CI).
tidy: build
	@run-clang-tidy -quiet -p $(BUILD) '^$(CURDIR)/(src|tools)/.*[.]cc$$' && echo "tidy: clean"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
