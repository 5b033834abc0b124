package tests

// Issue 13: detached containers (run -d, --name, ps -a, stop, kill, rm,
// wait, inspect).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// detachedEnv is one test's XDG_RUNTIME_DIR for detached containers, and
// their monitors: the rabbitc processes that run -d leaves running, which
// the test process inherits (it is a child subreaper). They are registered
// as ours while the container runs, and must be gone, with every container
// removed, when the test ends.
type detachedEnv struct {
	t        *testing.T
	xdg      string
	monitors []int
	env      []string // more of rabbitc's environment (XDG_DATA_HOME for images)
	bin      string   // another rabbitc binary (the installed one)
	netAdmin bool     // opts.netAdmin
}

func newDetachedEnv(t *testing.T) *detachedEnv {
	requireSetup(t)
	d := &detachedEnv{t: t, xdg: userDir(t, "xdg-detach", 0o700)}
	t.Cleanup(d.cleanup)
	return d
}

func (d *detachedEnv) opts() opts {
	return opts{env: append([]string{"XDG_RUNTIME_DIR=" + d.xdg}, d.env...), bin: d.bin, netAdmin: d.netAdmin}
}

// run runs a rabbitc command that is not run -d, with the leftover checks.
func (d *detachedEnv) run(args ...string) result {
	d.t.Helper()
	return runOpt(d.t, d.opts(), args...)
}

// runD runs `rabbitc run -d ARGS...` and returns its result; when it
// started a container, the ID it printed, and its monitor is registered.
func (d *detachedEnv) runD(args ...string) (string, result) {
	d.t.Helper()
	p := start(d.t, d.opts(), append([]string{"run", "-d"}, args...)...)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		d.t.Fatalf("rabbitc run -d did not return within 30 s: %s", describeTree(p.pid()))
	}
	r := p.res
	// Its ports are the monitor's now, and its state is meant to stay:
	// the harness's checks of a finished run do not apply (the test and
	// cleanup check them).
	c := ctxOf(d.t)
	c.mu.Lock()
	p.checked = true
	c.mu.Unlock()
	if strings.Contains(r.stderr, "still held open") {
		d.t.Errorf("run -d returned, but something it left holds its stdout or stderr (a command substitution would hang):\n%s", r)
	}
	if r.code != 0 {
		return "", r
	}
	id := strings.TrimSpace(r.stdout)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		d.t.Fatalf("run -d printed %q, want the full ID:\n%s", id, r)
	}
	st := d.state(id)
	registry.Lock()
	registry.active[st.ParentPid] = true
	registry.Unlock()
	d.monitors = append(d.monitors, st.ParentPid)
	return id, r
}

type stateJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	ParentPid int    `json:"parentPid"`
	InitPid   int    `json:"initPid"`
	Status    string `json:"status"`
	ExitCode  int    `json:"exitCode"`
}

func (d *detachedEnv) state(id string) stateJSON {
	d.t.Helper()
	var st stateJSON
	b, err := os.ReadFile(filepath.Join(d.xdg, "rabbitc", id, "state.json"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		d.t.Fatalf("state of %s: %v", id, err)
	}
	return st
}

// containers lists the container directories left in the state root.
func (d *detachedEnv) containers() []string {
	var out []string
	for _, e := range listDir(filepath.Join(d.xdg, "rabbitc")) {
		if e != "lock" {
			out = append(out, e)
		}
	}
	return out
}

// cleanup checks that every monitor has exited and every container was
// removed, killing what is left.
func (d *detachedEnv) cleanup() {
	t := d.t
	for _, pid := range d.monitors {
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, ok := readProcs()[pid]
			if !ok || p.state == 'Z' {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the monitor %d still runs at the end of the test (killed now)", pid)
				syscall.Kill(pid, syscall.SIGKILL)
				deadline = time.Now().Add(10 * time.Second)
			}
			time.Sleep(10 * time.Millisecond)
		}
		registry.Lock()
		delete(registry.active, pid)
		registry.Unlock()
	}
	if left := waitStrays(5 * time.Second); len(left) > 0 {
		t.Errorf("leftover processes:\n%s", strings.Join(left, "\n"))
	}
	if left := d.containers(); len(left) > 0 && !t.Failed() {
		t.Errorf("containers left in the state directory: %v", left)
	}
}

