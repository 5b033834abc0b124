package tests

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The demo (tests/demo.sh, make demo) serves until Ctrl-C and then stops
// what it started, also when Ctrl-C comes while the container is starting:
// no rabbitc, server or slirp4netns left, no published port, no state, no
// temporary copy. Ctrl-C is what a terminal sends, SIGINT to the whole
// foreground process group (make, the script, and whatever it runs in that
// group). The demo serves forever, so neither make test nor CI runs it but
// through this test.
func TestDemoStopsOnCtrlC(t *testing.T) {
	requireNet(t)
	t.Run("serving", func(t *testing.T) {
		port := freePort(t, 1)
		d := startDemo(t, port, "make", "--no-print-directory", "demo")
		ready := "demo: serving: curl 127.0.0.1:" + strconv.Itoa(port) + " from another terminal; Ctrl-C to stop"
		if !d.out.waitFor(ready, 3*time.Minute) {
			d.kill()
			t.Fatalf("no %q:\n%s", ready, d.out)
		}
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
		if err != nil {
			t.Fatalf("the demo's server: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "Hello from rabbitc container" {
			t.Errorf("the demo's server answered %q", body)
		}
		if !strings.Contains(d.out.String(), "rabbitc --rootfs=demo-rootfs") && !strings.Contains(d.out.String(), "bin/rabbitc --rootfs=build/demo-rootfs") {
			t.Errorf("no hint to try it as an ordinary user:\n%s", d.out)
		}
		if strings.Contains(d.out.String(), "/root/") || strings.Contains(d.out.String(), "sudo") {
			t.Errorf("a hint names /root or sudo:\n%s", d.out)
		}
		d.interrupt(t)
		if !strings.Contains(d.out.String(), "demo: stopped") {
			t.Errorf("the demo did not say it stopped the container:\n%s", d.out)
		}
		d.checkGone(t)
	})
	t.Run("starting", func(t *testing.T) {
		// Ctrl-C once rabbitc is there, before (or just as) it serves.
		port := freePort(t, 1)
		d := startDemo(t, port, "tests/demo.sh")
		publish := "--publish " + strconv.Itoa(port) + ":80"
		deadline := time.Now().Add(time.Minute)
		for !processWith(publish) {
			if time.Now().After(deadline) {
				d.kill()
				t.Fatalf("no rabbitc with %s after a minute:\n%s", publish, d.out)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.interrupt(t)
		d.checkGone(t)
	})
}

// demoRun is one run of the demo, in a process group of its own.
type demoRun struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	done   chan struct{}
	port   int
	copies map[string]bool // the demo's temporary directories before the run
}

func startDemo(t *testing.T, port int, args ...string) *demoRun {
	t.Helper()
	d := &demoRun{out: &lockedBuffer{}, done: make(chan struct{}), port: port, copies: demoCopies()}
	// env --default-signal=INT: a terminal's job starts with SIGINT at its
	// default, which this test may not have (go test started in the
	// background of a shell ignores it, and so would its children; bash
	// cannot trap a signal ignored on entry).
	d.cmd = exec.Command("env", append([]string{"--default-signal=INT"}, args...)...)
	d.cmd.Dir = env.repo
	d.cmd.Env = append(os.Environ(), "DEMO_PORT="+strconv.Itoa(port))
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A process the demo left holding its output must not block Wait.
	d.cmd.WaitDelay = 5 * time.Second
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.kill)
	return d
}

// interrupt sends SIGINT to the demo's process group, as Ctrl-C does, and
// waits for it to end.
func (d *demoRun) interrupt(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	select {
	case <-d.done:
		t.Logf("the demo ended %v after Ctrl-C", time.Since(t0).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		d.kill()
		t.Fatalf("the demo still runs 30 s after Ctrl-C:\n%s", d.out)
	}
	if strings.Contains(d.out.String(), "exited by itself") {
		t.Errorf("rabbitc ended before the demo stopped it:\n%s", d.out)
	}
}

// kill ends the demo's process group, if it still runs.
func (d *demoRun) kill() {
	select {
	case <-d.done:
	default:
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// checkGone checks that nothing the demo started or made is left.
func (d *demoRun) checkGone(t *testing.T) {
	t.Helper()
	assertNoLeftovers(t) // processes (we are their subreaper) and mounts
	for _, hp := range []hostPort{{"tcp", "0.0.0.0", d.port}, {"tcp", "127.0.0.1", d.port}} {
		if err := hp.bindable(); err != nil {
			t.Errorf("the demo's port %s is still bound: %v", hp, err)
		}
	}
	for c := range demoCopies() {
		if !d.copies[c] {
			t.Errorf("the demo left %s", c)
		}
	}
	// The container's state: without $XDG_RUNTIME_DIR (env -i as root) in
	// /tmp/rabbitc-UID; found by its port, which no other run uses.
	uid := os.Getuid()
	if os.Geteuid() == 0 {
		uid = env.user.uid
	}
	dirs := []string{filepath.Join(os.TempDir(), "rabbitc-"+strconv.Itoa(uid))}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && os.Geteuid() != 0 {
		dirs = append(dirs, filepath.Join(x, "rabbitc"))
	}
	want := `"` + strconv.Itoa(d.port) + `:80"`
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "state.json"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), want) {
				t.Errorf("the demo's container state is left: %s", f)
			}
		}
	}
	if processWith("--publish " + strconv.Itoa(d.port) + ":80") {
		t.Errorf("a process with the demo's --publish is left")
	}
}

// demoCopies are the demo's temporary directories (as root it runs a copy
// of rabbitc and the rootfs from one).
func demoCopies() map[string]bool {
	out := map[string]bool{}
	m, _ := filepath.Glob(filepath.Join(os.TempDir(), "rabbitc-demo.*"))
	for _, p := range m {
		out[p] = true
	}
	return out
}

// processWith tells whether a process's command line contains s.
func processWith(s string) bool {
	for pid := range readProcs() {
		if strings.Contains(cmdline(pid), s) {
			return true
		}
	}
	return false
}
