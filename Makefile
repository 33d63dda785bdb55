# ycq: `make run` is the main job, `make test` is everything CI checks.

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go

# Where provisioning scripts keep what they download or build (QEMU root,
# guest kernel), outside the repository so `git clean` does not lose it.
YCQ_CACHE ?= $(HOME)/.cache/ycq
export YCQ_CACHE

FUZZTIME ?= 60s
# make fuzz runs every Fuzz target of every package (go test -list finds them).

.PHONY: all build run run-qemu provision tools test check race-free imports e2e lint fmt-check vet bench fuzz clean

all: build

build:
	$(GO) build ./...

## run: the main job: the device model and the host driver, 1 GiB through 2 queue pairs
run:
	$(GO) run ./cmd/ycq run

## run-qemu: the same, with the host driver inside a QEMU guest on kernel VFIO
run-qemu: provision
	$(GO) run ./cmd/ycq vm run

## provision: QEMU 11.1 (Debian 13 root with backports) and the guest kernel,
## cached in $(YCQ_CACHE); idempotent, needs root and Debian's mirrors;
## YCQ_SKIP_QEMU=1 skips it (and the guest tests skip)
provision:
	bash qemu/provision.sh

## tools: the C compilers the tests build with (ring's header check, the C
## reference and its sanitizer run; clang for its cross builds to 32-bit,
## microcontroller and big-endian targets), usbredirect (usbredir's own
## usb-host, the third-party peer of tests/usbredir_interop_test.go), and
## libusb's headers and pkg-config for the cgo USB host driver
## (hostdriver/usbhost, gousb), installed once from Debian's packages
tools:
	@command -v gcc >/dev/null 2>&1 || { echo "installing gcc"; apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc libc6-dev; }
	@command -v clang >/dev/null 2>&1 || { echo "installing clang (ring/c's cross builds)"; apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang; }
	@command -v usbredirect >/dev/null 2>&1 || { echo "installing usbredirect (usbredir's usb-host, the USB interop peer)"; apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends usbredirect; }
	@{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libusb-1.0; } || { \
		echo "installing libusb-1.0-0-dev and pkg-config"; apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q libusb-1.0-0-dev pkg-config; }

## e2e: the end-to-end tier alone (QEMU guest)
e2e: provision
	$(GO) test -count=1 -v ./tests/

## test: everything CI checks (provisions QEMU on first use): every test
## under -race, then again without it where the hot paths differ
test: fmt-check vet tools provision
	YCQ_REQUIRE=$(TEST_REQUIRE) $(GO) test -race -count=1 ./...
	YCQ_REQUIRE=$(TEST_REQUIRE) $(MAKE) race-free

# What tools and provision install, so that make test fails, not skips,
# when one of them is missing (internal/testenv). Tests that need what no
# script here can give (a host VFIO device, a real PCI device to rebind)
# still skip.
TEST_REQUIRE ?= qemu,usb,usbredirect,gcc,nm

# Packages whose shipped code differs under the race detector (ring's
# release store is a plain MOV on amd64, atomic.Store under -race), tested
# as they ship.
RACE_FREE_PKGS := ./ring/... ./ipc ./hostdriver ./hostdriver/usbhost ./devicemodel ./devicemodel/usbdev ./cmd/internal/demo

## race-free: the tests of RACE_FREE_PKGS without -race
race-free:
	$(GO) test -count=1 $(RACE_FREE_PKGS)

## imports: the import-layer rules (go list -deps)
imports:
	$(GO) test -count=1 -run '^TestImportLayers' ./tests

## check: the quick loop: gofmt, vet, import rules, unit tests without QEMU
check: fmt-check vet imports
	YCQ_SKIP_QEMU=1 $(GO) test -count=1 ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint: fmt-check vet imports
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## bench: measurements, not tests (with DPDK's rte_ring beside the ring
## once `make bench-dpdk` has built it)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./ring
	$(GO) run ./cmd/ycq bench ring $$(test -x bin/dpdk-ring-bench && echo -dpdk bin/dpdk-ring-bench)
	$(GO) run ./cmd/ycq bench ipc
	$(GO) run ./cmd/ycq bench device $$(test -x bin/dpdk-vhost-bench && echo -dpdk-vhost bin/dpdk-vhost-bench)

## bench-dpdk: DPDK's rte_ring (zero-copy API) doing the work of `ycq bench
## ring`, and DPDK's virtio-user PMD against vhost-user doing the work of
## `ycq bench device` (bin/dpdk-vhost-bench, which `make bench` and
## `ycq bench device -dpdk-vhost` run), built into bin/; installs dpdk-dev
## if missing (needs root and Debian's mirrors); not part of `make test`.
## Runs the ring harness; DPDK_BENCH_ARGS go to it, e.g.
## DPDK_BENCH_ARGS="-items 500000 -rounds 1" or "-json"
.PHONY: bench-dpdk
DPDK_BENCH_ARGS ?=
bench-dpdk:
	dpkg -s dpdk-dev pkg-config >/dev/null 2>&1 || apt-get install -y dpdk-dev pkg-config
	@mkdir -p bin
	$(CC) -std=c11 -O2 -fno-tree-vectorize -Wall -Wextra -o bin/dpdk-ring-bench \
		bench/dpdk/ring_bench.c $$(pkg-config --cflags --libs libdpdk) -lpthread
	$(CC) -std=c11 -O2 -Wall -Wextra -o bin/dpdk-vhost-bench \
		bench/dpdk/vhost_bench.c $$(pkg-config --cflags --libs libdpdk) -lpthread
	./bin/dpdk-ring-bench $(DPDK_BENCH_ARGS)

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for name in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$name ($$pkg) for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	$(GO) clean -testcache
