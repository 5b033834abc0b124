//go:build portfwdbench

// This file measures the forwarder against the alternatives that decided its
// design (see loop.go). It needs iperf3 and wrk, takes a few minutes, and is
// not part of `go test ./...`:
//
//	go test -tags portfwdbench -run TestBench -v -timeout 20m ./portfwd
//
// Each forwarder runs in its own process (its child in another), listens on
// 127.0.0.1 and forwards to a server on 127.0.0.1; the forwarding process's
// CPU comes from /proc/PID/stat around each run:
//
//   - rabbitc:     Listen/Serve and ServeChild over one SEQPACKET socketpair
//   - rootlesskit: RootlessKit v3's builtin parent (pkg/port/builtin/parent/tcp,
//     io.Copy between two *net.TCPConn, one unix-socket dial per
//     connection) and a child that answers its msg protocol
//   - iocopy:      io.Copy both ways between two *net.TCPConn, dialing the
//     server directly (no child at all)
//   - rk-1.1-bin:  the rootlesskit binary in $PATH with --port-driver=builtin,
//     servers inside its network namespace (see rootlesskitBinPeer)
//
// BENCH_SECONDS (3) sets the length of each run, BENCH_ROUNDS (1) how many
// runs of each, alternating between the forwarders; medians are reported,
// and rabbitc's ratio to rk-1.1-bin paired by round. BENCH_MODES and
// BENCH_CASES (comma-separated, e.g. "rabbitc,rk-1.1-bin" and
// "req/s c32,4 streams") run only those.
//
// Every process here shares the test's session, so this harness does not
// show what the container's own session does to the p99 over 32
// connections (see loop.go): measure that with the real binaries.
package portfwd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/lowlevelmsgutil"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/msg"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/parent/tcp"
	"golang.org/x/sys/unix"
)

const roleEnv = "PORTFWD_BENCH_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func envInt(k string) int {
	n, _ := strconv.Atoi(os.Getenv(k))
	return n
}

// runRole runs one process of the benchmark; a forwarder prints "ready" and
// runs until its stdin closes.
func runRole(role string) error {
	listen, target := envInt("LISTEN_PORT"), envInt("TARGET_PORT")
	ready := func() {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	}
	switch role {
	case "http":
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", listen))
		if err != nil {
			return err
		}
		fmt.Println("ready")
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "Hello from rabbitc container\n")
		}))
	case "rabbitc":
		l, err := Listen([]Spec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: listen, ContainerPort: target}})
		if err != nil {
			return err
		}
		parent, child, err := NewSocketpair()
		if err != nil {
			return err
		}
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = append(os.Environ(), roleEnv+"=rabbitc-child")
		cmd.ExtraFiles = []*os.File{child}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		child.Close()
		l.Serve(context.Background(), parent, "127.0.0.1")
		ready()
		l.Close()
		parent.Close()
		return cmd.Wait()
	case "rabbitc-child":
		return ServeChild(context.Background(), os.NewFile(3, "portfwd"))
	case "rootlesskit":
		sockPath := filepath.Join(os.Getenv("SOCK_DIR"), "bp.sock")
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = append(os.Environ(), roleEnv+"=rootlesskit-child", "SOCK_PATH="+sockPath)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		bufio.NewReader(out).ReadString('\n')
		stop, stopped := make(chan struct{}), make(chan error, 1)
		spec := port.Spec{Proto: "tcp", ParentIP: "127.0.0.1", ParentPort: listen, ChildIP: "127.0.0.1", ChildPort: target}
		if err := tcp.Run(sockPath, spec, stop, stopped, io.Discard); err != nil {
			return err
		}
		ready()
		close(stop)
		cmd.Process.Kill()
		cmd.Wait()
		return nil
	case "rootlesskit-child":
		return rootlesskitChild(os.Getenv("SOCK_PATH"))
	case "iocopy":
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", listen))
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go ioCopyPair(c.(*net.TCPConn), fmt.Sprintf("127.0.0.1:%d", target))
			}
		}()
		ready()
		return nil
	}
	return fmt.Errorf("unknown role")
}

