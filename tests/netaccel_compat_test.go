package tests

// Issue 16, item 4: the compatibility matrix of network acceleration, all
// with the switch on (opts.netAdmin, netaccel_test.go says why) and
// traffic only to servers on the host's 127.0.0.1, reached at 10.0.2.2 with
// --allow-host-loopback: a Go HTTP client under load, busybox wget, a
// blocking connect while signals arrive, python3's http.client and urllib,
// nginx's proxy_pass, whose upstream sockets are registered with epoll
// before they connect and so must fall back to slirp4netns and still work,
// and the host's own curl and Node.js's http module (tests/setup.sh
// installs them), run from a rootfs that binds the host's /usr
// (hostUsrRC): Node.js is left out of the Debian fixture, its runtime is
// over 80 MB installed in bookworm. (rabbitc exec is in netaccel_test.go.)
//
// The proof of a switch, for clients whose local address the test cannot
// print, is the host's view: the client side of the connection the host's
// server accepted is a socket of the host's network namespace, held either
// by the container's process (switched) or by slirp4netns (not).

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// ownerServer is an HTTP server on the host's 127.0.0.1: / answers the
// address it sees the client at, /blob serves blob. With owners, it notes
// for each request which process holds the client's socket (socketOwner).
type ownerServer struct {
	port   int
	blob   []byte
	lookup bool
	mu     sync.Mutex
	n      int
	owners []string
}

func newOwnerServer(t *testing.T, lookup bool) *ownerServer {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ownerServer{port: l.Addr().(*net.TCPAddr).Port, lookup: lookup}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return s
}

func (s *ownerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	owner := ""
	if s.lookup {
		owner = socketOwner(r.RemoteAddr)
	}
	s.mu.Lock()
	s.n++
	if s.lookup {
		s.owners = append(s.owners, owner)
	}
	s.mu.Unlock()
	if r.URL.Path == "/blob" {
		w.Header().Set("Content-Length", strconv.Itoa(len(s.blob)))
		w.Write(s.blob)
		return
	}
	fmt.Fprintf(w, "%s\n", r.RemoteAddr)
}

// url is the server's address as the container reaches it.
func (s *ownerServer) url(path string) string {
	return fmt.Sprintf("http://10.0.2.2:%d%s", s.port, path)
}

func (s *ownerServer) requests() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, append([]string(nil), s.owners...)
}

// socketOwner names (comm) the process that holds the host's TCP socket
// whose local address is addr ("127.0.0.1:PORT"), or says why none.
func socketOwner(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		return "not 127.0.0.1: " + addr
	}
	p, _ := strconv.Atoi(port)
	inode := ""
	// /proc/net/tcp, read in pieces, may miss an entry while other sockets
	// come and go: a few tries.
	for try := 0; try < 5 && inode == ""; try++ {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			return err.Error()
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// The address is 127.0.0.1 in the host's byte order.
			if len(f) > 9 && f[9] != "0" && (f[1] == fmt.Sprintf("0100007F:%04X", p) || f[1] == fmt.Sprintf("7F000001:%04X", p)) {
				inode = f[9]
			}
		}
		if inode == "" {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if inode == "" {
		return "no socket at " + addr
	}
	want := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, fds := range procs {
		ents, _ := os.ReadDir(fds)
		for _, e := range ents {
			if l, _ := os.Readlink(filepath.Join(fds, e.Name())); l == want {
				comm, _ := os.ReadFile(filepath.Join(filepath.Dir(fds), "comm"))
				return strings.TrimSpace(string(comm))
			}
		}
	}
	return "no process holds " + addr
}

// keyValues parses a payload's "key: value" lines (the last of each key).
func keyValues(out string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			kv[k] = v
		}
	}
	return kv
}

var accelStatsRe = regexp.MustCompile(`network acceleration: (\d+) connects switched, (\d+) calls continued, (\d+) refused, (\d+) overloaded`)

