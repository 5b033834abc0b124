package tests

// The OCI runtime under test (RABBITC_OCI_RUNTIME, default the built
// rabbitc) driven by the clients that call runtimes: rootless podman (as the
// test user, compared with crun) and containerd with ctr (as root, compared
// with runc). Each scenario runs once with the reference runtime and once
// with the runtime under test; every step asserts its expected exit code
// and output, and the two runs must agree step by step. See tests/oci/README.md.

import (
	"context"
	"fmt"
	"io"
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

// ociRuntime is the runtime under test: $RABBITC_OCI_RUNTIME (a path or a
// name in $PATH), or the rabbitc the tests built.
func ociRuntime(t *testing.T) string {
	t.Helper()
	rt := os.Getenv("RABBITC_OCI_RUNTIME")
	if rt == "" {
		return env.bin
	}
	p, err := exec.LookPath(rt)
	if err != nil {
		t.Fatalf("RABBITC_OCI_RUNTIME=%s: %v", rt, err)
	}
	abs, _ := filepath.Abs(p)
	return abs
}

// requireTool skips the test when a client is not installed.
func requireTool(t *testing.T, tools ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed (tests/setup.sh installs it as root)", tool)
		}
		out[tool] = p
	}
	return out
}

// step is what one client command did, as compared between runtimes.
type step struct {
	name string
	code int
	out  string // stdout, normalized: \r removed, surrounding space trimmed
}

// scenario records the steps of one run and checks each as it goes.
type scenario struct {
	t       *testing.T
	runtime string
	steps   []step
}

// want records a step and fails unless it exited with code and its output
// contains every string of outs.
func (s *scenario) want(name string, r cmdResult, code int, outs ...string) {
	s.t.Helper()
	st := step{name: name, code: r.code, out: normalize(r.stdout)}
	s.steps = append(s.steps, st)
	if r.code != code {
		s.t.Errorf("[%s] %s: want exit %d, got %d\n  stdout: %q\n  stderr: %q", filepath.Base(s.runtime), name, code, r.code, clip(r.stdout), clip(r.stderr))
		return
	}
	for _, o := range outs {
		if !strings.Contains(st.out, o) {
			s.t.Errorf("[%s] %s: output lacks %q\n  stdout: %q\n  stderr: %q", filepath.Base(s.runtime), name, o, clip(r.stdout), clip(r.stderr))
		}
	}
}

// note records a step whose output differs by nature (an id) by exit code only.
func (s *scenario) note(name string, r cmdResult, code int) {
	s.t.Helper()
	s.want(name, cmdResult{code: r.code, stdout: "", stderr: r.stderr}, code)
}

func normalize(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\r", ""))
}

// compareSteps fails where the runtime under test did other than the reference.
func compareSteps(t *testing.T, ref, got *scenario) {
	t.Helper()
	if len(ref.steps) != len(got.steps) {
		t.Errorf("%d steps with %s, %d with %s", len(ref.steps), ref.runtime, len(got.steps), got.runtime)
		return
	}
	for i := range ref.steps {
		r, g := ref.steps[i], got.steps[i]
		if r != g {
			t.Errorf("%s differs:\n  %s: exit %d, %q\n  %s: exit %d, %q", r.name, ref.runtime, r.code, r.out, got.runtime, g.code, g.out)
		}
	}
}

// cmdResult is one client command's outcome.
type cmdResult struct {
	code           int
	stdout, stderr string
}

// cmdOpts configure runCmd.
type cmdOpts struct {
	asUser  bool
	env     []string
	stdin   io.Reader
	pty     *pty
	timeout time.Duration
}