// rootlesskitChild answers RootlessKit's builtin "connect" requests on a unix
// socket (one connection per request, JSON with a length header), as its
// child driver does.
func rootlesskitChild(sockPath string) error {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			var req msg.Request
			if _, err := lowlevelmsgutil.UnmarshalFromReader(c, &req); err != nil {
				return
			}
			conn, err := net.Dial(req.Proto, net.JoinHostPort(req.IP, strconv.Itoa(req.Port)))
			if err != nil {
				lowlevelmsgutil.MarshalToWriter(c, &msg.Reply{Error: err.Error()})
				return
			}
			defer conn.Close()
			raw, _ := conn.(syscall.Conn).SyscallConn()
			raw.Control(func(fd uintptr) {
				c.WriteMsgUnix([]byte("dummy"), unix.UnixRights(int(fd)), nil)
			})
		}()
	}
}

func ioCopyPair(a *net.TCPConn, target string) {
	defer a.Close()
	bc, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	b := bc.(*net.TCPConn)
	defer b.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src *net.TCPConn) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.CloseWrite()
	}
	go half(a, b)
	go half(b, a)
	wg.Wait()
}

type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startRole(t *testing.T, role string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role, "SOCK_DIR="+t.TempDir()), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("%s did not start: %q", role, line)
	}
	p := &proc{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		waitOrKill(cmd, 3*time.Second)
	})
	return p
}

// cpu returns the process's user+system CPU time.
func (p *proc) cpu(t *testing.T) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

type result map[string]float64

