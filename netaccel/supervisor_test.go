package netaccel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if task := os.Getenv(childEnv); task != "" {
		os.Exit(childMain(task))
	}
	os.Exit(m.Run())
}

// hostServers are the test's servers on the host's 127.0.0.1.
type hostServers struct {
	host, other *countingServer
	fullPort    int
	closedPort  int
}

func newHostServers(t testing.TB) *hostServers {
	t.Helper()
	s := &hostServers{host: newCountingServer(t, "pong"), other: newCountingServer(t, "")}
	s.fullPort = fullListener(t)
	s.closedPort = closedPort(t)
	return s
}

// fullListener listens with a backlog of 0 and fills its queue with one
// connection it never accepts: further SYNs are dropped, so a connect to
// it neither succeeds nor fails.
func fullListener(t testing.TB) int {
	t.Helper()
	fd, sa := loopbackSocket(t)
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c) })
	if err := unix.Connect(c, sa); err != nil {
		t.Fatalf("fill the listener's queue: %v", err)
	}
	return sa.Port
}

// closedPort is a port of 127.0.0.1 nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	fd, sa := loopbackSocket(t)
	unix.Close(fd)
	return sa.Port
}

// loopbackSocket is a TCP socket bound to 127.0.0.1 on a port the kernel
// chose, and that address; the caller closes it.
func loopbackSocket(t testing.TB) (int, *unix.SockaddrInet4) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd, sa.(*unix.SockaddrInet4)
}

func slirpPolicy() Policy {
	return Policy{
		AllowHostLoopback: true,
		Subnet:            netip.MustParsePrefix("10.0.2.0/24"),
		HostLoopback:      netip.MustParseAddr("10.0.2.2"),
	}
}

// runChild plays scenario in a child with the filter, under a supervisor
// with cfg (its namespace filled in), and returns what the child saw and
// what the supervisor counted.
func runChild(t *testing.T, scenario string, srv *hostServers, cfg Config) (results, Stats) {
	t.Helper()
	return runChildTask(t, childTask{Scenario: scenario}, srv, cfg)
}

func runChildTask(t testing.TB, ct childTask, srv *hostServers, cfg Config) (results, Stats) {
	t.Helper()
	if err := supportedKernel(); err != nil {
		t.Skipf("kernel: %v", err)
	}
	scenario := ct.Scenario
	ct.HostPort, ct.OtherPort, ct.FullPort, ct.ClosedPort = srv.host.port(), srv.other.port(), srv.fullPort, srv.closedPort
	task, _ := json.Marshal(ct)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent, child := os.NewFile(uintptr(sp[0]), "sync"), os.NewFile(uintptr(sp[1]), "sync-child")
	defer parent.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(task))
	cmd.ExtraFiles = []*os.File{child}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   unix.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) {
			t.Skipf("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0 or user.max_user_namespaces=0): %v", err)
		}
		t.Fatal(err)
	}
	child.Close()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	fail := func(format string, args ...any) {
		t.Helper()
		cmd.Process.Kill()
		<-waited
		t.Fatalf("%s\nchild stderr: %s", fmt.Sprintf(format, args...), stderr.String())
	}

	parent.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	raw, _ := parent.SyscallConn()
	var lfd int
	var rerr error
	raw.Read(func(fd uintptr) bool {
		_, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		if err != nil {
			rerr = err
			return true
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			rerr = fmt.Errorf("no listener in the message: %v", err)
			return true
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			rerr = fmt.Errorf("no listener in the message: %v", err)
			return true
		}
		lfd = fds[0]
		return true
	})
	if rerr != nil {
		fail("receive the listener: %v", rerr)
	}
	cfg.NetnsDev, cfg.NetnsIno, err = NetnsOf(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		unix.Close(lfd)
		fail("%v", err)
	}
	if cfg.Trace == nil {
		cfg.Trace = func(line string) { t.Log(line) }
	}
	sup, err := New(lfd, cfg)
	if err != nil {
		unix.Close(lfd)
		fail("%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- sup.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	}()
	if _, err := parent.Write([]byte{'G'}); err != nil {
		fail("start the scenario: %v", err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("child: %v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		fail("scenario %s still running after 30s", scenario)
	}
	var res results
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("child output %q: %v\nstderr: %s", stdout.String(), err, stderr.String())
	}
	t.Logf("%s: %v", scenario, res)
	return res, sup.Stats()
}

func defaultConfig() Config { return Config{Policy: slirpPolicy()} }

// requirePin skips a test that needs sockets switched where the host
// refuses the pin (a security module that wants CAP_NET_ADMIN for socket
// filters): the supervisor then switches nothing, by design.
func requirePin(t *testing.T) {
	t.Helper()
	if err := probePin(); err != nil {
		t.Skipf("no switch on this host: %v", err)
	}
}

// expect checks that res has want's values.
func expect(t *testing.T, res results, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q", k, res[k], v)
		}
	}
}

