package portfwd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests of clients that misbehave: peers that vanish (keepalive), idle
// clients that take every descriptor, a client that never reads.

// sockets returns a descriptor of each of this process's connected TCP
// sockets for which match reports true, given their local and peer
// addresses. (The child closes its own descriptor of a socket it dialed
// just after sending it: a socket counts once, whatever its descriptors.)
func sockets(t *testing.T, match func(local, peer netip.AddrPort) bool) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	seen := map[string]bool{}
	for _, e := range ents {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if seen[link] {
			continue
		}
		seen[link] = true
		fd, _ := strconv.Atoi(e.Name())
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		ls, err1 := unix.Getsockname(fd)
		ps, err2 := unix.Getpeername(fd)
		if err1 != nil || err2 != nil {
			continue // not a socket, or not connected (a listener)
		}
		local, ok1 := addrPortOf(ls)
		peer, ok2 := addrPortOf(ps)
		if ok1 && ok2 && match(local, peer) {
			fds = append(fds, fd)
		}
	}
	return fds
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// TestKeepaliveBothHops checks TCP keepalive and its timers on the
// forwarder's two sockets of a connection: the client's, accepted (it
// inherits them from the listener), and the one the child dialed.
func TestKeepaliveBothHops(t *testing.T) {
	backend := echoServer(t)
	f := startFwd(t, "tcp", "127.0.0.1", backend)
	c, err := net.Dial("tcp", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // forwarded both ways
		t.Fatal(err)
	}
	client := sockets(t, func(local, peer netip.AddrPort) bool {
		return local.Port() == uint16(f.spec.HostPort) && peer == addrPort(c.LocalAddr())
	})
	ctr := sockets(t, func(local, peer netip.AddrPort) bool { return peer.Port() == uint16(backend) })
	if len(client) != 1 || len(ctr) != 1 {
		t.Fatalf("found %d client and %d container sockets of the forwarder, want one each", len(client), len(ctr))
	}
	for _, hop := range []struct {
		name string
		fd   int
	}{{"client", client[0]}, {"container", ctr[0]}} {
		for _, o := range []struct {
			name       string
			level, opt int
			want       int
		}{
			{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepIdle},
			{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepInterval},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepCount},
		} {
			got, err := unix.GetsockoptInt(hop.fd, o.level, o.opt)
			if err != nil || got != o.want {
				t.Errorf("%s socket: %s = %d (%v), want %d", hop.name, o.name, got, err, o.want)
			}
		}
	}
}

// fillDescriptors opens /dev/null until the process has no descriptor left
// and returns a function that closes them again; spare leaves that many
// free.
func fillDescriptors(t *testing.T, spare int) (release func()) {
	t.Helper()
	var filler []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		filler = append(filler, fd)
	}
	for range spare {
		unix.Close(filler[len(filler)-1])
		filler = filler[:len(filler)-1]
	}
	return func() {
		for _, fd := range filler {
			unix.Close(fd)
		}
		filler = nil
	}
}

// aloneEnv names the test that the test binary runs alone (see alone).
const aloneEnv = "PORTFWD_TEST_ALONE"

// alone runs the calling test in a process of its own, where no descriptor
// of another test is closed (by a late goroutine, by a finalizer) while it
// takes every one. It reports true in that process, where the test goes
// on, and false in the calling one, where the test is over.
func alone(t *testing.T) bool {
	t.Helper()
	if os.Getenv(aloneEnv) == t.Name() {
		return true
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), aloneEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s alone: %v\n%s", t.Name(), err, out)
	}
	t.Logf("%s", out)
	return false
}

// lowerFDLimit sets the soft RLIMIT_NOFILE to n until the test ends.
func lowerFDLimit(t *testing.T, n int) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) })
}

