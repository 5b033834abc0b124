package portfwd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The functional tests run both halves in the test process: Listen and Serve
// on a host port, ServeChild on the other end of a real socketpair, and a
// backend on 127.0.0.1 standing in for the container's server (the child
// dials containerIP 127.0.0.1).

type fwd struct {
	l         *Listeners
	spec      Spec
	errs      chan error
	childDone chan error
	cancel    context.CancelFunc // of the ctx given to Serve and ServeChild
}

// addr is where clients connect.
func (f *fwd) addr() string { return f.spec.hostAddr() }

// nextError waits up to 5 seconds for the next error given to OnError.
func (f *fwd) nextError(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-f.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("no error reported for %s", what)
		return nil
	}
}

// startFwd publishes hostIP:<free port> to backendPort on 127.0.0.1.
func startFwd(t *testing.T, proto, hostIP string, backendPort int, tweak ...func(*Listeners)) *fwd {
	t.Helper()
	return startFwdWith(t, proto, hostIP, backendPort, ServeChild, tweak...)
}

// startFwdWith is startFwd with serve standing in for ServeChild on the
// child's end; serve must return once the parent closes its end.
func startFwdWith(t *testing.T, proto, hostIP string, backendPort int, serve func(context.Context, *os.File) error, tweak ...func(*Listeners)) *fwd {
	t.Helper()
	sp := Spec{Proto: proto, HostIP: hostIP, HostPort: freePort(t, proto, hostIP), ContainerPort: backendPort}
	l, err := Listen([]Spec{sp})
	if err != nil {
		t.Fatal(err)
	}
	parent, child, err := NewSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	f := &fwd{l: l, spec: sp, errs: make(chan error, 1000), childDone: make(chan error, 1)}
	l.OnError = func(err error) {
		select {
		case f.errs <- err:
		default:
		}
	}
	for _, fn := range tweak {
		fn(l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.childDone <- serve(ctx, child) }()
	l.Serve(ctx, parent, "127.0.0.1")
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		parent.Close()
		select {
		case err := <-f.childDone:
			if err != nil {
				t.Errorf("ServeChild: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("ServeChild did not return after the parent closed its end")
		}
		cancel()
		child.Close()
	})
	return f
}

func freePort(t *testing.T, proto, ip string) int {
	t.Helper()
	hostPort := net.JoinHostPort(ip, "0")
	if proto == "udp" {
		c, err := net.ListenPacket("udp", hostPort)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", hostPort)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// echoServer echoes every connection; at the client's EOF it appends the
// SHA-256 of what it received, then closes its write half. So a client sees
// data flow after its own half-close.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	return ln.Addr().(*net.TCPAddr).Port
}

// serveEcho serves ln as echoServer does until the test ends or ln closes.
func serveEcho(t *testing.T, ln net.Listener) {
	serveConns(t, ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(c, h), c); err != nil {
			return
		}
		c.Write(h.Sum(nil))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
}

// serveConns accepts on ln until the test ends or ln closes, and runs
// handle on each connection in a goroutine of its own, closing it after;
// the test's end waits for them all.
func serveConns(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// readReset connects to addr and reads until the forwarder ends the
// connection; it returns the error that ended it (ECONNRESET when the
// forwarder reset the client, possibly already at connect).
func readReset(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

// roundTrip sends data, half-closes, and checks the echo and the trailer.
func roundTrip(addr string, data []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	sum := sha256.Sum256(data)
	if len(got) != len(data)+sha256.Size {
		return fmt.Errorf("got %d bytes back, want %d", len(got), len(data)+sha256.Size)
	}
	if !bytes.Equal(got[:len(data)], data) {
		return errors.New("echo differs from what was sent")
	}
	if !bytes.Equal(got[len(data):], sum[:]) {
		return errors.New("server's checksum differs from what was sent")
	}
	return nil
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForwardTCPEcho(t *testing.T) {
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t))
	if err := roundTrip(f.addr(), []byte("hello rabbitc")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection to close", func() bool { return f.l.Stats().Conns == 0 })
	if st := f.l.Stats(); st.Accepted != 1 || st.DialErrors != 0 || st.Resets != 0 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestForwardHalfCloseLarge(t *testing.T) {
	// Checking 20 MiB takes roundTrip about a second under -race, during
	// which the idle loop closed its pipes: 3 of 25 runs failed with -race.
	// Restored after the forwarder's cleanup (registered later, run first).
	idle := pipeIdle
	t.Cleanup(func() { pipeIdle = idle })
	pipeIdle = 3 * time.Second
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t))
	if err := roundTrip(f.addr(), randomBytes(t, 20<<20)); err != nil {
		t.Fatal(err)
	}
	if f.l.Stats().Pipes == 0 {
		t.Error("no pipe pooled after a transfer")
	}
	// Idle loops give their pooled pipes back.
	waitFor(t, "pooled pipes to close", func() bool { return f.l.Stats().Pipes == 0 })
}

func TestForwardIPv6Host(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("IPv6 loopback unavailable (net.ipv6.conf.lo.disable_ipv6=1?): %v", err)
	} else {
		ln.Close()
	}
	f := startFwd(t, "tcp", "::1", echoServer(t))
	if err := roundTrip(f.addr(), []byte("over ::1")); err != nil {
		t.Fatal(err)
	}
}

func TestForwardConcurrent(t *testing.T) {
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t), func(l *Listeners) { l.Loops = 3 })
	data := randomBytes(t, 64<<10)
	n := 200
	if s := os.Getenv("PORTFWD_CONCURRENT"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- roundTrip(f.addr(), data)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all connections to close", func() bool { return f.l.Stats().Conns == 0 })
	if st := f.l.Stats(); st.Accepted != uint64(n) || st.DialErrors != 0 || st.Resets != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestParkedLoops runs loops that park in the runtime's poller (as many
// loops as Ps or more) instead of blocking in epoll_wait, deadlines (idle
// pipes, idle UDP flows) included.
func TestParkedLoops(t *testing.T) {
	parked := func(l *Listeners) {
		l.Loops = runtime.GOMAXPROCS(0) + 1
		l.UDPIdleTimeout = 300 * time.Millisecond
	}
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t), parked)
	data := randomBytes(t, 64<<10)
	errs := make(chan error, 20)
	for range cap(errs) {
		go func() { errs <- roundTrip(f.addr(), data) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := roundTrip(f.addr(), randomBytes(t, 4<<20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all connections to close", func() bool { return f.l.Stats().Conns == 0 })
	waitFor(t, "pooled pipes to close", func() bool { return f.l.Stats().Pipes == 0 })

	u := startFwd(t, "udp", "127.0.0.1", udpEchoServer(t), parked)
	c, err := net.Dial("udp", u.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for _, msg := range []string{"one", "two"} {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(msg))
		if n, err := c.Read(buf); err != nil || !strings.HasSuffix(string(buf[:n]), " "+msg) {
			t.Fatalf("udp %s: %q, %v", msg, buf[:n], err)
		}
		waitFor(t, "the idle flow to close", func() bool { return u.l.Stats().Flows == 0 })
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNoDescriptorLeak(t *testing.T) {
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t))
	data := randomBytes(t, 256<<10)
	if err := roundTrip(f.addr(), data); err != nil { // warm up: pools, goroutines
		t.Fatal(err)
	}
	waitFor(t, "the connection to close", func() bool { return f.l.Stats().Conns == 0 })
	before, pipesBefore := openFDs(t), f.l.Stats().Pipes
	for i := range 300 {
		if err := roundTrip(f.addr(), data[:i*512]); err != nil {
			t.Fatal(err)
		}
	}
	// A client that resets, and a client that goes away before the dial is answered.
	for range 20 {
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(data[:1000])
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	waitFor(t, "all connections to close", func() bool {
		st := f.l.Stats()
		return st.Conns == 0 && st.Pending == 0
	})
	// The echo server's goroutines close their ends a little later.
	var after, pipesAfter int
	deadline := time.Now().Add(5 * time.Second)
	for {
		after, pipesAfter = openFDs(t), f.l.Stats().Pipes
		if after-2*pipesAfter == before-2*pipesBefore || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after-2*pipesAfter != before-2*pipesBefore {
		t.Errorf("open descriptors %d (%d pipes) after 320 connections, %d (%d pipes) before", after, pipesAfter, before, pipesBefore)
	}
	if pipesAfter > maxPooledPipes*maxLoops {
		t.Errorf("%d pipes kept, the pools hold at most %d", pipesAfter, maxPooledPipes*maxLoops)
	}
}

func TestResetClient(t *testing.T) {
	// A backend that accepts and reads until the connection ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	backendErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			backendErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c)
		backendErr <- err
	}()
	f := startFwd(t, "tcp", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	c, err := net.Dial("tcp", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("some bytes, then a reset"))
	waitFor(t, "the connection to be forwarded", func() bool { return f.l.Stats().Conns == 1 })
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case err := <-backendErr:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("backend read ended with %v, want the client's reset passed on", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend still connected after the client reset")
	}
	waitFor(t, "the pair to close", func() bool { return f.l.Stats().Conns == 0 })
	if st := f.l.Stats(); st.Resets != 1 {
		t.Errorf("stats %+v, want one reset", st)
	}
}

// TestDialRefused: a container port that has never listened keeps the
// client waiting for its server until the dial's timeout, then resets it.
func TestDialRefused(t *testing.T) {
	dead := freePort(t, "tcp", "127.0.0.1") // nobody listens there
	f := startFwd(t, "tcp", "127.0.0.1", dead, func(l *Listeners) { l.DialTimeout = 300 * time.Millisecond })
	start := time.Now()
	err := readReset(f.addr())
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client got %v, want a reset when the container refuses", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Errorf("reset after %v, want it after the dial's timeout (300ms) and before the parent gives up", d)
	}
	err = f.nextError(t, "the refused dial")
	if want := "dial 127.0.0.1:" + strconv.Itoa(dead) + " in the container: connection refused"; !strings.HasSuffix(err.Error(), want) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("OnError got %q, want %q and the cause", err, want)
	}
	if st := f.l.Stats(); st.DialErrors != 1 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestDialWaitLimit: beyond maxWaiting clients waiting for a port's first
// listen, a refused dial resets its client at once.
func TestDialWaitLimit(t *testing.T) {
	dead := freePort(t, "tcp", "127.0.0.1")
	f := startFwd(t, "tcp", "127.0.0.1", dead, func(l *Listeners) { l.DialTimeout = 3 * time.Second })
	for range maxWaiting {
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "the dials to wait", func() bool { return f.l.Stats().Pending == maxWaiting })
	start := time.Now()
	err := readReset(f.addr())
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client %d got %v, want a reset", maxWaiting+1, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("client %d was reset after %v, want at once", maxWaiting+1, d)
	}
	if st := f.l.Stats(); st.Pending != maxWaiting {
		t.Errorf("stats %+v, want %d dials still waiting", st, maxWaiting)
	}
}

// TestDialWaitsForFirstListen: a client that connects before the container's
// server listens is served once it does, not reset; once the port has
// answered, a refused dial resets the client at once.
func TestDialWaitsForFirstListen(t *testing.T) {
	port := freePort(t, "tcp", "127.0.0.1")
	f := startFwd(t, "tcp", "127.0.0.1", port, func(l *Listeners) { l.DialTimeout = 5 * time.Second })
	const late = 200 * time.Millisecond
	start := time.Now()
	done := make(chan error, 2)
	for range 2 { // two clients waiting on the same port
		go func() { done <- roundTrip(f.addr(), []byte("early")) }()
	}
	time.Sleep(late)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	serveEcho(t, ln)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("early client: %v", err)
		}
	}
	if d := time.Since(start); d < late {
		t.Errorf("served after %v, before the server listened", d)
	}
	if st := f.l.Stats(); st.DialErrors != 0 {
		t.Errorf("stats %+v, want no dial error", st)
	}

	ln.Close() // the server is gone: refused now means refused
	start = time.Now()
	err = readReset(f.addr())
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client got %v, want a reset", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("reset after %v; a port that has answered once is not waited for", d)
	}
	if err := f.nextError(t, "the refused dial"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("OnError got %v, want connection refused", err)
	}
}

func TestCloseReleasesPort(t *testing.T) {
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t), func(l *Listeners) { l.Loops = 3 })
	var conns []net.Conn
	for range 6 { // spread over the loops
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		conns = append(conns, c)
	}
	waitFor(t, "the connections to be forwarded", func() bool { return f.l.Stats().Conns == len(conns) })
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	st := f.l.Stats()
	if st.Conns != 0 || st.Pipes != 0 || st.Pending != 0 {
		t.Errorf("stats after Close %+v", st)
	}
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client after Close: %v", err)
		}
	}
	// The port can be bound again at once, by us and by anyone.
	l2, err := Listen([]Spec{f.spec})
	if err != nil {
		t.Fatalf("listen again right after Close: %v", err)
	}
	l2.Close()
	ln, err := net.Listen("tcp", f.addr())
	if err != nil {
		t.Fatalf("net.Listen right after Close: %v", err)
	}
	ln.Close()
}

func TestListenPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	free := freePort(t, "tcp", "127.0.0.1")
	before := openFDs(t)
	_, err = Listen([]Spec{
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: free, ContainerPort: 80},
		{Proto: "tcp", HostIP: "0.0.0.0", HostPort: port, ContainerPort: 80},
	})
	want := fmt.Sprintf("publish 0.0.0.0:%d/tcp: listen tcp 0.0.0.0:%d: bind: address already in use (stop what listens on port %d, or publish another host port)", port, port, port)
	if err == nil || err.Error() != want {
		t.Fatalf("Listen = %v, want %q", err, want)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open after the failed Listen, %d before", after, before)
	}
	// The first port was released.
	l, err := Listen([]Spec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: free, ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestListenPrivilegedPort(t *testing.T) {
	start := unprivilegedPortStart()
	if os.Geteuid() == 0 || start <= 1 {
		t.Skipf("binding a port below %d is allowed here (root, or net.ipv4.ip_unprivileged_port_start=%d)", start, start)
	}
	_, err := Listen([]Spec{{Proto: "tcp", HostIP: "0.0.0.0", HostPort: start - 1, ContainerPort: 80}})
	want := fmt.Sprintf("bind: permission denied (use a host port >= %d, or set net.ipv4.ip_unprivileged_port_start=%d)", start, start-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Listen = %v, want %q", err, want)
	}
}

func udpEchoServer(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(append([]byte("echo "+from.String()+" "), buf[:n]...), from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func TestForwardUDP(t *testing.T) {
	f := startFwd(t, "udp", "127.0.0.1", udpEchoServer(t), func(l *Listeners) { l.UDPIdleTimeout = time.Second })
	var clients [2]net.Conn
	for i := range clients {
		c, err := net.Dial("udp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	// Each client gets its own flow: the server sees two source addresses,
	// and each reply goes back to the client that asked.
	var seen [2]string
	buf := make([]byte, 2048)
	for round := range 3 {
		for i, c := range clients {
			msg := fmt.Sprintf("client %d round %d", i, round)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			from, rest, _ := strings.Cut(strings.TrimPrefix(string(buf[:n]), "echo "), " ")
			if rest != msg {
				t.Fatalf("client %d got %q, want its own %q", i, buf[:n], msg)
			}
			if seen[i] == "" {
				seen[i] = from
			} else if seen[i] != from {
				t.Errorf("client %d's datagrams came from %s, then from %s: not one flow", i, seen[i], from)
			}
		}
	}
	if seen[0] == seen[1] {
		t.Errorf("both clients share the flow %s", seen[0])
	}
	if st := f.l.Stats(); st.Flows != 2 {
		t.Errorf("stats %+v, want 2 flows", st)
	}
	waitFor(t, "idle flows to close", func() bool { return f.l.Stats().Flows == 0 })
	// A client that comes back after the timeout gets a new flow.
	clients[0].Write([]byte("again"))
	clients[0].SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := clients[0].Read(buf); err != nil || !strings.HasSuffix(string(buf[:n]), " again") {
		t.Fatalf("after the idle timeout: %q, %v", buf[:n], err)
	}
}

// A UDP port published on 0.0.0.0 answers from the address the client sent
// to, as a server bound there would: a connected client (as most UDP
// clients are) drops a reply from any other address. 127.0.0.2 is a
// destination whose routed source would be 127.0.0.1.
func TestUDPWildcardRepliesFromDestination(t *testing.T) {
	f := startFwd(t, "udp", "0.0.0.0", udpEchoServer(t))
	dsts := []string{"127.0.0.2", "127.0.0.1", "127.0.0.2"}
	var f6 *fwd
	if ln, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		ln.Close()
		f6 = startFwd(t, "udp", "::", udpEchoServer(t))
		dsts = append(dsts, "::1")
	}
	for _, dst := range dsts {
		port := f.spec.HostPort
		if strings.Contains(dst, ":") {
			port = f6.spec.HostPort
		}
		c, err := net.Dial("udp", net.JoinHostPort(dst, strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("hi " + dst)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("to %s: no reply on a connected socket: %v", dst, err)
		}
		if !strings.HasSuffix(string(buf[:n]), "hi "+dst) {
			t.Errorf("to %s: reply %q", dst, buf[:n])
		}
	}
}

func TestCloseUDPFlows(t *testing.T) {
	backend := udpEchoServer(t)
	before := openFDs(t)
	f := startFwd(t, "udp", "127.0.0.1", backend)
	for range 10 {
		c, err := net.Dial("udp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hi"))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if st := f.l.Stats(); st.Flows != 10 {
		t.Fatalf("stats %+v, want 10 flows", st)
	}
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := f.l.Stats(); st.Flows != 0 {
		t.Errorf("stats after Close %+v", st)
	}
	// Only the socketpair (closed by the test's cleanup) and the child's
	// duplicate and eventfd (closed when ServeChild returns) are left.
	if after := openFDs(t); after != before+4 {
		t.Errorf("%d descriptors open after Close, %d before Listen, want %d", after, before, before+4)
	}
}

// TestListenerBacklogDrains queues more datagrams on a listener than the
// loop takes in one turn, before Serve, and sends nothing after: the loop
// must come back for the rest on its own, with no new event to wake it.
func TestListenerBacklogDrains(t *testing.T) {
	const queued = 600 // more than a few turns of turnAccepts
	lnfd := -1
	fill := func(l *Listeners) {
		lnfd = l.lns[0].fd
		// Room for the whole backlog (capped by net.core.rmem_max).
		unix.SetsockoptInt(lnfd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		c, err := net.Dial("udp", l.lns[0].spec.hostAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range queued {
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A backend that never answers: no event from the container either.
	backend, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	startFwd(t, "udp", "127.0.0.1", backend.LocalAddr().(*net.UDPAddr).Port, fill)
	waitFor(t, "the listener's backlog to drain", func() bool {
		fds := []unix.PollFd{{Fd: int32(lnfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n == 0
	})
}

// TestOutOfDescriptors takes every free descriptor, so that the forwarder
// runs out (EMFILE in accept, refused with a spare descriptor; or in the
// child, should a descriptor of this process free up meanwhile), then gives
// them back: the connection made meanwhile is reset, not left in the
// backlog, and the forwarder accepts again. TestDescriptorExhaustion checks
// the refusal where nothing else shares the forwarder's descriptors.
func TestOutOfDescriptors(t *testing.T) {
	if !alone(t) {
		return
	}
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t))
	if err := roundTrip(f.addr(), []byte("before")); err != nil {
		t.Fatal(err)
	}
	// Idle, the loop closes its pooled pipes: none is closed later, to free
	// descriptors behind the test's back.
	waitFor(t, "the pooled pipes to close", func() bool { st := f.l.Stats(); return st.Conns == 0 && st.Pipes == 0 })
	settleFDs(t)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(openFDs(t) + 64)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	var filler []int
	release := func() {
		for _, fd := range filler {
			unix.Close(fd)
		}
		filler = nil
	}
	defer release()
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		filler = append(filler, fd)
	}
	unix.Close(filler[len(filler)-1]) // room for the client's socket only
	filler = filler[:len(filler)-1]

	err := readReset(f.addr())
	if err := f.nextError(t, "running out of descriptors"); !errors.Is(err, unix.EMFILE) {
		t.Errorf("OnError got %v, want EMFILE", err)
	}
	release()
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the connection made during EMFILE: %v, want a reset", err)
	}
	for range 10 {
		if err := roundTrip(f.addr(), []byte("after")); err != nil {
			t.Fatal(err)
		}
	}
}

// settleFDs waits until every socket of the connections before is closed,
// the echo server's too: the count of descriptors holds still for a while.
func settleFDs(t *testing.T) {
	t.Helper()
	last, still := -1, 0
	waitFor(t, "the descriptor count to settle", func() bool {
		n := openFDs(t)
		if n == last {
			still++
		} else {
			last, still = n, 0
		}
		time.Sleep(15 * time.Millisecond)
		return still >= 6
	})
}

func TestChildGone(t *testing.T) {
	l, err := Listen([]Spec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: freePort(t, "tcp", "127.0.0.1"), ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	parent, child, err := NewSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	l.Serve(context.Background(), parent, "127.0.0.1")
	child.Close()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("forwarding did not stop when the child closed its end")
	}
	if err := l.Wait(); !errors.Is(err, errChildGone) {
		t.Errorf("Wait = %v, want %v", err, errChildGone)
	}
}

// TestDeadWorkerInbox fails a worker loop (its epoll set is gone), then hands
// it a pair, as the main loop may before it notices: the pair's sockets are
// closed when forwarding stops, not left in the dead worker's inbox.
func TestDeadWorkerInbox(t *testing.T) {
	l, err := Listen([]Spec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: freePort(t, "tcp", "127.0.0.1"), ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	l.Loops = 2
	parent, child, err := NewSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	lp, err := newLoop(l, parent, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lp.wakefd) // Listeners.finish closes it after Serve
	w := lp.workers[0]
	if w.epf != nil {
		w.epf.Close()
	} else {
		unix.Close(w.epfd)
		w.epfd = -1
	}
	lp.start()
	waitFor(t, "the worker to fail", func() bool { return l.failure() != nil })
	err = <-w.done // and back for shutdown
	w.done <- err

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ino [2]uint64
	for i, fd := range fds {
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		ino[i] = st.Ino
	}
	lp.live.Store(100) // the worker has the fewest pairs
	lp.placePair(l.lns[0], fds[0], fds[1])
	// The dead worker's eventfd was closed, and the pair may have taken its
	// number: the wake-up must not land in the pair.
	for _, fd := range fds {
		if n, _, _ := unix.Recvfrom(fd, make([]byte, 8), unix.MSG_DONTWAIT|unix.MSG_PEEK); n > 0 {
			t.Errorf("the wake-up for the dead worker was written into the pair (%d bytes)", n)
		}
	}
	lp.shutdown()
	for i, fd := range fds {
		// Closed, or the number reused for another file.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Ino == ino[i] {
			t.Errorf("socket %d of the pair handed to the dead worker is still open", fd)
			unix.Close(fd)
		}
	}
}

func TestCancelStops(t *testing.T) {
	f := startFwd(t, "tcp", "127.0.0.1", echoServer(t))
	if err := roundTrip(f.addr(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	f.cancel()
	select {
	case <-f.l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("forwarding did not stop when ctx was cancelled")
	}
	if err := f.l.Wait(); err != nil {
		t.Errorf("Wait = %v", err)
	}
	// ServeChild's return is checked by the cleanup.
	if err := f.l.Close(); err != nil {
		t.Errorf("Close after cancel = %v", err)
	}
	ln, err := net.Listen("tcp", f.addr())
	if err != nil {
		t.Fatalf("bind after cancel: %v", err)
	}
	ln.Close()
}

// TestDialTimeout dials a backend whose accept queue is full, so its SYNs go
// unanswered: the dial waits on the slow path, the other dials go on, and the
// client is reset after DialTimeout.
func TestDialTimeout(t *testing.T) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(lfd)
	full := sa.(*unix.SockaddrInet4).Port
	for range 3 { // fill the accept queue; nobody accepts
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", full), 100*time.Millisecond)
		if err != nil {
			break
		}
		defer c.Close()
	}
	slow := startFwd(t, "tcp", "127.0.0.1", full, func(l *Listeners) { l.DialTimeout = 300 * time.Millisecond })
	start := time.Now()
	c, err := net.Dial("tcp", slow.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read %v, want a reset after the dial timed out", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("reset after %v, before DialTimeout", d)
	}
	if err := slow.nextError(t, "the timed out dial"); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("OnError got %v, want a timeout", err)
	}
}

// TestHungChildDialExpires: a child that never answers (a stopped sandbox)
// leaves no client waiting for ever: the parent gives the dial up a little
// after the child's own dial timeout, resets the client, and keeps serving.
func TestHungChildDialExpires(t *testing.T) {
	defer func(g time.Duration) { answerGrace = g }(answerGrace)
	answerGrace = 100 * time.Millisecond
	// Takes the dial requests and never answers; ends when the parent does.
	hung := func(_ context.Context, child *os.File) error {
		buf := make([]byte, 512)
		for {
			if n, err := child.Read(buf); n == 0 || err != nil {
				return nil
			}
		}
	}
	f := startFwdWith(t, "tcp", "127.0.0.1", 80, hung, func(l *Listeners) { l.DialTimeout = 200 * time.Millisecond })
	for i := range 2 {
		start := time.Now()
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client %d read %v, want a reset once the dial is given up", i, err)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("client %d reset after %v, before the child's timeout and the grace", i, d)
		}
		if err := f.nextError(t, "the dial given up"); !errors.Is(err, errNoAnswer) {
			t.Errorf("OnError got %v, want %v", err, errNoAnswer)
		}
	}
	if st := f.l.Stats(); st.Pending != 0 {
		t.Errorf("stats %+v: dials still pending", st)
	}
}

// TestPingPong exchanges many small messages on one connection, the pattern
// of keep-alive requests, where a read that misses bytes stalls the exchange.
func TestPingPong(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo in whatever pieces arrive
	}()
	f := startFwd(t, "tcp", "127.0.0.1", ln.Addr().(*net.TCPAddr).Port)
	c, err := net.Dial("tcp", f.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := randomBytes(t, 600)
	buf := make([]byte, len(msg))
	for i := range 3000 {
		n := 1 + i%len(msg)
		// Several small writes per message, so that segments queue up.
		for off := 0; off < n; off += 97 {
			if _, err := c.Write(msg[off:min(off+97, n)]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], msg[:n]) {
			t.Fatalf("message %d garbled", i)
		}
	}
}