func atoi(t *testing.T, res results, k string) int {
	t.Helper()
	if res[k] == "" {
		return 0
	}
	f, err := strconv.ParseFloat(res[k], 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", k, res[k], err)
	}
	return int(f)
}

func TestSwitchBlocking(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "blocking", srv, defaultConfig())
	peer := "127.0.0.1:" + strconv.Itoa(srv.host.port())
	expect(t, res, map[string]string{
		"cloexec.connect": "ok", "cloexec.reply": "pong", "cloexec.peer": peer, "cloexec.cloexec": "true", "cloexec.nonblock": "false",
		"plain.connect": "ok", "plain.reply": "pong", "plain.peer": peer, "plain.cloexec": "false", "plain.nonblock": "false",
	})
	if st.Switched != 2 || srv.host.accepted() != 2 {
		t.Errorf("switched %d, accepted %d; want 2 and 2", st.Switched, srv.host.accepted())
	}
}

func TestSwitchNonblocking(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "nonblocking", srv, defaultConfig())
	expect(t, res, map[string]string{
		"connect": "EINPROGRESS", "poll": "ready", "so_error": "ok", "connect2": "ok", "connect3": "EISCONN",
		"nonblock": "true", "reply": "pong",
	})
	if st.Switched != 1 {
		t.Errorf("switched %d, want 1", st.Switched)
	}
}

// Loopback, the container's subnet and their mapped forms stay in the
// container (where nothing answers).
func TestPolicyKeepsContainerDestinations(t *testing.T) {
	srv := newHostServers(t)
	res, st := runChild(t, "inner", srv, defaultConfig())
	expect(t, res, map[string]string{"loopback": "ECONNREFUSED", "subnet": "ENETUNREACH", "mapped-loopback": "ECONNREFUSED"})
	if st.Switched != 0 || srv.host.accepted() != 0 {
		t.Errorf("switched %d, host server accepted %d; want none", st.Switched, srv.host.accepted())
	}
}

// Without --allow-host-loopback, 10.0.2.2 stays.
func TestHostLoopbackClosed(t *testing.T) {
	srv := newHostServers(t)
	cfg := defaultConfig()
	cfg.Policy.AllowHostLoopback = false
	res, st := runChild(t, "blocking", srv, cfg)
	expect(t, res, map[string]string{"cloexec.connect": "ENETUNREACH", "plain.connect": "ENETUNREACH"})
	if st.Switched != 0 || srv.host.accepted() != 0 {
		t.Errorf("switched %d, host server accepted %d; want none", st.Switched, srv.host.accepted())
	}
}

// The address is read once: a second thread flipping it to the host's
// loopback never gets a connect there.
func TestAddressRewrite(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "rewrite", srv, defaultConfig())
	ok := atoi(t, res, "count.ok")
	kept := atoi(t, res, "count.ECONNREFUSED") + atoi(t, res, "count.ENETUNREACH")
	time.Sleep(100 * time.Millisecond)
	if n := srv.other.accepted(); n != 0 {
		t.Fatalf("the host's 127.0.0.1:%d was reached %d times", srv.other.port(), n)
	}
	if ok == 0 || kept == 0 || st.Switched == 0 {
		t.Errorf("the race was not exercised: %d switched, %d kept in the container", ok, kept)
	}
	for k := range res {
		if k != "count.ok" && k != "count.ECONNREFUSED" && k != "count.ENETUNREACH" {
			t.Errorf("unexpected result %s = %s", k, res[k])
		}
	}
}

// A switched socket can be neither disconnected, nor listen, nor bound;
// disconnected behind the filter's back, it still reaches nobody but its
// peer.
func TestSwitchedSocketRefuses(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, _ := runChild(t, "unspec", srv, defaultConfig())
	expect(t, res, map[string]string{
		"connect": "ok", "unspec16": "EOPNOTSUPP", "listen": "EOPNOTSUPP", "bind16": "EOPNOTSUPP", "other": "EOPNOTSUPP",
		"unspec2": "ok", "listen-after": "EOPNOTSUPP", "bind16-after": "EOPNOTSUPP", "bind20-after": "EOPNOTSUPP",
		"other-after": "EOPNOTSUPP", "loopback20": "EINPROGRESS",
	})
	time.Sleep(100 * time.Millisecond)
	if n := srv.other.accepted(); n != 0 {
		t.Errorf("the host's 127.0.0.1:%d was reached %d times", srv.other.port(), n)
	}
}