// accelStats is what --debug printed at exit: switched and overloaded
// connects; ok false without the line.
func accelStats(stderr string) (switched, overloaded int, ok bool) {
	m := accelStatsRe.FindStringSubmatch(stderr)
	if m == nil {
		return 0, 0, false
	}
	switched, _ = strconv.Atoi(m[1])
	overloaded, _ = strconv.Atoi(m[4])
	return switched, overloaded, true
}

// A static Go HTTP client: 200 GETs, 16 at a time, each on a new
// connection, while goroutines burning CPU make the runtime preempt with
// SIGURG. Every GET succeeds, and each connection is either switched (its
// local address is the one the server saw) or, when the supervisor was
// busy, went through slirp4netns; the switched ones are those the
// supervisor counts.
func TestNetAccelGoHTTPLoad(t *testing.T) {
	requireAccel(t)
	srv := newOwnerServer(t, false)
	const n = 200
	r := runOpt(t, opts{netAdmin: true, timeout: 60 * time.Second},
		rc("--debug", "--allow-host-loopback", "--", "/bin/httpload", "-n", itoa(n), "-c", "16", "-spin", "4", "-timeout", "40s", srv.url("/"))...)
	wantCode(t, r, 0)
	kv := keyValues(r.stdout)
	num := func(k string) int { i, _ := strconv.Atoi(kv[k]); return i }
	switched, overloaded, ok := accelStats(r.stderr)
	if !ok {
		t.Fatalf("no acceleration counts with --debug:\n%s", r)
	}
	if got, _ := srv.requests(); num("ok") != n || got != n {
		t.Errorf("want %d GETs answered (the server saw %d):\n%s", n, got, r)
	}
	if num("switched")+num("slirp") != n || num("other") != 0 {
		t.Errorf("connections neither switched nor through slirp4netns:\n%s", r)
	}
	if num("switched") != switched || num("switched") < n/2 {
		t.Errorf("%s connections had host sockets, the supervisor counted %d switched (want them equal, and most of %d):\n%s",
			kv["switched"], switched, n, r)
	}
	if num("sigurg") == 0 {
		t.Errorf("no SIGURG arrived: the load did not make the runtime preempt:\n%s", r)
	}
	t.Logf("%d switched, %d through slirp4netns (%d overloaded), %d SIGURGs, in %v",
		num("switched"), num("slirp"), overloaded, num("sigurg"), r.dur.Round(time.Millisecond))
}

// busybox wget downloads 4 MB from the host's server, as apt or pip would
// from a local mirror: the checksum matches, and the connection is wget's
// own host socket; with --net-accel=off, slirp4netns's.
func TestNetAccelWgetDownload(t *testing.T) {
	requireAccel(t)
	srv := newOwnerServer(t, true)
	srv.blob = make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{16}).Read(srv.blob)
	sum := sha256.Sum256(srv.blob)
	want := hex.EncodeToString(sum[:])
	for i, tc := range []struct {
		name  string
		flags []string
		owner string
	}{
		{"on", nil, "wget"},
		{"off", []string{"--net-accel=off"}, "slirp4netns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOpt(t, opts{netAdmin: true}, rc("--debug", "--allow-host-loopback", tc.flags,
				sh("wget -q -O - "+srv.url("/blob")+" | sha256sum"))...)
			wantCode(t, r, 0)
			if got, _, _ := strings.Cut(r.out(), " "); got != want {
				t.Errorf("sha256 of the download %q, want %q:\n%s", got, want, r)
			}
			if n, owners := srv.requests(); n != i+1 || owners[i] != tc.owner {
				t.Errorf("the host's side of the download was held by %q, want %q (%d requests):\n%s", owners, tc.owner, n, r)
			}
		})
	}
}

