package tests

// Issue 14: the OCI runtime command line, driven the way engines drive it:
// a bundle's config.json, --root, create / start / state / kill / delete,
// run, exec --process, the console socket, --preserve-fds, hooks.

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ociEnv is one test's --root and bundles. The inits that create leaves
// (the engine's to wait for: here the test's, a child subreaper) are
// registered while their container exists; every container must be deleted
// and every init gone when the test ends.
type ociEnv struct {
	t     *testing.T
	root  string
	inits map[string]int
	o     opts
}

func newOCIEnv(t *testing.T) *ociEnv {
	requireSetup(t)
	e := &ociEnv{t: t, root: userDir(t, "oci-root", 0o700), inits: map[string]int{}}
	t.Cleanup(e.cleanup)
	return e
}

// rc runs `rabbitc --root ROOT ARGS...`.
func (e *ociEnv) rc(args ...string) result {
	e.t.Helper()
	return runOpt(e.t, e.o, append([]string{"--root", e.root}, args...)...)
}

// bundle writes a bundle whose config is `rabbitc spec --rootless` with
// the test rootfs and the process args, changed by edit.
func (e *ociEnv) bundle(args []string, edit func(c map[string]any)) string {
	e.t.Helper()
	dir := userDir(e.t, "bundle", 0o755)
	r := runOpt(e.t, opts{dir: dir}, "spec", "--rootless")
	wantCode(e.t, r, 0)
	var c map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	c["root"] = map[string]any{"path": env.rootfs, "readonly": true}
	p := c["process"].(map[string]any)
	p["args"], p["terminal"] = args, false
	if edit != nil {
		edit(c)
	}
	b, _ = json.MarshalIndent(c, "", " ")
	userFile(e.t, filepath.Join(dir, "config.json"), string(b), 0o644)
	return dir
}

// withoutUserNS drops the user namespace and its maps: the config rootless
// podman (already in a user namespace of its own) or containerd (root)
// give a runtime.
func withoutUserNS(c map[string]any) {
	l := c["linux"].(map[string]any)
	var ns []any
	for _, n := range l["namespaces"].([]any) {
		if n.(map[string]any)["type"] != "user" {
			ns = append(ns, n)
		}
	}
	l["namespaces"] = ns
	delete(l, "uidMappings")
	delete(l, "gidMappings")
}

type ociStateJSON struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     string            `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations"`
}

func (e *ociEnv) state(id string) ociStateJSON {
	e.t.Helper()
	r := e.rc("state", id)
	wantCode(e.t, r, 0)
	var st ociStateJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		e.t.Fatalf("state %s: %v\n%s", id, err, r)
	}
	return st
}

// create runs create and registers the init it leaves.
func (e *ociEnv) create(id, bundle string, extra ...string) result {
	e.t.Helper()
	r := e.leaving(append(append([]string{"create", "--bundle", bundle}, extra...), id)...)
	if r.code == 0 {
		e.register(id)
	}
	return r
}

// leaving runs a command that leaves a process for the engine (create,
// run -d, exec --detach): the harness's check for leftovers comes once the
// test has registered that process.
func (e *ociEnv) leaving(args ...string) result {
	e.t.Helper()
	p := start(e.t, e.o, append([]string{"--root", e.root}, args...)...)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("rabbitc %v did not return within 30 s: %s", args, describeTree(p.pid()))
	}
	c := ctxOf(e.t)
	c.mu.Lock()
	p.checked = true
	c.mu.Unlock()
	return p.res
}

