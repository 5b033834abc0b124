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

// NSENTER_TEST_QEMU_ARM64=qemu-aarch64-static tests the arm64 entry point
// from an amd64 test: the program is built for arm64 and run under that
// emulator (qemu-user cannot clone a user namespace itself, so the test's
// own processes stay native).
var qemuArm64 = os.Getenv("NSENTER_TEST_QEMU_ARM64")

// entryCmd runs the test program.
func entryCmd(bin string, args ...string) *exec.Cmd {
	if qemuArm64 != "" {
		return exec.Command(qemuArm64, append([]string{bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

// buildEntry builds testdata/entry with BuildFlag.
func buildEntry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "entry")
	cmd := exec.Command("go", "build", "-ldflags=-s -w "+BuildFlag, "-o", bin, "./testdata/entry")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if qemuArm64 != "" {
		cmd.Env = append(cmd.Env, "GOARCH=arm64")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs the test program with args, fd 4 = pidfd (if not nil), and
// returns its output and exit code (128+N when signal N killed it).
func run(t *testing.T, bin string, pidfd *os.File, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := entryCmd(bin, args...)
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
	pidfd, flags, pid := sleeper(t)
	theirs, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
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
	wd := entryCmd(bin, "init", "watchdog")
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

// sleeper starts sleep in new user and UTS namespaces (as any user) and
// returns a pidfd of it, the flags to join them and its pid, or skips.
// Under qemu, in a new UTS namespace only, as root: qemu-user runs threads
// of its own, and setns refuses a threaded process a user namespace.
func sleeper(t *testing.T) (*os.File, string, int) {
	t.Helper()
	target := exec.Command("sleep", "30")
	flags := syscall.CLONE_NEWUSER | syscall.CLONE_NEWUTS
	target.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  uintptr(flags),
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	if qemuArm64 != "" {
		if os.Getuid() != 0 {
			t.Skip("under qemu: needs root")
		}
		flags = syscall.CLONE_NEWUTS
		target.SysProcAttr = &syscall.SysProcAttr{Cloneflags: uintptr(flags)}
	}
	if err := target.Start(); err != nil {
		t.Skipf("start a process in new user and UTS namespaces: %v (unprivileged user namespaces disabled?)", err)
	}
	t.Cleanup(func() {
		target.Process.Kill()
		target.Wait()
	})
	fd, err := unix.PidfdOpen(target.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (Linux 5.3)", err)
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd")
	t.Cleanup(func() { pidfd.Close() })
	return pidfd, strconv.Itoa(flags), target.Process.Pid
}

// runPlan starts bin with PlanArgs, the sync channel at fd 3 and pidfd at
// fd 4, sends packet, and returns the program's output, its exit code and
// the packets it sent (at most 4).
func runPlan(t *testing.T, bin string, pidfd *os.File, flags string, packet []byte) (string, int, [][]byte) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-child")
	defer ours.Close()
	cmd := entryCmd(bin, "init", "exec", flags, "plan")
	cmd.Env = append(os.Environ(), "EXIT_CODE=5")
	cmd.ExtraFiles = []*os.File{theirs, pidfd}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if _, err := unix.Write(fds[0], packet); err != nil {
		t.Fatal(err)
	}
	var packets [][]byte
	for range 4 {
		b := make([]byte, 1024)
		n, oobn, _, _, err := unix.Recvmsg(fds[0], b, make([]byte, 64), 0)
		if err != nil || n == 0 && oobn == 0 {
			break
		}
		packets = append(packets, b[:n])
	}
	err = cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code, packets
}

// A plan runs in the child, in the joined namespaces, without a Go
// runtime: its calls in order, results passed on, accepted errnos, and the
// execvp attempts; a failed call or a command not found sends a failure
// record and exits 125. The Go marker starts the runtime in the child.
func TestEntryPlan(t *testing.T) {
	bin := buildEntry(t)
	pidfd, flags, _ := sleeper(t)
	// The numbers of the calls, for the program's architecture.
	sys := map[string]uintptr{"write": unix.SYS_WRITE, "getpid": unix.SYS_GETPID, "kill": unix.SYS_KILL,
		"close": unix.SYS_CLOSE, "dup3": unix.SYS_DUP3, "execve": unix.SYS_EXECVE}
	if qemuArm64 != "" {
		sys = map[string]uintptr{"write": 64, "getpid": 172, "kill": 129, "close": 57, "dup3": 24, "execve": 221}
	}
	newPlan := func() *Plan { return &Plan{execve: sys["execve"]} }
	encode := func(p *Plan) []byte {
		b, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// A write, getpid's result passed on to kill(pid, 0), a failing call
	// accepted, dup3's result stored, then execvp past a missing and a
	// non-executable path.
	p := newPlan()
	p.Syscall(sys["write"], Val(1), p.String("one\n"), Val(4))
	pid := p.Syscall(sys["getpid"])
	kill := p.Syscall(sys["kill"], Val(0), Val(0))
	p.ResultToArg(pid, kill, 0)
	bad := p.Syscall(sys["close"], Val(9999))
	p.OK(bad, syscall.EBADF)
	slot := p.Zero(8)
	dup := p.Syscall(sys["dup3"], Val(1), Val(7), Val(0))
	p.StoreResult(dup, slot)
	argv := p.Strings([]string{"sh", "-c", "echo two $0; readlink /proc/self/ns/uts"})
	p.Execvp([]string{"/nonexistent/sh", "/etc/passwd", "/bin/sh"}, argv, p.Strings(nil))
	out, code, packets := runPlan(t, bin, pidfd, flags, encode(p))
	if !strings.HasPrefix(out, "one\ntwo sh\nuts:[") || code != 0 || len(packets) != 0 {
		t.Errorf("plan: %q exit %d, packets %q; want one, two sh, the target's UTS namespace, exit 0", out, code, packets)
	}

	// A failure: the step and its errno.
	p = newPlan()
	p.Syscall(sys["write"], Val(1), p.String("one\n"), Val(4))
	p.Syscall(sys["close"], Val(9999))
	p.Syscall(sys["write"], Val(1), p.String("never\n"), Val(6))
	out, code, packets = runPlan(t, bin, pidfd, flags, encode(p))
	if len(packets) != 1 || out != "one\n" || code != 125 {
		t.Fatalf("failed call: %q exit %d, packets %q", out, code, packets)
	}
	if s, errno, ok := ParseFailure(packets[0]); !ok || s != 1 || errno != syscall.EBADF {
		t.Errorf("failure record: step %d errno %v (%v), want step 1 EBADF", s, errno, ok)
	}

	// Not found, and not runnable.
	for _, tc := range []struct {
		paths []string
		step  Step
		errno syscall.Errno
	}{
		{[]string{"/nonexistent/a", "/etc/passwd/b"}, 2, syscall.ENOENT},
		{[]string{"/nonexistent/a", "/etc/passwd", "/nonexistent/c"}, 1, syscall.EACCES},
	} {
		p = newPlan()
		p.Execvp(tc.paths, p.Strings([]string{"x"}), p.Strings(nil))
		_, code, packets = runPlan(t, bin, pidfd, flags, encode(p))
		s, errno, ok := ParseFailure(append(packets, nil)[0])
		if !ok || s != tc.step || errno != tc.errno || code != 125 {
			t.Errorf("execvp %q: step %d errno %v exit %d, want step %d %v exit 125", tc.paths, s, errno, code, tc.step, tc.errno)
		}
	}

	// Garbage is refused.
	_, code, packets = runPlan(t, bin, pidfd, flags, []byte("rbcplan1 but not really"))
	if s, errno, ok := ParseFailure(append(packets, nil)[0]); !ok || s != StepTransport || errno != syscall.EINVAL || code != 125 {
		t.Errorf("garbage: step %d errno %v exit %d, want the transport, EINVAL, 125", s, errno, code)
	}

	// The Go marker: the runtime starts in the child, joined.
	out, code, _ = runPlan(t, bin, pidfd, flags, GoMarker())
	if !strings.Contains(out, "linked=true joined=<nil>") || code != 5 {
		t.Errorf("go marker: %q exit %d, want joined, exit 5", out, code)
	}
}
