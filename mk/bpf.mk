# BPF objects: compile bpf/*.c with bpf2go into bpf/acct, bpf/dispatch and
# bpf/portguard
# (committed).
# Included by the main Makefile; usable alone: make -f mk/bpf.mk generate
#
# The objects depend on the compiler version, so it is pinned: Debian 12's
# clang 14 (apt-get install clang llvm libbpf-dev linux-libc-dev). Flags that
# change the objects live in generate.go, so `go generate ./...` gives the same
# bytes; the flags here only add warnings.

# Keep the including Makefile's default goal: these targets come first there.
bpf_default_goal := $(.DEFAULT_GOAL)

CLANG ?= clang
LLVM_STRIP ?= llvm-strip
BPF_CLANG_MAJOR ?= 14
BPF_WARNINGS := -Wall -Wextra -Werror -Wno-unused-parameter
BPF_SOURCES := $(wildcard bpf/*.c bpf/*.h bpf/include/asm/*.h)

.PHONY: generate check-generate check-clang

generate: check-clang ## Rebuild the BPF objects in bpf/acct, bpf/dispatch and bpf/portguard from bpf/*.c
	BPF2GO_CC="$(CLANG)" BPF2GO_STRIP="$(LLVM_STRIP)" BPF2GO_CFLAGS="$(BPF_WARNINGS)" \
		go generate ./...

check-generate: generate ## Fail when the committed BPF objects are stale
	git diff --exit-code -- bpf/acct bpf/dispatch bpf/portguard generate.go
	@untracked="$$(git ls-files --others --exclude-standard -- bpf/acct bpf/dispatch bpf/portguard)"; \
	if [ -n "$$untracked" ]; then echo "untracked generated files: $$untracked"; exit 1; fi

check-clang:
	@v="$$($(CLANG) -dumpversion 2>/dev/null | cut -d. -f1)"; \
	if [ "$$v" != "$(BPF_CLANG_MAJOR)" ]; then \
		echo "$(CLANG) is clang $${v:-missing}; the committed objects are built with clang $(BPF_CLANG_MAJOR) (set CLANG=clang-$(BPF_CLANG_MAJOR))"; \
		exit 1; \
	fi

.DEFAULT_GOAL := $(bpf_default_goal)