// register takes the container's init as the engine's: not a leftover.
func (e *ociEnv) register(id string) {
	e.t.Helper()
	var st ociStateJSON
	b, err := os.ReadFile(filepath.Join(e.root, id, "ocistate.json"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || st.Pid <= 0 {
		e.t.Fatalf("state of %s: %v (%s)", id, err, b)
	}
	registerPid(st.Pid)
	e.inits[id] = st.Pid
}

func registerPid(pid int) {
	registry.Lock()
	registry.active[pid] = true
	registry.Unlock()
}

// waitStopped waits until the container's status is stopped.
func (e *ociEnv) waitStopped(id string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.state(id).Status != "stopped" {
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s not stopped after 10 s", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanup deletes what is left, checks that every init has gone and
// nothing is left under the root.
func (e *ociEnv) cleanup() {
	t := e.t
	for id, pid := range e.inits {
		if fileExists(filepath.Join(e.root, id)) {
			if !t.Failed() {
				t.Errorf("container %s not deleted at the end of the test", id)
			}
			runOpt(t, e.o, "--root", e.root, "delete", "--force", id)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, ok := readProcs()[pid]
			if !ok || p.state == 'Z' {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("init %d of %s still runs after delete (killed now)", pid, id)
				syscall.Kill(pid, syscall.SIGKILL)
				deadline = time.Now().Add(10 * time.Second)
			}
			time.Sleep(10 * time.Millisecond)
		}
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, syscall.WNOHANG, nil) // the engine's part
		registry.Lock()
		delete(registry.active, pid)
		registry.Unlock()
	}
	if left := waitStrays(5 * time.Second); len(left) > 0 {
		t.Errorf("leftover processes:\n%s", strings.Join(left, "\n"))
	}
	if left := listDir(e.root); len(left) > 0 {
		t.Errorf("state left under --root: %v", left)
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// create leaves init blocked before the process (no output), start lets it
// run; state follows created -> running -> stopped; the pid file holds
// init's pid; kill and delete end it, and delete leaves nothing.
func TestOCILifecycle(t *testing.T) {
	e := newOCIEnv(t)
	out := userDir(t, "oci-out", 0o755)
	pidFile := filepath.Join(out, "pid")
	b := e.bundle([]string{"sh", "-c", "echo started; exec sleep 60"}, func(c map[string]any) {
		c["annotations"] = map[string]string{"org.example.test": "yes"}
	})
	r := e.create("c1", b, "--pid-file", pidFile)
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Errorf("the process ran before start: %q", r.stdout)
	}
	st := e.state("c1")
	if st.Status != "created" || st.Pid <= 0 || st.Bundle != b || st.ID != "c1" || st.Annotations["org.example.test"] != "yes" || st.OCIVersion == "" || st.Created == "" {
		t.Errorf("state after create: %+v", st)
	}
	if pf, _ := os.ReadFile(pidFile); string(pf) != strconv.Itoa(st.Pid) {
		t.Errorf("pid file %q, want %d", pf, st.Pid)
	}
	if r := e.rc("delete", "c1"); r.code != 0 {
		// runc deletes a created container without --force: here the test
		// only checks it is refused or done cleanly, never half.
		t.Logf("delete of a created container: %s", r)
	} else {
		e.waitGone("c1")
		r = e.create("c1", b, "--pid-file", pidFile)
		wantCode(t, r, 0)
	}
	wantCode(t, e.rc("start", "c1"), 0)
	if st := e.state("c1"); st.Status != "running" {
		t.Errorf("state after start: %+v", st)
	}
	wantOneErrorLine(t, e.rc("start", "c1"), 1, "already running")
	wantOneErrorLine(t, e.rc("delete", "c1"), 1, "not stopped")
	r = e.rc("ps", "--format", "json", "c1")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, strconv.Itoa(e.inits["c1"])) {
		t.Errorf("ps --format json c1 = %q, want init's pid %d", r.stdout, e.inits["c1"])
	}
	wantCode(t, e.rc("kill", "--all", "c1", "KILL"), 0)
	e.waitStopped("c1")
	wantOneErrorLine(t, e.rc("kill", "c1", "TERM"), 1, "container not running")
	wantCode(t, e.rc("delete", "c1"), 0)
	wantOneErrorLine(t, e.rc("state", "c1"), 1, `container "c1" does not exist`)
}

func (e *ociEnv) waitGone(id string) {
	pid := e.inits[id]
	for i := 0; i < 500; i++ {
		if p, ok := readProcs()[pid]; !ok || p.state == 'Z' {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
			registry.Lock()
			delete(registry.active, pid)
			registry.Unlock()
			delete(e.inits, id)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("init %d of %s did not end", pid, id)
}

// run creates, starts, waits and deletes: the process's output and exit
// status are rabbitc's; run -d returns with the container running.
func TestOCIRun(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"sh", "-c", "echo out $(hostname) $$; echo err >&2; exit 7"}, nil)
	r := e.rc("run", "--bundle", b, "r1")
	wantCode(t, r, 7)
	if r.out() != "out rabbitc 1" || !strings.Contains(r.stderr, "err") {
		t.Errorf("run: %s", r)
	}
	if left := listDir(e.root); len(left) > 0 {
		t.Errorf("run left %v", left)
	}
	b2 := e.bundle([]string{"sleep", "60"}, nil)
	wantCode(t, e.leaving("run", "-d", "--bundle", b2, "r2"), 0)
	e.register("r2")
	if st := e.state("r2"); st.Status != "running" {
		t.Errorf("run -d: %+v", st)
	}
	wantCode(t, e.rc("delete", "--force", "r2"), 0)
	e.waitGone("r2")
}

// exec --process runs a process.json in the container's namespaces and
// returns its status; --detach --pid-file returns at once with the pid.
func TestOCIExec(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"sleep", "60"}, nil)
	wantCode(t, e.create("x1", b), 0)
	wantCode(t, e.rc("start", "x1"), 0)
	dir := userDir(t, "oci-exec", 0o755)
	proc := filepath.Join(dir, "process.json")
	userFile(t, proc, `{"args":["sh","-c","echo exec $(hostname) $(cat /proc/1/cmdline | tr '\\0' ' '); exit 3"],"cwd":"/","env":["PATH=/bin"]}`, 0o644)
	r := e.rc("exec", "--process", proc, "x1")
	wantCode(t, r, 3)
	if r.out() != "exec rabbitc sleep 60" {
		t.Errorf("exec: %s", r)
	}
	pidFile := filepath.Join(dir, "pid")
	// A command that ends at once: the stage may exit before rabbitc exec
	// returns, and must be left for the engine to reap, with its status.
	userFile(t, proc, `{"args":["sh","-c","exit 3"],"cwd":"/"}`, 0o644)
	r = e.leaving("exec", "--detach", "--pid-file", pidFile, "--process", proc, "x1")
	wantCode(t, r, 0)
	pf, err := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(string(pf))
	if err != nil || pid <= 0 {
		t.Fatalf("exec --detach pid file: %q %v", pf, err)
	}
	registerPid(pid)
	defer func() {
		registry.Lock()
		delete(registry.active, pid)
		registry.Unlock()
	}()
	// The engine (a subreaper) waits for that pid: it exits with the
	// process's status.
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 3 {
		t.Errorf("wait for the exec's pid %d: %v, status %v", pid, err, ws)
	}
	wantCode(t, e.rc("kill", "x1", "9"), 0)
	e.waitStopped("x1")
	wantOneErrorLine(t, e.rc("exec", "--process", proc, "x1"), 1, "stopped")
	wantCode(t, e.rc("delete", "x1"), 0)
}

// With process.terminal, the pty master goes to --console-socket in one
// SCM_RIGHTS message, and the process has the pty as its terminal.
func TestOCIConsoleSocket(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"sh", "-c", "tty; sleep 60"}, func(c map[string]any) {
		c["process"].(map[string]any)["terminal"] = true
	})
	dir := userDir(t, "oci-console", 0o755)
	sock := filepath.Join(dir, "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Chown(sock, env.user.uid, env.user.gid)
	got := make(chan *os.File, 1)
	go func() {
		defer close(got)
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 256), oob)
		if err != nil {
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if len(msgs) == 1 {
			if fds, _ := unix.ParseUnixRights(&msgs[0]); len(fds) == 1 {
				got <- os.NewFile(uintptr(fds[0]), "master")
			}
		}
	}()
	wantCode(t, e.create("t1", b, "--console-socket", sock), 0)
	var master *os.File
	select {
	case master = <-got:
	case <-time.After(10 * time.Second):
	}
	if master == nil {
		t.Fatal("no pty master on the console socket")
	}
	defer master.Close()
	wantCode(t, e.rc("start", "t1"), 0)
	master.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	n, _ := master.Read(buf)
	if !strings.HasPrefix(strings.TrimSpace(string(buf[:n])), "/dev/pts/") {
		t.Errorf("the process's tty: %q", buf[:n])
	}
	wantCode(t, e.rc("delete", "--force", "t1"), 0)
	e.waitGone("t1")
}