// runCmd runs a client command to completion (killing it after the timeout).
// It is not one of the harness's rabbitc runs: a client leaves daemons
// (conmon, podman's pause process, containerd's shims) until the test
// cleans up, so the test checks for strays once, at its end.
func runCmd(t *testing.T, o cmdOpts, argv ...string) cmdResult {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, o.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if o.asUser && env.user.drop {
		cmd.SysProcAttr.Credential = credential()
	}
	var stdout, stderr strings.Builder
	if o.pty != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = o.pty.slave, o.pty.slave, o.pty.slave
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty = true, true
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = o.stdin, &stdout, &stderr
		cmd.SysProcAttr.Setpgid = true
	}
	cmd.WaitDelay = 3 * time.Second
	began := time.Now()
	// Registered as the harness's runs are, so that the zombie reaper and
	// the stray check leave it to cmd.Wait.
	registry.Lock()
	err := cmd.Start()
	if err == nil {
		registry.active[cmd.Process.Pid] = true
	}
	registry.Unlock()
	if err == nil {
		err = cmd.Wait()
		registry.Lock()
		delete(registry.active, cmd.Process.Pid)
		registry.Unlock()
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Logf("%s took %v", shellJoin(argv), d.Round(time.Millisecond))
	}
	r := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	if o.pty != nil {
		o.pty.settle()
		r.stdout = o.pty.out.String()
	}
	switch {
	case ctx.Err() != nil:
		t.Errorf("%s: no exit within %v", shellJoin(argv), o.timeout)
		r.code = -1
	case err == nil:
	case cmd.ProcessState != nil:
		r.code = cmd.ProcessState.ExitCode()
	default:
		t.Fatalf("%s: %v", shellJoin(argv), err)
	}
	return r
}

// The clients' rootfs: a real copy of the test rootfs (podman and runc
// create mount points and podman adds /etc/passwd entries with keep-id;
// the shared rootfs and its hard-linked copies must stay untouched).
var clientRootfs struct {
	once sync.Once
	dir  string
	err  error
}

func clientRootfsDir(t *testing.T) string {
	t.Helper()
	clientRootfs.once.Do(func() {
		clientRootfs.dir = filepath.Join(env.base, "client-rootfs")
		out, err := exec.Command("cp", "-a", env.rootfs, clientRootfs.dir).CombinedOutput()
		if err != nil {
			clientRootfs.err = fmt.Errorf("cp -a %s: %v: %s", env.rootfs, err, out)
		}
	})
	if clientRootfs.err != nil {
		t.Fatal(clientRootfs.err)
	}
	return clientRootfs.dir
}

// ---- podman ----

// podman is one private rootless podman: its storage, run directory, home
// and configuration in a directory of the test, so nothing leaks to the test
// user's own podman.
type podman struct {
	t       *testing.T
	dir     string
	runtime string
	rootfs  string
}