// waitMonitorGone waits until the container's monitor has exited.
func (d *detachedEnv) waitMonitorGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p, ok := readProcs()[pid]; !ok || p.state == 'Z' {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// run -d returns the full ID once the payload runs; the container is
// listed by ps (by ID and name), its name is unique, stop ends it, ps -a
// then shows it exited with its code, wait prints the code, rm removes it.
func TestRunDetached(t *testing.T) {
	d := newDetachedEnv(t)
	id, _ := d.runD("--name", "web", "--rootfs", env.rootfs, "--net", "none", "--", "sh", "-c", "echo ready; exec sleep 60")
	st := d.state(id)
	if st.Status != "running" || st.Name != "web" || st.InitPid == 0 {
		t.Fatalf("state after run -d: %+v", st)
	}
	// run -d returns once init's exec began; sh then execs sleep.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		p, ok := readProcs()[st.InitPid]
		if ok && p.comm == "sleep" {
			break
		}
		if !ok || time.Now().After(deadline) {
			t.Fatalf("the payload does not run as %d: %+v", st.InitPid, p)
		}
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", st.ParentPid)); err != nil || cwd != "/" {
		t.Errorf("the monitor's working directory is %q (%v): it must keep none of the caller's busy", cwd, err)
	}
	ps := d.run("ps")
	wantCode(t, ps, 0)
	if !strings.Contains(ps.stdout, id[:12]) || !strings.Contains(ps.stdout, "web") || !strings.Contains(ps.stdout, "Up ") {
		t.Errorf("ps does not list the detached container:\n%s", ps)
	}
	_, dup := d.runD("--name", "web", "--rootfs", env.rootfs, "--net", "none", "--", "true")
	wantRuntimeError(t, dup, "--name web", "in use", id[:12])

	inspect := d.run("inspect", "web")
	wantCode(t, inspect, 0)
	var got []struct {
		ID    string `json:"Id"`
		State struct {
			Status string
			Pid    int
		}
	}
	if err := json.Unmarshal([]byte(inspect.stdout), &got); err != nil || len(got) != 1 || got[0].ID != id ||
		got[0].State.Status != "running" || got[0].State.Pid != st.InitPid {
		t.Errorf("inspect web: %v:\n%s", err, inspect)
	}

	stop := d.run("stop", "-t", "1", "web")
	wantCode(t, stop, 0)
	if !d.waitMonitorGone(st.ParentPid, time.Second) {
		t.Errorf("the monitor still runs after stop returned")
	}
	all := d.run("ps", "-a")
	if !strings.Contains(all.stdout, "Exited (137)") || strings.Contains(d.run("ps", "-q").stdout, id[:12]) {
		t.Errorf("after stop: want ps -a to show the container exited (137), ps not to list it:\n%s", all)
	}
	if w := d.run("wait", id[:8]); w.out() != "137" {
		t.Errorf("wait: %q, want 137:\n%s", w.out(), w)
	}
	wantCode(t, d.run("rm", "web"), 0)
	if left := d.containers(); len(left) != 0 {
		t.Errorf("rm left %v", left)
	}
	wantRuntimeError(t, d.run("rm", "web"), "no such container: web")
}

// The payload's exit code is kept: ps -a, wait and inspect show it. With
// --rm the container is removed when it exits.
func TestRunDetachedExitCode(t *testing.T) {
	d := newDetachedEnv(t)
	id, _ := d.runD("--rootfs", env.rootfs, "--net", "none", "--", "sh", "-c", "exit 7")
	if w := d.run("wait", id); w.out() != "7" {
		t.Fatalf("wait: %q, want 7:\n%s", w.out(), w)
	}
	if all := d.run("ps", "-a", "--format", "json"); !strings.Contains(all.stdout, `"ExitCode": 7`) || !strings.Contains(all.stdout, `"State": "exited"`) {
		t.Errorf("ps -a --format json:\n%s", all)
	}
	if st := d.state(id); st.Status != "exited" || st.ExitCode != 7 {
		t.Errorf("state: %+v", st)
	}
	wantCode(t, d.run("rm", id), 0)

	id, _ = d.runD("--rm", "--rootfs", env.rootfs, "--net", "none", "--", "sh", "-c", "sleep 0.2; exit 3")
	st := d.state(id)
	if !d.waitMonitorGone(st.ParentPid, 10*time.Second) {
		t.Fatal("the --rm container did not end")
	}
	if left := d.containers(); len(left) != 0 {
		t.Errorf("run -d --rm: state left after the container exited: %v", left)
	}
}