func iperf(t *testing.T, port int, args ...string) (bytes, bps float64) {
	out, err := exec.Command("iperf3", append([]string{"-c", "127.0.0.1", "-p", strconv.Itoa(port), "-J"}, args...)...).Output()
	if err != nil {
		t.Fatalf("iperf3 %v: %v: %s", args, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r.End.SumReceived.Bytes, r.End.SumReceived.BitsPerSecond
}

var (
	reqRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99     = regexp.MustCompile(`99%\s+([0-9.]+)(us|ms|s)`)
)

func wrk(t *testing.T, port int, args ...string) (rps, p99us float64) {
	out, err := exec.Command("wrk", append(args, "--latency", fmt.Sprintf("http://127.0.0.1:%d/", port))...).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk %v: %v: %s", args, err, out)
	}
	if strings.Contains(string(out), "Socket errors") {
		t.Logf("wrk %v: %s", args, out)
	}
	m := reqRate.FindSubmatch(out)
	if m == nil {
		t.Fatalf("wrk output: %s", out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := p99.FindSubmatch(out); m != nil {
		p99us, _ = strconv.ParseFloat(string(m[1]), 64)
		switch string(m[2]) {
		case "ms":
			p99us *= 1e3
		case "s":
			p99us *= 1e6
		}
	}
	return rps, p99us
}

// peer is one forwarder under test, with the iperf3 and HTTP servers behind
// it, and the processes whose CPU is charged to forwarding.
type peer struct {
	iperfPort, httpPort int
	iperfCPU, httpCPU   func(*testing.T) time.Duration
}

// harnessPeer runs a forwarder role of this binary twice, to the iperf3 and
// to the HTTP server on the host.
func harnessPeer(t *testing.T, mode string, iperfPort, httpPort int) *peer {
	fi := startRole(t, mode, fmt.Sprintf("LISTEN_PORT=%d", freePort(t, "tcp", "127.0.0.1")), fmt.Sprintf("TARGET_PORT=%d", iperfPort))
	fh := startRole(t, mode, fmt.Sprintf("LISTEN_PORT=%d", freePort(t, "tcp", "127.0.0.1")), fmt.Sprintf("TARGET_PORT=%d", httpPort))
	return &peer{
		iperfPort: envFromCmd(fi.cmd, "LISTEN_PORT"), httpPort: envFromCmd(fh.cmd, "LISTEN_PORT"),
		iperfCPU: fi.cpu, httpCPU: fh.cpu,
	}
}

// rootlesskitBinPeer runs the rootlesskit binary in $PATH (Debian's 1.1.0,
// built with go1.19, whose splice goes through 64 KiB pipes) with its builtin
// port driver, the reference of the project's bench: iperf3 and this
// binary's HTTP role run inside its network namespace. As root it runs as
// $BENCH_USER (default rabbit), who needs subuid ranges.
func rootlesskitBinPeer(t *testing.T) *peer {
	if _, err := exec.LookPath("rootlesskit"); err != nil {
		t.Logf("rootlesskit binary: %v", err)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "portfwd-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "bench.test")
	if b, err := os.ReadFile(exe); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copy %s: %v", exe, err)
	}
	p := &peer{iperfPort: freePort(t, "tcp", "127.0.0.1"), httpPort: freePort(t, "tcp", "127.0.0.1")}
	cmd := exec.Command("rootlesskit", "--net=slirp4netns", "--mtu=65520", "--disable-host-loopback", "--port-driver=builtin",
		"-p", fmt.Sprintf("127.0.0.1:%d:5201/tcp", p.iperfPort), "-p", fmt.Sprintf("127.0.0.1:%d:80/tcp", p.httpPort),
		"--", "/bin/sh", "-c",
		// The shell stops the iperf3 server too: it would live on, orphaned,
		// in a network namespace nobody can reach. (Not --pidns: that
		// would also put the servers in a session of their own.)
		"iperf3 -s -p 5201 >/dev/null 2>&1 & i=$!; "+bin+" & h=$!; trap 'kill $i $h' TERM INT; wait $h; kill $i")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), roleEnv+"=http", "LISTEN_PORT=80", "HOME="+dir)
	if os.Geteuid() == 0 {
		name := os.Getenv("BENCH_USER")
		if name == "" {
			name = "rabbit"
		}
		out, err := exec.Command("id", "-u", name).Output()
		uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		out2, _ := exec.Command("id", "-g", name).Output()
		gid, _ := strconv.Atoi(strings.TrimSpace(string(out2)))
		if err != nil || uid == 0 {
			t.Logf("rootlesskit binary: no user %q to run it as", name)
			return nil
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		waitOrKill(cmd, 5*time.Second)
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", p.httpPort))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rootlesskit did not come up: %v: %s", err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // iperf3 -s
	pr := &proc{cmd: cmd}
	p.iperfCPU, p.httpCPU = pr.cpu, pr.cpu
	return p
}

func TestBench(t *testing.T) {
	for _, tool := range []string{"iperf3", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	iperfPort, httpPort := freePort(t, "tcp", "127.0.0.1"), freePort(t, "tcp", "127.0.0.1")
	iperfSrv := exec.Command("iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(iperfPort))
	if err := iperfSrv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { iperfSrv.Process.Kill(); iperfSrv.Wait() }()
	startRole(t, "http", fmt.Sprintf("LISTEN_PORT=%d", httpPort))
	time.Sleep(200 * time.Millisecond)

	secs := os.Getenv("BENCH_SECONDS")
	if secs == "" {
		secs = "3"
	}
	rounds := envInt("BENCH_ROUNDS")
	if rounds == 0 {
		rounds = 1
	}
	peers := map[string]*peer{}
	var modes []string
	for _, mode := range []string{"rabbitc", "rootlesskit", "iocopy"} {
		if selected("BENCH_MODES", mode) {
			peers[mode] = harnessPeer(t, mode, iperfPort, httpPort)
			modes = append(modes, mode)
		}
	}
	if selected("BENCH_MODES", "rk-1.1-bin") {
		if p := rootlesskitBinPeer(t); p != nil {
			peers["rk-1.1-bin"] = p
			modes = append(modes, "rk-1.1-bin")
		}
	}
	type sample struct{ mode, metric string }
	all := map[sample][]float64{}
	add := func(mode, metric string, v float64) { all[sample{mode, metric}] = append(all[sample{mode, metric}], v) }
	type benchCase struct {
		name string
		args []string
	}
	// each runs a selected case once per round for every mode, the modes
	// taking turns.
	each := func(c benchCase, run func(mode string, p *peer)) {
		if !selected("BENCH_CASES", c.name) {
			return
		}
		for range rounds {
			for _, mode := range modes {
				run(mode, peers[mode])
			}
		}
	}
	for _, c := range []benchCase{
		{"1 stream", nil}, {"1 stream -R", []string{"-R"}}, {"4 streams", []string{"-P", "4"}}, {"4 streams -R", []string{"-R", "-P", "4"}},
	} {
		each(c, func(mode string, p *peer) {
			before := p.iperfCPU(t)
			bytes, bps := iperf(t, p.iperfPort, append([]string{"-t", secs}, c.args...)...)
			cpu := p.iperfCPU(t) - before
			add(mode, c.name+" Gbit/s", bps/1e9)
			add(mode, c.name+" CPU s/GB", cpu.Seconds()/(bytes/1e9))
		})
	}
	for _, c := range []benchCase{
		{"req/s c1", []string{"-t1", "-c1"}},
		{"req/s c32", []string{"-t2", "-c32"}},
		{"new conn/s c32", []string{"-t2", "-c32", "-H", "Connection: close"}},
	} {
		each(c, func(mode string, p *peer) {
			before := p.httpCPU(t)
			rps, lat := wrk(t, p.httpPort, append([]string{"-d", secs + "s"}, c.args...)...)
			cpu := p.httpCPU(t) - before
			add(mode, c.name, rps)
			add(mode, c.name+" p99 us", lat)
			add(mode, c.name+" CPU us/req", cpu.Seconds()*1e6/(rps*float64(envSeconds(secs))))
		})
	}
	var metrics []string
	seen := map[string]bool{}
	for k := range all {
		if !seen[k.metric] {
			seen[k.metric] = true
			metrics = append(metrics, k.metric)
		}
	}
	sort.Strings(metrics)
	median := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	// paired is the median over the rounds of rabbitc's value over the
	// peer's in the same round (the runs alternate).
	paired := func(m, peer string) float64 {
		r, p := all[sample{"rabbitc", m}], all[sample{peer, m}]
		var q []float64
		for i := range min(len(r), len(p)) {
			q = append(q, r[i]/p[i])
		}
		return median(q)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-24s", "median of "+strconv.Itoa(rounds))
	for _, mode := range modes {
		fmt.Fprintf(&sb, " %12s", mode)
	}
	fmt.Fprintf(&sb, " %8s %8s %8s\n", "r/rk", "r/rkbin", "paired")
	for _, m := range metrics {
		fmt.Fprintf(&sb, "%-24s", m)
		pr := paired(m, "rk-1.1-bin")
		for _, mode := range modes {
			fmt.Fprintf(&sb, " %12.3f", median(all[sample{mode, m}]))
		}
		r := median(all[sample{"rabbitc", m}])
		fmt.Fprintf(&sb, " %8.2f", r/median(all[sample{"rootlesskit", m}]))
		if peers["rk-1.1-bin"] != nil {
			fmt.Fprintf(&sb, " %8.2f %8.2f", r/median(all[sample{"rk-1.1-bin", m}]), pr)
		}
		sb.WriteString("\n")
	}
	t.Log("\n" + sb.String())
}

// selected reports whether name is in the comma-separated list in the
// environment variable key (everything is selected when it is empty).
func selected(key, name string) bool {
	v := os.Getenv(key)
	if v == "" {
		return true
	}
	for _, s := range strings.Split(v, ",") {
		if s == name {
			return true
		}
	}
	return false
}

func envSeconds(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func envFromCmd(cmd *exec.Cmd, key string) int {
	for _, e := range cmd.Env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
