package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// opts configure one rabbitc run.
type opts struct {
	stdin      io.Reader     // nil: /dev/null
	extraFiles []*os.File    // inherited as fds 3, 4, ...
	env        []string      // added to rabbitc's environment
	path       string        // $PATH for rabbitc, if not the default
	noXDG      bool          // run without XDG_RUNTIME_DIR
	pty        *pty          // run as session leader with this terminal as stdin/stdout/stderr
	timeout    time.Duration // default 30 s
	asRoot     bool          // when the tests run as root: run rabbitc as root, not as the test user
	bin        string        // another rabbitc binary
	dir        string        // rabbitc's working directory on the host
	netAdmin   bool          // as the test user, with an ambient CAP_NET_ADMIN (netaccel_test.go says why)
}

// result is what one rabbitc run did.
type result struct {
	args     []string
	stdout   string
	stderr   string
	code     int            // exit status; 128+N if rabbitc itself was killed by signal N
	signaled syscall.Signal // the signal that killed rabbitc itself, if any
	dur      time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("rabbitc %s\n  exit %d after %v\n  stdout: %q\n  stderr: %q",
		shellJoin(r.args), r.code, r.dur.Round(time.Millisecond), clip(r.stdout), clip(r.stderr))
}

// out is stdout without surrounding white space.
func (r result) out() string { return strings.TrimSpace(r.stdout) }

func clip(s string) string {
	if len(s) > 4000 {
		return s[:2000] + "\n[...]\n" + s[len(s)-2000:]
	}
	return s
}

func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '/' || r == '.' || r == '=' || r == ':' || r == ',' ||
				(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
		}) < 0 {
			b.WriteString(a)
		} else {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		}
	}
	return b.String()
}

// rc returns "run --rootfs <test rootfs>" followed by args, each a string or
// a []string.
func rc(args ...any) []string {
	return append([]string{"run", "--rootfs", env.rootfs}, flatten(args)...)
}

// rcNoNet is rc with --net none, for tests that are not about the network.
func rcNoNet(args ...any) []string {
	return append([]string{"run", "--rootfs", env.rootfs, "--net", "none"}, flatten(args)...)
}

// startPath is one of the two ways rabbitc starts init (runner.startChild):
// "direct", cloned by rabbitc itself when nothing is published, or
// "sandbox", started by the sandbox from a read-only bind of the binary
// when a port is published.
type startPath struct {
	name string
	args []string // the run flags that select it
}

// rc is rc with the flags that select the path.
func (sp startPath) rc(args ...any) []string {
	out := []string{"run", "--rootfs", env.rootfs}
	out = append(out, sp.args...)
	return append(out, flatten(args)...)
}

// forEachStartPath runs body as the subtests "direct" (--net none) and
// "sandbox" (-p 127.0.0.1:PORT:80 with the default network), so that a
// security test covers both ways to init. The port serves nothing; the
// leftover check sees it released after each run.
func forEachStartPath(t *testing.T, body func(t *testing.T, sp startPath)) {
	t.Helper()
	t.Run("direct", func(t *testing.T) {
		body(t, startPath{"direct", []string{"--net", "none"}})
	})
	t.Run("sandbox", func(t *testing.T) {
		requireNet(t)
		port := freePort(t, 1)
		body(t, startPath{"sandbox", []string{"-p", fmt.Sprintf("127.0.0.1:%d:80", port)}})
	})
}

func flatten(args []any) []string {
	var out []string
	for _, a := range args {
		switch v := a.(type) {
		case string:
			out = append(out, v)
		case []string:
			out = append(out, v...)
		default:
			panic(fmt.Sprintf("rc: argument of type %T", a))
		}
	}
	return out
}

// sh returns the arguments that run script with the container's sh.
func sh(script string) []string { return []string{"--", "sh", "-c", script} }

// wantCode fails the test unless the run exited with code.
func wantCode(t testing.TB, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got:\n%s", code, r)
	}
}

// wantRuntimeError checks the shape of a runtime error: exit 125, exactly one
// line on stderr starting with "rabbitc: " that mentions every string of
// want (case-insensitively), nothing on stdout, no Go panic.
func wantRuntimeError(t testing.TB, r result, want ...string) {
	t.Helper()
	wantOneErrorLine(t, r, 125, want...)
}

