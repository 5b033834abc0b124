#!/usr/bin/env bash
# bench/run.sh: `make bench`. Measures rabbitc beside its peers in one run and
# writes bench/results/latest.{md,csv,png} (quick.* with BENCH_QUICK=1).
#
# As root it installs missing peers from Debian's packages, builds everything,
# and runs the measurements as the unprivileged RABBITC_BENCH_USER (default
# rabbit). As any other user it runs as that user and reports missing peers.
#
# Environment:
#   BENCH_QUICK=1        3 rounds and short loads, for development
#   BENCH_ROUNDS=N       rounds per start-up measurement (default 20)
#   BENCH_LOAD_ROUNDS=N  rounds per load measurement (default 20)
#   BENCH_LOAD_SECONDS=N seconds per iperf3/wrk run (default 1)
#   BENCH_ONLY=start,firstbyte,forward,exec,oci,images,outbound,connect   phases to run (default all)
#   RABBITC_BENCH_USER   the unprivileged user when run as root (default rabbit)
#   BENCH_KEEP=1         keep the scratch directory
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
packages=(bubblewrap crun runc rootlesskit podman passt iperf3 wrk hyperfine uidmap slirp4netns busybox-static time iproute2)
all_phases=start,firstbyte,forward,exec,oci,images,outbound,connect
phases=${BENCH_ONLY:-$all_phases}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

# user_stage runs as the unprivileged user, inside the bench's mount
# namespace when run as root: it runs rabbitbench with a private podman
# home and runtime directory, then stops podman's pause process.
user_stage() {
	local work=$1
	export PATH=$PATH:/usr/sbin:/sbin
	export HOME=$work/home XDG_RUNTIME_DIR=$work/xdg XDG_DATA_HOME=$work/home/data XDG_CONFIG_HOME=$work/home/config
	mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"
	mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
	local args=(-rabbitc "$work/bin/rabbitc" -httpd "$work/bin/httpd" -rootfs "$work/rootfs"
		-podman-rootfs "$work/rootfs-podman" -work "$work/scratch" -out "$work/results"
		-only "$phases")
	if [ "${BENCH_QUICK:-0}" = 1 ]; then
		args+=(-quick -rounds "${BENCH_ROUNDS:-3}" -load-rounds "${BENCH_LOAD_ROUNDS:-3}" -load-seconds "${BENCH_LOAD_SECONDS:-1}")
	else
		args+=(-rounds "${BENCH_ROUNDS:-20}" -load-rounds "${BENCH_LOAD_ROUNDS:-20}" -load-seconds "${BENCH_LOAD_SECONDS:-1}")
	fi
	local rc=0
	"$work/bin/rabbitbench" "${args[@]}" || rc=$?
	# The CAP_NET_ADMIN helper's socket (see ns_stage): nothing else gets it.
	[ -z "${RABBITBENCH_CAP_LAUNCHER_FD:-}" ] || eval "exec ${RABBITBENCH_CAP_LAUNCHER_FD}>&-"
	# Every podman container here is ours (private HOME and runtime directory).
	if command -v podman >/dev/null; then
		podman rm -a -f -t 0 >/dev/null 2>&1 || true
		if [ "$(id -u)" != 0 ]; then
			# Files podman wrote belong to subordinate ids: remove them inside its namespace.
			podman unshare rm -rf "$XDG_DATA_HOME/containers" 2>/dev/null || true
		fi
	fi
	# podman's rootless pause process (catatonit, which ignores SIGTERM) holds
	# its user namespace; we started it.
	if [ -s "$XDG_RUNTIME_DIR/libpod/tmp/pause.pid" ]; then
		kill -KILL "$(cat "$XDG_RUNTIME_DIR/libpod/tmp/pause.pid")" 2>/dev/null || true
	fi
	return $rc
}

