package nsenter

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// buildEntry builds testdata/entry with BuildFlag.
func buildEntry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "entry")
	cmd := exec.Command("go", "build", "-ldflags=-s -w "+BuildFlag, "-o", bin, "./testdata/entry")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs the test program with args, fd 4 = pidfd (if not nil), and
// returns its output and exit code (128+N when signal N killed it).
func run(t *testing.T, bin string, pidfd *os.File, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	if pidfd != nil {
		cmd.ExtraFiles = []*os.File{os.Stdin, pidfd} // fds 3 and 4
	}
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			return string(out), 128 + int(ws.Signal())
		}
		return string(out), ee.ExitCode()
	}
	t.Fatalf("run %s: %v", bin, err)
	return "", 0
}

// Anything but an exec request goes straight to the runtime, marked as
// linked; a bad request starts the runtime unforked, with the failed step.
func TestEntryWithoutJoin(t *testing.T) {
	bin := buildEntry(t)
	for _, tc := range []struct {
		args []string
		fd4  bool
		want string
	}{
		{nil, false, "linked=true joined=the entry point did not run"},
		{[]string{"init", "direct"}, false, "joined=the entry point did not run"},
		{[]string{"init", "exec"}, false, "joined=the entry point did not run"},
		{[]string{"init", "exec", "12x"}, false, "joined=join the container's namespaces: bad flags in argv"},
		{[]string{"init", "exec", ""}, false, "joined=join the container's namespaces: bad flags in argv"},
		{[]string{"init", "exec", "67108864"}, false, "joined=join the container's namespaces: setns: bad file descriptor"},
		{[]string{"init", "exec", "0"}, true, "setns: invalid argument (rabbitc exec needs Linux 5.8 or later"},
	} {
		var fd *os.File
		if tc.fd4 {
			fd = selfPidfd(t)
		}
		out, code := run(t, bin, fd, []string{"EXIT_CODE=3"}, tc.args...)
		if !strings.Contains(out, tc.want) || code != 3 {
			t.Errorf("%q: got %q exit %d, want %q exit 3", tc.args, out, code, tc.want)
		}
	}
}

func selfPidfd(t *testing.T) *os.File {
	t.Helper()
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (Linux 5.3)", err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	t.Cleanup(func() { f.Close() })
	return f
}

// An exec request joins the namespaces of the process behind the pidfd (a
// sleep in new user and UTS namespaces, as any user) and forks: the child
// runs in them, the parent exits with its status, 128+N if signal N killed
// it.
func TestEntryJoinsAndForks(t *testing.T) {
	bin := buildEntry(t)
	target := exec.Command("sleep", "30")
	target.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWUTS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if err := target.Start(); err != nil {
		t.Skipf("start a process in new user and UTS namespaces: %v (unprivileged user namespaces disabled?)", err)
	}
	defer func() {
		target.Process.Kill()
		target.Wait()
	}()
	fd, err := unix.PidfdOpen(target.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (Linux 5.3)", err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	defer pidfd.Close()
	theirs, err := os.Readlink("/proc/" + strconv.Itoa(target.Process.Pid) + "/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	flags := strconv.Itoa(unix.CLONE_NEWUSER | unix.CLONE_NEWUTS)
	out, code := run(t, bin, pidfd, []string{"EXIT_CODE=7"}, "init", "exec", flags)
	if !strings.Contains(out, "linked=true joined=<nil> uts="+theirs+" ") || code != 7 {
		t.Errorf("got %q exit %d, want joined, the target's UTS namespace %s, exit 7", out, code, theirs)
	}
	if strings.Contains(out, "ppid="+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("the program ran unforked (its parent is the test): %q", out)
	}
	_, code = run(t, bin, pidfd, []string{"KILL_SELF=1"}, "init", "exec", flags)
	if code != 128+int(syscall.SIGTERM) {
		t.Errorf("a child killed by SIGTERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
	}
}

// The watchdog's wait: nothing happens while stdin stays open; once it
// ends, the process whose pidfd is at fd 3 is killed and waited for before
// the Go code runs, which sees Watched.
func TestEntryWatchdog(t *testing.T) {
	bin := buildEntry(t)
	target := exec.Command("sleep", "30")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer target.Process.Kill()
	fd, err := unix.PidfdOpen(target.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (Linux 5.3)", err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	defer pidfd.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	wd := exec.Command(bin, "init", "watchdog")
	wd.Stdin, wd.Stdout = pr, &out
	wd.ExtraFiles = []*os.File{pidfd} // fd 3
	if err := wd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	done := make(chan error, 1)
	go func() { done <- wd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("the watchdog ended while stdin was open: %v, %q", err, out.String())
	case <-time.After(200 * time.Millisecond):
	}
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		t.Fatalf("the target is gone while stdin was open: %v", err)
	}
	pw.Close() // rabbitc dies
	select {
	case err := <-done:
		if err != nil || out.String() != "watched=true\n" {
			t.Errorf("watchdog: %v, %q, want watched=true", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watchdog did not end 10 s after stdin ended")
	}
	if err := target.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the target: %v, want killed", err)
	}
}