func wantOneErrorLine(t testing.TB, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("want exit %d, got:\n%s", code, r)
		return
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	switch {
	case strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine "):
		t.Errorf("Go panic or stack trace on stderr:\n%s", r)
	case len(lines) != 1 || lines[0] == "":
		t.Errorf("want exactly one line on stderr, got %d:\n%s", len(lines), r)
	case !strings.HasPrefix(lines[0], "rabbitc: "):
		t.Errorf("the error line does not start with \"rabbitc: \":\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(w)) {
			t.Errorf("the error line does not mention %q:\n%s", w, r)
		}
	}
	if code == 125 && r.stdout != "" {
		t.Errorf("runtime error with output on stdout:\n%s", r)
	}
}

// lockedBuffer collects output written by another goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the buffer contains s; it reports whether it did before timeout.
func (b *lockedBuffer) waitFor(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(b.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proc is one rabbitc process started by a test.
type proc struct {
	cmd      *exec.Cmd
	args     []string
	stdout   *lockedBuffer
	stderr   *lockedBuffer
	done     chan struct{}
	res      result
	xdg      string     // its XDG_RUNTIME_DIR ("" with noXDG)
	tmpState []string   // with noXDG: the entries of /tmp/rabbitc-UID before the run
	ports    []hostPort // published host ports, from its arguments
	timeout  time.Duration
	started  time.Time
	checked  bool
	pty      *pty
}

// The registry of running processes that we started. Our children that are
// not in it are leftovers.
var registry = struct {
	sync.Mutex
	active map[int]bool
}{active: map[int]bool{}}

var seq atomic.Int64

// testCtx is the leftover bookkeeping of one test.
type testCtx struct {
	mu     sync.Mutex
	procs  []*proc
	mounts map[string]int    // /proc/self/mountinfo when the test started its first run
	held   map[hostPort]bool // ports the test itself holds on purpose
	t      *testing.T
}

var ctxs sync.Map // *testing.T -> *testCtx

func ctxOf(t *testing.T) *testCtx {
	if c, ok := ctxs.Load(t); ok {
		return c.(*testCtx)
	}
	c := &testCtx{mounts: readMounts(), held: map[hostPort]bool{}, t: t}
	ctxs.Store(t, c)
	t.Cleanup(func() {
		c.killRunning()
		ctxs.Delete(t)
	})
	return c
}

// killRunning ends the runs a test left running (it failed or forgot them).
func (c *testCtx) killRunning() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	any := false
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			any = true
			if !c.t.Failed() {
				c.t.Errorf("rabbitc still running at the end of the test: %s", shellJoin(p.args))
			}
			p.cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
	}
	if any {
		assertNoLeftovers(c.t)
	}
}

// hold marks a port that the test itself keeps bound, so that the leftover
// check does not blame rabbitc for it.
func (c *testCtx) hold(hp hostPort, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.held[hp] = true
	} else {
		delete(c.held, hp)
	}
}

// run runs rabbitc with args to completion and checks for leftovers.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runOpt(t, opts{}, args...)
}

func runOpt(t *testing.T, o opts, args ...string) result {
	t.Helper()
	return start(t, o, args...).wait(t)
}

