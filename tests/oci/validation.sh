#!/usr/bin/env bash
# tests/oci/validation.sh: run the OCI runtime-tools validation suite against
# an OCI runtime, the way rootless podman calls one.
#
#   tests/oci/validation.sh [-v] [--all] RUNTIME [TEST...]
#
# RUNTIME is a runc-compatible binary (crun, runc, bin/rabbitc). The suite's
# programs (github.com/opencontainers/runtime-tools, validation/*) are built
# once into a cache outside the repository, then each runs as the
# unprivileged user inside a user namespace where that user is uid 0 and its
# /etc/subuid range is uids 1-65536 (the mapping of `podman unshare`), with
# RUNTIME called as podman calls it: `RUNTIME --root DIR --log FILE
# --log-format json VERB ...`.
#
# Without TEST names it runs the tests that are meaningful rootless on a host
# without a delegated cgroup (DEFAULT_TESTS, see tests/oci/README.md);
# --all runs every program. Prints TAP (a failing program's own TAP as
# comments; -v: every program's) and a last line "PASS n / FAIL m / SKIP k";
# the exit status is 1 when a test failed.
#
# As root it builds as root and runs the tests as $RABBITC_TEST_USER
# (default rabbit). The cache is $RABBITC_OCI_CACHE, default
# /var/cache/rabbitc/oci-validation as root, ~/.cache/rabbitc/oci-validation
# otherwise. Needs go (1.21+), tar, util-linux >= 2.38 (unshare --map-users),
# newuidmap/newgidmap.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH

# The last commit of runtime-tools whose generator still writes ociVersion
# 1.0.x: crun 1.8 (Debian 12) refuses any other ("unknown version specified"),
# and the later commits (runtime-spec 1.1 and 1.3) only reword code.
RT_MODULE=github.com/opencontainers/runtime-tools
RT_VERSION=v0.9.1-0.20230914150019-408c51e934dc

# Meaningful rootless here, passed by crun 1.8.1 (the reference).
DEFAULT_TESTS=(
	config_updates_without_affect create default hooks hooks_stdin hostname kill kill_no_effect killsig
	linux_mount_label linux_ns_nopath linux_ns_path linux_ns_path_type linux_rootfs_propagation
	linux_seccomp linux_sysctl linux_uid_mappings mounts poststart poststart_fail poststop
	poststop_fail prestart prestart_fail process process_capabilities process_oom_score_adj
	process_rlimits_fail process_user root_readonly_true state
)

TEST_TIMEOUT=${RABBITC_OCI_TEST_TIMEOUT:-60}
USERNS=()
WORK=

die() {
	echo "validation.sh: $*" >&2
	exit 2
}

