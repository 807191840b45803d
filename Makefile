# ten — build, test and benchmark. `make help` lists the targets.
GO ?= go
BIN := bin
GOFLAGS_TEST ?= -count=1
# Tests run under the race detector (needs cgo and a C compiler); the system
# tests then drive a -race build of ten and fail on any race it reports.
# RACE= turns it off.
RACE ?= -race
# make fuzz runs each fuzz target for FUZZTIME.
FUZZTIME ?= 15s

include mk/bpf.mk

.PHONY: help build test test-unit test-system fuzz bench lint run clean deb deb-lint deb-check deb-version man copyright

# Version of the build: 0.1.0+git<commits>.<hash>[.dirty], growing with every
# commit (there are no tags); VERSION=... overrides it (a rebuild with a
# higher version, a release). The binary reports it in `ten version`.
DEB_BASE ?= 0.1.0
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
VERSION ?= $(DEB_BASE)+git$(shell git rev-list --count HEAD 2>/dev/null || echo 0).$(shell git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)$(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo .dirty)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# Evaluated once: every binary and package of one make run says the same.
VERSION := $(VERSION)
BUILD_DATE := $(BUILD_DATE)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(GIT_COMMIT) -X main.buildDate=$(BUILD_DATE)

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# ten-shim runs in front of every directly run app at each wake (`ten-shim
# cat`), so its exec is part of every cold wake: it is built with cgo (the C
# fast path of ten-shim cat, cmd/ten-shim/cat_linux.c) and linked statically
# without PIE, which spares the dynamic loader and the ~15,000 relocations a
# PIE Go binary applies at exec (1-2 ms a wake on a small VM; BENCHMARKS.md,
# "ten-shim's own exec"). internal/shimbuild builds it the same way for the
# test harnesses.
SHIM_STATIC := -tags netgo,osusergo -ldflags '-linkmode=external -extldflags=-static'

build: ## Build bin/ten, bin/ten-shim, bin/tenbox and the test tenant bin/echoapp
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ten ./cmd/ten
	@echo "$(GO) build $(SHIM_STATIC) -o $(BIN)/ten-shim ./cmd/ten-shim"; \
	if ! CGO_ENABLED=1 $(GO) build $(SHIM_STATIC) -o $(BIN)/ten-shim ./cmd/ten-shim; then \
		echo "ten-shim: the static cgo build failed (no C compiler or static libc: gcc, libc6-dev); building it as go build does"; \
		$(GO) build -o $(BIN)/ten-shim ./cmd/ten-shim; \
	fi
	$(GO) build -o $(BIN)/tenbox ./cmd/tenbox
	$(GO) build -o $(BIN)/echoapp ./test/apps/echoapp

lint: ## gofmt, go vet, and a build off Linux (the stubs of Linux-only code must compile)
	@bad="$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfe[lb].go$$'))"; \
	if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin CGO_ENABLED=0 $(GO) build ./...

# The system tests drive a -race build of ten (SYSTEM_RACE=-race, the
# default; SYSTEM_RACE= turns it off): a data race any ten they start
# reports fails the test that was running. The whole suite under -race took
# 38 minutes on two cores that other builds shared (load average 16 to 35),
# against about 15 without: it fits CI's 90 minutes whole, so no subset.
# Its -timeout (70m) leaves a slow or shared machine room: a test that is
# stuck is ended by the suite's own watchdog after 12 minutes, with what it
# was doing (test/system/watchdog_test.go).
SYSTEM_RACE ?= -race
test: lint build ## Everything: unit and privileged (BPF, netns) tests under the race detector, then the system tests (boots a private systemd when needed; run as root)
	$(GO) test $(GOFLAGS_TEST) $(RACE) -p 1 -timeout 45m $$($(GO) list ./... | grep -v '/test/system$$')
	# The fast path's raw read(2) and write(2) (router/upstream RawIO) are
	# compiled only without -race: the router's tests again, without it.
	$(GO) test $(GOFLAGS_TEST) -p 1 -timeout 10m ./router/...
	$(GO) test $(GOFLAGS_TEST) $(SYSTEM_RACE) -p 1 -timeout 70m ./test/system/

test-unit: ## Only the tests that need no root and no systemd (no system tests, no BPF)
	TEN_UNIT_ONLY=1 $(GO) test $(GOFLAGS_TEST) $(RACE) -short $$($(GO) list ./... | grep -v -e /test/system -e /test/deb -e /test/fleet -e /test/bench -e /internal/box -e /internal/systemtest -e /cmd/tenbox)

test-system: build ## Only the system tests against a real systemd
	$(GO) test $(GOFLAGS_TEST) $(RACE) -v -timeout 45m ./test/system/

