# ten — build, test and benchmark. `make help` lists the targets.
GO ?= go
BIN := bin
GOFLAGS_TEST ?= -count=1

include mk/bpf.mk

.PHONY: help build test test-unit test-system bench lint run clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## Build bin/ten, bin/tenbox and the test tenant bin/echoapp
	$(GO) build -o $(BIN)/ten ./cmd/ten
	$(GO) build -o $(BIN)/tenbox ./cmd/tenbox
	$(GO) build -o $(BIN)/echoapp ./test/apps/echoapp

lint: ## gofmt, go vet
	@bad="$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfe[lb].go$$'))"; \
	if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...

test: lint build ## Everything: unit, privileged (BPF, netns) and system tests (boots a private systemd when needed; run as root)
	$(GO) test $(GOFLAGS_TEST) -p 1 -timeout 30m ./...

test-unit: ## Only the tests that need no root and no systemd
	TEN_UNIT_ONLY=1 $(GO) test $(GOFLAGS_TEST) -short ./...

test-system: build ## Only the system tests against a real systemd
	$(GO) test $(GOFLAGS_TEST) -v -timeout 30m ./test/system/

bench: build ## Benchmarks against a real systemd; prints a table (see BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchtime 200x -timeout 60m ./router/ebpf/ ./test/bench/

run: build ## Run ten on examples/tenement.toml (boots a private systemd when the host has none)
	./scripts/run-example

clean: ## Remove built binaries
	rm -rf $(BIN)
