package tests

// Issue 13, logs: rabbitc logs reads a detached container's log. The
// detached containers here are made up, as in TestStopNeverSignalsAStranger:
// a state directory whose "rabbitc" is a process the test started as the
// test user, and a ctr.log written in the format (podman's k8s-file: one
// record a line, "TIMESTAMP STREAM F|P CONTENT").

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeCtr is a made-up detached container.
type fakeCtr struct {
	id, xdg, dir string
	parent       *exec.Cmd // its "rabbitc"
}

// fakeContainer makes a running container whose ctr.log holds log (none
// if log is ""), and ctr.log.1 old (none if "").
func fakeContainer(t *testing.T, log, old string) *fakeCtr {
	t.Helper()
	requireSetup(t)
	parent := exec.Command("sleep", "60")
	if env.user.drop {
		parent.SysProcAttr = &syscall.SysProcAttr{Credential: credential()}
	}
	registry.Lock() // ours, not a leftover of a run
	err := parent.Start()
	if err == nil {
		registry.active[parent.Process.Pid] = true
	}
	registry.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeCtr{id: fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64()), parent: parent}
	t.Cleanup(func() {
		c.end()
		os.RemoveAll(filepath.Dir(c.dir))
	})
	c.xdg = userDir(t, "xdg-logs", 0o700)
	c.dir = filepath.Join(c.xdg, "rabbitc", c.id)
	st := map[string]any{"id": c.id, "rootfs": "/nonexistent", "args": []string{"server"}, "created": time.Now().UTC(),
		"parentPid": parent.Process.Pid, "parentStartTime": startTime(t, parent.Process.Pid), "status": "running"}
	b, _ := json.Marshal(st)
	for _, d := range []string{filepath.Dir(c.dir), c.dir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		chownToUser(d)
	}
	userFile(t, filepath.Join(c.dir, "state.json"), string(b), 0o600)
	if log != "" {
		userFile(t, filepath.Join(c.dir, "ctr.log"), log, 0o600)
	}
	if old != "" {
		userFile(t, filepath.Join(c.dir, "ctr.log.1"), old, 0o600)
	}
	return c
}

// end ends the container: its "rabbitc" exits (and is reaped).
func (c *fakeCtr) end() {
	c.parent.Process.Kill()
	c.parent.Wait()
	registry.Lock()
	delete(registry.active, c.parent.Process.Pid)
	registry.Unlock()
}

func (c *fakeCtr) opts() opts { return opts{env: []string{"XDG_RUNTIME_DIR=" + c.xdg}} }

func (c *fakeCtr) logs(t *testing.T, args ...string) result {
	t.Helper()
	return runOpt(t, c.opts(), append(append([]string{"logs"}, args...), c.id[:8])...)
}

// appendLog adds records to the container's ctr.log.
func (c *fakeCtr) appendLog(t *testing.T, records string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(c.dir, "ctr.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(records); err != nil {
		t.Fatal(err)
	}
}

// rec is one record; the nth second of a fixed minute.
func rec(n int, stream, tag, content string) string {
	return fmt.Sprintf("2026-12-07T05:40:%02d.%09dZ %s %s %s\n", n, n, stream, tag, content)
}

func ts(n int) string { return fmt.Sprintf("2026-12-07T05:40:%02d.%09dZ", n, n) }

// A rotated half, then a log with lines cut in pieces on both streams.
var (
	logOld = rec(1, "stdout", "F", "from the rotated half")
	logCur = rec(2, "stdout", "F", "out one") +
		rec(3, "stderr", "F", "err one") +
		rec(4, "stdout", "P", "out ") +
		rec(5, "stderr", "P", "err ") +
		rec(6, "stdout", "F", "two") +
		rec(7, "stderr", "F", "two") +
		rec(8, "stdout", "F", "")
)

// The container's stdout goes to stdout, its stderr to stderr, each line
// whole again.
func TestLogsSeparatesStreams(t *testing.T) {
	c := fakeContainer(t, logCur, logOld)
	r := c.logs(t)
	wantCode(t, r, 0)
	if want := "from the rotated half\nout one\nout two\n\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q\n%s", r.stdout, want, r)
	}
	if want := "err one\nerr two\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q\n%s", r.stderr, want, r)
	}
}

