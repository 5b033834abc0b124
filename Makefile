# rabbitc: a rootless container runtime.
#
#   make demo         build rabbitc and a demo rootfs, serve the seed's HTTP server on 127.0.0.1:8080
#   make test         unit tests, then the integration tests of the built binary
#
# Run as root, `make demo` and `make test` first install what is missing
# (tests/setup.sh); run as a user, they print the one command to run instead.

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/rabbitc
FUZZTIME ?= 100000x # a count: see .ci/run on go.dev/issue/75804

.PHONY: all build demo test unit integration bench fuzz vet clean deps

all: build

# Static and stripped: every container start execs the binary three or four
# times; a cgo build spends ~0.6 ms more in the dynamic loader each time.
# -E: the binary's ELF entry point is nsenter's, which joins a container's
# namespaces for `rabbitc exec` before the Go runtime starts (nsenter/doc.go);
# a binary built without it refuses exec.
# -X: what `rabbitc version` prints (the commit and date are "unknown"
# outside a git checkout).
VERSION ?= dev
COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_DATE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w -E github.com/rabbitc/rabbitc/nsenter.entry \
	-X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)'

# rabbitc-image (pull, images, rmi: the registry client and decompressors)
# is a binary of its own beside rabbitc, whose every start would otherwise
# pay its libraries' package initialisation (cmd/rabbitc-image says why).
build:
	$(GOBUILD) -o $(BIN) ./cmd/rabbitc
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/rabbitc-image ./cmd/rabbitc-image

# Installs the Debian packages and the test user as root; checks as a user.
deps:
	@tests/setup.sh

demo: deps build
	@tests/demo.sh

# Both halves run even when the first fails; the status says whether both passed.
test: deps
	@status=0; $(MAKE) --no-print-directory unit || status=1; \
	$(MAKE) --no-print-directory integration || status=1; exit $$status

# Unit tests: every package except the integration tests in tests/.
unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v '/tests')

# Integration tests: build rabbitc once and run it as an unprivileged user.
integration:
	$(GO) test ./tests/ -v -count=1 -timeout 20m

vet:
	$(GO) vet ./...

bench: build
	bench/run.sh

# Each fuzz target for $(FUZZTIME) (runs, or a duration like 30s).
fuzz:
	@set -e; for pkg in $$($(GO) list ./... | grep -v '/tests'); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "$(GO) test -run='^$$' -fuzz='^$$f$$' -fuzztime=$(FUZZTIME) $$pkg"; \
			$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin build