// fullListener listens on the host's 127.0.0.1 with a backlog of 0 and a
// connection in its queue: a connect to it neither succeeds nor fails
// until free accepts that connection, after which the next SYN the client
// retransmits (1 s, 3 s, 7 s ... after the first) is answered.
func fullListener(t *testing.T) (port int, free func()) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	raw, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) { err = unix.Listen(int(fd), 0) })
	if err != nil {
		t.Fatal(err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("fill the listener's queue: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return port, func() {
		go func() { // the filler, then whoever comes
			for {
				a, err := l.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { a.Close() })
			}
		}()
	}
}

// A blocking connect to an address that does not answer yet, while
// SIGUSR1 arrives at its thread every 100 ms: with a handler without
// SA_RESTART it answers EINTR at the first signal and the attempt goes on
// (EALREADY); with SA_RESTART it goes on through all ten signals and
// answers when the server makes room, 1.5 s in. The same with and without
// the switch.
func TestNetAccelSignalsDuringConnect(t *testing.T) {
	requireAccel(t)
	if _, err := os.Stat(filepath.Join(env.rootfs, "bin", "sigconnect")); err != nil {
		t.Skip("no sigconnect payload on this architecture (it has assembly for amd64 and arm64)")
	}
	for _, mode := range []struct {
		name  string
		flags []string
		local string // of a connected socket
	}{
		{"on", nil, "127.0.0.1:"},
		{"off", []string{"--net-accel=off"}, "10.0.2.100:"},
	} {
		t.Run(mode.name+"/no-restart", func(t *testing.T) {
			port, _ := fullListener(t)
			r := runOpt(t, opts{netAdmin: true}, rc("--debug", "--allow-host-loopback", mode.flags, "--",
				"/bin/sigconnect", fmt.Sprintf("10.0.2.2:%d", port))...)
			kv := keyValues(r.stdout)
			if kv["connect"] != "EINTR" || kv["signals"] != "1" || kv["again"] != "EALREADY" {
				t.Errorf("want EINTR at the first signal, then EALREADY:\n%s", r)
			}
			if sw, _, _ := accelStats(r.stderr); mode.name == "on" && sw != 1 {
				t.Errorf("the connect was not switched (%d):\n%s", sw, r)
			}
		})
		t.Run(mode.name+"/restart", func(t *testing.T) {
			port, free := fullListener(t)
			time.AfterFunc(1500*time.Millisecond, free)
			r := runOpt(t, opts{netAdmin: true}, rc("--debug", "--allow-host-loopback", mode.flags, "--",
				"/bin/sigconnect", "-restart", fmt.Sprintf("10.0.2.2:%d", port))...)
			wantCode(t, r, 0)
			kv := keyValues(r.stdout)
			if n, _ := strconv.Atoi(kv["signals"]); kv["connect"] != "ok" || n < 5 || !strings.HasPrefix(kv["local"], mode.local) {
				t.Errorf("want the connect made (local %s...) after several signals:\n%s", mode.local, r)
			}
		})
	}
}

// netClientsImage pushes the Debian fixture with its third layer (python3,
// nginx: tests/setup.sh, net_clients_layer); the test skips without it.
func netClientsImage(t *testing.T) string {
	t.Helper()
	base := debianImageDir()
	top := filepath.Join(filepath.Dir(base), "debian-bookworm-net-clients-1")
	for _, f := range []string{filepath.Join(base, "image.json"), filepath.Join(top, "layer.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("no Debian fixture with python3 and nginx (%v): run tests/setup.sh as root on a host whose apt sources reach a Debian bookworm mirror", err)
		}
	}
	return pushLayers(t, "debian/net-clients:bookworm", v1.Config{Cmd: []string{"python3"}},
		filepath.Join(base, "layer1.tar.gz"), filepath.Join(base, "layer2.tar.gz"), filepath.Join(top, "layer3.tar.gz"))
}

// pyConnect prints the local address of an http.client connection to
// 10.0.2.2:PORT and the address the server saw it at, then GETs the same
// with urllib.request.
const pyConnect = `import http.client, sys, urllib.request
port = int(sys.argv[1])
c = http.client.HTTPConnection("10.0.2.2", port)
c.connect()
print("local: %s:%d" % c.sock.getsockname())
c.request("GET", "/")
print("seen:", c.getresponse().read().decode().strip())
print("urlopen:", urllib.request.urlopen("http://10.0.2.2:%d/" % port).read().decode().strip())
`

