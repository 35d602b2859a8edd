# nestor: top-level entry points. See README.md.
#   make run    install deps, build, start nestord on an embedded default,
#               drive a verifying workload through libnestor, stop.
#   make test   install deps, build, run every test (unit, integration, VM).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
SANITIZE ?= OFF
WERROR ?= OFF
JOBS ?= $(shell nproc)
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test clean

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

clean:
	rm -rf $(BUILD)