# Every FuzzXxx of the module, found by name (go test -list would run the
# TestMain of the system tests); the seeds and testdata/fuzz run in make test.
fuzz: ## Run every fuzz target for FUZZTIME (default 15s) each; a failure leaves its input in the package's testdata/fuzz
	@set -e; grep -H '^func Fuzz' $$(git ls-files '*_test.go') | \
	sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\(.*#./\1 \2#' | \
	while read -r pkg fn; do \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		scripts/fuzz-one $(GO) $$pkg $$fn $(FUZZTIME); \
	done

# The L4 comparison of bpf/dispatch runs first; its output feeds the table
# that test/bench prints (and writes to bench-results.md) at the end.
BENCH_L4_COUNT ?= 5
BENCH_LOAD := $(shell cut -d' ' -f1-3 /proc/loadavg)
bench: build ## Benchmarks against a real systemd (installs wrk, nginx, python3 if missing); prints one table (see BENCHMARKS.md)
	@echo "make bench: load average at start $(BENCH_LOAD)"; echo '$(BENCH_LOAD)' > bench-load.txt
	./scripts/bench-tools
	$(GO) test -run '^$$' -bench L4 -benchtime 2000x -count $(BENCH_L4_COUNT) -timeout 10m ./bpf/dispatch/ > bench-l4.txt; \
		status=$$?; cat bench-l4.txt; exit $$status
	TEN_BENCH_LOAD="$$(cat bench-load.txt)" TEN_BENCH_L4_FILE=$(CURDIR)/bench-l4.txt $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 40m ./test/bench/

run: build ## Run ten on examples/tenement.toml (boots a private systemd when the host has none)
	./scripts/run-example

# Debian packages (README "Debian package"): ten as a PIE built without cgo, per
# architecture, units from selfunit, man pages from docs/man, dpkg-deb. The
# binaries go to DEB_OUT/bin, so two builds into different DEB_OUTs (the
# test's, yours) never share a file. ten-shim is a static (non-PIE) binary
# built with cgo, as make build builds it, wherever a C compiler for its architecture is found (DEB_CC for the
# build machine's own, the Debian cross compiler ARCH-linux-gnu-gcc for the
# others: gcc-aarch64-linux-gnu with libc6-dev-arm64-cross): it carries the
# C fast path of `ten-shim cat` (cmd/ten-shim/cat_linux.c). Without one it
# is built without cgo and does that in Go; make deb says which.
# (Deferred with =: only make deb asks go env.)
DEB_HOST_ARCH = $(shell $(GO) env GOARCH 2>/dev/null)
DEB_CC = $(shell command -v $$($(GO) env CC 2>/dev/null) 2>/dev/null)
DEB_ARCHES ?= amd64 arm64
DEB_OUT ?= dist
DEB_MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
deb: ## Build $(DEB_OUT)/ten_VERSION_ARCH.deb for amd64 and arm64 (VERSION= overrides the git version)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(DEB_OUT)/bin/ten ./cmd/ten
	@set -e; for arch in $(DEB_ARCHES); do \
		echo "building ten $(VERSION) for $$arch"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -buildmode=pie -trimpath \
			-ldflags '$(LDFLAGS) -s -w' -o $(DEB_OUT)/bin/linux_$$arch/ten ./cmd/ten; \
		cc=; if [ "$$arch" = "$(DEB_HOST_ARCH)" ]; then cc="$(DEB_CC)"; else \
			case $$arch in amd64) cc=x86_64-linux-gnu-gcc;; arm64) cc=aarch64-linux-gnu-gcc;; esac; \
			cc=$$(command -v "$$cc" 2>/dev/null || true); fi; \
		if [ -n "$$cc" ]; then \
			echo "ten-shim for $$arch: cgo ($$cc), with the C fast path of ten-shim cat"; \
			CC=$$cc CGO_ENABLED=1 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -tags netgo,osusergo \
				-ldflags '-s -w -linkmode=external -extldflags=-static' -o $(DEB_OUT)/bin/linux_$$arch/ten-shim ./cmd/ten-shim; \
		else \
			echo "ten-shim for $$arch: no C compiler for it, built without cgo (ten-shim cat in Go)"; \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -buildmode=pie -trimpath \
				-ldflags '-s -w' -o $(DEB_OUT)/bin/linux_$$arch/ten-shim ./cmd/ten-shim; \
		fi; \
		$(GO) run ./internal/deb/mkdeb -bin $(DEB_OUT)/bin/linux_$$arch/ten -shim $(DEB_OUT)/bin/linux_$$arch/ten-shim -host-bin $(DEB_OUT)/bin/ten -arch $$arch \
			-version '$(VERSION)' -commit $(GIT_COMMIT) -date $(BUILD_DATE) -maintainer '$(DEB_MAINTAINER)' -out $(DEB_OUT); \
	done

deb-lint: deb ## lintian on the packages of `make deb`: no errors, no warnings (overrides in debian/lintian-overrides, with reasons)
	lintian --fail-on error,warning --tag-display-limit 0 $(foreach a,$(DEB_ARCHES),$(DEB_OUT)/ten_$(VERSION)_$(a).deb)

deb-check: deb-lint ## deb-lint, then the C fast path of each package's ten-shim (TestCatFastPath; another architecture's through qemu-user)
	@set -e; for arch in $(DEB_ARCHES); do \
		runner=; if [ "$$arch" != "$(DEB_HOST_ARCH)" ]; then \
			case $$arch in amd64) runner=qemu-x86_64;; arm64) runner=qemu-aarch64;; esac; \
			command -v $$runner >/dev/null || { echo "deb-check: $$runner (Debian package qemu-user) runs the $$arch ten-shim; install it"; exit 1; }; fi; \
		echo "ten-shim for $$arch: checking the C fast path$${runner:+ through $$runner}"; \
		TEN_CAT_BIN=$(abspath $(DEB_OUT))/bin/linux_$$arch/ten-shim TEN_CAT_RUNNER=$$runner $(GO) test -count=1 -run 'TestCatFastPath$$' ./cmd/ten-shim; \
	done

deb-version: ## Print the version make deb would build
	@echo '$(VERSION)'

man: ## Regenerate docs/man (ten(1), ten-COMMAND(1), tenement.toml(5)) from the CLI and the config schema
	$(GO) test ./cmd/ten -run TestManPages -update

copyright: ## Regenerate debian/copyright from the modules linked into ten
	$(GO) test ./internal/deb -run TestCopyright -update

clean: ## Remove built binaries and packages
	rm -rf $(BIN) $(DEB_OUT)
