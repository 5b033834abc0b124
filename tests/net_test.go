package tests

// Issue 3: slirp4netns, --net, --publish and the forwarder. Traffic goes only
// to the host's loopback (127.0.0.1, ::1) and to 10.0.2.x inside the
// containers' own network namespaces. No DNS.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const seedAnswer = "Hello from rabbitc container"

// httpGet fetches url without proxies or keep-alive.
func httpGet(url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitHTTP polls url until it answers want.
func waitHTTP(t testing.TB, p *proc, url, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			t.Fatalf("rabbitc exited while waiting for %s:\n%s", url, p.res)
		}
		body, err := httpGet(url)
		if err == nil && body == want {
			return
		}
		last = fmt.Sprintf("%q %v", body, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %q within 15s; last: %s", url, want, last)
}

// stop sends SIGTERM to rabbitc and waits for it (and the leftover check).
func stop(t *testing.T, p *proc) result {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	return p.wait(t)
}

// The seed's demo: the HTTP server behind --publish answers on 127.0.0.1.
func TestSeedServerPublished(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	for _, args := range [][]string{
		rc("--publish", fmt.Sprintf("%d:80", port), "--cmd", "/bin/server"),
		{"--rootfs=" + env.rootfs, "--publish=" + fmt.Sprintf("%d:80", port), "--cmd=/bin/server"},
	} {
		o := opts{}
		p := start(t, o, args...)
		p.waitOutput(t, o, "running HTTP server on 10.0.2.100:80", 10*time.Second)
		waitHTTP(t, p, fmt.Sprintf("http://127.0.0.1:%d/", port), seedAnswer)
		for i := 0; i < 20; i++ {
			if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/x%d", port, i)); err != nil || body != seedAnswer {
				t.Fatalf("request %d: %q %v", i, body, err)
			}
		}
		stop(t, p)
	}
}

// A client that connects while the container starts, before its server
// listens, is served on that connection once the server is up, instead of
// being reset (the port is published before the payload starts); a port
// that has answered once resets at once when nothing listens any more.
func TestPublishEarlyClientWaits(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	p := start(t, opts{}, rc("--publish", fmt.Sprintf("127.0.0.1:%d:80", port), "--", "/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1; /bin/server & pid=$!; sleep 2; kill $pid; while :; do sleep 1; done")...)
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); conn == nil; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("port %d never accepted a connection:\n%s", port, p.res)
		}
		conn, _ = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	}
	sent := time.Now()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	b, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || !strings.HasSuffix(string(b), seedAnswer) {
		t.Fatalf("the first connection got %q, %v; want the server's answer once it listens", b, err)
	}
	if d := time.Since(sent); d < 500*time.Millisecond {
		t.Errorf("answered after %v: the connection did not come before the server (sleep 1)", d)
	}
	// The server is killed 2 s after it started: from then on, refused.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := httpGet(url); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers 10 s after the server was killed", url)
		}
	}
	start := time.Now()
	if _, err := httpGet(url); err == nil {
		t.Fatalf("%s answered with no server", url)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a refused connection took %v; the port answered before, so it should be reset at once", d)
	}
	stop(t, p)
}

// With slirp4netns: tap0 at 10.0.2.100 with MTU 65520 (or --mtu), lo up,
// resolv.conf pointing at slirp's DNS, /etc/hosts naming the container.
func TestSlirpInterface(t *testing.T) {
	requireNet(t)
	r := run(t, rc("--hostname", "nethost", sh("/bin/probe ifaces; cat /etc/resolv.conf /etc/hosts"))...)
	wantCode(t, r, 0)
	for _, want := range []string{"iface lo mtu=65536 flags=up|loopback", "127.0.0.1/8",
		"iface tap0 mtu=65520 flags=up", "10.0.2.100/24", "nameserver 10.0.2.3", "nethost"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q in:\n%s", want, r)
		}
	}
	r = run(t, rc("--mtu", "1500", "--", "/bin/probe", "ifaces")...)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "iface tap0 mtu=1500 ") {
		t.Errorf("--mtu 1500 not applied:\n%s", r)
	}
}

