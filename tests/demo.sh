#!/usr/bin/env bash
# tests/demo.sh: the seed's demo, rootless. Builds a demo rootfs (busybox-static
# and the seed's HTTP server at /bin/server), runs
#
#   rabbitc run --rootfs build/demo-rootfs --publish 8080:80 --cmd /bin/server
#
# as the invoking user (as root: as the test user, $RABBITC_TEST_USER or
# "rabbit"), fetches http://127.0.0.1:8080/ and stops the container again.
# Run by `make demo` after `make build`. DEMO_PORT changes the host port.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

PORT=${DEMO_PORT:-8080}
BIN=bin/rabbitc
ROOTFS=build/demo-rootfs

[ -x "$BIN" ] || make build

# The demo rootfs.
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

# Who runs it: the invoking user, or the test user when we are root.
run_as=()
if [ "$(id -u)" = 0 ]; then
	user=${RABBITC_TEST_USER:-rabbit}
	if ! id "$user" >/dev/null 2>&1; then
		echo "demo: test user $user missing (run tests/setup.sh)" >&2
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
	trap 'rm -rf "$dir"' EXIT
	BIN=$dir/rabbitc
	ROOTFS=$dir/rootfs
	home=$(getent passwd "$user" | cut -d: -f6)
	run_as=(setpriv --reuid "$user" --regid "$user" --init-groups
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$home" USER="$user" LOGNAME="$user")
	echo "demo: running as $user (not as root)"
fi

if curl -s --max-time 1 "http://127.0.0.1:$PORT/" >/dev/null 2>&1; then
	echo "demo: something already answers on 127.0.0.1:$PORT (set DEMO_PORT to another port)" >&2
	exit 1
fi

echo "\$ rabbitc run --rootfs $ROOTFS --publish $PORT:80 --cmd /bin/server &"
"${run_as[@]}" "$BIN" run --rootfs "$ROOTFS" --publish "$PORT:80" --cmd /bin/server </dev/null &
pid=$!
answer=
for _ in $(seq 1 100); do
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid" || true
		echo "demo: rabbitc exited before the server answered" >&2
		exit 1
	fi
	if answer=$(curl -s --max-time 1 "http://127.0.0.1:$PORT/"); then
		break
	fi
	sleep 0.1
done
echo "\$ curl 127.0.0.1:$PORT"
echo "$answer"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
echo "demo: stopped the container (rabbitc exit status $status)"
if [ "$answer" != "Hello from rabbitc container" ]; then
	echo "demo: unexpected answer from the container" >&2
	exit 1
fi
cat <<EOF

Try it yourself (as an ordinary user):
  bin/rabbitc --rootfs=build/demo-rootfs                                  # the seed's shell: try ps
  bin/rabbitc run --rootfs build/demo-rootfs --publish 8080:80 --cmd /bin/server
  bin/rabbitc run --rootfs build/demo-rootfs -- sh -c 'echo hi; exit 7'; echo \$?
EOF