// start starts rabbitc with args in the background.
func start(t *testing.T, o opts, args ...string) *proc {
	t.Helper()
	requireSetup(t)
	c := ctxOf(t)
	p := &proc{args: args, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{}),
		timeout: o.timeout, ports: publishedPorts(args), pty: o.pty}
	if p.timeout == 0 {
		p.timeout = 30 * time.Second
	}
	bin := env.bin
	if o.bin != "" {
		bin = o.bin
	}
	cmd := exec.Command(bin, args...)
	asUser := env.user.drop && !o.asRoot
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if !env.user.drop && os.Getenv("PATH") != "" {
		path = os.Getenv("PATH")
	}
	if o.path != "" {
		path = o.path
	}
	cmd.Env = []string{"PATH=" + path, "LANG=C.UTF-8", "RABBITC_TEST_CANARY=host-env-must-not-leak"}
	if asUser || !env.user.drop {
		cmd.Env = append(cmd.Env, "HOME="+env.user.home, "USER="+env.user.name, "LOGNAME="+env.user.name)
	} else {
		cmd.Env = append(cmd.Env, "HOME=/root", "USER=root", "LOGNAME=root")
	}
	if !o.noXDG {
		p.xdg = filepath.Join(env.base, "xdg", strconv.FormatInt(seq.Add(1), 10))
		if err := os.MkdirAll(filepath.Dir(p.xdg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p.xdg, 0o700); err != nil {
			t.Fatal(err)
		}
		if asUser {
			if err := os.Chown(p.xdg, env.user.uid, env.user.gid); err != nil {
				t.Fatal(err)
			}
		}
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+p.xdg)
	} else {
		p.tmpState = listDir(fallbackStateDir(asUser))
	}
	cmd.Env = append(cmd.Env, o.env...)
	cmd.ExtraFiles = o.extraFiles
	cmd.Dir = o.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if o.pty != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = o.pty.slave, o.pty.slave, o.pty.slave
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
	} else {
		cmd.Stdin = o.stdin
		cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
		cmd.SysProcAttr.Setpgid = true
	}
	if asUser {
		cmd.SysProcAttr.Credential = credential()
		if o.netAdmin || os.Getenv("RABBITC_TEST_NET_ADMIN") != "" {
			cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_NET_ADMIN}
		}
	}
	// A leftover process holding our pipes must not block Wait forever.
	cmd.WaitDelay = 3 * time.Second
	p.cmd = cmd

	registry.Lock()
	p.started = time.Now()
	err := cmd.Start()
	if err == nil {
		registry.active[cmd.Process.Pid] = true
	}
	registry.Unlock()
	if err != nil {
		t.Fatalf("start rabbitc: %v", err)
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.res = result{args: args, stdout: p.stdout.String(), stderr: p.stderr.String(), dur: time.Since(p.started)}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.res.signaled = ws.Signal()
				p.res.code = 128 + int(ws.Signal())
			} else {
				p.res.code = ee.ExitCode()
			}
		case errors.Is(err, exec.ErrWaitDelay):
			p.res.code = cmd.ProcessState.ExitCode()
			p.res.stderr += "\n[tests: stdout/stderr still held open by another process after rabbitc exited]"
		default:
			p.res.code = -1
			p.res.stderr += "\n[tests: wait: " + err.Error() + "]"
		}
		registry.Lock()
		delete(registry.active, cmd.Process.Pid)
		registry.Unlock()
		close(p.done)
	}()
	return p
}

// pid is rabbitc's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to rabbitc (the process, not its group).
func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Errorf("signal %v to rabbitc: %v", sig, err)
	}
}

// waitOutput waits until rabbitc's stdout (or the pty) shows s.
func (p *proc) waitOutput(t testing.TB, o opts, s string, timeout time.Duration) {
	t.Helper()
	buf := p.stdout
	if o.pty != nil {
		buf = o.pty.out
	}
	deadline := time.Now().Add(timeout)
	for !strings.Contains(buf.String(), s) {
		select {
		case <-p.done:
			if strings.Contains(buf.String(), s) {
				return
			}
			t.Fatalf("rabbitc exited before printing %q:\n%s", s, p.res)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %v; stdout %q, stderr %q", s, timeout, clip(buf.String()), clip(p.stderr.String()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exited reports whether rabbitc has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for rabbitc to exit (killing it after the timeout), then checks
// for leftovers.
func (p *proc) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Until(p.started.Add(p.timeout))):
		out := p.stdout.String()
		if p.pty != nil {
			out = "[terminal] " + p.pty.out.String()
		}
		wchan, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", p.pid()))
		t.Errorf("rabbitc did not exit within %v; killing it\n  args: %s\n  rabbitc waits in %s; processes below it: %s\n  stdout: %q\n  stderr: %q",
			p.timeout, shellJoin(p.args), wchan, describeTree(p.pid()), clip(out), clip(p.stderr.String()))
		syscall.Kill(p.pid(), syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("rabbitc pid %d survives SIGKILL", p.pid())
		}
	}
	if p.pty != nil {
		p.pty.settle()
	}
	assertNoLeftovers(t)
	return p.res
}

