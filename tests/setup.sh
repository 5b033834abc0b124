#!/usr/bin/env bash
# tests/setup.sh: prepare a Debian/Ubuntu host for rabbitc's demo and tests.
#
# As root (idempotent): installs the missing Debian packages, creates the
# unprivileged test user ($RABBITC_TEST_USER, default "rabbit") with
# /etc/subuid and /etc/subgid ranges and a second one without
# ($RABBITC_TEST_USER-nosub), and makes /dev/net/tun and /dev/fuse usable.
#
# Also as root, once: builds the Debian image fixture of
# tests/images_distro_test.go under $RABBITC_TEST_CACHE (default
# /var/cache/rabbitc-tests; see debian_image below). Without a Debian mirror
# it warns, and that test skips.
#
# As an ordinary user: changes nothing; checks the same things for the
# invoking user and prints the one command to run when something is missing
# (exit status 1).
#
# Go is not installed from apt: rabbitc needs Go 1.26 at /usr/local/go
# (https://go.dev/dl/).
set -euo pipefail

PACKAGES=(uidmap slirp4netns busybox-static iproute2 util-linux ca-certificates curl git make)
# The fuse-overlayfs storage driver (where the kernel's overlayfs refuses a
# user namespace; the tests force it): it needs /dev/fuse usable by every
# user, as Debian's udev rules make it.
PACKAGES+=(fuse-overlayfs)
# kmod: modprobe, which loads tun (and the kernel asks for when /dev/net/tun
# is opened first), absent from a minimal system.
PACKAGES+=(kmod)
# The packaging tests (tests/install_test.go): apparmor_parser checks the
# AppArmor profile; bash-completion runs the installed completion.
PACKAGES+=(apparmor bash-completion)
# The OCI client tests (tests/oci_clients_test.go, tests/oci/): the clients
# that call an OCI runtime and the reference runtimes they are compared with.
# catatonit is rootless podman's pause process; podman 4.3 recommends
# fuse-overlayfs (above), the tests use the vfs driver but a user's podman
# may not.
PACKAGES+=(podman crun runc containerd conmon catatonit containernetworking-plugins)
# The image fixture tests (tests/images_fixtures_test.go): a registry of
# their own on 127.0.0.1, the client that pushes to it, and the reference
# unpacker rabbitc's layers are compared with.
PACKAGES+=(docker-registry skopeo umoci)
# The network acceleration matrix (tests/netaccel_compat_test.go): the
# host's curl (above) and Node.js run in a container that binds the host's
# /usr. Debian's nodejs or nodesource's, either does.
PACKAGES+=(nodejs)
TEST_USER=${RABBITC_TEST_USER:-rabbit}
export PATH=/usr/local/go/bin:$PATH

missing_packages() {
	local p
	for p in "${PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			printf '%s ' "$p"
		fi
	done
}

# has_range FILE USER: the user (by name or uid) has a range in FILE.
has_range() {
	local uid
	uid=$(id -u "$2")
	grep -qE "^($2|$uid):[0-9]+:[0-9]+$" "$1" 2>/dev/null
}

# next_free FILE: the first id after every range in FILE (at least 100000).
next_free() {
	awk -F: 'NF == 3 { end = $2 + $3; if (end > max) max = end }
		END { if (max < 100000) max = 100000; print max }' "$1" 2>/dev/null || echo 100000
}

userns_hint() {
	local f v
	for f in kernel.unprivileged_userns_clone:0 kernel.apparmor_restrict_unprivileged_userns:1 user.max_user_namespaces:0; do
		v=$(sysctl -n "${f%%:*}" 2>/dev/null || true)
		if [ "$v" = "${f##*:}" ]; then
			echo "setup: unprivileged user namespaces are disabled (${f%%:*}=$v); rabbitc needs them:" >&2
			case ${f%%:*} in
			kernel.unprivileged_userns_clone) echo "  as root: sysctl -w kernel.unprivileged_userns_clone=1" >&2 ;;
			kernel.apparmor_restrict_unprivileged_userns) echo "  as root: make install (it installs rabbitc's AppArmor profile), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" >&2 ;;
			user.max_user_namespaces) echo "  as root: sysctl -w user.max_user_namespaces=15000" >&2 ;;
			esac
		fi
	done
}