// tap0 is made persistent by rabbitc before slirp4netns attaches to it
// (netns.CreateTap), with and without a sandbox (something published or
// not): a tap0 of slirp4netns's own is removed when slirp4netns exits,
// which made every container's end wait ~20 ms for the kernel.
func TestSlirpTapPersistent(t *testing.T) {
	requireNet(t)
	const iffPersist = 0x0800
	for _, extra := range [][]string{nil, {"-p", fmt.Sprintf("127.0.0.1:%d:80", freePort(t, 1))}} {
		r := run(t, rc(extra, "--", "/bin/cat", "/sys/class/net/tap0/tun_flags")...)
		wantCode(t, r, 0)
		flags, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 0, 32)
		if err != nil || flags&iffPersist == 0 {
			t.Errorf("%v: tap0's tun_flags %q, want IFF_PERSIST (0x800) set", extra, strings.TrimSpace(r.stdout))
		}
	}
}

// --net none: loopback only, up.
func TestNetNone(t *testing.T) {
	r := run(t, rcNoNet("--", "/bin/probe", "ifaces")...)
	wantCode(t, r, 0)
	lines := strings.Split(r.out(), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "iface lo ") || !strings.Contains(lines[0], "flags=up") {
		t.Errorf("want only lo, up:\n%s", r)
	}
}

// As docker: in the container's own network namespace any user binds a
// port below 1024 (busybox httpd binds before it daemonizes, and fails
// loudly when it cannot); with --net host, the host's rule stands.
func TestLowPortsForAnyUser(t *testing.T) {
	r := run(t, rcNoNet("-u", "1000:1000", "--", "sh", "-c", "httpd -p 80 -h / && echo bound")...)
	wantCode(t, r, 0)
	if !strings.Contains(r.out(), "bound") {
		t.Errorf("uid 1000 could not bind port 80 in its network namespace:\n%s", r)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(string(b)) != "0" {
		r := run(t, rc("--net", "host", "-u", "1000:1000", "--", "sh", "-c", "httpd -p 1 -h / && echo bound")...)
		if strings.Contains(r.out(), "bound") {
			t.Errorf("with --net host, uid 1000 bound the host's port 1:\n%s", r)
		}
	}
}

// docker's spellings: --network for --net, and --rm, which is what rabbitc
// always does (--rm=false is refused with one line).
func TestDockerFlagSpellings(t *testing.T) {
	r := run(t, rc("--rm", "--network", "none", "--", "/bin/probe", "ifaces")...)
	wantCode(t, r, 0)
	if lines := strings.Split(r.out(), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "iface lo ") {
		t.Errorf("--network none: want only lo:\n%s", r)
	}
	wantRuntimeError(t, run(t, rc("--rm=false", "--net", "none", "--", "true")...), "--rm=false")
}

// --add-host NAME:IP lines end /etc/hosts; host-gateway is slirp4netns's
// 10.0.2.2; --net none has no gateway to name.
func TestAddHost(t *testing.T) {
	r := run(t, rc("--add-host", "db:10.0.2.50", "--add-host", "host.docker.internal:host-gateway", "--", "cat", "/etc/hosts")...)
	wantCode(t, r, 0)
	if !strings.HasSuffix(r.stdout, "10.0.2.50\tdb\n10.0.2.2\thost.docker.internal\n") {
		t.Errorf("want the two entries at the end of /etc/hosts:\n%s", r)
	}
	wantRuntimeError(t, run(t, rcNoNet("--add-host", "gw:host-gateway", "--", "true")...), "host-gateway")
	wantRuntimeError(t, run(t, rcNoNet("--add-host", "db", "--", "true")...), "NAME:IP")
}

// --net host: the host's network namespace; --publish is refused.
func TestNetHost(t *testing.T) {
	requireSetup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go serveBanner(l, "host-net-banner\n")
	r := run(t, rc("--net", "host", sh("readlink /proc/self/ns/net; /bin/probe dial "+l.Addr().String()))...)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, env.hostNS["net"]) || !strings.Contains(r.stdout, "connected: host-net-banner") {
		t.Errorf("want the host's network namespace %s and the host's 127.0.0.1:\n%s", env.hostNS["net"], r)
	}
	port := freePort(t, 1)
	r = run(t, rc("--net", "host", "-p", fmt.Sprintf("%d:80", port), "--", "true")...)
	wantRuntimeError(t, r, "publish")
}

func serveBanner(l net.Listener, banner string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(banner))
		c.Close()
	}
}

// echoCheck sends msg over a new TCP connection to addr and expects it back.
func echoCheck(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != msg {
		return fmt.Errorf("echo from %s: got %q, want %q", addr, b, msg)
	}
	return nil
}