// python3's http.client and urllib, blocking sockets that connect before
// anything else, are switched: the socket's local address is the one the
// server saw, and python3 holds the host's side of both connections; the
// same as the image's user www-data. Then nginx, in a container of its own,
// proxies a request made from the host through -p to the host's server:
// its worker (as nobody) registers the upstream socket with epoll before
// it connects, so it is not switched (slirp4netns holds the host's side),
// and the request is answered.
func TestNetAccelDistroClients(t *testing.T) {
	requireAccel(t)
	ref := netClientsImage(t)
	d := newDetachedEnv(t)
	d.netAdmin = true
	data := userDir(t, "xdg-data", 0o700)
	d.env = []string{"XDG_DATA_HOME=" + data}
	defer func() { wantCode(t, d.run("system", "reset"), 0) }()
	wantCode(t, d.run("pull", "-q", ref), 0)
	srv := newOwnerServer(t, true)

	t.Run("python3", func(t *testing.T) {
		r := runOpt(t, d.opts(), "run", "--debug", "--allow-host-loopback", ref, "python3", "-c", pyConnect, itoa(srv.port))
		wantCode(t, r, 0)
		kv := keyValues(r.stdout)
		if !strings.HasPrefix(kv["local"], "127.0.0.1:") || kv["local"] != kv["seen"] || !strings.HasPrefix(kv["urlopen"], "127.0.0.1:") {
			t.Errorf("http.client's connection was not switched (local %q, the server saw %q):\n%s", kv["local"], kv["seen"], r)
		}
		if n, owners := srv.requests(); n != 2 || owners[0] != "python3" || owners[1] != "python3" {
			t.Errorf("the host's side of python3's connections was held by %q, want python3 for both:\n%s", owners, r)
		}
	})

	// A process of another user than the container's root, whose
	// descriptors the supervisor lists through fdinfo (netaccel, sharing).
	t.Run("python3-www-data", func(t *testing.T) {
		n0, _ := srv.requests()
		r := runOpt(t, d.opts(), "run", "--debug", "--allow-host-loopback", "--user", "www-data", ref, "python3", "-c", pyConnect, itoa(srv.port))
		wantCode(t, r, 0)
		kv := keyValues(r.stdout)
		if !strings.HasPrefix(kv["local"], "127.0.0.1:") || kv["local"] != kv["seen"] || !strings.HasPrefix(kv["urlopen"], "127.0.0.1:") {
			t.Errorf("http.client's connection as www-data was not switched (local %q, the server saw %q):\n%s", kv["local"], kv["seen"], r)
		}
		if n, owners := srv.requests(); n != n0+2 || owners[n0] != "python3" || owners[n0+1] != "python3" {
			t.Errorf("the host's side of python3's connections was held by %q, want python3 for both:\n%s", owners[n0:], r)
		}
	})

	t.Run("nginx", func(t *testing.T) {
		n0, _ := srv.requests()
		hp := freePort(t, 1)
		conf := fmt.Sprintf(`worker_processes 1; pid /tmp/nginx.pid; error_log stderr;
events { worker_connections 64; }
http { access_log off; client_body_temp_path /tmp/b; proxy_temp_path /tmp/p; fastcgi_temp_path /tmp/f; uwsgi_temp_path /tmp/u; scgi_temp_path /tmp/s;
  server { listen 8080; location / { proxy_pass http://10.0.2.2:%d; } } }
`, srv.port)
		script := fmt.Sprintf(`python3 -c "$1" %d && printf '%%s' "$2" >/tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g 'daemon off;'`, srv.port)
		o := d.opts()
		o.timeout = 40 * time.Second
		p := start(t, o, "run", "--debug", "--allow-host-loopback", "-p", fmt.Sprintf("127.0.0.1:%d:8080", hp), ref,
			"sh", "-c", script, "sh", pyConnect, conf)
		body, err := getPage(fmt.Sprintf("http://127.0.0.1:%d/", hp), 20*time.Second)
		p.signal(t, unix.SIGTERM)
		r := p.wait(t)
		t.Logf("nginx's run:\n%s", r)
		if err != nil || !strings.HasPrefix(body, "127.0.0.1:") {
			t.Fatalf("GET through nginx's proxy_pass: %q, %v:\n%s", body, err, r)
		}
		if !strings.Contains(r.stderr, "connect not switched: descriptor ") || !strings.Contains(r.stderr, ": the socket is registered with epoll descriptor ") {
			t.Errorf("--debug does not say nginx's upstream socket was left alone for its epoll registration:\n%s", r)
		}
		n, owners := srv.requests()
		want := []string{"python3", "python3", "slirp4netns"}
		if n != n0+3 || strings.Join(owners[n0:], " ") != strings.Join(want, " ") {
			t.Errorf("the host's side of the container's connections was held by %q, want %q (python3 switched, nginx's upstream through slirp4netns):\n%s",
				owners[n0:], want, r)
		}
	})
}