# build_suite DIR: build runtimetest and every validation program into DIR,
# with the suite's rootfs tarball beside them, unless already there.
build_suite() {
	local dir=$1 src tmp name
	[ -e "$dir/.complete" ] && return 0
	command -v go >/dev/null || die "go not found (Go at /usr/local/go)"
	echo "# building $RT_MODULE@$RT_VERSION into $dir" >&2
	src=$(cd / && GOFLAGS=-mod=mod go mod download -json "$RT_MODULE@$RT_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || die "go mod download $RT_MODULE@$RT_VERSION failed"
	tmp=$(mktemp -d)
	# The module cache is read-only and its vendor/ has only modules.txt:
	# build a writable copy in module mode.
	cp -r "$src/." "$tmp/"
	chmod -R u+w "$tmp"
	rm -rf "$tmp/vendor"
	mkdir -p "$dir"
	(
		cd "$tmp"
		export GOFLAGS=-mod=mod
		CGO_ENABLED=0 go build -tags 'netgo osusergo' -o "$dir/runtimetest" ./cmd/runtimetest
		for d in validation/*/; do
			name=$(basename "$d")
			[ "$name" = util ] && continue
			go build -o "$dir/$name.t" "./$d"
		done
	) || {
		rm -rf "$tmp"
		die "build of the validation suite failed"
	}
	cp "$tmp/rootfs-$(go env GOARCH).tar.gz" "$dir/"
	rm -rf "$tmp"
	chmod -R a+rX "$dir"
	touch "$dir/.complete"
}

# first_range FILE USER UID: "start count" of the user's first subordinate range.
first_range() {
	awk -F: -v n="$2" -v u="$3" '($1 == n || $1 == u) && NF == 3 { print $2, $3; exit }' "$1"
}

# classify TAPFILE STATUS: PASS, FAIL or SKIP for one program's output.
# A program fails by its exit status, by a "not ok", or, for the programs
# that print no test line, by an "error" diagnostic.
classify() {
	local tap=$1 status=$2 lines skips
	if [ "$status" != 0 ] || grep -q '^not ok' "$tap"; then
		echo FAIL
		return
	fi
	lines=$(grep -c '^ok' "$tap" || true)
	skips=$(grep -c '^ok [0-9]* # SKIP' "$tap" || true)
	if [ "$lines" = 0 ]; then
		# The *_fail programs print nothing when the runtime refused the
		# bad config, as it must; the lifecycle ones print "1..0".
		if grep -q '^  "error":' "$tap"; then
			echo FAIL
		else
			echo PASS
		fi
	elif [ "$lines" = "$skips" ]; then
		echo SKIP
	else
		echo PASS
	fi
}

# inner WORK VERBOSE TEST...: runs inside the user namespace, in WORK.
inner() {
	local work=$1 verbose=$2 n=0 pass=0 fail=0 skip=0 t status verdict
	shift 2
	cd "$work"
	export TMPDIR=$work/tmp RUNTIME=$work/runtime
	echo "TAP version 13"
	echo "1..$#"
	for t in "$@"; do
		n=$((n + 1))
		status=0
		timeout -k 5 "$TEST_TIMEOUT" "$SUITE/$t.t" >"$work/results/$t.tap" 2>"$work/results/$t.err" </dev/null || status=$?
		verdict=$(classify "$work/results/$t.tap" "$status")
		case $verdict in
		PASS)
			pass=$((pass + 1))
			echo "ok $n - $t"
			;;
		SKIP)
			skip=$((skip + 1))
			echo "ok $n - $t # SKIP $(grep -m1 -o '# SKIP.*' "$work/results/$t.tap" | cut -c8-)"
			;;
		FAIL)
			fail=$((fail + 1))
			echo "not ok $n - $t (exit status $status)"
			;;
		esac
		if [ "$verbose" = 1 ] || [ "$verdict" = FAIL ]; then
			{
				grep -v '^ok' "$work/results/$t.tap" | head -40 || true
				head -20 "$work/results/$t.err"
			} | sed 's/^/  # /' || true
		fi
		cleanup_containers "$work"
	done
	echo "PASS $pass / FAIL $fail / SKIP $skip"
	[ "$fail" = 0 ]
}

# cleanup_containers WORK: delete what a failed or timed-out program left.
cleanup_containers() {
	local id
	for id in $(ls "$1/state" 2>/dev/null); do
		"$1/runtime" delete --force "$id" >/dev/null 2>&1 || true
	done
	rm -rf "$1/tmp/"* 2>/dev/null || true
}

main() {
	local verbose=0 all=0 runtime tests=() user uid gid uidr gidr
	while [ $# -gt 0 ]; do
		case $1 in
		-v) verbose=1 ;;
		--all) all=1 ;;
		--inner)
			shift
			SUITE=$1
			shift
			inner "$@"
			return
			;;
		-*) die "unknown flag $1" ;;
		*) break ;;
		esac
		shift
	done
	[ $# -ge 1 ] || die "usage: tests/oci/validation.sh [-v] [--all] RUNTIME [TEST...]"
	runtime=$(command -v "$1") || die "runtime $1 not found"
	runtime=$(readlink -f "$runtime")
	shift
	if [ "$(id -u)" = 0 ]; then
		CACHE=${RABBITC_OCI_CACHE:-/var/cache/rabbitc/oci-validation}
		user=${RABBITC_TEST_USER:-rabbit}
	else
		CACHE=${RABBITC_OCI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rabbitc/oci-validation}
		user=$(id -un)
	fi
	SUITE=$CACHE/$RT_VERSION
	build_suite "$SUITE"
	if [ $# -gt 0 ]; then
		tests=("$@")
	elif [ "$all" = 1 ]; then
		for t in "$SUITE"/*.t; do tests+=("$(basename "$t" .t)"); done
	else
		tests=("${DEFAULT_TESTS[@]}")
	fi
	for t in "${tests[@]}"; do
		[ -x "$SUITE/$t.t" ] || die "no validation test $t"
	done

	uid=$(id -u "$user")
	gid=$(id -g "$user")
	uidr=$(first_range /etc/subuid "$user" "$uid")
	gidr=$(first_range /etc/subgid "$user" "$uid")
	[ -n "$uidr" ] && [ -n "$gidr" ] || die "$user has no range in /etc/subuid or /etc/subgid (run tests/setup.sh as root)"

	# The work directory belongs to the user: the programs copy runtimetest
	# into each bundle keeping its owner, which must be mapped.
	WORK=$(mktemp -d /tmp/rabbitc-oci-validation.XXXXXX)
	trap cleanup_work EXIT
	local work=$WORK
	mkdir -p "$work/tmp" "$work/state" "$work/results"
	cp "$SUITE/runtimetest" "$work/"
	ln -s "$SUITE/rootfs-$(go env GOARCH 2>/dev/null || echo amd64).tar.gz" "$work/"
	cat >"$work/runtime" <<EOF
#!/bin/sh
exec '$runtime' --root '$work/state' --log '$work/runtime.log' --log-format json "\$@"
EOF
	chmod 755 "$work/runtime" "$work"
	if [ "$(id -u)" = 0 ]; then
		chown -R "$uid:$gid" "$work"
	fi
	echo "# $runtime as $user (uid 0 in a user namespace; uids 1-${uidr#* } from /etc/subuid), ${#tests[@]} tests" >&2
	USERNS=(unshare --user --map-root-user --map-users="${uidr% *},1,${uidr#* }" --map-groups="${gidr% *},1,${gidr#* }")
	local cmd=("${USERNS[@]}" --pid --fork --kill-child --mount-proc
		"$(readlink -f "$0")" --inner "$SUITE" "$work" "$verbose" "${tests[@]}")
	if [ "$(id -u)" = 0 ]; then
		cmd=(setpriv --reuid "$uid" --regid "$gid" --init-groups env HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" "${cmd[@]}")
	fi
	"${cmd[@]}"
}

# cleanup_work: remove the work directory; bundles hold files of
# subordinate ids, which only root (or the user's namespace) can remove.
cleanup_work() {
	if [ -n "${RABBITC_OCI_KEEP:-}" ]; then
		echo "# keeping $WORK" >&2
		return
	fi
	if [ "$(id -u)" = 0 ]; then
		rm -rf "$WORK"
	else
		"${USERNS[@]}" rm -rf "$WORK" 2>/dev/null || rm -rf "$WORK" 2>/dev/null || true
	fi
}

main "$@"