check_as_user() {
	local me ok=0 pkgs
	me=$(id -un)
	pkgs=$(missing_packages)
	if [ -n "$pkgs" ]; then
		echo "setup: missing Debian packages; run as root:" >&2
		echo "  apt-get install -y $pkgs" >&2
		ok=1
	fi
	if ! command -v go >/dev/null; then
		echo "setup: go not found: install Go 1.26 to /usr/local/go (https://go.dev/dl/)" >&2
		ok=1
	fi
	if [ -z "$pkgs" ]; then
		if ! has_range /etc/subuid "$me" || ! has_range /etc/subgid "$me"; then
			local s
			s=$(next_free /etc/subuid)
			echo "setup: $me has no range in /etc/subuid or /etc/subgid; run as root:" >&2
			echo "  usermod --add-subuids $s-$((s + 65535)) --add-subgids $s-$((s + 65535)) $me" >&2
			ok=1
		fi
		if [ ! -e /dev/net/tun ]; then
			echo "setup: /dev/net/tun is missing; run as root: modprobe tun" >&2
			ok=1
		elif [ ! -r /dev/net/tun ] || [ ! -w /dev/net/tun ]; then
			echo "setup: /dev/net/tun is not usable by $me; run as root: chmod 0666 /dev/net/tun" >&2
			ok=1
		fi
		if [ -e /dev/fuse ] && { [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; }; then
			echo "setup: /dev/fuse is not usable by $me (fuse-overlayfs needs it); run: sudo chmod 0666 /dev/fuse" >&2
			ok=1
		fi
	fi
	userns_hint
	return $ok
}

# disable_system_registry stops the registry Debian's docker-registry
# package runs as a service, on port 5000 of every address: the tests start
# their own on 127.0.0.1 and nothing else should listen.
disable_system_registry() {
	if command -v systemctl >/dev/null 2>&1 &&
		{ systemctl is-enabled --quiet docker-registry 2>/dev/null || systemctl is-active --quiet docker-registry 2>/dev/null; }; then
		echo "setup: disabling the docker-registry service (the tests start their own registries)" >&2
		# Without systemd as init, disable still works and --now fails.
		systemctl disable --now docker-registry >/dev/null 2>&1 || true
	fi
	if [ ! -d /run/systemd/system ] && [ -x /etc/init.d/docker-registry ] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
		# No systemd (a container): the package's init script started it.
		echo "setup: stopping the docker-registry service (the tests start their own registries)" >&2
		/etc/init.d/docker-registry stop >/dev/null 2>&1 || true
		update-rc.d docker-registry disable >/dev/null 2>&1 || true
	fi
}

# nosub_user: a second user without subordinate ids, for
# tests/doctor_test.go: a system user, to whom useradd gives none, and any
# range removed should one have been added since.
nosub_user() {
	local u=$TEST_USER-nosub f uid
	if ! id "$u" >/dev/null 2>&1; then
		echo "setup: creating the user $u (no subordinate ids)" >&2
		useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
	fi
	uid=$(id -u "$u")
	for f in /etc/subuid /etc/subgid; do
		if has_range "$f" "$u"; then
			echo "setup: removing the ranges of $u from $f" >&2
			sed -i -E "/^($u|$uid):/d" "$f"
		fi
	done
}

setup_as_root() {
	local pkgs
	pkgs=$(missing_packages)
	if [ -n "$pkgs" ]; then
		echo "setup: installing $pkgs" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		# shellcheck disable=SC2086
		apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
	fi
	disable_system_registry
	if ! id "$TEST_USER" >/dev/null 2>&1; then
		echo "setup: creating the test user $TEST_USER" >&2
		useradd --create-home --shell /bin/bash "$TEST_USER"
	fi
	local f start home
	for f in /etc/subuid /etc/subgid; do
		touch "$f"
		if ! has_range "$f" "$TEST_USER"; then
			start=$(next_free "$f")
			echo "setup: adding $TEST_USER:$start:65536 to $f" >&2
			echo "$TEST_USER:$start:65536" >>"$f"
		fi
	done
	nosub_user
	# The tests build as root and run the binaries as the test user from a
	# 0755 temporary directory; a home of its own is all the user needs
	# (also for running `go test` as that user: GOPATH and the build cache
	# live there).
	home=$(getent passwd "$TEST_USER" | cut -d: -f6)
	if [ -n "$home" ] && [ ! -d "$home" ]; then
		mkdir -p "$home"
		chown "$TEST_USER:" "$home"
	fi
	if [ ! -e /dev/net/tun ] && command -v modprobe >/dev/null; then
		modprobe tun 2>/dev/null || true
	fi
	if [ ! -e /dev/net/tun ]; then
		mkdir -p /dev/net
		mknod -m 0666 /dev/net/tun c 10 200 2>/dev/null || echo "setup: /dev/net/tun is missing and cannot be created (kernel without CONFIG_TUN?)" >&2
	fi
	if [ -e /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
		echo "setup: chmod 0666 /dev/net/tun" >&2
		chmod 0666 /dev/net/tun
	fi
	# fuse-overlayfs, as root of a user namespace, opens /dev/fuse with the
	# user's rights: 0666 is Debian's (udev), not always a container's.
	if [ ! -e /dev/fuse ]; then
		modprobe fuse 2>/dev/null || true
	fi
	if [ ! -e /dev/fuse ]; then
		mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || echo "setup: /dev/fuse is missing and cannot be created (kernel without CONFIG_FUSE_FS?)" >&2
	fi
	if [ -e /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
		echo "setup: chmod 0666 /dev/fuse" >&2
		chmod 0666 /dev/fuse
	fi
	if ! command -v go >/dev/null; then
		echo "setup: go not found: install Go 1.26 to /usr/local/go (https://go.dev/dl/)" >&2
		return 1
	fi
	debian_image
	net_clients_layer
	userns_hint
}

# The distribution image of tests/images_distro_test.go: Debian bookworm
# made by debootstrap (variant minbase) as one layer, and mini-httpd with its
# libraries and a page as a second layer, installed by dpkg in a chroot of
# the first. Made once, from the mirror apt uses (about 100 s here, 90 of
# them debootstrap's; 52 MB compressed), into $FIXTURES/$DEBIAN_IMAGE,
# world-readable: layer1.tar.gz, layer2.tar.gz and image.json (what the
# image's config says and what its page holds). The directory appears whole
# or not at all (built aside, then renamed); change DEBIAN_IMAGE when the
# recipe changes.
FIXTURES=${RABBITC_TEST_CACHE:-/var/cache/rabbitc-tests}
DEBIAN_IMAGE=debian-bookworm-minbase-mini-httpd-1
DEBIAN_PAGE='<p>rabbitc: mini_httpd from Debian bookworm, in a container of two layers</p>'

# debian_mirror prints the URI of the archive that apt takes bookworm from
# (sources.list or sources.list.d/*.sources), or $RABBITC_DEBIAN_MIRROR.
debian_mirror() {
	if [ -n "${RABBITC_DEBIAN_MIRROR:-}" ]; then
		echo "$RABBITC_DEBIAN_MIRROR"
		return
	fi
	# shellcheck disable=SC2016 # apt's $(FIELD), not the shell's
	apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null | awk '$1 == "bookworm" && !n++ { print $2 }'
}

# drop_tmp DIR removes what a build left, unmounting first what debootstrap
# mounted in it (its /proc and /sys, if it was killed).
drop_tmp() {
	local m
	awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while IFS= read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$1"
}

debian_image() {
	local out=$FIXTURES/$DEBIAN_IMAGE mirror log had=no
	if [ -e "$out/image.json" ]; then
		had=yes
		compgen -G "$FIXTURES/.tmp-*" >/dev/null || return 0
	fi
	log=$FIXTURES/$DEBIAN_IMAGE.log
	mirror=$(debian_mirror)
	if [ -z "$mirror" ]; then
		echo "setup: warning: no bookworm archive among apt's sources (set RABBITC_DEBIAN_MIRROR): TestDistroImageServes will skip" >&2
		return 0
	fi
	mkdir -p "$FIXTURES"
	chmod 0755 "$FIXTURES"
	local t0=$SECONDS rc
	# Not under `if`, where the subshell's set -e would be ignored.
	set +e
	(build_debian_image "$mirror" "$out") >"$log" 2>&1
	rc=$?
	set -e
	if [ "$rc" != 0 ]; then
		echo "setup: warning: could not build the Debian image from $mirror (see $log): TestDistroImageServes will skip" >&2
		return 0
	fi
	if [ "$had" = no ]; then
		echo "setup: built the Debian image fixture $out in $((SECONDS - t0)) s ($(sed -n 's/^== debootstrap took //p' "$log") of it debootstrap)" >&2
	fi
	rm -f "$log"
}

# A layer made by installing packages with dpkg in a chroot of a tree
# (whose tarballs are the layers below): layer_begin ROOT WORK notes what
# the tree holds and marks the time; dpkg_install ROOT WORK PACKAGE...
# installs the packages the tree lacks; layer_end ROOT WORK OUT.tar.gz
# takes what changed: entries whose ctime is after the mark (new,
# rewritten, renamed over, chmod-ed; their directories too), and a whiteout
# for each entry that went. WORK is an empty directory.
layer_begin() {
	local root=$1 w=$2
	mkdir "$w/debs" "$w/wh"
	(cd "$root" && find . -path ./dev -prune -o -path ./proc -prune -o -path ./sys -prune -o -print | sort) >"$w/before"
	touch "$w/mark"
	sleep 1
}

dpkg_install() {
	local root=$1 w=$2
	shift 2
	# The packages, resolved by apt against the tree's dpkg status and
	# downloaded from the host's sources.
	apt-get update -qq
	apt-get -q -y --download-only --no-install-recommends \
		-o APT::Sandbox::User=root -o Debug::NoLocking=1 \
		-o Dir::State::status="$root/var/lib/dpkg/status" -o Dir::Cache::archives="$w/debs/" \
		install "$@"
	ls "$w"/debs/*.deb
	mkdir "$root/tmp/debs"
	cp "$w"/debs/*.deb "$root/tmp/debs/"
	# No service starts in the chroot.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 0755 "$root/usr/sbin/policy-rc.d"
	# dpkg -i takes the files in name order: a package whose pre-dependency
	# comes after it (python3-minimal's python3.11-minimal) fails the first
	# pass and is installed by the second.
	chroot "$root" sh -c 'dpkg -i /tmp/debs/*.deb || dpkg -i /tmp/debs/*.deb'
	rm -rf "$root/tmp/debs" "$root/usr/sbin/policy-rc.d"
}

layer_end() {
	local root=$1 w=$2 out=$3 gone
	(cd "$root" && find . -path ./dev -prune -o -path ./proc -prune -o -path ./sys -prune -o -print | sort) >"$w/after"
	(cd "$root" && find . -path ./dev -prune -o -path ./proc -prune -o -path ./sys -prune -o -cnewer "$w/mark" -print | grep -vx '\.' | sort) >"$w/changed"
	# A whiteout for each entry that went whose directory stayed.
	declare -A went=()
	while IFS= read -r gone; do
		went[$gone]=1
	done < <(comm -23 "$w/before" "$w/after")
	for gone in "${!went[@]}"; do
		if [ -z "${went[$(dirname "$gone")]:-}" ]; then
			mkdir -p "$w/wh/$(dirname "$gone")"
			: >"$w/wh/$(dirname "$gone")/.wh.$(basename "$gone")"
		fi
	done
	echo "== $(basename "$out"): $(wc -l <"$w/changed") entries, $(find "$w/wh" -name '.wh.*' | wc -l) whiteouts"
	(cd "$w/wh" && find . -name '.wh.*' | sort) >"$w/whiteouts"
	tar --numeric-owner --xattrs --no-recursion -C "$root" -T "$w/changed" -C "$w/wh" -T "$w/whiteouts" -cf - |
		gzip -n >"$out"
}

# build_debian_image MIRROR OUT runs in a subshell (its own traps and lock).
build_debian_image() {
	set -euo pipefail
	# tmp is not local: the EXIT trap runs after the function returned.
	local mirror=$1 out=$2 root t
	exec 9>"$FIXTURES/.lock"
	flock 9
	# What a killed build left.
	for t in "$FIXTURES"/.tmp-*; do
		[ -e "$t" ] && drop_tmp "$t"
	done
	[ -e "$out/image.json" ] && return 0
	export DEBIAN_FRONTEND=noninteractive LC_ALL=C
	if ! command -v debootstrap >/dev/null; then
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends debootstrap
	fi
	tmp=$(mktemp -d "$FIXTURES/.tmp-XXXXXX")
	trap 'drop_tmp "$tmp"' EXIT
	root=$tmp/root
	mkdir "$tmp/image"
	echo "== debootstrap --variant=minbase bookworm $mirror"
	local t0=$SECONDS
	debootstrap --variant=minbase bookworm "$root" "$mirror"
	echo "== debootstrap took $((SECONDS - t0)) s"
	# What the host put there (its resolv.conf and hostname; rabbitc
	# provides both) and the downloaded packages go.
	rm -f "$root/etc/resolv.conf" "$root/etc/hostname" "$root"/var/cache/apt/archives/*.deb
	rm -rf "$root"/var/lib/apt/lists/*
	# Layer 1: the tree, device nodes and what /proc and /sys held left out
	# (a layer's device nodes are skipped by rabbitc's unpack anyway).
	tar --numeric-owner --xattrs -C "$root" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
		gzip -n >"$tmp/image/layer1.tar.gz"

	# Layer 2: mini-httpd with its libraries, and a page.
	mkdir "$tmp/l2"
	layer_begin "$root" "$tmp/l2"
	dpkg_install "$root" "$tmp/l2" mini-httpd
	mkdir -p "$root/var/www/html"
	printf '%s\n' "$DEBIAN_PAGE" >"$root/var/www/html/index.html"
	chmod 0644 "$root/var/www/html/index.html"
	layer_end "$root" "$tmp/l2" "$tmp/image/layer2.tar.gz"

	cat >"$tmp/image/image.json" <<-JSON
		{
		  "cmd": ["/usr/sbin/mini_httpd", "-D", "-p", "8080", "-d", "/var/www/html"],
		  "user": "www-data",
		  "port": "8080/tcp",
		  "path": "/index.html",
		  "body": "$DEBIAN_PAGE"
		}
	JSON
	chmod 0755 "$tmp/image"
	chmod 0644 "$tmp/image"/*
	sync -f "$tmp/image/image.json"
	mv -T "$tmp/image" "$out"
	echo "== done"
}

# The third layer of tests/netaccel_compat_test.go: python3 (with the
# standard library's http.client) and nginx, installed by dpkg over the
# Debian image's two layers, which it extends: it is made from their
# tarballs, not by a new debootstrap (about 30 s here), into
# $FIXTURES/$NET_CLIENTS_LAYER, world-readable: layer3.tar.gz and
# layer.json (the directory of the layers below). Node.js is left out: its
# runtime is over 80 MB installed in bookworm. Change NET_CLIENTS_LAYER
# when the recipe changes (or DEBIAN_IMAGE does).
NET_CLIENTS_LAYER=debian-bookworm-net-clients-1
NET_CLIENTS_PACKAGES=(python3-minimal libpython3.11-stdlib nginx-light)

net_clients_layer() {
	local out=$FIXTURES/$NET_CLIENTS_LAYER base=$FIXTURES/$DEBIAN_IMAGE log t0=$SECONDS rc
	[ -e "$out/layer.json" ] && return 0
	if [ ! -e "$base/image.json" ]; then
		echo "setup: warning: no Debian image fixture to extend: the python3/nginx tests of netaccel_compat_test.go will skip" >&2
		return 0
	fi
	log=$FIXTURES/$NET_CLIENTS_LAYER.log
	set +e
	(build_net_clients_layer "$base" "$out") >"$log" 2>&1
	rc=$?
	set -e
	if [ "$rc" != 0 ]; then
		echo "setup: warning: could not build the python3/nginx layer (see $log): the tests that need it will skip" >&2
		return 0
	fi
	echo "setup: built the python3/nginx layer $out in $((SECONDS - t0)) s" >&2
	rm -f "$log"
}

# build_net_clients_layer BASE OUT runs in a subshell (its own traps and lock).
build_net_clients_layer() {
	set -euo pipefail
	local base=$1 out=$2 root t wh
	exec 9>"$FIXTURES/.lock"
	flock 9
	for t in "$FIXTURES"/.tmp-*; do
		[ -e "$t" ] && drop_tmp "$t"
	done
	[ -e "$out/layer.json" ] && return 0
	export DEBIAN_FRONTEND=noninteractive LC_ALL=C
	tmp=$(mktemp -d "$FIXTURES/.tmp-XXXXXX")
	trap 'drop_tmp "$tmp"' EXIT
	root=$tmp/root
	mkdir "$root" "$tmp/image" "$tmp/l3"
	# The tree of the layers below, the second's whiteouts applied.
	tar --numeric-owner --xattrs -xzf "$base/layer1.tar.gz" -C "$root"
	tar --numeric-owner --xattrs -xzf "$base/layer2.tar.gz" -C "$root"
	(cd "$root" && find . -name '.wh.*' -print) | while IFS= read -r wh; do
		rm -rf "${root:?}/$(dirname "$wh")/$(basename "$wh" | sed 's/^\.wh\.//')" "${root:?}/$wh"
	done
	# What maintainer scripts write to (the layers leave /dev empty, and
	# layer_end does not look there).
	for t in null:3 zero:5 random:8 urandom:9; do
		mknod -m 0666 "$root/dev/${t%%:*}" c 1 "${t#*:}"
	done
	layer_begin "$root" "$tmp/l3"
	dpkg_install "$root" "$tmp/l3" "${NET_CLIENTS_PACKAGES[@]}"
	layer_end "$root" "$tmp/l3" "$tmp/image/layer3.tar.gz"
	printf '{"base": "%s", "packages": "%s"}\n' "$DEBIAN_IMAGE" "${NET_CLIENTS_PACKAGES[*]}" >"$tmp/image/layer.json"
	chmod 0755 "$tmp/image"
	chmod 0644 "$tmp/image"/*
	sync -f "$tmp/image/layer.json"
	mv -T "$tmp/image" "$out"
	echo "== done"
}

case ${1:-} in
--check) check_as_user ;;
"")
	if [ "$(id -u)" = 0 ]; then
		setup_as_root
	else
		check_as_user
	fi
	;;
*)
	echo "usage: tests/setup.sh [--check]" >&2
	exit 2
	;;
esac