// A detached container's published port and slirp4netns keep working after
// run -d returns; stop frees the port.
func TestRunDetachedPublish(t *testing.T) {
	requireNet(t)
	d := newDetachedEnv(t)
	port := freePort(t, 1)
	id, _ := d.runD("--rootfs", env.rootfs, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--cmd", "/bin/server")
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var body string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if body, err = httpGet(url); err == nil {
			break
		}
	}
	if err != nil || !strings.Contains(body, "Hello from rabbitc container") {
		t.Errorf("GET %s after run -d returned: %q, %v", url, body, err)
	}
	if ps := d.run("ps"); !strings.Contains(ps.stdout, fmt.Sprintf("127.0.0.1:%d:80", port)) {
		t.Errorf("ps does not show the published port:\n%s", ps)
	}
	wantCode(t, d.run("rm", "-f", id), 0)
	if err := (hostPort{ip: "127.0.0.1", port: port, proto: "tcp"}).bindable(); err != nil {
		t.Errorf("port still bound after rm -f: %v", err)
	}
}

// Errors of run -d are one line with docker's exit codes, and leave no
// state behind.
func TestRunDetachedErrors(t *testing.T) {
	d := newDetachedEnv(t)
	_, r := d.runD("--rootfs", "/no/such/rootfs", "--net", "none", "--", "true")
	wantRuntimeError(t, r, "/no/such/rootfs")
	_, r = d.runD("-t", "--rootfs", env.rootfs, "--net", "none", "--", "true")
	wantRuntimeError(t, r, "-d with -t")
	_, r = d.runD("--rm=false", "--name", "bad name", "--rootfs", env.rootfs, "--net", "none", "--", "true")
	wantRuntimeError(t, r, "bad name")
	// Not found in the rootfs, or not found by init: 127 either way.
	_, r = d.runD("--rootfs", env.rootfs, "--net", "none", "--", "/no/such/cmd")
	wantOneErrorLine(t, r, 127, "/no/such/cmd")
	_, r = d.runD("--rootfs", env.rootfs, "--net", "none", "-w", "/etc/passwd", "--", "true")
	if r.code == 0 {
		t.Errorf("run -d with a file as its workdir started:\n%s", r)
	}
	if left := d.containers(); len(left) != 0 {
		t.Errorf("failed starts left state: %v", left)
	}
	wantRuntimeError(t, d.run("stop", "nosuch"), "no such container")
	wantRuntimeError(t, d.run("kill", "nosuch"), "no such container")
	wantRuntimeError(t, d.run("ps", "--format", "yaml"), "--format")
}

// kill signals the payload; rm refuses a running container without -f and
// kills it with -f; kill of an exited container is an error.
func TestKillAndRm(t *testing.T) {
	d := newDetachedEnv(t)
	id, _ := d.runD("--name", "trap", "--rootfs", env.rootfs, "--net", "none", "--",
		"sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done")
	wantRuntimeError(t, d.run("rm", "trap"), "is running", "rm -f")
	wantRuntimeError(t, d.run("kill", "-s", "NOSUCH", "trap"), "NOSUCH")
	wantCode(t, d.run("kill", "-s", "TERM", "trap"), 0)
	if w := d.run("wait", "trap"); w.out() != "3" {
		t.Errorf("wait after kill -s TERM: %q, want 3:\n%s", w.out(), w)
	}
	wantRuntimeError(t, d.run("kill", "trap"), "not running")
	wantCode(t, d.run("rm", "trap"), 0)

	id, _ = d.runD("--rootfs", env.rootfs, "--net", "none", "--", "sleep", "60")
	st := d.state(id)
	wantCode(t, d.run("rm", "-f", id[:12]), 0)
	if !d.waitMonitorGone(st.ParentPid, time.Second) {
		t.Error("rm -f returned while the monitor runs")
	}
}

