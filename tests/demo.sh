#!/usr/bin/env bash
# tests/demo.sh: the seed's demo, rootless. Builds a demo rootfs (busybox-static
# and the seed's HTTP server at /bin/server) in build/demo-rootfs, runs
#
#   rabbitc run --rootfs build/demo-rootfs --publish 8080:80 --cmd /bin/server
#
# as the invoking user (as root: as the test user, $RABBITC_TEST_USER or
# "rabbit"), checks once that http://127.0.0.1:8080/ answers, and keeps
# serving until Ctrl-C (SIGINT), SIGTERM or SIGHUP; on any exit it stops the
# container it started. Run by `make demo` after `make build`; DEMO_PORT
# changes the host port. `tests/demo.sh rootfs` (make demo-rootfs) builds the
# rootfs alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

PORT=${DEMO_PORT:-8080}
BIN=bin/rabbitc
ROOTFS=build/demo-rootfs
READY="curl 127.0.0.1:$PORT from another terminal; Ctrl-C to stop"

build_rootfs() {
	local busybox b applet
	busybox=$(command -v busybox || true)
	for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && busybox=$b; done
	if [ -z "$busybox" ]; then
		echo "demo: busybox not found (install busybox-static)" >&2
		exit 1
	fi
	rm -rf "$ROOTFS"
	mkdir -p "$ROOTFS"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,etc,root,tmp,run}
	chmod 1777 "$ROOTFS/tmp"
	cp "$busybox" "$ROOTFS/bin/busybox"
	for applet in $("$busybox" --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOTFS/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
	CGO_ENABLED=0 go build -o "$ROOTFS/bin/server" ./tests/payloads/server
	echo "demo: built $ROOTFS (busybox-static + the seed's server at /bin/server)"
}

case ${1:-} in
rootfs)
	build_rootfs
	exit 0
	;;
"") ;;
*)
	echo "usage: tests/demo.sh [rootfs]" >&2
	exit 2
	;;
esac

[ -x "$BIN" ] || make build
build_rootfs

# Whatever happens from here on (an error, Ctrl-C during start-up or while
# serving, SIGTERM, SIGHUP), stop stops the container and removes what the
# demo made. rabbitc runs in the background in a session of its own (setsid),
# so that the terminal's Ctrl-C reaches this script alone, whose trap sends
# rabbitc SIGTERM (forwarded to the server) and waits for it: a Ctrl-C that
# reached rabbitc too would end it before the trap ran (bash leaves a child
# that exited normally after SIGINT to handle it). setpriv --pdeathsig sends
# it SIGTERM too should this script be killed outright.
# pid is "starting" from just before rabbitc is started until $! is in it,
# and empty once rabbitc has been waited for.
pid=
dir=
stopped=
# shellcheck disable=SC2317 # called by the EXIT trap
stop() {
	local status=0 p=$pid
	[ -z "$stopped" ] || return 0
	stopped=1
	[ "$p" != starting ] || p=$!
	if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
		echo
		echo "demo: stopping the container"
		kill -TERM "$p" 2>/dev/null || true
		# rabbitc kills the container after its --stop-timeout (10 s).
		for _ in $(seq 1 150); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || status=$?
		case $status in
		0) echo "demo: stopped" ;;
		2) echo "demo: stopped (rabbitc's exit status 2 is the server's: a Go program that is PID 1 and has no SIGTERM handler exits with 2 when it gets one)" ;;
		*) echo "demo: stopped (rabbitc exit status $status)" ;;
		esac
	fi
	[ -z "$dir" ] || rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Who runs it: the invoking user, or the test user when we are root.
run_as=()
user=$(id -un)
if [ "$(id -u)" = 0 ]; then
	user=${RABBITC_TEST_USER:-rabbit}
	if ! id "$user" >/dev/null 2>&1; then
		echo "demo: test user $user missing (run tests/setup.sh as root)" >&2
		exit 1
	fi
	# The user needs to reach the binary and the rootfs: use a copy in a
	# world-readable temporary directory, owned by the user like an
	# unpacked image.
	dir=$(mktemp -d /tmp/rabbitc-demo.XXXXXX)
	chmod 0755 "$dir"
	cp "$BIN" "$dir/rabbitc"
	cp -a "$ROOTFS" "$dir/rootfs"
	chown -R "$user:" "$dir/rootfs"
	home=$(getent passwd "$user" | cut -d: -f6)
	run_as=(setpriv --reuid "$user" --regid "$user" --init-groups
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" USER="$user" LOGNAME="$user")
	echo "demo: running as $user (not as root)"
	BIN=$dir/rabbitc
	ROOTFS_RUN=$dir/rootfs
else
	ROOTFS_RUN=$ROOTFS
fi

if curl -s --max-time 1 "http://127.0.0.1:$PORT/" >/dev/null 2>&1; then
	echo "demo: something already answers on 127.0.0.1:$PORT (set DEMO_PORT to another port)" >&2
	exit 1
fi

echo "\$ rabbitc run --rootfs $ROOTFS --publish $PORT:80 --cmd /bin/server"
# (--pdeathsig after --reuid: a change of credentials clears it. setsid
# does not fork here: a background job of a shell without job control is
# no process group leader.)
pid=starting
"${run_as[@]}" setsid setpriv --pdeathsig TERM "$BIN" run --rootfs "$ROOTFS_RUN" --publish "$PORT:80" --cmd /bin/server </dev/null &
pid=$!
answer=
for _ in $(seq 1 100); do
	if ! kill -0 "$pid" 2>/dev/null; then
		status=0
		wait "$pid" || status=$?
		pid=
		echo "demo: rabbitc exited (status $status) before the server answered" >&2
		exit 1
	fi
	if answer=$(curl -s --max-time 1 "http://127.0.0.1:$PORT/"); then
		break
	fi
	sleep 0.1
done
echo "\$ curl 127.0.0.1:$PORT"
echo "$answer"
if [ "$answer" != "Hello from rabbitc container" ]; then
	echo "demo: unexpected answer from the container" >&2
	exit 1
fi

if [ "$(id -u)" = 0 ]; then
	home=$(getent passwd "$user" | cut -d: -f6)
	cat <<EOF

Try it yourself as an ordinary user: $user has ranges in /etc/subuid and
/etc/subgid (tests/setup.sh made them). As root, from this directory:
  make install                   # rabbitc in /usr/local/bin, man pages (man rabbitc-run), completion
  cp -a $ROOTFS $home/demo-rootfs && chown -R $user: $home/demo-rootfs
Then as $user (su - $user), once the demo is stopped:
  rabbitc --rootfs=demo-rootfs   # the seed's shell: try ps
  rabbitc run --rootfs demo-rootfs --publish 8080:80 --cmd /bin/server
  rabbitc run --rootfs demo-rootfs -- sh -c 'echo hi; exit 7'; echo \$?

EOF
else
	cat <<EOF

Try it yourself, from this directory, once the demo is stopped:
  bin/rabbitc --rootfs=$ROOTFS   # the seed's shell: try ps
  bin/rabbitc run --rootfs $ROOTFS --publish 8080:80 --cmd /bin/server
  bin/rabbitc run --rootfs $ROOTFS -- sh -c 'echo hi; exit 7'; echo \$?
(make install, as root, puts rabbitc in /usr/local/bin with man pages and completion.)

EOF
fi
echo "demo: serving: $READY"
# wait returns when a trapped signal arrives (its trap then exits, and
# stop runs) or when rabbitc ends by itself.
status=0
wait "$pid" || status=$?
pid=
echo "demo: rabbitc exited by itself (status $status)" >&2
exit 1