func waitEcho(t testing.TB, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := echoCheck(addr, "ping")
		if err == nil {
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("echo through %s: %v\n%s", addr, err, p.res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// udpEcho sends msg from a new socket to addr and expects it back.
func udpEcho(addr, msg string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 65536)
	for try := 0; try < 20; try++ {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if string(buf[:n]) != msg {
				return fmt.Errorf("udp echo: got %q, want %q", buf[:n], msg)
			}
			return nil
		}
	}
	return fmt.Errorf("udp echo from %s: no reply", addr)
}

// Several ports in one container, TCP and UDP, and a range.
func TestPublishSeveralPorts(t *testing.T) {
	requireNet(t)
	base := freePort(t, 6)
	o := opts{}
	p := start(t, o, rc(
		"-p", fmt.Sprintf("%d:80", base), "--publish", fmt.Sprintf("127.0.0.1:%d:81/tcp", base+1),
		"-p", fmt.Sprintf("%d:82/udp", base+2),
		"-p", fmt.Sprintf("%d-%d:9000-9002", base+3, base+5),
		"--", "/bin/echoserver", "-tcp", ":80", "-tcp", ":81", "-udp", ":82", "-tcp", ":9000", "-tcp", ":9001", "-tcp", ":9002")...)
	p.waitOutput(t, o, "listening tcp [::]:9002", 10*time.Second)
	waitEcho(t, p, fmt.Sprintf("127.0.0.1:%d", base))
	for i, port := range []int{base, base + 1, base + 3, base + 4, base + 5} {
		if err := echoCheck(fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("msg-%d", i)); err != nil {
			t.Errorf("port %d: %v", port, err)
		}
	}
	if err := udpEcho(fmt.Sprintf("127.0.0.1:%d", base+2), "udp-msg"); err != nil {
		t.Errorf("udp port %d: %v", base+2, err)
	}
	stop(t, p)
}

// UDP: replies go to the right client, for several clients at once.
func TestPublishUDP(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	p := startUDPEcho(t, fmt.Sprintf("127.0.0.1:%d:7/udp", port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := udpEcho(addr, "first"); err != nil {
		t.Fatalf("%v\n%s", err, p.stderr.String())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("udp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 2048)
			for j := 0; j < 20; j++ {
				msg := fmt.Sprintf("client-%d-datagram-%d-%s", i, j, strings.Repeat("x", i*100))
				got := false
				for try := 0; try < 10 && !got; try++ {
					c.Write([]byte(msg))
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					for {
						n, err := c.Read(buf)
						if err != nil {
							break
						}
						if string(buf[:n]) == msg {
							got = true
							break
						}
						if !strings.HasPrefix(string(buf[:n]), fmt.Sprintf("client-%d-", i)) {
							errs <- fmt.Errorf("client %d got another client's datagram %q", i, buf[:n])
							return
						}
					}
				}
				if !got {
					errs <- fmt.Errorf("client %d: no reply to datagram %d", i, j)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stop(t, p)
}

// startUDPEcho runs the UDP echo server on port 7 of a container that
// publishes it as publish.
func startUDPEcho(t *testing.T, publish string) *proc {
	t.Helper()
	o := opts{}
	p := start(t, o, rc("-p", publish, "--", "/bin/echoserver", "-udp", ":7")...)
	p.waitOutput(t, o, "listening udp", 10*time.Second)
	return p
}

// A UDP port published on all addresses (docker's default) answers from the
// address the client sent to: a connected client of 127.0.0.2 drops replies
// from 127.0.0.1, the routed source.
func TestPublishUDPAllAddresses(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	p := startUDPEcho(t, fmt.Sprintf("%d:7/udp", port))
	for _, host := range []string{"127.0.0.2", "127.0.0.1"} {
		if err := udpEcho(fmt.Sprintf("%s:%d", host, port), "to "+host); err != nil {
			t.Errorf("%s: %v\n%s", host, err, p.stderr.String())
		}
	}
	stop(t, p)
}

func ipv6Loopback(t testing.TB) {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 on the host's loopback (net.ipv6.conf.lo.disable_ipv6=1?): %v", err)
	}
	l.Close()
}

// An IPv6 host address: [::1]:PORT:80; the port is then bound on ::1 only.
func TestPublishIPv6Loopback(t *testing.T) {
	requireNet(t)
	ipv6Loopback(t)
	port := freePort(t, 1)
	o := opts{}
	p := start(t, o, rc("-p", fmt.Sprintf("[::1]:%d:80", port), "--cmd", "/bin/server")...)
	waitHTTP(t, p, fmt.Sprintf("http://[::1]:%d/", port), seedAnswer)
	if _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("published on [::1] only, but 127.0.0.1:%d answers too", port)
	}
	stop(t, p)

	p = start(t, o, rc("-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--cmd", "/bin/server")...)
	waitHTTP(t, p, fmt.Sprintf("http://127.0.0.1:%d/", port), seedAnswer)
	if _, err := httpGet(fmt.Sprintf("http://[::1]:%d/", port)); err == nil {
		t.Errorf("published on 127.0.0.1 only, but [::1]:%d answers too", port)
	}
	stop(t, p)
}

// 100 MB each way through a published port, with half-close in both
// directions and checksums on both ends.
func TestPublishTransfer100MB(t *testing.T) {
	requireNet(t)
	const size = 100 << 20
	port := freePort(t, 1)
	o := opts{timeout: 90 * time.Second}
	p := start(t, o, rc("-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--", "/bin/sink", "-listen", ":80")...)
	p.waitOutput(t, o, "listening tcp", 10*time.Second)

	sentHash := sha256.New()
	wantBack := sha256.New()
	io.CopyN(wantBack, rand.NewChaCha8([32]byte{2}), size) // what the sink sends back
	var c net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t0 := time.Now()
	// The sink answers only after our half-close, so write everything first.
	if _, err := io.CopyN(io.MultiWriter(c, sentHash), rand.NewChaCha8([32]byte{1}), size); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	br := bufio.NewReaderSize(c, 1<<20)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no report from the sink after our half-close: %v\n%s", err, p.stderr.String())
	}
	if want := fmt.Sprintf("%d %s\n", size, hex.EncodeToString(sentHash.Sum(nil))); line != want {
		t.Errorf("the container received %q, want %q", line, want)
	}
	got := sha256.New()
	n, err := io.Copy(got, br) // ends at the sink's close: half-close back to us
	if err != nil {
		t.Fatalf("receive: %v after %d bytes", err, n)
	}
	if n != size || hex.EncodeToString(got.Sum(nil)) != hex.EncodeToString(wantBack.Sum(nil)) {
		t.Errorf("received %d bytes with another checksum, want %d bytes of the sink's stream", n, size)
	}
	t.Logf("200 MB through the forwarder in %v", time.Since(t0).Round(time.Millisecond))
	stop(t, p)
}

// fdCounts counts the descriptors of rabbitc and every process below it
// except the payload (named skip).
func fdCounts(pid int, skip string) (map[string]int, int) {
	out := map[string]int{}
	total := 0
	pids := []procInfo{{pid: pid, comm: "rabbitc"}}
	pids = append(pids, descendants(pid)...)
	for _, p := range pids {
		if p.state == 'Z' || p.comm == skip {
			continue
		}
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		if err != nil {
			continue
		}
		out[fmt.Sprintf("%d(%s)", p.pid, p.comm)] = len(ents)
		total += len(ents)
	}
	return out, total
}

// 1000 concurrent connections, then clients that reset: no error, and the
// descriptor count of rabbitc's processes (parent, sandbox, slirp4netns) is
// flat afterwards.
func TestPublishManyConnections(t *testing.T) {
	requireNet(t)
	const conns = 1000
	port := freePort(t, 1)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	o := opts{timeout: 120 * time.Second}
	p := start(t, o, rc("-p", addr+":80", "--", "/bin/echoserver", "-tcp", ":80")...)
	p.waitOutput(t, o, "listening tcp", 10*time.Second)
	waitEcho(t, p, addr)
	for i := 0; i < 10; i++ { // warm up
		if err := echoCheck(addr, "warm-up"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	before, beforeTotal := fdCounts(p.pid(), "echoserver")
	var after, afterFirst map[string]int
	var afterTotal, afterFirstTotal int
	for round := 1; round <= 2; round++ {
		flood(t, addr, conns)
		// Clients that reset their connection (SO_LINGER 0) mid-transfer.
		for i := 0; i < 50; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte(strings.Repeat("r", 1000)))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		if err := echoCheck(addr, "still alive"); err != nil {
			t.Errorf("the forwarder stopped after resets: %v", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			after, afterTotal = fdCounts(p.pid(), "echoserver")
			if afterTotal <= beforeTotal || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if round == 1 {
			afterFirst, afterFirstTotal = after, afterTotal
		}
	}
	t.Logf("descriptors of rabbitc's processes: %d before, %d after %d connections, %d after %d more",
		beforeTotal, afterFirstTotal, conns+51, afterTotal, conns+51)
	// A constant pool (a spare splice pipe, a lazily created poller) is
	// flat; anything that grows with the number of connections is not:
	// after 2100 connections a leak of one descriptor in a hundred shows.
	if afterFirstTotal > beforeTotal+4 || afterTotal > beforeTotal+4 {
		t.Errorf("descriptors of rabbitc's processes are not flat: %d before, %d after %d connections, %d after %d more:\n before %v\n after  %v\n then   %v",
			beforeTotal, afterFirstTotal, conns+51, afterTotal, conns+51, before, afterFirst, after)
	}
	stop(t, p)
}

// flood opens conns connections at once, echoes a message on each and
// closes them all.
func flood(t *testing.T, addr string, conns int) {
	t.Helper()
	t0 := time.Now()
	var wg, connected sync.WaitGroup
	connected.Add(conns)
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 20*time.Second)
			connected.Done()
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			connected.Wait() // all of them open at once
			c.SetDeadline(time.Now().Add(30 * time.Second))
			msg := fmt.Sprintf("connection %d", i)
			if _, err := c.Write([]byte(msg)); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				errs <- fmt.Errorf("connection %d: got %q, %v", i, buf, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	nerr := 0
	for err := range errs {
		if nerr++; nerr <= 5 {
			t.Error(err)
		}
	}
	if nerr > 0 {
		t.Errorf("%d of %d connections failed", nerr, conns)
	}
	t.Logf("%d concurrent connections in %v", conns, time.Since(t0).Round(time.Millisecond))
}

// A host port in use: exit 125, one line naming the port, the payload never
// starts.
func TestPublishPortInUse(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	c := ctxOf(t)
	vol := userDir(t, "inuse", 0o755)
	marker := "touch /data/payload-started"

	l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.hold(hostPort{"tcp", "0.0.0.0", port}, true)
	r := run(t, rc("-v", vol+":/data", "-p", fmt.Sprintf("%d:80", port), sh(marker))...)
	wantRuntimeError(t, r, strconv.Itoa(port))
	l.Close()
	c.hold(hostPort{"tcp", "0.0.0.0", port}, false)

	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.hold(hostPort{"udp", "127.0.0.1", port}, true)
	r = run(t, rc("-v", vol+":/data", "-p", fmt.Sprintf("127.0.0.1:%d:53/udp", port), sh(marker))...)
	wantRuntimeError(t, r, strconv.Itoa(port))
	u.Close()
	c.hold(hostPort{"udp", "127.0.0.1", port}, false)

	// The second of two specs clashes: the first listener is closed again.
	other := freePort(t, 1)
	l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.hold(hostPort{"tcp", "127.0.0.1", port}, true)
	r = run(t, rc("-v", vol+":/data", "-p", fmt.Sprintf("127.0.0.1:%d:80", other), "-p", fmt.Sprintf("127.0.0.1:%d:81", port), sh(marker))...)
	wantRuntimeError(t, r, strconv.Itoa(port))
	l.Close()
	c.hold(hostPort{"tcp", "127.0.0.1", port}, false)

	if _, err := os.Stat(filepath.Join(vol, "payload-started")); err == nil {
		t.Errorf("the payload ran although publishing failed")
	}
}

// Every garbled --publish spec: exit 125 and one line.
func TestPublishBadSpecs(t *testing.T) {
	requireNet(t)
	port := strconv.Itoa(freePort(t, 1))
	for _, spec := range []string{
		"abc", "70000:80", ":80", "80/sctp", port + ":80/sctp", port + ":0", port + ":70000", port,
		"-1:80", port + ":80:90", "a:" + port + ":80", "999.1.1.1:" + port + ":80", "[::1:" + port + ":80",
		port + ":80/tcpx", port + "-" + port + ":80-82", port + ":abc", "", port + ":80/", "0x10:80",
	} {
		t.Run(spec, func(t *testing.T) {
			r := run(t, rc("-p", spec, "--", "true")...)
			wantRuntimeError(t, r)
		})
	}
	// A privileged host port names the sysctl that allows it.
	unprivStart := 1024
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		unprivStart, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if unprivStart > 1 {
		priv := unprivStart - 1
		if priv > 1023 {
			priv = 1023
		}
		if hp := (hostPort{"tcp", "127.0.0.1", priv}); hp.bindable() == nil {
			r := run(t, rc("-p", fmt.Sprintf("127.0.0.1:%d:80", priv), "--", "true")...)
			wantRuntimeError(t, r, "ip_unprivileged_port_start")
			wantDoctorHint(t, r)
		}
	}
}

// The container cannot reach the host's 127.0.0.1 through 10.0.2.2 unless
// --allow-host-loopback is given.
func TestHostLoopback(t *testing.T) {
	requireNet(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted sync.WaitGroup
	var mu sync.Mutex
	n := 0
	accepted.Add(1)
	go func() {
		defer accepted.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			c.Write([]byte("host-loopback-banner\n"))
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	target := fmt.Sprintf("10.0.2.2:%d", port)

	r := run(t, rc("--", "/bin/probe", "dial", target)...)
	mu.Lock()
	got := n
	mu.Unlock()
	if r.code == 0 || strings.Contains(r.stdout, "connected") || got != 0 {
		t.Errorf("the container reached the host's 127.0.0.1:%d through %s by default:\n%s", port, target, r)
	}
	r = run(t, rc("--allow-host-loopback", "--", "/bin/probe", "dial", target)...)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "connected: host-loopback-banner") {
		t.Errorf("--allow-host-loopback: no connection to the host's 127.0.0.1:%d:\n%s", port, r)
	}
	l.Close()
	accepted.Wait()
}

// A port can be published again as soon as the previous container ended.
func TestPublishRebindAtOnce(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	for i := 0; i < 3; i++ {
		o := opts{}
		p := start(t, o, rc("-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--cmd", "/bin/server")...)
		waitHTTP(t, p, fmt.Sprintf("http://127.0.0.1:%d/", port), seedAnswer)
		stop(t, p)
	}
}

// slirp4netns killed (SIGKILL) under a running container is noticed:
// rabbitc ends the container itself, says so in one line, and releases the
// published port (issue 5, point 8). The payload would run for a minute and
// the test sends rabbitc nothing, so a rabbitc that did not notice would
// still be running at the end of the wait.
func TestSlirpKilled(t *testing.T) {
	requireNet(t)
	for _, publish := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "sandbox"}[publish]
		t.Run(name, func(t *testing.T) {
			var flags []string
			var hp hostPort
			if publish {
				hp = hostPort{"tcp", "127.0.0.1", freePort(t, 1)}
				flags = []string{"-p", fmt.Sprintf("%s:%d:80", hp.ip, hp.port)}
			}
			o := opts{timeout: 15 * time.Second}
			p := start(t, o, rc(flags, sh("echo ready; exec sleep 60"))...)
			p.waitOutput(t, o, "ready", 10*time.Second)
			if publish && hp.bindable() == nil {
				t.Fatalf("published port %s is not held by rabbitc", hp)
			}
			slirp := findPayload(t, p, "slirp4netns")
			if err := killPid(slirp, syscall.SIGKILL); err != nil {
				t.Fatalf("kill slirp4netns: %v", err)
			}
			r := p.wait(t) // bounded by o.timeout; it checks for leftovers, the port included
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != 125 || len(lines) != 1 || !strings.HasPrefix(lines[0], "rabbitc: ") || !strings.Contains(lines[0], "slirp4netns") {
				t.Errorf("want exit 125 and one line about slirp4netns:\n%s", r)
			}
			if publish {
				if err := hp.bindable(); err != nil {
					t.Errorf("published port %s still bound after rabbitc exited: %v", hp, err)
				}
			}
		})
	}
}

// Ten containers started at once on the same host port: exactly one runs,
// nine fail cleanly (issue 5, point 8).
func TestTenOnSamePort(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	var procs []*proc
	for i := 0; i < 10; i++ {
		procs = append(procs, start(t, opts{}, rc("-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--", "sleep", "4")...))
	}
	ok := 0
	for _, p := range procs {
		r := p.wait(t)
		switch r.code {
		case 0:
			ok++
		case 125:
			wantRuntimeError(t, r, strconv.Itoa(port))
		default:
			t.Errorf("want 0 or 125:\n%s", r)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 10 containers ran, want exactly 1", ok)
	}
}

// slirp4netns missing from $PATH: one line naming it, exit 125.
func TestSlirpMissing(t *testing.T) {
	requireNet(t)
	dir := mapToolsDir(t, "path-without-slirp")
	r := runOpt(t, opts{path: dir}, rc("--", "true")...)
	wantRuntimeError(t, r, "slirp4netns")
	wantDoctorHint(t, r)
	r = runOpt(t, opts{path: dir}, rcNoNet("--", "true")...)
	wantCode(t, r, 0)
}

// help040beta1 is slirp4netns 0.4.0-beta.1's --help (July 2019, from its
// usage() in main.c): it has --netns-type, --ready-fd and --exit-fd, which
// rabbitc needs to run it at all, but neither --enable-sandbox nor
// --enable-seccomp, which came with 0.4.0.
const help040beta1 = `Usage: slirp4netns [OPTION]... PID|PATH TAPNAME
User-mode networking for unprivileged network namespaces.

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE 	 specify network namespace type ([path|pid], default=pid)
--userns-path=PATH	 specify user namespace path
-a, --api-socket=PATH    specify API socket path
-6, --enable-ipv6        enable IPv6 (experimental)
-h, --help               show this help and exit
-v, --version            show version and exit
`

// fakeSlirp is a $PATH directory for rabbitc holding newuidmap, newgidmap and
// a slirp4netns script that answers --help with help and --version with
// "slirp4netns version VERSION" (the real slirp4netns's answer if version is
// ""). Any other run is logged to the file args; it then execs the real
// slirp4netns with the same arguments, or, with execReal false, exits 1
// having started nothing.
type fakeSlirp struct {
	dir, path, args string
}

// mapToolsDir is a directory for $PATH that holds newuidmap and newgidmap
// (links to the host's) and nothing else: no slirp4netns.
func mapToolsDir(t *testing.T, name string) string {
	t.Helper()
	dir := userDir(t, name, 0o755)
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newFakeSlirp(t *testing.T, name, help, version string, execReal bool) fakeSlirp {
	t.Helper()
	real, err := exec.LookPath("slirp4netns")
	if err != nil {
		t.Fatal("slirp4netns not found in $PATH (install slirp4netns >= 0.4: apt-get install slirp4netns)")
	}
	f := fakeSlirp{dir: mapToolsDir(t, name)}
	f.path, f.args = filepath.Join(f.dir, "slirp4netns"), filepath.Join(f.dir, "args")
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	versionCmd := "exec " + q(real) + " --version"
	if version != "" {
		versionCmd = "printf '%s\\n' " + q("slirp4netns version "+version) + "; exit 0"
	}
	rest := "echo 'fake slirp4netns: not started' >&2; exit 1"
	if execReal {
		rest = "exec " + q(real) + ` "$@"`
	}
	script := "#!/bin/sh\n" +
		"case \"$1\" in\n" +
		"--help|-h) printf '%s' " + q(help) + "; exit 0;;\n" +
		"--version|-v) " + versionCmd + ";;\n" +
		"esac\n" +
		"printf '%s\\n' \"$*\" >> " + q(f.args) + "\n" +
		rest + "\n"
	userFile(t, f.path, script, 0o755)
	return f
}

// runs returns the argument lists the fake was started with.
func (f fakeSlirp) runs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(f.args)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// A slirp4netns without --enable-sandbox and --enable-seccomp is refused
// with its version and the fix, before anything starts, not run without
// them (issue 12, item 5); the --security-opt for one only narrows the
// refusal to the other. One without --disable-host-loopback is refused for
// the default network even when the user lets the sandbox and seccomp go.
func TestSlirpLacksConfinement(t *testing.T) {
	requireNet(t)
	f := newFakeSlirp(t, "slirp-0.4.0-beta.1", help040beta1, "0.4.0-beta.1", false)
	r := runOpt(t, opts{path: f.dir}, rc("--", "true")...)
	wantRuntimeError(t, r)
	want := "rabbitc: slirp4netns 0.4.0-beta.1 (" + f.path + ") lacks --enable-sandbox and --enable-seccomp " +
		"(install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false --security-opt slirp4netns-seccomp=false to run without them)" + doctorHint + "\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	r = runOpt(t, opts{path: f.dir}, rc("--security-opt", "slirp4netns-seccomp=false", "--", "true")...)
	wantRuntimeError(t, r)
	want = "rabbitc: slirp4netns 0.4.0-beta.1 (" + f.path + ") lacks --enable-sandbox " +
		"(install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false to run without it)" + doctorHint + "\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}

	noLoop := strings.Replace(help040beta1, "--disable-host-loopback", "--no-such-option", 1)
	g := newFakeSlirp(t, "slirp-no-host-loopback", noLoop, "0.4.0-beta.1", false)
	r = runOpt(t, opts{path: g.dir}, rc("--security-opt", "slirp4netns-sandbox=false", "--security-opt", "slirp4netns-seccomp=false", "--", "true")...)
	wantRuntimeError(t, r)
	want = "rabbitc: slirp4netns 0.4.0-beta.1 (" + g.path + ") lacks --disable-host-loopback, so the container would reach every service " +
		"on the host's 127.0.0.1 (install slirp4netns >= 0.4.0, or pass --allow-host-loopback to allow that)" + doctorHint + "\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	if runs := append(f.runs(t), g.runs(t)...); len(runs) > 0 {
		t.Errorf("the refused slirp4netns was started: %q", runs)
	}
}

// A slirp4netns built without --enable-seccomp (the installed one, whose
// --help leaves the option out) is refused; with
// --security-opt slirp4netns-seccomp=false the container runs, slirp4netns
// without --enable-seccomp but with its other options, and rabbitc says so
// in one warning line (issue 12, item 5).
func TestSlirpWithoutSeccomp(t *testing.T) {
	requireNet(t)
	real, err := exec.LookPath("slirp4netns")
	if err != nil {
		t.Fatal("slirp4netns not found in $PATH (install slirp4netns >= 0.4: apt-get install slirp4netns)")
	}
	help, err := exec.Command(real, "--help").Output()
	if err != nil {
		t.Fatalf("%s --help: %v", real, err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(string(help), "\n") {
		if !strings.Contains(line, "--enable-seccomp") {
			kept = append(kept, line)
		}
	}
	out, err := exec.Command(real, "--version").Output()
	version, ok := strings.CutPrefix(strings.SplitN(string(out), "\n", 2)[0], "slirp4netns version ")
	if err != nil || !ok {
		t.Fatalf("%s --version: %q, %v", real, out, err)
	}
	f := newFakeSlirp(t, "slirp-without-seccomp", strings.Join(kept, ""), "", true)
	name := "slirp4netns " + version + " (" + f.path + ")"

	r := runOpt(t, opts{path: f.dir}, rc("--", "echo", "ran")...)
	wantRuntimeError(t, r)
	want := "rabbitc: " + name + " lacks --enable-seccomp (install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-seccomp=false to run without it)" + doctorHint + "\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	if runs := f.runs(t); len(runs) > 0 {
		t.Fatalf("the refused slirp4netns was started: %q", runs)
	}

	r = runOpt(t, opts{path: f.dir}, rc("--security-opt", "slirp4netns-seccomp=false", "--", "echo", "ran")...)
	wantCode(t, r, 0)
	if r.out() != "ran" {
		t.Errorf("want the payload's output \"ran\":\n%s", r)
	}
	want = "rabbitc: warning: slirp4netns runs without --enable-seccomp (--security-opt slirp4netns-seccomp=false): " +
		name + " lacks --enable-seccomp (install slirp4netns >= 0.4.0 to have it)\n"
	if r.stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
	}
	runs := f.runs(t)
	if len(runs) != 1 {
		t.Fatalf("slirp4netns started %d times, want once: %q", len(runs), runs)
	}
	args := " " + runs[0] + " "
	for _, want := range []string{" --disable-host-loopback ", " --enable-sandbox "} {
		if !strings.Contains(args, want) {
			t.Errorf("slirp4netns ran without%s: %s", want, runs[0])
		}
	}
	if strings.Contains(args, " --enable-seccomp ") {
		t.Errorf("slirp4netns ran with --enable-seccomp, which its --help does not list: %s", runs[0])
	}
}

// /dev/net/tun that the user cannot open (mode 0600, as on some fresh
// machines): one line naming it, exit 125. The device is replaced in a
// private mount namespace, which needs root to set up; rabbitc runs as the
// test user.
func TestTunUnusable(t *testing.T) {
	requireNet(t)
	if os.Geteuid() != 0 {
		t.Skip("replacing /dev/net/tun needs root; the tests do not run as root")
	}
	dir := userDir(t, "tun", 0o755)
	node := filepath.Join(dir, "tun")
	if err := syscall.Mknod(node, syscall.S_IFCHR|0o600, 10<<8|200); err != nil {
		t.Fatalf("mknod: %v", err)
	}
	xdg := userDir(t, "xdg-tun", 0o700)
	script := fmt.Sprintf(`mount --bind %s /dev/net/tun && `+
		`exec setpriv --reuid %d --regid %d --init-groups env XDG_RUNTIME_DIR=%s HOME=%s %s run --rootfs %s -- true`,
		node, env.user.uid, env.user.gid, xdg, env.user.home, env.bin, env.rootfs)
	r := runOpt(t, opts{bin: "unshare", asRoot: true}, "--mount", "--propagation", "private", "sh", "-c", script)
	wantRuntimeError(t, r, "/dev/net/tun")
	wantDoctorHint(t, r)
	if left := listTree(filepath.Join(xdg, "rabbitc")); len(left) > 0 {
		t.Errorf("state left behind: %v", left)
	}
}
