# nestor: top-level entry points. See README.md.
#   make run    install deps, build, start nestord on an embedded default,
#               drive a verifying workload through libnestor, stop.
#   make test   install deps, build, run every test (unit, integration, VM).
#   make bench  fio side by side: bare io_uring, nestord (3 modes), qsd.
#   make bench-volume  pool open time and metadata size at 1M/10M extents;
#               thin pool volume vs raw file through the same nestord.
#   make bench-volume-journal  first writes with the process-crash journal
#               on vs off.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
SANITIZE ?= OFF
WERROR ?= OFF
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test bench clean

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

clean:
	rm -rf $(BUILD)
