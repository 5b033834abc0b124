package tests

// Issue 16, item 3: --publish-mode=direct hands the host's listening socket
// of a published TCP port to the container's server (netaccel's handover),
// so that it sees its clients' real addresses. The probe's `accept` server
// sends each client the address it sees it at.

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// askPeer connects to the published port and returns the client's own
// address and the line the server sent back.
func askPeer(t *testing.T, port int) (local, line string) {
	t.Helper()
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the published port: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err = bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read the server's line: %v", err)
	}
	return c.LocalAddr().String(), strings.TrimSpace(line)
}

// startPeerServer runs the probe's server on container port 80, published
// on 127.0.0.1:port, after a delay of one second (early clients).
func startPeerServer(t *testing.T, d *detachedEnv, port, clients int, mode ...string) string {
	t.Helper()
	args := append([]string{"--rootfs", env.rootfs, "--debug", "-p", fmt.Sprintf("127.0.0.1:%d:80", port)}, mode...)
	id, r := d.runD(append(args, "--", "/bin/probe", "accept", "0.0.0.0:80", fmt.Sprint(clients), "1s")...)
	if id == "" {
		t.Fatalf("run -d:\n%s", r)
	}
	return id
}

// In direct mode the server sees the client's own address and port, even a
// client that connected before the server listened; getsockname shows the
// host's port; rm -f frees the port.
func TestPublishDirect(t *testing.T) {
	requireAccel(t)
	d := newDetachedEnv(t)
	d.netAdmin = true
	port := freePort(t, 1)
	id := startPeerServer(t, d, port, 2, "--publish-mode=direct")
	for i, what := range []string{"an early client (before the server listens)", "a later client"} {
		local, line := askPeer(t, port)
		if line != "peer: "+local {
			t.Errorf("%s at %s: the server saw %q", what, local, line)
		}
		if i == 0 {
			time.Sleep(1500 * time.Millisecond) // the server listens by now
		}
	}
	logs := d.run("logs", "-f", id)
	if w := d.run("wait", id); w.out() != "0" {
		t.Errorf("wait: %q (logs:\n%s)", w.out(), logs)
	}
	if !strings.Contains(logs.stdout, fmt.Sprintf("local: 127.0.0.1:%d", port)) {
		t.Errorf("getsockname does not show the host's address and port:\n%s", logs)
	}
	wantCode(t, d.run("rm", "-f", id), 0)
	if err := (hostPort{ip: "127.0.0.1", port: port, proto: "tcp"}).bindable(); err != nil {
		out, _ := exec.Command("ss", "-tanpe", fmt.Sprintf("sport = :%d", port)).CombinedOutput()
		t.Errorf("port still bound after rm -f: %v\n%s", err, out)
	}
}

// The default mode still forwards: the server sees the connection come
// from the container's own address, never the client's.
func TestPublishDefaultForwards(t *testing.T) {
	requireNet(t)
	d := newDetachedEnv(t)
	d.netAdmin = true
	port := freePort(t, 1)
	id := startPeerServer(t, d, port, 1)
	var line string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, line = askPeerOnce(port); line != "" {
			break
		}
	}
	if !strings.HasPrefix(line, "peer: 10.0.2.100:") {
		t.Errorf("through the forwarder the server saw %q, want the container's address 10.0.2.100", line)
	}
	wantCode(t, d.run("rm", "-f", id), 0)
}

// askPeerOnce is askPeer that tells a failure with "".
func askPeerOnce(port int) (local, line string) {
	c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		return "", ""
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ = bufio.NewReader(c).ReadString('\n')
	return c.LocalAddr().String(), strings.TrimSpace(line)
}

// Where acceleration is off, --publish-mode=direct is refused with one
// line and exit 125, and leaves the port free.
func TestPublishDirectNeedsAccel(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	r := runOpt(t, opts{netAdmin: true}, rc("--net-accel=off", "--publish-mode=direct", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--", "true")...)
	wantCode(t, r, 125)
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], "--publish-mode=direct needs network acceleration, which is off: --net-accel=off") {
		t.Errorf("want one line naming the problem and the fix:\n%s", r)
	}
	if err := (hostPort{ip: "127.0.0.1", port: port, proto: "tcp"}).bindable(); err != nil {
		t.Errorf("port still bound after the refusal: %v", err)
	}
}