func newPodman(t *testing.T, runtime string) *podman {
	t.Helper()
	// A short path: podman's exit command (`podman container cleanup`, run
	// by conmon when the container exits) refuses a runroot
	// ($XDG_RUNTIME_DIR/containers) longer than 50 characters, and
	// `podman run` then waits its 20 s conmon timeout for the exit code.
	dir, err := os.MkdirTemp("/tmp", "rc-podman-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chownToUser(dir); err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, dir: dir, runtime: runtime, rootfs: clientRootfsDir(t)}
	for _, d := range []string{"home", "run", "config", "data", "cache"} {
		if err := os.Mkdir(filepath.Join(p.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := chownToUser(filepath.Join(p.dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(p.cleanup)
	return p
}

func (p *podman) env() []string {
	return []string{"HOME=" + p.dir + "/home", "XDG_RUNTIME_DIR=" + p.dir + "/run", "XDG_CONFIG_HOME=" + p.dir + "/config",
		"XDG_DATA_HOME=" + p.dir + "/data", "XDG_CACHE_HOME=" + p.dir + "/cache", "USER=" + env.user.name}
}

// cmd runs `podman GLOBAL-FLAGS args...` as the test user.
func (p *podman) cmd(o cmdOpts, args ...string) cmdResult {
	p.t.Helper()
	argv := append([]string{"podman", "--runtime", p.runtime, "--cgroup-manager=cgroupfs", "--events-backend=file",
		"--storage-driver=vfs"}, args...)
	o.asUser = true
	o.env = append(p.env(), o.env...)
	return runCmd(p.t, o, argv...)
}

func (p *podman) run(args ...string) cmdResult {
	p.t.Helper()
	return p.cmd(cmdOpts{}, args...)
}

// cleanup removes every container, stops podman's pause process (which holds
// the user namespace of every later call) and removes the directory.
func (p *podman) cleanup() {
	p.t.Helper()
	if r := p.run("rm", "--all", "--force", "--time", "0"); r.code != 0 {
		p.t.Errorf("podman rm --all --force: exit %d: %s", r.code, r.stderr)
	}
	if !env.user.drop {
		p.run("unshare", "rm", "-rf", p.dir+"/data", p.dir+"/run/containers")
	}
	if data, err := os.ReadFile(filepath.Join(p.dir, "run/libpod/tmp/pause.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if left := waitStrays(5 * time.Second); len(left) > 0 {
		p.t.Errorf("processes left by podman with %s (killed now):\n%s", p.runtime, strings.Join(left, "\n"))
	}
	os.RemoveAll(p.dir)
}

// podmanScenario is the podman session of TestPodmanClient, with runtime.
func podmanScenario(t *testing.T, runtime string, port int) *scenario {
	p := newPodman(t, runtime)
	s := &scenario{t: t, runtime: runtime}
	// --rootfs is a flag without value: the first argument after the flags
	// is the rootfs, the rest the command.
	runf := func(flags []string, cmd ...string) []string {
		return append(append(append([]string{"run"}, flags...), "--rootfs", p.rootfs), cmd...)
	}
	run := func(cmd ...string) []string { return runf([]string{"--rm", "--net", "none"}, cmd...) }
	detached := func(name string, cmd ...string) []string {
		return runf([]string{"-d", "--name", name, "--net", "none"}, cmd...)
	}

	s.want("run exit 0", p.run(run("sh", "-c", "echo hello")...), 0, "hello")
	s.want("run exit 7", p.run(run("sh", "-c", "echo out; exit 7")...), 7, "out")
	s.want("run missing command", p.run(run("/no/such/cmd")...), 127)
	s.want("run -i", p.cmd(cmdOpts{stdin: strings.NewReader("from stdin\n")}, runf([]string{"--rm", "--net", "none", "-i"}, "cat")...), 0, "from stdin")
	s.want("run pid 1", p.run(run("sh", "-c", "echo $$")...), 0, "1")

	tty := newPty(t, 24, 80)
	s.want("run -t", p.cmd(cmdOpts{pty: tty}, runf([]string{"--rm", "--net", "none", "-t"}, "sh", "-c", "test -t 0 && test -t 1 && echo tty-yes; tty")...), 0, "tty-yes", "/dev/pts/")

	s.note("run -d", p.run(detached("logger", "sh", "-c", "echo hello-log; echo err-log >&2")...), 0)
	s.want("wait", p.run("wait", "logger"), 0, "0")
	s.want("logs", p.run("logs", "logger"), 0, "hello-log")
	s.want("rm", p.run("rm", "logger"), 0, "logger")

	s.note("run -d sleeper", p.run(detached("sleeper", "sleep", "300")...), 0)
	s.want("exec", p.run("exec", "sleeper", "sh", "-c", "echo in-exec; exit 3"), 3, "in-exec")
	s.want("exec missing command", p.run("exec", "sleeper", "/no/such/cmd"), 127)
	s.want("exec sees pid 1", p.run("exec", "sleeper", "cat", "/proc/1/cmdline"), 0, "sleep")
	tty2 := newPty(t, 24, 80)
	s.want("exec -t", p.cmd(cmdOpts{pty: tty2}, "exec", "-t", "sleeper", "sh", "-c", "test -t 1 && echo exec-tty"), 0, "exec-tty")
	s.want("stop", p.run("stop", "--time", "1", "sleeper"), 0, "sleeper")
	s.want("stopped exit code", p.run("inspect", "--format", "{{.State.ExitCode}}", "sleeper"), 0, "137")
	s.want("rm stopped", p.run("rm", "sleeper"), 0, "sleeper")

	s.note("run -d trapper", p.run(detached("trapper", "sh", "-c", `trap "exit 42" TERM; echo ready; while :; do sleep 0.1; done`)...), 0)
	waitLog(p, "trapper", "ready")
	s.want("kill -s TERM", p.run("kill", "--signal", "TERM", "trapper"), 0, "trapper")
	s.want("wait killed", p.run("wait", "trapper"), 0, "42")
	s.want("rm killed", p.run("rm", "trapper"), 0)
	s.want("nothing left", p.run("ps", "--all", "--quiet"), 0)

	s.want("--net none", interfaces(p.run(run("cat", "/proc/net/dev")...)), 0, "lo:")
	s.want("--net host", interfaces(p.run(runf([]string{"--rm", "--net", "host"}, "cat", "/proc/net/dev")...)), 0, hostInterfaces(t)...)
	s.want("--userns=keep-id", p.run(runf([]string{"--rm", "--net", "none", "--userns=keep-id"}, "id", "-u")...), 0, strconv.Itoa(env.user.uid))

	// -p: busybox httpd in the container, reached on the host's loopback.
	s.note("run -d -p", p.run(runf([]string{"-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port)}, "sh", "-c",
		"mkdir -p /tmp/www && echo hello-http > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www")...), 0)
	body, err := httpGetRetry(fmt.Sprintf("http://127.0.0.1:%d/", port), 10*time.Second)
	code := 0
	if err != nil {
		code = 1
		body = err.Error()
	}
	s.want("-p 127.0.0.1:PORT:80", cmdResult{code: code, stdout: body}, 0, "hello-http")
	s.want("rm -f web", p.run("rm", "--force", "--time", "0", "web"), 0)
	return s
}

// waitLog waits (5 s at most) until a container's log shows s.
func waitLog(p *podman, name, s string) {
	p.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(p.run("logs", name).stdout, s) {
			return
		}
	}
	p.t.Errorf("%s never logged %q", name, s)
}

// interfaces keeps the interface names of a /proc/net/dev in r.stdout (the
// counters change from run to run).
func interfaces(r cmdResult) cmdResult {
	var names []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok {
			names = append(names, strings.TrimSpace(name)+":")
		}
	}
	r.stdout = strings.Join(names, " ")
	return r
}

// hostInterfaces names the host's network interfaces (--net host sees them).
func hostInterfaces(t *testing.T) []string {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name()+":")
	}
	return out
}

// httpGetRetry fetches url, retrying until the server answers or timeout passes.
func httpGetRetry(url string, timeout time.Duration) (string, error) {
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		body, err := httpGet(url)
		if err == nil {
			return body, nil
		}
		last = err
	}
	return "", last
}

// TestPodmanClient runs a rootless podman session (run with exit codes, -i,
// -t, -d and logs, exec, stop, kill, rm, --net none|host, keep-id, -p) with
// crun and with the runtime under test, and compares them.
func TestPodmanClient(t *testing.T) {
	requireSetup(t)
	requireNet(t)
	tools := requireTool(t, "podman", "crun", "conmon")
	if msg := crunHybridCgroups(); msg != "" {
		t.Skip(msg)
	}
	rt := ociRuntime(t)
	port := freePort(t, 1)
	defer reapZombiesUntilDone()()
	var ref, got *scenario
	t.Run("crun", func(t *testing.T) { ref = podmanScenario(t, tools["crun"], port) })
	t.Run(filepath.Base(rt), func(t *testing.T) { got = podmanScenario(t, rt, port) })
	if ref != nil && got != nil {
		compareSteps(t, ref, got)
	}
}

// reapZombiesUntilDone reaps, every 10 ms until the returned function is
// called, the dead processes that come to the tests as the child subreaper:
// conmon double-forks, so it is reparented to the tests, and podman checks
// that conmon lives with kill(pid, 0), which a zombie answers.
func reapZombiesUntilDone() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			reapZombies()
		}
	}()
	return func() { close(done); <-finished }
}

