package tests

// Issue 16: network acceleration. The payload's outbound TCP connects are
// switched to sockets of the host's network namespace (package netaccel,
// wired by cmd/rabbitc/netaccel.go). Traffic goes only to servers the tests
// run on the host's 127.0.0.1, reached from the container at 10.0.2.2 with
// --allow-host-loopback.
//
// Why CAP_NET_ADMIN: every switched socket carries a socket filter (the
// "pin", netaccel/doc.go), and a security module may refuse
// SO_ATTACH_FILTER to an unprivileged user; the VM these tests were written
// on does (EPERM, allowed with CAP_NET_ADMIN). rabbitc then runs without
// acceleration (netaccel.Supported). So the tests that must see a switch run
// rabbitc as the test user with an ambient CAP_NET_ADMIN (opts.netAdmin),
// and the others check the fallback. RABBITC_TEST_NET_ADMIN=1 gives every
// rabbitc of the suite the capability, which shows, on such a host, the
// suite as it runs on a host that allows socket filters to everyone: with
// acceleration on wherever the network is slirp4netns.
//
// The proof of a switch is the probe's `connect`, a blocking connect(2)
// that prints the socket's local address: a switched socket is the host's,
// so it shows 127.0.0.1:PORT, the very address the host's server sees the
// client at; through slirp4netns it shows 10.0.2.100.

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// peerServer listens on the host's 127.0.0.1 and sends each client one
// line: the address it sees the client at.
type peerServer struct {
	port int
	mu   sync.Mutex
	n    int // connections accepted
}

func newPeerServer(t *testing.T) *peerServer {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &peerServer{port: l.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.n++
			s.mu.Unlock()
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return s
}

func (s *peerServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// gateway is the server as the container reaches it with
// --allow-host-loopback.
func (s *peerServer) gateway() string { return fmt.Sprintf("10.0.2.2:%d", s.port) }

// probeConn is what one `probe connect` printed.
type probeConn struct{ connect, local, peer, read string }

// probeConns parses the output of one or more `probe connect` runs.
func probeConns(out string) []probeConn {
	var cs []probeConn
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "connect":
			cs = append(cs, probeConn{connect: v})
		case "local", "peer", "read":
			if len(cs) == 0 {
				continue
			}
			c := &cs[len(cs)-1]
			*map[string]*string{"local": &c.local, "peer": &c.peer, "read": &c.read}[k] = v
		}
	}
	return cs
}

// switched tells whether the connection went through a host socket: the
// container's socket is the one the server saw.
func (c probeConn) switched() bool {
	return c.connect == "ok" && strings.HasPrefix(c.local, "127.0.0.1:") && c.read == c.local
}

// viaSlirp tells whether it went through slirp4netns: the container's
// socket has the container's address, and the server saw slirp4netns's.
func (c probeConn) viaSlirp() bool {
	return c.connect == "ok" && strings.HasPrefix(c.local, "10.0.2.100:") && strings.HasPrefix(c.read, "127.0.0.1:")
}

// oneConn is the single `probe connect` of r.
func oneConn(t *testing.T, r result) probeConn {
	t.Helper()
	cs := probeConns(r.stdout)
	if len(cs) != 1 {
		t.Fatalf("want the output of one probe connect:\n%s", r)
	}
	return cs[0]
}

var accelProbe struct {
	once sync.Once
	skip string
	err  string
}

// requireAccel skips the test when the kernel lacks what acceleration
// needs (seccomp user notification and SECCOMP_IOCTL_NOTIF_ADDFD, Linux
// 5.9), and fails it when rabbitc, given CAP_NET_ADMIN, still runs without.
func requireAccel(t *testing.T) {
	t.Helper()
	requireNet(t)
	accelProbe.once.Do(func() {
		r := runOpt(t, opts{netAdmin: true}, rc("--debug", "--", "true")...)
		_, why, off := strings.Cut(r.stderr, "network acceleration off: ")
		why, _, _ = strings.Cut(why, "\n")
		switch {
		case r.code != 0:
			accelProbe.err = r.String()
		case off && (strings.Contains(why, "seccomp user notification") || strings.Contains(why, "needs Linux")):
			accelProbe.skip = "the kernel lacks seccomp user notification with ADDFD: " + why
		case off && !env.user.drop:
			accelProbe.skip = "network acceleration is off for this user (" + why + "), and the tests do not run as root to give it CAP_NET_ADMIN"
		case off:
			accelProbe.err = "network acceleration is off with CAP_NET_ADMIN: " + why
		}
	})
	if accelProbe.skip != "" {
		t.Skip(accelProbe.skip)
	}
	if accelProbe.err != "" {
		t.Fatal(accelProbe.err)
	}
}

