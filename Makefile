# rabbitc: a rootless container runtime.
#
#   make demo         build rabbitc and a demo rootfs, serve the seed's HTTP server on 127.0.0.1:8080 until Ctrl-C
#   make test         unit tests, then the integration tests of the built binary
#   make install      install rabbitc, rabbitc-image, man pages, completions (PREFIX, DESTDIR)
#   make deb          build/rabbitc_VERSION_ARCH.deb
#
# Run as root, `make demo` and `make test` first install what is missing
# (tests/setup.sh); run as a user, they print the one command to run instead.

export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin/rabbitc
FUZZTIME ?= 100000x # a count: see .ci/run on go.dev/issue/75804

.PHONY: all build demo demo-rootfs test unit integration bench fuzz vet clean deps docs install uninstall deb

all: build

# Static and stripped: every container start execs the binary three or four
# times; a cgo build spends ~0.6 ms more in the dynamic loader each time.
# -E: the binary's ELF entry point is nsenter's, which joins a container's
# namespaces for `rabbitc exec` before the Go runtime starts (nsenter/doc.go);
# a binary built without it refuses exec.
# -X: what `rabbitc version` prints (the commit and date are "unknown"
# outside a git checkout).
# The version of the binaries (rabbitc version), the man pages and the
# package: the release tag, or the commit until there are tags.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
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

# Serves until Ctrl-C (or SIGTERM), then stops the container: never part
# of `make test` or CI (tests/demo_test.go runs it with a signal).
demo: deps build
	@tests/demo.sh

# The demo's rootfs alone, build/demo-rootfs: busybox-static and the seed's
# server at /bin/server (the README's examples use it).
demo-rootfs:
	@tests/demo.sh rootfs

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
	$(GO) vet -tags rabbitc_gendocs ./cmd/... ./internal/...

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

# ---- Installing -------------------------------------------------------
#
# make install [PREFIX=/usr/local] [DESTDIR=]: bin/rabbitc and
# bin/rabbitc-image into BINDIR (rabbitc finds rabbitc-image beside itself),
# a man page per command, the completion scripts, and the AppArmor profile
# (packaging/apparmor/rabbitc) where AppArmor can use it. `make uninstall`
# with the same variables removes those files; under a DESTDIR (a staging
# tree) also the directories that are left empty, on the live system
# only the files (/usr/local/bin and the like stay, as automake's do).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
APPARMORDIR ?= /etc/apparmor.d
# auto: install the profile where $(DESTDIR)$(APPARMORDIR)/abi/4.0 exists,
# i.e. AppArmor 4, whose policy has the userns rule (Ubuntu 23.10 and later,
# Debian 13); an older apparmor_parser (Debian 12's 3.0) rejects the profile
# and there is no restriction to lift. yes or no to decide.
APPARMOR ?= auto
# The man pages' and the package's date (reproducible: the last commit's).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
DOC := build/doc
D := $(patsubst %/,%,$(DESTDIR))

# The man pages and completion scripts, from the command trees by the
# generators (rabbitc and rabbitc-image built with -tags rabbitc_gendocs,
# internal/gendocs: cobra's doc package is never linked into the binaries).
docs:
	@$(GO) build -tags rabbitc_gendocs -o build/gendocs/rabbitc ./cmd/rabbitc
	@$(GO) build -tags rabbitc_gendocs -o build/gendocs/rabbitc-image ./cmd/rabbitc-image
	@rm -rf $(DOC)
	@SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) build/gendocs/rabbitc -version '$(VERSION)' $(DOC)
	@SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) build/gendocs/rabbitc-image -version '$(VERSION)' $(DOC)/man1
	@echo "docs: $$(ls $(DOC)/man1 | wc -l) man pages in $(DOC)/man1, completion scripts in $(DOC)/completions"