func TestEpollRegisteredNotSwitched(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "epoll", srv, defaultConfig())
	expect(t, res, map[string]string{
		"registered": "ENETUNREACH", "registered-dup": "ENETUNREACH", "duplicated": "ENETUNREACH",
		"control": "ok", "control.reply": "pong",
	})
	if st.Switched != 1 {
		t.Errorf("switched %d, want 1 (the control)", st.Switched)
	}
}

func TestNestedNetnsNotSwitched(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "nested", srv, defaultConfig())
	expect(t, res, map[string]string{"nested": "ENETUNREACH", "own-from-nested-thread": "ok", "own.reply": "pong"})
	if st.Switched != 1 {
		t.Errorf("switched %d, want 1", st.Switched)
	}
}

// A flood of connects from many threads through 2 workers and 2 waits,
// both waits held by connects that never complete: every call returns, in
// bounded time; those that found the supervisor busy ran in the container
// (no route there).
func TestFlood(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	cfg := defaultConfig()
	cfg.Workers, cfg.Waits = 2, 2
	start := time.Now()
	res, st := runChild(t, "flood", srv, cfg)
	total := 0
	for k := range res {
		if !strings.HasPrefix(k, "count.") {
			continue
		}
		switch k {
		case "count.ok", "count.EINPROGRESS:ready:ok", "count.ENETUNREACH":
		default:
			t.Errorf("unexpected result %s = %s", k, res[k])
		}
		total += atoi(t, res, k)
	}
	if total != 32*25 {
		t.Errorf("%d connects returned, want %d", total, 32*25)
	}
	switched := atoi(t, res, "count.ok") + atoi(t, res, "count.EINPROGRESS:ready:ok")
	if switched == 0 || int(st.Switched) != switched+stuckConnects {
		t.Errorf("%d connects switched (and %d stuck), supervisor counted %d", switched, stuckConnects, st.Switched)
	}
	if st.Overloaded == 0 {
		t.Errorf("the supervisor was never overloaded: %+v", st)
	}
	t.Logf("%.1fs, %+v", time.Since(start).Seconds(), st)
}

func TestSndtimeo(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "sndtimeo", srv, defaultConfig())
	expect(t, res, map[string]string{"connect": "EINPROGRESS", "state": strconv.Itoa(tcpSynSent)})
	if ms := atoi(t, res, "ms"); ms < 280 || ms > 2000 {
		t.Errorf("connect returned after %d ms, want about 300", ms)
	}
	if st.Switched != 1 {
		t.Errorf("switched %d, want 1", st.Switched)
	}
}

// Signals every millisecond (Go's SIGURG handler has SA_RESTART) during a
// blocking connect with SO_SNDTIMEO of 500 ms: it still returns about on
// time. Natively it returns EINTR at the first signal; here each signal
// restarts the call, which keeps the deadline and answers EALREADY.
func TestSignalsDuringBlockingConnect(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, _ := runChild(t, "signals", srv, defaultConfig())
	switch res["connect"] {
	case "EINPROGRESS", "EALREADY", "EINTR":
	default:
		t.Errorf("connect = %s", res["connect"])
	}
	if ms := atoi(t, res, "ms"); ms > 1500 {
		t.Errorf("connect returned after %d ms, want about 500", ms)
	}
	if n := atoi(t, res, "signals"); n < 20 {
		t.Errorf("only %d signals sent", n)
	}
}

// A handler without SA_RESTART: EINTR, and the descriptor is the host
// socket, connecting on (installed before the wait).
func TestEINTRLeavesConnectingSocket(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, _ := runChild(t, "eintr", srv, defaultConfig())
	expect(t, res, map[string]string{"connect": "EINTR", "state": strconv.Itoa(tcpSynSent), "connect2": "EALREADY"})
	if ms := atoi(t, res, "ms"); ms < 250 || ms > 3000 {
		t.Errorf("connect returned after %d ms, want about 300", ms)
	}
}