// A connect to the host's loopback through 10.0.2.2 is switched on both
// start paths, under --init, and in a detached container's monitor: the container's
// socket is the host's, and the server sees the client at its address.
func TestNetAccelSwitched(t *testing.T) {
	requireAccel(t)
	srv := newPeerServer(t)
	o := opts{netAdmin: true}
	args := []string{"--debug", "--allow-host-loopback", "--", "/bin/probe", "connect", srv.gateway()}
	t.Run("direct", func(t *testing.T) {
		r := runOpt(t, o, rc(args)...)
		wantCode(t, r, 0)
		if c := oneConn(t, r); !c.switched() || c.peer != fmt.Sprintf("127.0.0.1:%d", srv.port) {
			t.Errorf("the connect was not switched to a host socket (%+v):\n%s", c, r)
		}
		if !strings.Contains(r.stderr, "network acceleration: 1 connects switched") {
			t.Errorf("--debug does not count the switch at exit:\n%s", r)
		}
	})
	t.Run("init", func(t *testing.T) { // --init's reaper is PID 1, the payload its child
		r := runOpt(t, o, rc("--init", args)...)
		wantCode(t, r, 0)
		if c := oneConn(t, r); !c.switched() {
			t.Errorf("the connect was not switched to a host socket (%+v):\n%s", c, r)
		}
	})
	t.Run("sandbox", func(t *testing.T) {
		r := runOpt(t, o, rc("-p", fmt.Sprintf("127.0.0.1:%d:80", freePort(t, 1)), args)...)
		wantCode(t, r, 0)
		if c := oneConn(t, r); !c.switched() {
			t.Errorf("the connect was not switched to a host socket (%+v):\n%s", c, r)
		}
	})
	t.Run("detached", func(t *testing.T) {
		d := newDetachedEnv(t)
		d.netAdmin = true
		id, r := d.runD(append([]string{"--rootfs", env.rootfs}, args...)...)
		if id == "" {
			t.Fatalf("run -d:\n%s", r)
		}
		logs := d.run("logs", "-f", id)
		if w := d.run("wait", id); w.out() != "0" {
			t.Errorf("wait: %q (logs:\n%s)", w.out(), logs)
		}
		if c := oneConn(t, logs); !c.switched() {
			t.Errorf("the detached container's connect was not switched (%+v):\n%s", c, logs)
		}
		wantCode(t, d.run("rm", id), 0)
	})
}

// The policy keeps the host's loopback closed: without
// --allow-host-loopback 10.0.2.2 stays unreachable, and 127.0.0.1 in the
// container is the container's own loopback, with or without it.
func TestNetAccelHostLoopbackClosed(t *testing.T) {
	requireAccel(t)
	srv := newPeerServer(t)
	o := opts{netAdmin: true}
	script := fmt.Sprintf("/bin/probe connect %s; /bin/probe connect 127.0.0.1:%d", srv.gateway(), srv.port)
	r := runOpt(t, o, rc("--debug", sh(script))...)
	cs := probeConns(r.stdout)
	if len(cs) != 2 || cs[0].connect == "ok" || cs[1].connect != "ECONNREFUSED" || srv.accepted() != 0 {
		t.Errorf("the container reached the host's 127.0.0.1:%d (%d connections; want 10.0.2.2 unreachable and 127.0.0.1 refused):\n%s",
			srv.port, srv.accepted(), r)
	}
	r = runOpt(t, o, rc("--debug", "--allow-host-loopback", sh(script))...)
	cs = probeConns(r.stdout)
	if len(cs) != 2 || !cs[0].switched() || cs[1].connect != "ECONNREFUSED" || srv.accepted() != 1 {
		t.Errorf("with --allow-host-loopback: want 10.0.2.2 switched and 127.0.0.1 the container's own (refused); %d connections:\n%s",
			srv.accepted(), r)
	}
}