// assertNoLeftovers checks what the finished runs of the test left behind:
// processes among our descendants (we are a child subreaper, so orphans of a
// run come to us), mounts that appeared in our mount table, published ports
// that cannot be bound again, and entries in the per-container state
// directory. It kills and reaps leftover processes so that later tests start
// clean.
func assertNoLeftovers(t *testing.T) {
	t.Helper()
	c := ctxOf(t)
	if left := waitStrays(5 * time.Second); len(left) > 0 {
		t.Errorf("leftover processes after the run (killed now):\n%s", strings.Join(left, "\n"))
	}
	now := readMounts()
	var newMounts []string
	for k, n := range now {
		if n > c.mounts[k] {
			newMounts = append(newMounts, k)
		}
	}
	if len(newMounts) > 0 {
		sort.Strings(newMounts)
		t.Errorf("mounts visible on the host after the run:\n  %s", strings.Join(newMounts, "\n  "))
		c.mounts = now
	}
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	inUse := map[hostPort]bool{}
	for hp := range c.held {
		inUse[hp] = true
	}
	for _, p := range procs {
		if !p.exited() {
			for _, hp := range p.ports {
				inUse[hp] = true
			}
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		if !p.exited() || p.checked {
			continue
		}
		p.checked = true
		for _, hp := range p.ports {
			if inUse[hp] {
				continue
			}
			if err := hp.bindable(); err != nil {
				t.Errorf("published port %s still bound after rabbitc exited: %v", hp, err)
			}
		}
		if p.xdg != "" {
			if left := listTree(filepath.Join(p.xdg, "rabbitc")); len(left) > 0 {
				t.Errorf("state left in $XDG_RUNTIME_DIR/rabbitc after the run:\n  %s", strings.Join(left, "\n  "))
			}
		} else {
			dir := fallbackStateDir(p.cmd.SysProcAttr.Credential != nil || !env.user.drop)
			before := map[string]bool{}
			for _, e := range p.tmpState {
				before[e] = true
			}
			for _, e := range listDir(dir) {
				if !before[e] {
					t.Errorf("state left in %s after the run: %s", dir, e)
				}
			}
		}
	}
}

// fallbackStateDir is where rabbitc keeps state without XDG_RUNTIME_DIR.
func fallbackStateDir(asUser bool) string {
	uid := env.user.uid
	if env.user.drop && !asUser {
		uid = 0
	}
	return fmt.Sprintf("/tmp/rabbitc-%d", uid)
}

func listDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// listTree lists everything below dir (bounded).
func listTree(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return nil
		}
		if len(out) < 50 {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// procInfo is one line of /proc/PID/stat.
type procInfo struct {
	pid, ppid int
	state     byte
	comm      string
}

func readProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if l < 0 || r < 0 || r+4 > len(s) {
			continue
		}
		f := strings.Fields(s[r+2:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = procInfo{pid: pid, ppid: ppid, state: f[0][0], comm: s[l+1 : r]}
	}
	return out
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
}

// strays returns our children that no running command of ours accounts
// for, with their descendants, after reaping the dead ones.
func strays() []string {
	procs := readProcs()
	kids := map[int][]int{}
	for _, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p.pid)
	}
	self := os.Getpid()
	registry.Lock()
	defer registry.Unlock()
	var out []string
	for _, pid := range kids[self] {
		if registry.active[pid] {
			continue
		}
		if procs[pid].state == 'Z' {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			continue
		}
		var walk func(pid, depth int)
		walk = func(pid, depth int) {
			out = append(out, fmt.Sprintf("%s%d %s [%c] %s", strings.Repeat("  ", depth+1), pid, procs[pid].comm, procs[pid].state, cmdline(pid)))
			for _, k := range kids[pid] {
				walk(k, depth+1)
			}
		}
		walk(pid, 0)
	}
	return out
}

// waitStrays waits up to timeout for stray processes to go away; what
// remains is killed, reaped and returned.
func waitStrays(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		left := strays()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			reapStrays()
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reapStrays kills every stray process tree and reaps it.
func reapStrays() {
	for i := 0; i < 50; i++ {
		procs := readProcs()
		kids := map[int][]int{}
		for _, p := range procs {
			kids[p.ppid] = append(kids[p.ppid], p.pid)
		}
		registry.Lock()
		var victims []int
		var collect func(int)
		collect = func(pid int) {
			victims = append(victims, pid)
			for _, k := range kids[pid] {
				collect(k)
			}
		}
		for _, pid := range kids[os.Getpid()] {
			if !registry.active[pid] {
				collect(pid)
			}
		}
		registry.Unlock()
		if len(victims) == 0 {
			return
		}
		for _, pid := range victims {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
		strays()
	}
}

// descendants lists the process tree below pid (pid excluded).
func descendants(pid int) []procInfo {
	procs := readProcs()
	kids := map[int][]int{}
	for _, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p.pid)
	}
	var out []procInfo
	var walk func(int)
	walk = func(p int) {
		for _, k := range kids[p] {
			out = append(out, procs[k])
			walk(k)
		}
	}
	walk(pid)
	return out
}