// kill -9 of a detached container's monitor takes the container with it,
// whatever the payload did to its parent-death signal, in both start
// paths; the container then shows as exited until rm.
func TestKillMonitor(t *testing.T) {
	requireNet(t)
	for name, extra := range map[string][]string{
		"direct":  {"--net", "none"},
		"sandbox": {"-p", fmt.Sprintf("127.0.0.1:%d:80", freePort(t, 1))},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDetachedEnv(t)
			args := append(append([]string{"--rootfs", env.rootfs}, extra...), escapePayloads["nopdeathsig"]...)
			id, _ := d.runD(args...)
			st := d.state(id)
			if err := killPid(st.ParentPid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if !d.waitMonitorGone(st.ParentPid, time.Second) {
				t.Fatal("the monitor survives SIGKILL")
			}
			registry.Lock()
			delete(registry.active, st.ParentPid)
			registry.Unlock()
			if left := straysWithin(time.Second); len(left) > 0 {
				t.Errorf("1 s after kill -9 of the monitor, the container still runs:\n%s", strings.Join(left, "\n"))
			}
			if all := d.run("ps", "-a"); !strings.Contains(all.stdout, "Exited (137)") {
				t.Errorf("ps -a after the monitor was killed:\n%s", all)
			}
			wantCode(t, d.run("rm", id), 0)
		})
	}
}

// A detached container's output is in its log: logs gives its stdout and
// stderr apart, -f follows it until the container ends.
func TestRunDetachedLogs(t *testing.T) {
	d := newDetachedEnv(t)
	id, _ := d.runD("--name", "talk", "--rootfs", env.rootfs, "--net", "none", "--",
		"sh", "-c", "echo out1; echo err1 >&2; sleep 0.3; echo out2; exit 4")
	f := d.run("logs", "-f", "talk")
	wantCode(t, f, 0)
	if f.stdout != "out1\nout2\n" || f.stderr != "err1\n" {
		t.Errorf("logs -f: stdout %q, stderr %q; want out1, out2 and err1 apart", f.stdout, f.stderr)
	}
	if w := d.run("wait", id); w.out() != "4" {
		t.Errorf("wait: %q", w.out())
	}
	if tail := d.run("logs", "--tail", "1", id); tail.stdout != "out2\n" || tail.stderr != "" {
		t.Errorf("logs --tail 1: %q %q", tail.stdout, tail.stderr)
	}
	wantCode(t, d.run("rm", "talk"), 0)
}

// A foreground container's name is claimed as a detached one's, accepted
// by the verbs, and free again once the container is gone.
func TestNameForeground(t *testing.T) {
	d := newDetachedEnv(t)
	o := d.opts()
	p := start(t, o, "run", "--name", "fg", "--rootfs", env.rootfs, "--net", "none", "--", "sh", "-c", "echo ready; exec sleep 60")
	p.waitOutput(t, o, "ready", 10*time.Second)
	_, dup := d.runD("--name", "fg", "--rootfs", env.rootfs, "--net", "none", "--", "true")
	wantRuntimeError(t, dup, "--name fg", "in use")
	if ps := d.run("ps"); !strings.Contains(ps.stdout, " fg ") {
		t.Errorf("ps does not show the name:\n%s", ps)
	}
	wantCode(t, d.run("stop", "-t", "0", "fg"), 0)
	p.wait(t)
	// sleep: run -d returns before the container is gone, and runD reads its state
	id, _ := d.runD("--rm", "--name", "fg", "--rootfs", env.rootfs, "--net", "none", "--", "sleep", "0.2")
	if id == "" {
		t.Fatal("the name of a container that is gone was not free")
	}
	if !d.waitMonitorGone(d.monitors[len(d.monitors)-1], 10*time.Second) {
		t.Fatal("run -d --rm true did not end")
	}
}