install: build docs
	install -d -m 0755 '$(D)$(BINDIR)' '$(D)$(MANDIR)/man1' '$(D)$(BASHCOMPDIR)' '$(D)$(ZSHCOMPDIR)' '$(D)$(FISHCOMPDIR)'
	install -m 0755 bin/rabbitc bin/rabbitc-image '$(D)$(BINDIR)/'
	install -m 0644 $(DOC)/man1/*.1 '$(D)$(MANDIR)/man1/'
	install -m 0644 $(DOC)/completions/rabbitc.bash '$(D)$(BASHCOMPDIR)/rabbitc'
	install -m 0644 $(DOC)/completions/_rabbitc '$(D)$(ZSHCOMPDIR)/_rabbitc'
	install -m 0644 $(DOC)/completions/rabbitc.fish '$(D)$(FISHCOMPDIR)/rabbitc.fish'
	@sed 's|@BINDIR@|$(BINDIR)|g' packaging/apparmor/rabbitc >build/apparmor-rabbitc
	@case '$(APPARMOR)' in \
	yes) install=yes ;; \
	no) install=no ;; \
	*) install=no; \
		if [ -e '$(D)$(APPARMORDIR)/abi/4.0' ]; then install=yes; \
		elif [ -d '$(D)$(APPARMORDIR)' ]; then echo "install: AppArmor in $(D)$(APPARMORDIR) predates 4.0 (no abi/4.0): it has no user namespace restriction and cannot parse the profile; not installed (APPARMOR=yes to install it anyway)"; fi ;; \
	esac; \
	if [ "$$install" = yes ]; then \
		echo "install -D -m 0644 build/apparmor-rabbitc '$(D)$(APPARMORDIR)/rabbitc'"; \
		install -D -m 0644 build/apparmor-rabbitc '$(D)$(APPARMORDIR)/rabbitc'; \
		if [ -z '$(D)' ] && [ -d /sys/kernel/security/apparmor ] && command -v apparmor_parser >/dev/null; then \
			echo "apparmor_parser -r $(APPARMORDIR)/rabbitc"; \
			apparmor_parser -r '$(APPARMORDIR)/rabbitc' || echo "install: could not load the profile: run apparmor_parser -r $(APPARMORDIR)/rabbitc as root"; \
		fi; \
	fi

uninstall:
	@profile='$(D)$(APPARMORDIR)/rabbitc'; \
	if sed 's|@BINDIR@|$(BINDIR)|g' packaging/apparmor/rabbitc | cmp -s - "$$profile"; then \
		if [ -z '$(D)' ] && [ -d /sys/kernel/security/apparmor ] && command -v apparmor_parser >/dev/null; then \
			apparmor_parser -R "$$profile" 2>/dev/null || true; \
		fi; \
		echo "rm -f $$profile"; rm -f "$$profile"; \
	fi; \
	set -- '$(D)$(BINDIR)/rabbitc' '$(D)$(BINDIR)/rabbitc-image' '$(D)$(MANDIR)/man1/rabbitc.1' '$(D)$(MANDIR)/man1/'rabbitc-*.1 \
		'$(D)$(BASHCOMPDIR)/rabbitc' '$(D)$(ZSHCOMPDIR)/_rabbitc' '$(D)$(FISHCOMPDIR)/rabbitc.fish'; \
	n=0; for f in "$$@"; do [ -e "$$f" ] && n=$$((n + 1)); done; \
	echo "uninstall: removing $$n files (rabbitc, rabbitc-image, man pages, completions) under $(D)$(PREFIX)"; \
	rm -f "$$@"; \
	if [ -n '$(D)' ]; then \
		for f in "$$@" "$$profile"; do \
			d=$$(dirname "$$f"); \
			while [ "$$d" != '$(D)' ] && [ "$$d" != / ] && [ "$$d" != . ] && rmdir "$$d" 2>/dev/null; do d=$$(dirname "$$d"); done; \
		done; \
	fi

# A Debian package of what make install installs with PREFIX=/usr, built
# by packaging/deb/build.sh (dpkg-deb $(DPKG_DEB_FLAGS)).
DPKG_DEB_FLAGS ?= -Zxz
deb: build docs
	@SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) DPKG_DEB_FLAGS='$(DPKG_DEB_FLAGS)' packaging/deb/build.sh '$(VERSION)'