func describeTree(pid int) string {
	var b strings.Builder
	for _, p := range descendants(pid) {
		fmt.Fprintf(&b, "\n    %d (parent %d) %s [%c] %s", p.pid, p.ppid, p.comm, p.state, cmdline(p.pid))
	}
	return b.String()
}

// readMounts returns the host's mount table as a multiset of
// "mountpoint fstype source root" lines.
func readMounts() map[string]int {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	out := map[string]int{}
	for _, m := range parseMountinfo(string(data)) {
		out[m.point+" "+m.fstype+" "+m.source+" "+m.root]++
	}
	return out
}

// hostPort is one published host port.
type hostPort struct {
	proto string // "tcp" or "udp"
	ip    string
	port  int
}

func (h hostPort) String() string {
	return net.JoinHostPort(h.ip, strconv.Itoa(h.port)) + "/" + h.proto
}

// bindable binds the port and releases it at once.
func (h hostPort) bindable() error {
	addr := net.JoinHostPort(h.ip, strconv.Itoa(h.port))
	if h.proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// publishedPorts finds the valid --publish specs in args (a bad one is the
// test's point and is skipped).
func publishedPorts(args []string) []hostPort {
	var out []hostPort
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		var spec string
		switch {
		case (a == "-p" || a == "--publish") && i+1 < len(args):
			spec = args[i+1]
			i++
		case strings.HasPrefix(a, "--publish="):
			spec = strings.TrimPrefix(a, "--publish=")
		case strings.HasPrefix(a, "-p") && len(a) > 2:
			spec = strings.TrimPrefix(a[2:], "=")
		default:
			continue
		}
		out = append(out, parsePublish(spec)...)
	}
	return out
}

func parsePublish(spec string) []hostPort {
	proto := "tcp"
	if s, p, ok := strings.Cut(spec, "/"); ok {
		spec, proto = s, p
	}
	ip := "0.0.0.0"
	if strings.HasPrefix(spec, "[") {
		end := strings.Index(spec, "]:")
		if end < 0 {
			return nil
		}
		ip, spec = spec[1:end], spec[end+2:]
	} else if parts := strings.Split(spec, ":"); len(parts) == 3 {
		ip, spec = parts[0], parts[1]+":"+parts[2]
	}
	host, _, ok := strings.Cut(spec, ":")
	if !ok {
		return nil
	}
	lo, hi := host, host
	if a, b, ok := strings.Cut(host, "-"); ok {
		lo, hi = a, b
	}
	l, err1 := strconv.Atoi(lo)
	h, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || l <= 0 || h > 65535 || h < l || h-l > 100 || net.ParseIP(ip) == nil ||
		(proto != "tcp" && proto != "udp") {
		return nil
	}
	var out []hostPort
	for p := l; p <= h; p++ {
		out = append(out, hostPort{proto, ip, p})
	}
	return out
}