// TestCopyWithoutPipe: a connection established before the process ran out
// of descriptors goes on moving bytes with none left for a pipe.
func TestCopyWithoutPipe(t *testing.T) {
	if !alone(t) {
		return
	}
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t))
	c, err := net.Dial("tcp", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := randomBytes(t, 4<<20)
	echo := func() error { return echoOn(c, data) }
	if err := echo(); err != nil {
		t.Fatal(err)
	}
	// Idle, the loop closes its pooled pipes: none is left to take.
	waitFor(t, "the pooled pipes to close", func() bool { return f.l.Stats().Pipes == 0 })
	lowerFDLimit(t, openFDs(t)+16)
	release := fillDescriptors(t, 0)
	defer release()
	if fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0); !errors.Is(err, unix.EMFILE) {
		unix.Close(fd)
		t.Fatalf("a descriptor is left: %v", err)
	}
	if err := echo(); err != nil {
		t.Fatalf("with no descriptor left: %v", err)
	}
	if st := f.l.Stats(); st.Pipes != 0 || st.Resets != 0 {
		t.Errorf("stats %+v: want no pipe made and no reset", st)
	}
	release()
}

// childNoFDsEnv set: the test binary is a child with no descriptor left.
const childNoFDsEnv = "PORTFWD_TEST_CHILD_NO_FDS"

// TestChildOutOfDescriptors: when the child (the sandbox, a process of its
// own) cannot make a socket to dial with, it answers the parent with the
// error, and the client is reset at once rather than left waiting until
// the parent gives the dial up.
func TestChildOutOfDescriptors(t *testing.T) {
	if os.Getenv(childNoFDsEnv) != "" {
		if err := childNoFDsRole(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	serve := func(_ context.Context, child *os.File) error {
		cmd := exec.Command("/proc/self/exe", "-test.run=^TestChildOutOfDescriptors$")
		cmd.Env = append(os.Environ(), childNoFDsEnv+"=1")
		cmd.ExtraFiles = []*os.File{child}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Run(); err != nil { // until the parent closes its end
			return fmt.Errorf("child with no descriptors: %w", err)
		}
		return nil
	}
	f := startFwdWith(t, "tcp", "127.0.0.1", echoServer(t), serve)
	for i := range 3 {
		if err := readReset(f.addr()); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d got %v, want a reset", i, err)
		}
		var cerr *childError
		if err := f.nextError(t, "the child's failed socket"); !errors.As(err, &cerr) || !errors.Is(err, unix.EMFILE) {
			t.Errorf("OnError got %v, want the child's EMFILE", err)
		}
	}
	if st := f.l.Stats(); st.DialErrors != 3 || st.Pending != 0 || st.Conns != 0 {
		t.Errorf("stats %+v, want three dials failed", st)
	}
}

// childNoFDsRole serves the child's end on fd 3 with every descriptor
// taken.
func childNoFDsRole() error {
	c, err := newChild(os.NewFile(3, "portfwd"))
	if err != nil {
		return err
	}
	defer c.close()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	lim.Cur = uint64(len(ents) + 16)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	for {
		if _, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
			break
		}
	}
	return c.serve()
}