// --preserve-fds N passes fds 3.. on to the process, at the same numbers.
func TestOCIPreserveFds(t *testing.T) {
	e := newOCIEnv(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	b := e.bundle([]string{"sh", "-c", "echo through-fd3 >&3; ls /proc/self/fd | tr '\\n' ' '"}, nil)
	e.o = opts{extraFiles: []*os.File{pw}}
	r := e.rc("run", "--preserve-fds", "1", "--bundle", b, "p1")
	e.o = opts{}
	pw.Close()
	wantCode(t, r, 0)
	pr.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, _ := pr.Read(buf)
	if strings.TrimSpace(string(buf[:n])) != "through-fd3" {
		t.Errorf("fd 3 carried %q", buf[:n])
	}
	// 0-2, the preserved 3, and ls's own directory of /proc/self/fd.
	if fds := strings.Fields(r.out()); strings.Join(fds, " ") != "0 1 2 3 4" {
		t.Errorf("the process's descriptors: %q, want 0 1 2 3 4", r.out())
	}
}

// Hooks run at their points with the state on stdin: prestart,
// createRuntime and poststart on the host, createContainer before
// pivot_root, startContainer in the container, poststop after delete.
func TestOCIHooks(t *testing.T) {
	e := newOCIEnv(t)
	dir := userDir(t, "oci-hooks", 0o777)
	hook := func(name string) map[string]any {
		return map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "cat > " + filepath.Join(dir, name)}}
	}
	b := e.bundle([]string{"sh", "-c", "cat /run/started"}, func(c map[string]any) {
		c["mounts"] = append(c["mounts"].([]any), map[string]any{"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev"}})
		c["hooks"] = map[string]any{
			"prestart":        []any{hook("prestart")},
			"createRuntime":   []any{hook("createRuntime")},
			"createContainer": []any{hook("createContainer")},
			"startContainer":  []any{map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "echo in-container > /run/started"}}},
			"poststart":       []any{hook("poststart")},
			"poststop":        []any{hook("poststop")},
		}
	})
	r := e.rc("run", "--bundle", b, "h1")
	wantCode(t, r, 0)
	if r.out() != "in-container" {
		t.Errorf("startContainer hook: the process read %q", r.out())
	}
	for _, name := range []string{"prestart", "createRuntime", "createContainer", "poststart", "poststop"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		var st ociStateJSON
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil || st.ID != "h1" || st.Bundle == "" {
			t.Errorf("%s hook: state %q: %v", name, b, err)
		}
	}
	// A failing hook fails create, which leaves nothing.
	bad := e.bundle([]string{"true"}, func(c map[string]any) {
		c["hooks"] = map[string]any{"createRuntime": []any{map[string]any{"path": "/bin/false"}}}
	})
	wantOneErrorLine(t, e.rc("create", "--bundle", bad, "h2"), 1, "createRuntime hook")
}