// reapZombies waits for our dead children that no command of ours waits for.
func reapZombies() {
	procs := readProcs()
	self := os.Getpid()
	registry.Lock()
	defer registry.Unlock()
	for _, p := range procs {
		if p.ppid == self && p.state == 'Z' && !registry.active[p.pid] {
			var ws syscall.WaitStatus
			syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
		}
	}
}

// crunHybridCgroups explains why crun cannot run here: with cgroups in hybrid
// mode crun refuses any container while a controller is enabled in the
// unified hierarchy (.ci/run moves hugetlb off it on the CI machine).
func crunHybridCgroups() string {
	data, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	if err != nil || strings.TrimSpace(string(data)) == "" {
		return ""
	}
	return fmt.Sprintf("crun refuses to run with hybrid cgroups while the unified hierarchy has controllers (%s); "+
		"as root: mkdir /sys/fs/cgroup/<ctl> && mount -t cgroup -o <ctl> cgroup /sys/fs/cgroup/<ctl> (see .ci/run)",
		strings.TrimSpace(string(data)))
}

// ---- containerd ----

// containerd is one containerd daemon of the test, on a private socket,
// root and state directory, stopped at the end of the test.
type containerd struct {
	t      *testing.T
	dir    string
	sock   string
	cmd    *exec.Cmd
	done   chan struct{}
	rootfs string
}

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	d := &containerd{t: t, dir: filepath.Join(env.base, "containerd-"+strconv.FormatInt(seq.Add(1), 10)), rootfs: clientRootfsDir(t)}
	d.sock = filepath.Join(d.dir, "containerd.sock")
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Only what ctr needs: no CRI, no snapshotter is used (--rootfs).
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, d.dir+"/root", d.dir+"/state", d.sock, d.sock+".ttrpc")
	cfg := filepath.Join(d.dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(d.dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("containerd", "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	registry.Lock()
	err = d.cmd.Start()
	if err == nil {
		registry.active[d.cmd.Process.Pid] = true
	}
	registry.Unlock()
	logf.Close()
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(d.stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r := runCmd(t, cmdOpts{timeout: 5 * time.Second}, "ctr", "--address", d.sock, "version"); r.code == 0 {
			return d
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
			t.Fatalf("containerd not serving %s after 10 s; its log:\n%s", d.sock, clip(string(log)))
		}
	}
}

func (d *containerd) ctr(o cmdOpts, args ...string) cmdResult {
	d.t.Helper()
	return runCmd(d.t, o, append([]string{"ctr", "--address", d.sock, "--namespace", "rabbitc-tests"}, args...)...)
}

// stop removes what is left, stops containerd and checks for strays (the
// shims are reparented to the tests, a child subreaper).
func (d *containerd) stop() {
	d.t.Helper()
	for _, id := range strings.Fields(d.ctr(cmdOpts{}, "task", "list", "--quiet").stdout) {
		d.ctr(cmdOpts{}, "task", "kill", "--signal", "SIGKILL", id)
		d.ctr(cmdOpts{}, "task", "delete", "--force", id)
	}
	for _, id := range strings.Fields(d.ctr(cmdOpts{}, "container", "list", "--quiet").stdout) {
		d.ctr(cmdOpts{}, "container", "delete", id)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Errorf("containerd still running 10 s after SIGTERM; killing it")
		d.cmd.Process.Kill()
		<-d.done
	}
	registry.Lock()
	delete(registry.active, d.cmd.Process.Pid)
	registry.Unlock()
	if left := waitStrays(5 * time.Second); len(left) > 0 {
		d.t.Errorf("processes left after containerd stopped (killed now):\n%s", strings.Join(left, "\n"))
	}
	// runc as root leaves nothing mounted on the host; the state has tmpfs
	// and bind mounts only while a task runs.
	if err := os.RemoveAll(d.dir); err != nil {
		d.t.Errorf("remove %s: %v", d.dir, err)
	}
}

// containerdScenario is the ctr session of TestContainerdClient with runtime.
func containerdScenario(t *testing.T, runtime string) *scenario {
	d := startContainerd(t)
	s := &scenario{t: t, runtime: runtime}
	// Without an image there is no image config: no $PATH either.
	base := []string{"--runc-binary", runtime, "--env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	runf := func(flags []string, id string, args ...string) []string {
		return append(append(append(append([]string{"run"}, flags...), base...), "--rootfs", d.rootfs, id), args...)
	}
	run := func(id string, args ...string) []string { return runf([]string{"--rm"}, id, args...) }
	s.want("run exit 0", d.ctr(cmdOpts{}, run("c-zero", "sh", "-c", "echo hello")...), 0, "hello")
	s.want("run exit 7", d.ctr(cmdOpts{}, run("c-seven", "sh", "-c", "echo out; exit 7")...), 7, "out")
	missing := d.ctr(cmdOpts{}, run("c-missing", "/no/such/cmd")...)
	s.want("run missing command", cmdResult{code: boolCode(missing.code != 0), stdout: "", stderr: missing.stderr}, 1)
	d.ctr(cmdOpts{}, "container", "delete", "c-missing") // ctr keeps it when the start failed
	s.want("run pid 1", d.ctr(cmdOpts{}, run("c-pid", "sh", "-c", "echo $$")...), 0, "1")

	tty := newPty(t, 24, 80)
	s.want("run -t", d.ctr(cmdOpts{pty: tty}, runf([]string{"--rm", "-t"}, "c-tty",
		"sh", "-c", "test -t 0 && test -t 1 && echo tty-yes")...), 0, "tty-yes")

	s.note("run -d", d.ctr(cmdOpts{}, runf([]string{"-d"}, "c-bg", "sh", "-c",
		`trap "exit 42" TERM; while :; do sleep 0.1; done`)...), 0)
	s.want("task exec", d.ctr(cmdOpts{}, "task", "exec", "--exec-id", "e1", "c-bg", "sh", "-c", "echo in-exec; exit 3"), 3, "in-exec")
	s.want("task exec sees pid 1", d.ctr(cmdOpts{}, "task", "exec", "--exec-id", "e2", "c-bg", "cat", "/proc/1/cmdline"), 0, "sh")
	ps := d.ctr(cmdOpts{}, "task", "ps", "c-bg")
	ps.stdout = strings.Join(strings.Fields(strings.SplitN(ps.stdout, "\n", 2)[0]), " ") // the pids differ from run to run
	s.want("task ps", ps, 0, "PID INFO")
	s.want("task kill TERM", d.ctr(cmdOpts{}, "task", "kill", "--signal", "SIGTERM", "c-bg"), 0)
	s.want("task exit status", waitTaskStopped(d, "c-bg"), 0, "STOPPED")
	// ctr reports the exit code as a warning on stderr.
	del := d.ctr(cmdOpts{}, "task", "delete", "c-bg")
	del.stdout = ""
	if _, code, ok := strings.Cut(del.stderr, "exit with non-zero exit code "); ok {
		del.stdout = "exit code " + strings.Trim(strings.Fields(code)[0], `"`)
	}
	s.want("task delete", del, 0, "exit code 42")
	s.want("container delete", d.ctr(cmdOpts{}, "container", "delete", "c-bg"), 0)
	s.want("nothing left", d.ctr(cmdOpts{}, "container", "list", "--quiet"), 0)
	return s
}

func boolCode(b bool) int {
	if b {
		return 1
	}
	return 0
}

// waitTaskStopped polls `ctr task list` (5 s at most) until id is STOPPED.
func waitTaskStopped(d *containerd, id string) cmdResult {
	var r cmdResult
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r = d.ctr(cmdOpts{}, "task", "list")
		for _, l := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == id && f[2] == "STOPPED" {
				return cmdResult{code: 0, stdout: "STOPPED"}
			}
		}
	}
	return cmdResult{code: 1, stdout: r.stdout, stderr: "task " + id + " not STOPPED after 5 s"}
}

// TestContainerdClient runs ctr sessions (run with exit codes, a tty, task
// exec, kill, delete) on a containerd of its own with runc and with the
// runtime under test, and compares them. containerd runs runtimes as root.
func TestContainerdClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containerd calls its runtime as root: run the tests as root (make test does)")
	}
	requireSetup(t)
	tools := requireTool(t, "containerd", "ctr", "containerd-shim-runc-v2", "runc")
	rt := ociRuntime(t)
	var ref, got *scenario
	t.Run("runc", func(t *testing.T) { ref = containerdScenario(t, tools["runc"]) })
	t.Run(filepath.Base(rt), func(t *testing.T) { got = containerdScenario(t, rt) })
	if ref != nil && got != nil {
		compareSteps(t, ref, got)
	}
}