// hostUsrRC is rc for a rootfs of nothing but mount points and the links
// of a merged /usr (bin -> usr/bin, ...), as the host has them, with the
// host's /usr bound read-only (and the host's /lib and the like, where
// they are directories): the host's own dynamically linked programs run in
// it as on the host. It fails the test when a program of progs is missing
// (tests/setup.sh installs them).
func hostUsrRC(t *testing.T, progs ...string) func(args ...any) []string {
	t.Helper()
	for _, p := range progs {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v: %s", err, fixIt)
		}
	}
	r := userDir(t, "host-usr-rootfs", 0o755)
	run := []string{"run", "--rootfs", r, "-v", "/usr:/usr:ro"}
	for _, d := range []string{"usr", "proc", "sys", "dev", "etc", "tmp", "root"} {
		if err := os.Mkdir(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := chownToUser(filepath.Join(r, d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		fi, err := os.Lstat("/" + d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink("/" + d)
			if err == nil {
				err = os.Symlink(target, filepath.Join(r, d))
			}
			if err != nil {
				t.Fatal(err)
			}
		case fi.IsDir(): // not merged
			if err := os.Mkdir(filepath.Join(r, d), 0o755); err != nil {
				t.Fatal(err)
			}
			run = append(run, "-v", "/"+d+":/"+d+":ro")
		}
		if err := chownToUser(filepath.Join(r, d)); err != nil {
			t.Fatal(err)
		}
	}
	return func(args ...any) []string { return append(slices.Clip(run), flatten(args)...) }
}

// The host's curl downloads 4 MB from the host's server, as a build would
// from a local mirror: the checksum matches, and the connection is curl's
// own host socket (its local address is 127.0.0.1, the host's side is held
// by curl); with --net-accel=off, the same through slirp4netns.
func TestNetAccelCurl(t *testing.T) {
	requireAccel(t)
	rcUsr := hostUsrRC(t, "/usr/bin/curl", "/usr/bin/sha256sum")
	srv := newOwnerServer(t, true)
	srv.blob = make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{16, 4}).Read(srv.blob)
	sum := sha256.Sum256(srv.blob)
	want := hex.EncodeToString(sum[:])
	// No proxy from anywhere (the container's environment is rabbitc's
	// own; --noproxy covers a .curlrc); the address is a literal: no
	// lookup.
	script := "curl -sS --fail --noproxy '*' --max-time 20 -o /tmp/blob -w 'local: %{local_ip}:%{local_port}\\n' " +
		srv.url("/blob") + " && printf 'sha256: ' && sha256sum /tmp/blob"
	for i, tc := range []struct {
		name  string
		flags []string
		local string
		owner string
	}{
		{"on", nil, "127.0.0.1:", "curl"},
		{"off", []string{"--net-accel=off"}, "10.0.2.100:", "slirp4netns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOpt(t, opts{netAdmin: true}, rcUsr("--debug", "--allow-host-loopback", "--tmpfs", "/tmp", tc.flags, sh(script))...)
			wantCode(t, r, 0)
			kv := keyValues(r.stdout)
			if got, _, _ := strings.Cut(kv["sha256"], " "); got != want {
				t.Errorf("sha256 of the download %q, want %q:\n%s", got, want, r)
			}
			if !strings.HasPrefix(kv["local"], tc.local) {
				t.Errorf("curl's socket had the local address %q, want %s...:\n%s", kv["local"], tc.local, r)
			}
			if n, owners := srv.requests(); n != i+1 || owners[i] != tc.owner {
				t.Errorf("the host's side of the download was held by %q, want %q (%d requests):\n%s", owners, tc.owner, n, r)
			}
			if sw, _, _ := accelStats(r.stderr); tc.name == "on" && sw != 1 {
				t.Errorf("the supervisor counted %d connects switched, want 1:\n%s", sw, r)
			}
		})
	}
}