// TestNeverReadingClient: a client that never reads, from a container that
// writes without end, holds at most one pipe's worth of bytes in the
// forwarder, beside the sockets' own buffers: the forwarder stops reading
// the container's socket, and the container's writes block.
func TestNeverReadingClient(t *testing.T) {
	const total = 256 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	backendConn := make(chan net.Conn, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		backendConn <- c
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		chunk := make([]byte, 64<<10)
		for written.Load() < total {
			n, err := c.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	f := startFwd(t, "tcp", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	c, err := net.Dial("tcp", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var bc net.Conn
	select {
	case bc = <-backendConn:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not forwarded")
	}
	// Until the container's writes stall: 25 looks 20 ms apart without a
	// byte more (a write returns every 64 KiB).
	last, still := int64(-1), 0
	deadline := time.Now().Add(20 * time.Second)
	for still < 25 {
		if time.Now().After(deadline) {
			t.Fatalf("the container's writes never stalled (%d bytes written)", written.Load())
		}
		time.Sleep(20 * time.Millisecond)
		if n := written.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	if last >= total {
		t.Fatalf("the container wrote all %d bytes to a client that reads none", last)
	}
	// What the forwarder holds: its pipes, the container socket's receive
	// queue, the client socket's send queue.
	piped := pipedBytes(t)
	bport, cport := addrPort(bc.LocalAddr()).Port(), addrPort(c.LocalAddr()).Port()
	ctr := sockets(t, func(_, peer netip.AddrPort) bool { return peer.Port() == bport })
	cli := sockets(t, func(_, peer netip.AddrPort) bool { return peer.Port() == cport })
	if len(ctr) != 1 || len(cli) != 1 {
		t.Fatalf("found %d container and %d client sockets of the forwarder, want one each", len(ctr), len(cli))
	}
	inq, _ := unix.IoctlGetInt(ctr[0], unix.SIOCINQ)
	outq, _ := unix.IoctlGetInt(cli[0], unix.SIOCOUTQ)
	rcvbuf, _ := unix.GetsockoptInt(ctr[0], unix.SOL_SOCKET, unix.SO_RCVBUF)
	sndbuf, _ := unix.GetsockoptInt(cli[0], unix.SOL_SOCKET, unix.SO_SNDBUF)
	t.Logf("container wrote %d bytes; forwarder holds %d in pipes, %d in the container socket (rcvbuf %d), %d in the client socket (sndbuf %d)",
		last, piped, inq, rcvbuf, outq, sndbuf)
	if piped > spliceMax {
		t.Errorf("%d bytes in the forwarder's pipes, more than one pipe (%d)", piped, spliceMax)
	}
	if st := f.l.Stats(); st.Pipes > maxPooledPipes*maxLoops+1 {
		t.Errorf("%d pipes open", st.Pipes)
	}
	// Everything written is in a socket buffer or the one pipe: whatever
	// the sockets on the way can hold, the forwarder keeps nothing more.
	var onWay int
	for _, s := range []struct {
		conn net.Conn
		opt  int
	}{{bc, unix.SO_SNDBUF}, {c, unix.SO_RCVBUF}} {
		raw, _ := s.conn.(*net.TCPConn).SyscallConn()
		raw.Control(func(fd uintptr) {
			n, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, s.opt)
			onWay += n
		})
	}
	if bound := int64(spliceMax + rcvbuf + sndbuf + onWay); last > bound {
		t.Errorf("the container wrote %d bytes, more than the pipe and the four socket buffers hold (%d)", last, bound)
	}
}

// pipedBytes sums the bytes waiting in this process's pipes.
func pipedBytes(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	sum, seen := 0, map[string]bool{}
	for _, e := range ents {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		if !strings.HasPrefix(link, "pipe:") || seen[link] {
			continue // each pipe once, not at both of its ends
		}
		seen[link] = true
		fd, _ := strconv.Atoi(e.Name())
		if n, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err == nil { // FIONREAD
			sum += n
		}
	}
	return sum
}

// exhaustEnv set: the test binary is the forwarder of TestDescriptorExhaustion.
const exhaustEnv = "PORTFWD_TEST_EXHAUST"

// exhaustBudget is how many descriptors the forwarder process has beyond
// those open when it starts serving: about a hundred idle clients.
const exhaustBudget = 200

// TestDescriptorExhaustion runs a forwarder of three ports in a process of
// its own with few descriptors (the child, in this process, has plenty),
// and opens idle clients on port A until the forwarder runs out. Then: a new
// client on A is reset (not left in the backlog), ports B and C still serve
// (C's dial takes a while, and A's refused clients must not take the
// descriptor kept for its socket meanwhile), and the established clients
// still move bytes; once the idle clients are gone, A serves again.
func TestDescriptorExhaustion(t *testing.T) {
	if os.Getenv(exhaustEnv) != "" {
		if err := exhaustRole(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// A's backend greets every connection with one byte, so that a client
	// knows it was forwarded, then echoes; B's is echoServer.
	backA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveGreetEcho(t, backA)
	// C's backend has its accept queue full until the test drains it: the
	// child's dial to it waits for a SYN to be answered.
	backC, drainC := fullListener(t)
	fw := startExhaustRole(t, addrPort(backA.Addr()).Port(), uint16(echoServer(t)), backC)

	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	refused := false
	for i := 0; i < 1000 && !refused; i++ {
		c, err := dialGreeted(fw.a)
		switch {
		case err == nil:
			idle = append(idle, c)
		case errors.Is(err, syscall.ECONNRESET):
			refused = true
		default:
			t.Fatalf("idle client %d: %v, want the greeting or a reset", i, err)
		}
	}
	if !refused || len(idle) < 20 {
		t.Fatalf("%d idle clients forwarded, refused: %v; want the forwarder out of descriptors after a few dozen", len(idle), refused)
	}
	t.Logf("%d idle clients took the forwarder's descriptors", len(idle))

	cDone := make(chan error, 1)
	go func() {
		c, err := dialGreeted(fw.c)
		if err == nil {
			err = echoOn(c, []byte("port C"))
			c.Close()
		}
		cDone <- err
	}()
	waitFor(t, "the dial to C", func() bool { return fw.stats(t).Pending == 1 })
	for i := range 5 {
		if err := readReset(fw.a); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("new client %d on the exhausted port: %v, want a reset", i, err)
		}
	}
	serveGreetEcho(t, drainC())
	select {
	case err := <-cDone:
		if err != nil {
			t.Errorf("port C, dialed while A's clients were refused: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("port C's client still waits")
	}
	for i := range 3 {
		if err := roundTrip(fw.b, randomBytes(t, 256<<10)); err != nil {
			t.Errorf("port B, connection %d, while A is exhausted: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	data := randomBytes(t, 1<<20)
	for _, c := range []net.Conn{idle[0], idle[len(idle)/2], idle[len(idle)-1]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echoOn(c, data); err != nil {
				t.Errorf("established client %v: %v", c.LocalAddr(), err)
			}
		}()
	}
	wg.Wait()
	st := fw.stats(t)
	t.Logf("forwarder stats while A is exhausted: %+v", st)
	if t.Failed() {
		t.Logf("the forwarder reported: %s", fw.errors())
	}
	if st.Refused < 5 || st.Resets != 0 {
		t.Errorf("forwarder stats %+v: want every refused client counted, no established one reset", st)
	}

	for _, c := range idle {
		c.Close()
	}
	idle = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dialGreeted(fw.a)
		if err == nil {
			err = echoOn(c, []byte("served again"))
			c.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port A does not serve after its idle clients left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(fw.errors(), "too many open files") {
		t.Errorf("the forwarder reported %q, want the exhaustion reported", fw.errors())
	}
}

// fullListener returns the port of a listener whose accept queue is full,
// so that SYNs to it go unanswered, and a function that empties the queue
// and returns the listener.
func fullListener(t *testing.T) (uint16, func() net.Listener) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "full listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	port := addrPort(ln.Addr()).Port()
	var queued []net.Conn
	for range 3 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		queued = append(queued, c)
	}
	t.Cleanup(func() {
		for _, c := range queued {
			c.Close()
		}
		ln.Close()
	})
	return port, func() net.Listener {
		for range queued {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}
		return ln
	}
}

// serveGreetEcho serves ln until the test ends: one byte to each new
// connection, then an echo of what comes.
func serveGreetEcho(t *testing.T, ln net.Listener) {
	serveConns(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.Write([]byte("G")); err == nil {
			io.Copy(c, c)
		}
	})
}

// dialGreeted connects to addr and reads the backend's greeting.
func dialGreeted(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}

// echoOn sends data on c and reads it back.
func echoOn(c net.Conn, data []byte) error {
	c.SetDeadline(time.Now().Add(15 * time.Second))
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, data) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// exhaustFwd is the forwarder process of TestDescriptorExhaustion.
type exhaustFwd struct {
	a, b, c string // the published addresses
	stdin   io.Writer
	lines   chan string // its output but "ready" and the errors
	mu      sync.Mutex
	errs    []string // what it reported to OnError
}

// startExhaustRole starts the forwarder process with the parent end of a
// socketpair whose child end this process serves, publishing three ports to
// backA, backB and backC.
func startExhaustRole(t *testing.T, backA, backB, backC uint16) *exhaustFwd {
	t.Helper()
	parent, child, err := NewSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	childDone := make(chan error, 1)
	go func() { childDone <- ServeChild(ctx, child) }()
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestDescriptorExhaustion$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%d", exhaustEnv, backA, backB, backC))
	cmd.ExtraFiles = []*os.File{parent}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	parent.Close()
	t.Cleanup(func() {
		stdin.Close()
		waitOrKill(cmd, 5*time.Second)
		cancel()
		select {
		case <-childDone:
		case <-time.After(5 * time.Second):
			t.Error("ServeChild did not return")
		}
		child.Close()
	})
	fw := &exhaustFwd{stdin: stdin, lines: make(chan string, 16)}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ready "):
				ready <- line
			case strings.HasPrefix(line, "onerror: "):
				fw.mu.Lock()
				fw.errs = append(fw.errs, strings.TrimPrefix(line, "onerror: "))
				fw.mu.Unlock()
			default:
				fw.lines <- line
			}
		}
		close(fw.lines)
	}()
	select {
	case line := <-ready:
		f := strings.Fields(line)
		fw.a, fw.b, fw.c = f[1], f[2], f[3]
	case line := <-fw.lines:
		t.Fatalf("the forwarder process did not start: %s", line)
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarder process did not start")
	}
	return fw
}

// stats asks the forwarder process for its Stats.
func (fw *exhaustFwd) stats(t *testing.T) Stats {
	t.Helper()
	io.WriteString(fw.stdin, "stats\n")
	select {
	case line := <-fw.lines:
		var st Stats
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			t.Fatalf("stats from the forwarder process: %q: %v", line, err)
		}
		return st
	case <-time.After(5 * time.Second):
		t.Fatal("no stats from the forwarder process")
		return Stats{}
	}
}

func (fw *exhaustFwd) errors() string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return strings.Join(fw.errs, "; ")
}

// exhaustRole is the forwarder process: it publishes three ports on
// 127.0.0.1 to the backends named in its environment, through the child
// on fd 3, keeps exhaustBudget descriptors beyond those it has once serving,
// prints "ready A B C", answers "stats" on stdin with its Stats in JSON and
// prints what OnError gets, until stdin closes.
func exhaustRole() error {
	var backs [3]int
	if _, err := fmt.Sscanf(os.Getenv(exhaustEnv), "%d,%d,%d", &backs[0], &backs[1], &backs[2]); err != nil {
		return err
	}
	var specs []Spec
	for _, p := range backs {
		specs = append(specs, Spec{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 0, ContainerPort: p})
	}
	l, err := Listen(specs)
	if err != nil {
		return err
	}
	l.DialTimeout = 10 * time.Second // C's dial waits for a retransmitted SYN
	// Pooled pipes stay: none closes to free descriptors while C's dial
	// waits, so that only the one kept for it can give its socket a number.
	pipeIdle = time.Hour
	var out sync.Mutex
	say := func(a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Println(a...)
	}
	errs := make(chan error, 100)
	l.OnError = func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	go func() {
		for err := range errs {
			say("onerror:", err)
		}
	}()
	l.Serve(context.Background(), os.NewFile(3, "portfwd"), "127.0.0.1")
	defer l.Close()
	var addrs []string
	for _, ln := range l.lns {
		sa, err := unix.Getsockname(ln.fd)
		if err != nil {
			return err
		}
		ap, _ := addrPortOf(sa)
		addrs = append(addrs, ap.String())
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	lim.Cur = uint64(len(ents) + exhaustBudget)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	say("ready", addrs[0], addrs[1], addrs[2])
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "stats" {
			b, _ := json.Marshal(l.Stats())
			say(string(b))
		}
	}
	return nil
}

// waitOrKill waits for cmd to exit, and kills it after grace (also used by
// bench_test.go).
func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}