// freePort returns a TCP port (and the same UDP port) that is free on all
// addresses right now. n > 1 returns the first of n consecutive free ports.
// The ports come from below the ephemeral range (ip_local_port_range), where
// no outgoing connection holds one: a load test on the same machine leaves
// tens of thousands of them in TIME_WAIT, which blocks a bind too.
func freePort(t testing.TB, n int) int {
	t.Helper()
	lo, hi := 10000, ephemeralStart()
	if hi-lo < 1000 { // an unusual range: take ports from anywhere
		lo, hi = 1024, 65536
	}
	for attempt := 0; attempt < 200; attempt++ {
		base := lo + rand.IntN(hi-lo-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, hp := range []hostPort{{"tcp", "0.0.0.0", p}, {"udp", "0.0.0.0", p}} {
				if hp.bindable() != nil {
					ok = false
				}
			}
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return 0
}

// ephemeralStart is the first port of net.ipv4.ip_local_port_range.
func ephemeralStart() int {
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); len(f) > 0 {
		if n, err := strconv.Atoi(f[0]); err == nil {
			return n
		}
	}
	return 32768
}

// userDir creates a directory owned by the test user with the given mode.
func userDir(t testing.TB, name string, mode os.FileMode) string {
	t.Helper()
	d := filepath.Join(env.base, "dirs", strconv.FormatInt(seq.Add(1), 10)+"-"+name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	if err := chownToUser(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// userFile writes a file owned by the test user.
func userFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := chownToUser(path); err != nil {
		t.Fatal(err)
	}
}

// chownToUser gives path (a link itself, not its target) to the test user
// when the tests run as root and drop to that user.
func chownToUser(path string) error {
	if !env.user.drop {
		return nil
	}
	return os.Lchown(path, env.user.uid, env.user.gid)
}

// copyRootfs makes a private copy of the test rootfs that a test may change:
// directories are new, files are hard links (tests must not write to them).
func copyRootfs(t testing.TB) string {
	t.Helper()
	dst := filepath.Join(env.base, "rootfs-copies", strconv.FormatInt(seq.Add(1), 10))
	err := filepath.Walk(env.rootfs, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(env.rootfs, p)
		target := filepath.Join(dst, rel)
		if strings.HasPrefix(rel, "tmp/") {
			return nil // scratch space of earlier containers, maybe owned by subordinate ids
		}
		switch {
		case fi.IsDir():
			if err := os.MkdirAll(target, fi.Mode().Perm()); err != nil {
				return err
			}
			if err := os.Chmod(target, fi.Mode()&(os.ModePerm|os.ModeSticky)); err != nil {
				return err
			}
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, target); err != nil {
				return err
			}
		default:
			if err := os.Link(p, target); err != nil {
				return err
			}
		}
		return chownToUser(target)
	})
	if err != nil {
		t.Fatalf("copy rootfs: %v", err)
	}
	return dst
}

// pty is a pseudo-terminal that plays the user's terminal.
type pty struct {
	mfd    int // the master's descriptor (Fd() would make the master blocking)
	master *os.File
	slave  *os.File
	out    *lockedBuffer // everything the master read
}

// newPty opens a pty of the given size, in cooked mode, owned by the test user.
func newPty(t testing.TB, rows, cols uint16) *pty {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	sfd, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/pts/%d: %v", n, err)
	}
	if env.user.drop {
		if err := unix.Fchown(sfd, env.user.uid, -1); err != nil {
			t.Fatalf("chown pty: %v", err)
		}
	}
	p := &pty{mfd: mfd, master: os.NewFile(uintptr(mfd), "ptmx"), slave: os.NewFile(uintptr(sfd), fmt.Sprintf("/dev/pts/%d", n)),
		out: &lockedBuffer{}}
	p.setSize(t, rows, cols)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(p.out, p.master)
	}()
	t.Cleanup(func() {
		p.master.Close()
		p.slave.Close()
		<-done
	})
	return p
}

func (p *pty) setSize(t testing.TB, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(p.mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("set window size: %v", err)
	}
}

// write types s on the terminal.
func (p *pty) write(t testing.TB, s string) {
	t.Helper()
	if _, err := p.master.Write([]byte(s)); err != nil {
		t.Fatalf("write to pty: %v", err)
	}
}

func (p *pty) termios(t testing.TB) unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("tcgetattr: %v", err)
	}
	return *tio
}

// settle waits until everything written to the terminal has been read from
// the master (the slave stays open, so there is no end of file to wait for).
func (p *pty) settle() {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n := len(p.out.String())
		time.Sleep(30 * time.Millisecond)
		fds := []unix.PollFd{{Fd: int32(p.mfd), Events: unix.POLLIN}}
		ready, _ := unix.Poll(fds, 0)
		if ready == 0 && len(p.out.String()) == n {
			return
		}
	}
}

// waitFor waits until the terminal showed s.
func (p *pty) waitFor(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	if !p.out.waitFor(s, timeout) {
		t.Fatalf("terminal did not show %q within %v; it shows:\n%q", s, timeout, clip(p.out.String()))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// findPayload returns the host pid of the process named comm below rabbitc.
func findPayload(t testing.TB, p *proc, comm string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, d := range descendants(p.pid()) {
			if d.comm == comm && d.state != 'Z' {
				return d.pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process %q below rabbitc:%s", comm, describeTree(p.pid()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killPid(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