// Bad input: one line, exit 1, nothing left behind; with --log-format
// json the error is one JSON line in the --log file.
func TestOCIErrors(t *testing.T) {
	e := newOCIEnv(t)
	empty := userDir(t, "oci-empty", 0o755)
	wantOneErrorLine(t, e.rc("create", "--bundle", empty, "e1"), 1, "config.json")
	missing := e.bundle([]string{"/bin/no-such-program"}, nil)
	wantOneErrorLine(t, e.rc("create", "--bundle", missing, "e2"), 1, "/bin/no-such-program", "no such file or directory")
	notInPath := e.bundle([]string{"no-such-program"}, nil)
	wantOneErrorLine(t, e.rc("create", "--bundle", notInPath, "e2"), 1, `"no-such-program": executable file not found in $PATH`)
	wantOneErrorLine(t, e.rc("state", "nope"), 1, `container "nope" does not exist`)
	wantOneErrorLine(t, e.rc("kill", "nope", "KILL"), 1, `container "nope" does not exist`)
	wantCode(t, e.rc("delete", "--force", "nope"), 0)
	b := e.bundle([]string{"sleep", "60"}, nil)
	wantCode(t, e.create("e3", b), 0)
	wantOneErrorLine(t, e.rc("create", "--bundle", b, "e3"), 1, "exists")
	logDir := userDir(t, "oci-log", 0o755)
	log := filepath.Join(logDir, "log.json")
	r := e.rc("--log", log, "--log-format", "json", "start", "nope")
	wantCode(t, r, 1)
	line, _ := os.ReadFile(log)
	var l struct{ Level, Msg, Time string }
	if err := json.Unmarshal(line, &l); err != nil || l.Level != "error" || l.Msg != `container "nope" does not exist` {
		t.Errorf("--log-format json: %q (%v)", line, err)
	}
	wantCode(t, e.rc("delete", "--force", "e3"), 0)
	e.waitGone("e3")
}