// --tail N counts the lines of both streams; -t prefixes each line with
// the time of its first piece.
func TestLogsTailAndTimestamps(t *testing.T) {
	c := fakeContainer(t, logCur, logOld)
	for _, tc := range []struct {
		args           []string
		stdout, stderr string
	}{
		{[]string{"--tail", "3"}, "out two\n\n", "err two\n"},
		{[]string{"-n", "0"}, "", ""},
		{[]string{"--tail=all"}, "from the rotated half\nout one\nout two\n\n", "err one\nerr two\n"},
		{[]string{"--tail", "5", "-t"}, ts(2) + " out one\n" + ts(4) + " out two\n" + ts(8) + " \n",
			ts(3) + " err one\n" + ts(5) + " err two\n"},
	} {
		r := c.logs(t, tc.args...)
		wantCode(t, r, 0)
		if r.stdout != tc.stdout || r.stderr != tc.stderr {
			t.Errorf("logs %s: stdout %q, stderr %q; want %q, %q", strings.Join(tc.args, " "), r.stdout, r.stderr, tc.stdout, tc.stderr)
		}
	}
	wantOneErrorLine(t, c.logs(t, "--tail", "ten"), 125, "--tail", "all")
}

// logs -f prints records as they come, across a rotation, and returns once
// the container has ended, after the last of its records.
func TestLogsFollowEndsWithContainer(t *testing.T) {
	c := fakeContainer(t, rec(1, "stdout", "F", "first"), "")
	p := start(t, c.opts(), "logs", "-f", c.id)
	p.waitOutput(t, opts{}, "first\n", 10*time.Second)
	c.appendLog(t, rec(2, "stdout", "F", "second")+rec(3, "stderr", "F", "warning"))
	p.waitOutput(t, opts{}, "second\n", 10*time.Second)
	// The monitor writes a record and rotates: ctr.log becomes ctr.log.1,
	// a new one starts. logs -f has not seen the record yet (it looks every
	// 100 ms): it finds it in ctr.log.1 before going on in the new ctr.log.
	c.appendLog(t, rec(4, "stdout", "F", "before rotation"))
	log := filepath.Join(c.dir, "ctr.log")
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	userFile(t, log, rec(5, "stdout", "P", "after "), 0o600)
	p.waitOutput(t, opts{}, "after ", 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a few of its looks with nothing new
	if p.exited() {
		t.Fatalf("logs -f returned while the container runs:\n%s", p.wait(t))
	}
	c.appendLog(t, rec(6, "stdout", "F", "rotation")+rec(7, "stdout", "F", "last words"))
	c.end()
	p.timeout = 10 * time.Second
	r := p.wait(t)
	wantCode(t, r, 0)
	if want := "first\nsecond\nbefore rotation\nafter rotation\nlast words\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if r.stderr != "warning\n" {
		t.Errorf("stderr %q, want %q", r.stderr, "warning\n")
	}
}

// A container without a log (run in the foreground, its output went to the
// terminal) gets one line that says which ones keep one.
func TestLogsWithoutLog(t *testing.T) {
	c := fakeContainer(t, "", "")
	wantOneErrorLine(t, c.logs(t), 125, "has no log", "run -d")
	wantOneErrorLine(t, c.logs(t, "-f"), 125, "has no log", "run -d")

	// A real one, running in the foreground.
	p := start(t, opts{}, rcNoNet("--init", "--", "sleep", "30")...)
	o := opts{env: []string{"XDG_RUNTIME_DIR=" + p.xdg}}
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == "" && time.Now().Before(deadline); {
		id = runOpt(t, o, "ps", "-q").out()
		time.Sleep(10 * time.Millisecond)
	}
	if id == "" {
		t.Fatal("the container does not show in rabbitc ps")
	}
	wantOneErrorLine(t, runOpt(t, o, "logs", id), 125, "container "+id+" has no log", "run -d")
	p.signal(t, syscall.SIGTERM)
	p.wait(t)
	wantOneErrorLine(t, c.logs(t, "a", "b"), 125, "one container")
}