// nodeGets makes 20 GETs with Node's http module, each on a connection of
// its own (agent: false): 10 one after the other, then 10 at once. For
// each it prints the socket's local address and the address the server
// saw; "done: N" counts the answers, and the whole is bounded in time.
const nodeGets = `const http = require("http");
const port = +process.argv[1];
setTimeout(() => { console.log("timeout"); process.exit(2); }, 20000).unref();
function get() {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "10.0.2.2", port, path: "/", agent: false, timeout: 10000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => {
        console.log("get: " + res.socket.localAddress + ":" + res.socket.localPort + " " + body.trim());
        resolve();
      });
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}
(async () => {
  let n = 0;
  for (let i = 0; i < 10; i++) { await get(); n++; }
  await Promise.all(Array.from({ length: 10 }, () => get().then(() => { n++; })));
  console.log("done: " + n);
})().catch((e) => { console.log("error: " + e.message); process.exit(1); });
`

// Node.js's http module (libuv: it creates a socket, connects it, and only
// then registers it with epoll) is switched: 20 GETs, 10 of them at once,
// all answered, each from a socket whose local address is the one the
// server saw and whose host side node holds, and the supervisor counts 20
// switched connects.
func TestNetAccelNode(t *testing.T) {
	requireAccel(t)
	rcUsr := hostUsrRC(t, "/usr/bin/node")
	srv := newOwnerServer(t, true)
	const n = 20
	r := runOpt(t, opts{netAdmin: true}, rcUsr("--debug", "--allow-host-loopback", "--", "node", "-e", nodeGets, itoa(srv.port))...)
	wantCode(t, r, 0)
	if kv := keyValues(r.stdout); kv["done"] != itoa(n) {
		t.Fatalf("want %d GETs answered:\n%s", n, r)
	}
	var gets, notSwitched int
	for _, line := range strings.Split(r.stdout, "\n") {
		if get, ok := strings.CutPrefix(line, "get: "); ok {
			gets++
			if local, seen, _ := strings.Cut(get, " "); !strings.HasPrefix(local, "127.0.0.1:") || local != seen {
				notSwitched++
			}
		}
	}
	got, owners := srv.requests()
	if gets != n || got != n {
		t.Errorf("%d GETs printed, the server saw %d, want %d:\n%s", gets, got, n, r)
	}
	if notSwitched != 0 {
		t.Errorf("%d of the GETs' connections were not switched (their local address is not the one the server saw):\n%s", notSwitched, r)
	}
	for _, o := range owners {
		if o != "node" {
			t.Errorf("the host's side of node's connections was held by %q, want node for all:\n%s", owners, r)
			break
		}
	}
	if sw, _, _ := accelStats(r.stderr); sw != n {
		t.Errorf("the supervisor counted %d connects switched, want %d:\n%s", sw, n, r)
	}
}