func TestUnixSocketsContinue(t *testing.T) {
	srv := newHostServers(t)
	res, st := runChild(t, "unix", srv, defaultConfig())
	expect(t, res, map[string]string{"bind": "ok", "listen": "ok", "connect16": "ok", "read": "hi", "bind110": "ok", "connect110": "ok"})
	if st.Continued != 5 || st.Switched != 0 {
		t.Errorf("%+v, want 5 continued (2 binds, 2 listens, the connect of length 16)", st)
	}
}

func TestFastOpenAndIOUringRefused(t *testing.T) {
	srv := newHostServers(t)
	res, _ := runChild(t, "fastopen", srv, defaultConfig())
	expect(t, res, map[string]string{"sendto": "EOPNOTSUPP", "setsockopt": "EOPNOTSUPP", "io_uring_setup": "EPERM"})
	if n := srv.host.accepted(); n != 0 {
		t.Errorf("host server accepted %d", n)
	}
}

func TestRefusedThenRetry(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, _ := runChild(t, "refused", srv, defaultConfig())
	expect(t, res, map[string]string{
		"blocking": "ECONNREFUSED", "blocking-again": "ECONNREFUSED", "blocking-elsewhere": "EOPNOTSUPP",
		"nonblocking": "EINPROGRESS", "nonblocking.poll": "ready", "nonblocking.so_error": "ECONNREFUSED",
	})
}

func TestOptionsCopied(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, _ := runChild(t, "options", srv, defaultConfig())
	for _, k := range []string{"nodelay", "keepalive", "keepidle", "rcvbuf", "tos"} {
		before, after, _ := strings.Cut(res[k], "->")
		if before == "" || before != after {
			t.Errorf("%s: %s", k, res[k])
		}
	}
	expect(t, res, map[string]string{"connect": "ok", "linger": "1/5", "rcvtimeo": "7",
		"peer": "127.0.0.1:" + strconv.Itoa(srv.host.port()), "keepidle": "77->77", "tos": "16->16"})
}

func TestIPv6Sockets(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	res, st := runChild(t, "ipv6", srv, defaultConfig())
	expect(t, res, map[string]string{"mapped": "ok", "mapped.reply": "pong",
		"mapped.peer": "[::ffff:127.0.0.1]:" + strconv.Itoa(srv.host.port()), "v6only": "ENETUNREACH"})
	if res["family-mismatch"] == "ok" {
		t.Error("an AF_INET6 socket connected with an AF_INET address")
	}
	if st.Switched != 1 {
		t.Errorf("switched %d, want 1", st.Switched)
	}
}

// build386 builds testdata/compat386 for i386 with the toolchain that
// built this test.
func build386(t *testing.T) string {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("i386 programs run on amd64 only")
	}
	if _, err := os.Stat("/proc/sys/abi"); err != nil {
		t.Skipf("no compat ABI: %v", err)
	}
	out := filepath.Join(t.TempDir(), "compat386")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", out, "./testdata/compat386")
	cmd.Env = append(os.Environ(), "GOARCH=386", "CGO_ENABLED=0")
	if os.Getenv("GOCACHE") == "" {
		if dir, err := os.UserCacheDir(); err != nil || unix.Access(dir, unix.W_OK) != nil {
			cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(os.TempDir(), "netaccel-gocache-"+strconv.Itoa(os.Getuid())))
		}
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the i386 helper: %v\n%s", err, b)
	}
	if err := exec.Command(out).Run(); errors.Is(err, unix.ENOEXEC) {
		t.Skipf("the kernel runs no i386 programs (IA32 emulation off): %v", err)
	} else if err != nil {
		t.Fatalf("run the i386 helper: %v", err)
	}
	return out
}

func TestCompatCallsOnSwitchedSocket(t *testing.T) {
	requirePin(t)
	helper := build386(t)
	srv := newHostServers(t)
	res, st := runChildTask(t, childTask{Scenario: "compat", Helper: helper}, srv, defaultConfig())
	expect(t, res, map[string]string{
		"connect":                   "ok",
		"socketcall.connect-unspec": "EOPNOTSUPP", "socketcall.connect-alias": "EOPNOTSUPP",
		"socketcall.listen": "EOPNOTSUPP", "socketcall.bind": "EOPNOTSUPP",
		"direct.connect-unspec": "EOPNOTSUPP", "direct.listen": "EOPNOTSUPP", "direct.bind": "EOPNOTSUPP",
		"direct.sendto-fastopen": "EOPNOTSUPP",
		"own.connect-alias":      "ENETUNREACH", "own.socketcall.connect-alias": "ENETUNREACH",
		"after.reply": "pong",
	})
	if st.Switched != 1 {
		t.Errorf("switched %d, want 1", st.Switched)
	}
}