// kill -9 of the monitor ends the container, and the port is free again.
func TestPublishDirectKill9(t *testing.T) {
	requireAccel(t)
	d := newDetachedEnv(t)
	d.netAdmin = true
	port := freePort(t, 1)
	id := startPeerServer(t, d, port, 0, "--publish-mode=direct")
	if local, line := askPeer(t, port); line != "peer: "+local {
		t.Errorf("the server saw %q for %s", line, local)
	}
	st := d.state(id)
	if err := syscall.Kill(st.ParentPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !d.waitMonitorGone(st.ParentPid, 10*time.Second) {
		t.Fatal("the monitor did not die")
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = (hostPort{ip: "127.0.0.1", port: port, proto: "tcp"}).bindable(); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("port still bound after kill -9 of the monitor: %v", err)
	}
	d.run("rm", "-f", id)
}

// A bind the handover does not take (to the container's 127.0.0.1, with
// SO_REUSEPORT, a second bind of the port) runs in the container, and
// --debug says so; a bind to the wildcard is counted as handed over.
func TestPublishDirectDebug(t *testing.T) {
	requireAccel(t)
	for _, tc := range []struct{ servers, want string }{
		{"/bin/probe accept 127.0.0.1:80 1 0s &", "bind to 127.0.0.1:80 not handed over: not the wildcard or the container's address"},
		{"/bin/probe accept 0.0.0.0:80 1 0s reuseport &", "not handed over: descriptor 3: SO_REUSEPORT"},
		{"/bin/probe accept 0.0.0.0:80 1 0s & /bin/probe accept 0.0.0.0:80 1 0.3s &", "bind to 0.0.0.0:80 not handed over: the host socket was handed over already"},
		{"/bin/probe accept 0.0.0.0:80 1 0s &", "1 published sockets handed over"},
	} {
		port := freePort(t, 1)
		script := tc.servers + " sleep 1; kill $(jobs -p)"
		r := runOpt(t, opts{netAdmin: true}, rc("--debug", "--publish-mode=direct", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), sh(script))...)
		if !strings.Contains(r.stdout, "listen: ok") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: want it listening and --debug saying %q:\n%s", tc.servers, tc.want, r)
		}
	}
}

// A Go server with net.Listen's defaults (a dual-stack IPv6 socket, MPTCP
// where the kernel has it) is handed the host's socket, and handed it
// again each time it closes its listener and listens anew (as iperf3 -s
// does after every test): every client is seen at its own address, also
// one that arrived between two listeners. Both ways the supervisor runs:
// in the foreground rabbitc and in run -d's monitor.
func TestPublishDirectGoServerRelistens(t *testing.T) {
	requireAccel(t)
	const rounds = 3
	ask := func(t *testing.T, port, n int) {
		for i := 0; i < n; i++ {
			if local, line := askPeer(t, port); line != "peer: "+local {
				t.Errorf("round %d: the server saw %q for the client at %s", i, line, local)
			}
		}
	}
	served := func(t *testing.T, out string, port int) {
		if n := strings.Count(out, fmt.Sprintf("local: 127.0.0.1:%d", port)); n != rounds {
			t.Errorf("%d of %d listeners show the host's port:\n%s", n, rounds, out)
		}
	}
	payload := []string{"--", "/bin/probe", "relisten", ":80", fmt.Sprint(rounds)}
	t.Run("foreground", func(t *testing.T) {
		port := freePort(t, 1)
		p := start(t, opts{netAdmin: true}, rc("--debug", "--publish-mode=direct", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), payload)...)
		// The first client retries until rabbitc has bound the port (a
		// refused connect); the server answers it as its first round.
		local, line := "", ""
		for deadline := time.Now().Add(10 * time.Second); local == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			local, line = askPeerOnce(port)
		}
		if line != "peer: "+local {
			t.Errorf("first client at %q: the server saw %q", local, line)
		}
		ask(t, port, rounds-1)
		r := p.wait(t)
		wantCode(t, r, 0)
		served(t, r.stdout, port)
	})
	t.Run("detached", func(t *testing.T) {
		d := newDetachedEnv(t)
		d.netAdmin = true
		port := freePort(t, 1)
		id, r := d.runD(append([]string{"--rootfs", env.rootfs, "--debug", "--publish-mode=direct", "-p", fmt.Sprintf("127.0.0.1:%d:80", port)}, payload...)...)
		if id == "" {
			t.Fatalf("run -d:\n%s", r)
		}
		ask(t, port, rounds)
		if w := d.run("wait", id); w.out() != "0" {
			t.Errorf("wait: %q (logs:\n%s)", w.out(), d.run("logs", id))
		}
		served(t, d.run("logs", id).stdout, port)
		wantCode(t, d.run("rm", "-f", id), 0)
	})
}