# ns_stage runs as root in a private mount namespace. crun refuses cgroup v2
# controllers in hybrid mode ("cgroups in hybrid mode not supported"), so when
# the host is hybrid, /sys/fs/cgroup/unified is hidden under an empty tmpfs
# in this namespace only. Nobody in the benchmark uses cgroups.
ns_stage() {
	local work=$1 user=$2
	if [ "${BENCH_HYBRID:-0}" = 1 ]; then
		mount -t tmpfs -o ro,size=4k,mode=0555 rabbitc-bench /sys/fs/cgroup/unified
	fi
	mount --make-rshared /
	local env=(env -i PATH="$PATH" USER="$user" LOGNAME="$user" LANG="${LANG:-C.UTF-8}"
		BENCH_QUICK="${BENCH_QUICK:-0}" BENCH_ROUNDS="${BENCH_ROUNDS:-}" BENCH_LOAD_ROUNDS="${BENCH_LOAD_ROUNDS:-}"
		BENCH_LOAD_SECONDS="${BENCH_LOAD_SECONDS:-}" BENCH_ONLY="${BENCH_ONLY:-}"
		RABBITC_BENCH_NOTE="${RABBITC_BENCH_NOTE:-}" RABBITC_BENCH_COMMIT="${RABBITC_BENCH_COMMIT:-}"
		RABBITC_BENCH_TESTHOST="${RABBITC_BENCH_TESTHOST:-}" RABBITC_BENCH_TESTHOST_DEV="${RABBITC_BENCH_TESTHOST_DEV:-}"
		RABBITC_BENCH_TESTHOST_CONNECT="${RABBITC_BENCH_TESTHOST_CONNECT:-}")
	local stage=(bash "$here/run.sh" --user-stage "$work")
	if [[ ",$phases," == *,outbound,* || ",$phases," == *,connect,* || ",$phases," == *,forward,* ]] && setpriv --help 2>&1 | grep -q -- --ambient-caps; then
		# The outbound and connect phases measure rabbitc once more with CAP_NET_ADMIN,
		# the forward phase its --publish-mode=direct so (labelled so; see
		# bench/cmd/rabbitbench/launcher.go): a helper,
		# the bench user with CAP_NET_ADMIN as an ambient capability, starts
		# that rabbitc on the bench's request and nothing else, and runs the
		# user stage itself with every capability dropped.
		exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
			--inh-caps=+net_admin --ambient-caps=+net_admin "${env[@]}" \
			"$work/bin/rabbitbench" cap-launcher "$work/bin/rabbitc" -- \
			setpriv --inh-caps=-all --ambient-caps=-all -- "${stage[@]}"
	fi
	exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups "${env[@]}" "${stage[@]}"
}

# testhost_up, as root: the outbound phase's test host, a network namespace
# behind a veth pair with iperf3 -s and benchconnect -listen (the connect
# phase's server) in it (run as the bench user), on the
# first documentation subnet (RFC 5737) that the host uses for nothing else;
# nothing is sent there before rabbitbench has checked that the host routes
# it through this veth. testhost_down undoes it.
testhost_up() {
	local user=$1 work=$2 net="" n
	for n in 192.0.2 198.51.100 203.0.113; do
		if ! ip -4 -o addr show | grep -q "inet $n\." &&
			[ -z "$(ip -4 route show match "$n.1" | grep -v '^default')" ]; then
			net=$n
			break
		fi
	done
	if [ -z "$net" ]; then
		log "outbound: every documentation subnet is in use on this host: no test host"
		return 0
	fi
	th_ns=rabbitc-bench-$$ th_dev=rbb$$h
	ip netns add "$th_ns" &&
		ip link add "$th_dev" type veth peer name "rbb$$t" netns "$th_ns" &&
		ip addr add "$net.2/24" dev "$th_dev" &&
		ip link set "$th_dev" up &&
		ip -n "$th_ns" addr add "$net.1/24" dev "rbb$$t" &&
		ip -n "$th_ns" link set lo up &&
		ip -n "$th_ns" link set "rbb$$t" up || {
		log "outbound: could not make the test host"
		return 0
	}
	ip netns exec "$th_ns" setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
		env -i PATH="$PATH" setsid iperf3 -s -B "$net.1" -p 5201 >"$work/testhost-iperf3.log" 2>&1 &
	th_pid=$!
	ip netns exec "$th_ns" setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
		env -i PATH="$PATH" setsid "$work/bin/benchconnect" -listen "$net.1:5202" >"$work/testhost-benchconnect.log" 2>&1 &
	th_pid2=$!
	local i
	for i in $(seq 100); do
		ip netns exec "$th_ns" ss -Hltn "sport = :5201" | grep -q . &&
			ip netns exec "$th_ns" ss -Hltn "sport = :5202" | grep -q . && break
		sleep 0.05
	done
	export RABBITC_BENCH_TESTHOST="$net.1:5201" RABBITC_BENCH_TESTHOST_DEV="$th_dev" RABBITC_BENCH_TESTHOST_CONNECT="$net.1:5202"
	log "outbound: test host $net.1 (iperf3 -s, benchconnect -listen) in network namespace $th_ns, the host's side $net.2 on $th_dev"
}

testhost_down() {
	local pid
	for pid in ${th_pid:-} ${th_pid2:-}; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	# Deleting the namespace deletes its end of the veth pair, and so both.
	[ -z "${th_ns:-}" ] || ip netns del "$th_ns" 2>/dev/null || true
	[ -z "${th_dev:-}" ] || ! ip link show "$th_dev" >/dev/null 2>&1 || ip link del "$th_dev" 2>/dev/null || true
	th_pid="" th_pid2="" th_ns="" th_dev=""
}

case "${1:-}" in
--user-stage) user_stage "$2"; exit ;;
--ns-stage) ns_stage "$2" "$3"; exit ;;
esac

# Peers: install what is missing as root, report it otherwise.
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		log "installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		log "missing packages: ${missing[*]} (install them as root; those peers are reported as not run)"
	fi
