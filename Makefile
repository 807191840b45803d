# ten — build, test and benchmark. `make help` lists the targets.
GO ?= go
BIN := bin
GOFLAGS_TEST ?= -count=1

include mk/bpf.mk

.PHONY: help build test test-unit test-system bench lint run clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## Build bin/ten, bin/ten-shim, bin/tenbox and the test tenant bin/echoapp
	$(GO) build -o $(BIN)/ten ./cmd/ten
	$(GO) build -o $(BIN)/ten-shim ./cmd/ten-shim
	$(GO) build -o $(BIN)/tenbox ./cmd/tenbox
	$(GO) build -o $(BIN)/echoapp ./test/apps/echoapp

lint: ## gofmt, go vet
	@bad="$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfe[lb].go$$'))"; \
	if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...

test: lint build ## Everything: unit, privileged (BPF, netns) and system tests (boots a private systemd when needed; run as root)
	$(GO) test $(GOFLAGS_TEST) -p 1 -timeout 30m ./...

test-unit: ## Only the tests that need no root and no systemd (no system tests, no BPF)
	TEN_UNIT_ONLY=1 $(GO) test $(GOFLAGS_TEST) -short $$($(GO) list ./... | grep -v -e /test/system -e /test/bench -e /internal/box -e /internal/systemtest -e /cmd/tenbox)

test-system: build ## Only the system tests against a real systemd
	$(GO) test $(GOFLAGS_TEST) -v -timeout 30m ./test/system/

# The L4 comparison of router/ebpf runs first; its output feeds the table
# that test/bench prints (and writes to bench-results.md) at the end.
BENCH_L4_COUNT ?= 5
BENCH_LOAD := $(shell cut -d' ' -f1-3 /proc/loadavg)
bench: build ## Benchmarks against a real systemd (installs wrk, nginx, python3 if missing); prints one table (see BENCHMARKS.md)
	@echo "make bench: load average at start $(BENCH_LOAD)"; echo '$(BENCH_LOAD)' > bench-load.txt
	./scripts/bench-tools
	$(GO) test -run '^$$' -bench L4 -benchtime 2000x -count $(BENCH_L4_COUNT) -timeout 10m ./router/ebpf/ > bench-l4.txt; \
		status=$$?; cat bench-l4.txt; exit $$status
	TEN_BENCH_LOAD="$$(cat bench-load.txt)" TEN_BENCH_L4_FILE=$(CURDIR)/bench-l4.txt $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 40m ./test/bench/

run: build ## Run ten on examples/tenement.toml (boots a private systemd when the host has none)
	./scripts/run-example

clean: ## Remove built binaries
	rm -rf $(BIN)
