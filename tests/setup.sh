#!/usr/bin/env bash
# tests/setup.sh: prepare a Debian/Ubuntu host for rabbitc's demo and tests.
#
# As root (idempotent): installs the missing Debian packages, creates the
# unprivileged test user ($RABBITC_TEST_USER, default "rabbit") with
# /etc/subuid and /etc/subgid ranges, and makes /dev/net/tun usable.
#
# As an ordinary user: changes nothing; checks the same things for the
# invoking user and prints the one command to run when something is missing
# (exit status 1).
#
# Go is not installed from apt: rabbitc needs Go 1.26 at /usr/local/go
# (https://go.dev/dl/).
set -euo pipefail

PACKAGES=(uidmap slirp4netns busybox-static iproute2 util-linux ca-certificates curl git make)
# The OCI client tests (tests/oci_clients_test.go, tests/oci/): the clients
# that call an OCI runtime and the reference runtimes they are compared with.
# catatonit is rootless podman's pause process; podman 4.3 recommends
# fuse-overlayfs, the tests use the vfs driver but a user's podman may not.
PACKAGES+=(podman crun runc containerd conmon catatonit fuse-overlayfs containernetworking-plugins)
# The image fixture tests (tests/images_fixtures_test.go): a registry of
# their own on 127.0.0.1, the client that pushes to it, and the reference
# unpacker rabbitc's layers are compared with.
PACKAGES+=(docker-registry skopeo umoci)
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
			kernel.unprivileged_userns_clone) echo "  sudo sysctl -w kernel.unprivileged_userns_clone=1" >&2 ;;
			kernel.apparmor_restrict_unprivileged_userns) echo "  sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0  (or add an AppArmor profile for rabbitc)" >&2 ;;
			user.max_user_namespaces) echo "  sudo sysctl -w user.max_user_namespaces=15000" >&2 ;;
			esac
		fi
	done
}

check_as_user() {
	local me ok=0 pkgs
	me=$(id -un)
	pkgs=$(missing_packages)
	if [ -n "$pkgs" ]; then
		echo "setup: missing Debian packages; run:" >&2
		echo "  sudo apt-get install -y $pkgs" >&2
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
			echo "setup: $me has no range in /etc/subuid or /etc/subgid; run:" >&2
			echo "  sudo usermod --add-subuids $s-$((s + 65535)) --add-subgids $s-$((s + 65535)) $me" >&2
			ok=1
		fi
		if [ ! -e /dev/net/tun ]; then
			echo "setup: /dev/net/tun is missing; run: sudo modprobe tun" >&2
			ok=1
		elif [ ! -r /dev/net/tun ] || [ ! -w /dev/net/tun ]; then
			echo "setup: /dev/net/tun is not usable by $me; run: sudo chmod 0666 /dev/net/tun" >&2
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
	# The tests build as root and run the binaries as the test user from a
	# 0755 temporary directory; a home of its own is all the user needs
	# (also for running `go test` as that user: GOPATH and the build cache
	# live there).
	home=$(getent passwd "$TEST_USER" | cut -d: -f6)
	if [ -n "$home" ] && [ ! -d "$home" ]; then
		mkdir -p "$home"
		chown "$TEST_USER:" "$home"
	fi
	if [ ! -e /dev/net/tun ]; then
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
	if ! command -v go >/dev/null; then
		echo "setup: go not found: install Go 1.26 to /usr/local/go (https://go.dev/dl/)" >&2
		return 1
	fi
	userns_hint
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