// kill -9 of create while it runs a hook: its init and the hook die with
// it, and the next list removes its directory.
func TestOCIKillCreate(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"true"}, func(c map[string]any) {
		c["hooks"] = map[string]any{"createRuntime": []any{map[string]any{"path": "/bin/sleep", "args": []string{"sleep", "30"}}}}
	})
	p := start(t, opts{}, "--root", e.root, "create", "--bundle", b, "k1")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(describeTree(p.pid()), "sleep") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.signal(t, syscall.SIGKILL)
	r := p.wait(t) // checks that nothing of it is left running
	if r.signaled != syscall.SIGKILL {
		t.Fatalf("create was not killed: %s", r)
	}
	wantCode(t, e.rc("list"), 0)
	if left := listDir(e.root); len(left) > 0 {
		t.Errorf("the killed create's directory is still there after list: %v", left)
	}
}

// As an engine calls it: uid 0 of a user namespace someone else made
// (rootless podman) and, when the tests run as root, real root
// (containerd): a config without a user namespace.
func TestOCIInOthersUserNamespace(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"sh", "-c", "id -u; exit 5"}, withoutUserNS)
	r := runOpt(t, opts{bin: "unshare"}, "--user", "--map-root-user", env.bin, "--root", e.root, "run", "--bundle", b, "u1")
	wantCode(t, r, 5)
	if r.out() != "0" {
		t.Errorf("run in an outer user namespace: %s", r)
	}
	if os.Geteuid() != 0 {
		return
	}
	rootDir := t.TempDir()
	r = runOpt(t, opts{asRoot: true}, "--root", rootDir, "run", "--bundle", b, "u2")
	wantCode(t, r, 5)
	if r.out() != "0" {
		t.Errorf("run as root: %s", r)
	}
}

// The process settings of config.json: sysctls of the container's own
// namespaces (others refused), oomScoreAdj, rlimits, umask, hostname.
func TestOCIProcessSettings(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/self/oom_score_adj; ulimit -n; umask; hostname"}, func(c map[string]any) {
		c["linux"].(map[string]any)["sysctl"] = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456"}
		p := c["process"].(map[string]any)
		p["oomScoreAdj"] = 500
		p["rlimits"] = []any{map[string]any{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}}
		p["user"] = map[string]any{"uid": 0, "gid": 0, "umask": 0o027}
		c["hostname"] = "oci-host"
	})
	r := e.rc("run", "--bundle", b, "s1")
	wantCode(t, r, 0)
	if got := strings.Fields(r.out()); strings.Join(got, " ") != "1 123456 500 512 0027 oci-host" {
		t.Errorf("settings seen by the process: %q, want 1 123456 500 512 0027 oci-host", r.out())
	}
	bad := e.bundle([]string{"true"}, func(c map[string]any) {
		c["linux"].(map[string]any)["sysctl"] = map[string]string{"vm.swappiness": "10"}
	})
	wantOneErrorLine(t, e.rc("create", "--bundle", bad, "s2"), 1, "vm.swappiness", "namespace")
}

// With limits and no cgroup v2 subtree rabbitc may write (this host: no
// delegation to the user), create fails with runc's error and leaves
// nothing; without limits no cgroup is needed (every test above).
func TestOCICgroupRefused(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"true"}, func(c map[string]any) {
		c["linux"].(map[string]any)["resources"] = map[string]any{"pids": map[string]any{"limit": 10}}
	})
	r := e.rc("create", "--bundle", b, "g1")
	if env.user.drop || os.Geteuid() != 0 {
		wantOneErrorLine(t, r, 1, "unable to apply cgroup configuration")
		return
	}
	if r.code == 0 {
		e.register("g1")
		wantCode(t, e.rc("delete", "--force", "g1"), 0)
	}
}

// A config without a mount namespace of the container's is refused: init
// would mount and pivot in the caller's.
func TestOCINoMountNamespace(t *testing.T) {
	e := newOCIEnv(t)
	b := e.bundle([]string{"true"}, func(c map[string]any) {
		l := c["linux"].(map[string]any)
		var ns []any
		for _, n := range l["namespaces"].([]any) {
			if n.(map[string]any)["type"] != "mount" {
				ns = append(ns, n)
			}
		}
		l["namespaces"] = ns
	})
	wantOneErrorLine(t, e.rc("create", "--bundle", b, "m1"), 1, "mount namespace")
}
