# ycq: `make run` is the main job, `make test` is everything CI checks.

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go

# Where provisioning scripts keep what they download or build (QEMU root,
# guest kernel), outside the repository so `git clean` does not lose it.
YCQ_CACHE ?= $(HOME)/.cache/ycq
export YCQ_CACHE

FUZZTIME ?= 60s
FUZZ_TARGETS := ./ring:FuzzAttach ./ring:FuzzOps ./ring:FuzzHostile \
	./dma:FuzzCheckName ./dma:FuzzIOVAAllocator ./ipc:FuzzHello ./ipc:FuzzWelcomeAndDone \
	./vfio/user:FuzzDecodeHeader ./vfio/user:FuzzDecodePayload ./vfio/user:FuzzDecodeVersion \
	./vfio/user:FuzzDecodeRegionInfo ./vfio/user:FuzzClient ./devicemodel:FuzzServer \
	./vfio/kernel:FuzzParseRegionInfo ./vfio/kernel:FuzzParseIOMMUInfo

.PHONY: all build run run-qemu provision test e2e lint fmt-check vet bench fuzz clean

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
## cached in $(YCQ_CACHE); idempotent, needs root and Debian's mirrors
provision:
	bash qemu/provision.sh

## e2e: the end-to-end tier alone (QEMU guest)
e2e: provision
	$(GO) test -count=1 -v ./tests/

## test: everything CI checks (provisions QEMU on first use)
test: fmt-check vet provision
	$(GO) test -race -count=1 ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint: fmt-check vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## bench: measurements, not tests
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./ring
	$(GO) run ./cmd/ycq bench ring
	$(GO) run ./cmd/ycq bench ipc
	$(GO) run ./cmd/ycq bench device

## fuzz: each fuzz target for FUZZTIME
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

clean:
	$(GO) clean -testcache