fi

user=$(id -un)
if [ "$(id -u)" = 0 ]; then
	user=${RABBITC_BENCH_USER:-rabbit}
	id "$user" >/dev/null 2>&1 || die "user $user not found (create it: useradd -m $user, and give it ranges in /etc/subuid and /etc/subgid, or set RABBITC_BENCH_USER)"
fi
grep -q "^$user:" /etc/subuid 2>/dev/null || log "no /etc/subuid range for $user: runtimes that use newuidmap will fail (add \"$user:100000:65536\" to /etc/subuid and /etc/subgid)"

GO=$(command -v go || echo /usr/local/go/bin/go)
RABBITC_BENCH_COMMIT=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$repo" diff --quiet HEAD -- cmd userns rootfs netns portfwd 2>/dev/null || RABBITC_BENCH_COMMIT+=" with local changes"
export RABBITC_BENCH_COMMIT
work=$(mktemp -d /tmp/rabbitc-bench.XXXXXX)
chmod 0755 "$work"
cleanup() {
	testhost_down
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "kept $work"
	elif [ "$(id -u)" = 0 ]; then
		rm -rf "$work"
	else
		rm -rf "$work" 2>/dev/null || log "could not remove all of $work"
	fi
}
trap cleanup EXIT

log "building rabbitc and the bench tools in $work"
mkdir -p "$work/bin"
cd "$repo"
# Built as `make build` does (static, stripped, with exec's entry point),
# which is what users run.
if ! out=$(CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w -E github.com/rabbitc/rabbitc/nsenter.entry" -o "$work/bin/rabbitc" ./cmd/rabbitc 2>&1); then
	# Measure the peers anyway: rabbitc's rows then say why it did not run.
	log "go build ./cmd/rabbitc failed: $out"
	printf '#!/bin/sh\necho "rabbitc: go build ./cmd/rabbitc failed: %s" >&2\nexit 125\n' \
		"$(echo "$out" | head -1 | tr -d "\"'\\\\%")" >"$work/bin/rabbitc"
	chmod 0755 "$work/bin/rabbitc"
fi
# rabbitc-image beside it, as make build puts it (pull, run IMAGE).
CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w" -o "$work/bin/rabbitc-image" ./cmd/rabbitc-image || log "go build ./cmd/rabbitc-image failed"
CGO_ENABLED=0 "$GO" build -o "$work/bin/httpd" ./bench/cmd/benchhttpd
CGO_ENABLED=0 "$GO" build -o "$work/bin/benchconnect" ./bench/cmd/benchconnect
"$GO" build -o "$work/bin/rabbitbench" ./bench/cmd/rabbitbench

# The bench rootfs: static busybox, our static HTTP server, and iperf3 with
# the shared libraries it needs (from ldd).
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,etc,tmp,root,usr/bin,ctl}
chmod 1777 "$rootfs/tmp"
busybox=$(command -v busybox || echo /bin/busybox)
cp "$busybox" "$rootfs/bin/busybox"
# Our server first: busybox has an httpd applet too.
cp "$work/bin/httpd" "$rootfs/bin/httpd"
# The connect phase's client (and, on the host, its server).
cp "$work/bin/benchconnect" "$rootfs/bin/benchconnect"
for a in $("$rootfs/bin/busybox" --list); do
	[ -e "$rootfs/bin/$a" ] || [ -L "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"
done
if command -v iperf3 >/dev/null; then
	cp "$(command -v iperf3)" "$rootfs/usr/bin/iperf3"
	for lib in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
		mkdir -p "$rootfs$(dirname "$lib")"
		cp -L "$lib" "$rootfs$lib"
	done
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
# podman writes mount points into the rootfs it runs: give it its own copy.
cp -a "$rootfs" "$work/rootfs-podman"
mkdir -p "$work/results"

if [ "$(id -u)" = 0 ]; then
	chown -R "$user:$(id -g "$user")" "$work"
	export BENCH_HYBRID=0
	if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] &&
		[ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] &&
		[ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
		BENCH_HYBRID=1
		export RABBITC_BENCH_NOTE="cgroups: this host is hybrid (v1, and v2 with $(tr '\n' ' ' </sys/fs/cgroup/unified/cgroup.controllers)on it), which crun refuses; the bench hid /sys/fs/cgroup/unified in its own mount namespace, so every runtime ran without cgroups"
	fi
	[[ ",$phases," != *,outbound,* && ",$phases," != *,connect,* ]] || testhost_up "$user" "$work"
	log "running as $user"
	rc=0
	unshare --mount --propagation private bash "$here/run.sh" --ns-stage "$work" "$user" || rc=$?
else
	rc=0
	user_stage "$work" || rc=$?
fi
mkdir -p "$here/results"
cp "$work"/results/* "$here/results/" 2>/dev/null || true
log "results in $here/results/"
exit $rc