// Where acceleration is off, one --debug line says why, and the container
// reaches 10.0.2.2 through slirp4netns as before.
func TestNetAccelFallback(t *testing.T) {
	requireNet(t)
	srv := newPeerServer(t)
	for _, tc := range []struct {
		name     string
		netAdmin bool
		flags    []string
		why      string // "": depends on the host
	}{
		{"net-accel-off", true, []string{"--net-accel=off"}, "--net-accel=off"},
		{"seccomp-unconfined", true, []string{"--security-opt", "seccomp=unconfined"}, "--security-opt seccomp=unconfined"},
		{"no-new-privileges-false", true, []string{"--security-opt", "no-new-privileges=false"}, "--security-opt no-new-privileges=false"},
		{"no-cap-net-admin", false, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOpt(t, opts{netAdmin: tc.netAdmin}, rc("--debug", "--allow-host-loopback", tc.flags, "--", "/bin/probe", "connect", srv.gateway())...)
			wantCode(t, r, 0)
			c := oneConn(t, r)
			lines := strings.Count(r.stderr, "network acceleration off: ")
			switch {
			case tc.why == "" && lines == 0 && c.switched():
				t.Logf("this host lets an unprivileged user attach socket filters: acceleration is on without CAP_NET_ADMIN")
			case tc.why == "" && !strings.Contains(r.stderr, "network acceleration off: attach a socket filter to a host socket") &&
				!strings.Contains(r.stderr, "network acceleration off: seccomp user notification"):
				t.Errorf("want a line naming the refused socket filter (or the kernel), or a switch:\n%s", r)
			case tc.why != "" && !strings.Contains(r.stderr, "network acceleration off: "+tc.why):
				t.Errorf("want the line %q:\n%s", "network acceleration off: "+tc.why, r)
			case lines != 1 || !c.viaSlirp():
				t.Errorf("want one line and the connect through slirp4netns (%+v):\n%s", c, r)
			}
		})
	}
	r := run(t, rc("--net-accel=maybe", "--", "true")...)
	wantOneErrorLine(t, r, 125, `invalid --net-accel "maybe" (use on or off)`)
}

// `rabbitc exec` commands do not carry the filter (seccomp filters belong
// to tasks, and none of the container forks them): they reach 10.0.2.2
// through slirp4netns, beside a payload whose connects are switched.
func TestNetAccelExec(t *testing.T) {
	requireAccel(t)
	srv := newPeerServer(t)
	script := fmt.Sprintf("/bin/probe connect %s; echo ready; exec sleep 60", srv.gateway())
	c := startTargetOpt(t, opts{netAdmin: true}, "net", script, "--allow-host-loopback")
	defer c.stop(t)
	if pc := probeConns(c.p.stdout.String()); len(pc) != 1 || !pc[0].switched() {
		t.Fatalf("the payload's connect was not switched:\n%s", c.p.stdout.String())
	}
	r := c.exec(t, "/bin/probe", "connect", srv.gateway())
	wantCode(t, r, 0)
	if pc := oneConn(t, r); !pc.viaSlirp() {
		t.Errorf("the exec'd command's connect did not go through slirp4netns (%+v):\n%s", pc, r)
	}
}

// A network namespace the payload makes inside the container is not the
// container's: its sockets stay in it (no route out there), while the
// same connect from the container's own namespace is switched.
func TestNetAccelNestedNamespace(t *testing.T) {
	requireAccel(t)
	srv := newPeerServer(t)
	script := fmt.Sprintf("/bin/probe connect %[1]s; unshare -n /bin/probe connect %[1]s", srv.gateway())
	r := runOpt(t, opts{netAdmin: true}, rc("--debug", "--allow-host-loopback", "--cap-add", "SYS_ADMIN", sh(script))...)
	cs := probeConns(r.stdout)
	if len(cs) != 2 || !cs[0].switched() {
		t.Fatalf("want two connects, the first switched:\n%s", r)
	}
	if cs[1].connect != "ENETUNREACH" || srv.accepted() != 1 {
		t.Errorf("the connect from a nested network namespace reached the host (%+v, %d connections):\n%s", cs[1], srv.accepted(), r)
	}
}

// rabbitc killed (SIGKILL) while the payload waits in a switched connect
// that the supervisor waits on: the container dies with it, nothing is
// left. (Its trapped calls would fail from then on, ENOSYS: the probe's
// shell would go on to sleep.)
func TestNetAccelKilledDuringConnect(t *testing.T) {
	requireAccel(t)
	port, _ := fullListener(t) // never freed: the connect waits
	o := opts{netAdmin: true}
	p := start(t, o, rc("--allow-host-loopback", sh(fmt.Sprintf("echo ready; /bin/probe connect 10.0.2.2:%d; sleep 60", port)))...)
	p.waitOutput(t, o, "ready", 10*time.Second)
	pid := findPayload(t, p, "probe")
	deadline := time.Now().Add(10 * time.Second)
	for {
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
		if strings.HasPrefix(string(wchan), "seccomp_do_user_notification") { // .isra.0 and the like
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the payload does not wait on the supervisor (wchan %q):\n%s", wchan, describeTree(p.pid()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.signal(t, syscall.SIGKILL)
	if r := p.wait(t); r.signaled != syscall.SIGKILL { // checks for leftovers
		t.Errorf("rabbitc was not killed by SIGKILL:\n%s", r)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("the payload %d outlived rabbitc", pid)
	}
}
