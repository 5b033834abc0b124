package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Roles the test binary plays when re-executed (see TestMain).
const (
	testRoleEnv   = "_RABBITC_NETNS_TEST_ROLE"
	roleSandbox   = "sandbox"    // stands in for the sandbox: runs checks inside its user+network namespace
	roleSlirpHost = "slirp-host" // stands in for the parent: starts slirp4netns, then waits to be killed
)

func TestMain(m *testing.M) {
	switch os.Getenv(testRoleEnv) {
	case roleSandbox:
		os.Exit(sandboxMain(os.Stdin, os.Stdout))
	case roleSlirpHost:
		os.Exit(slirpHostMain())
	}
	os.Exit(m.Run())
}

// sandboxMain runs one check per line read and answers "ok" or the error.
func sandboxMain(in io.Reader, out io.Writer) int {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var err error
		switch sc.Text() {
		case "lo":
			err = SetupLoopback()
			if err == nil {
				err = loIsUp()
			}
		case "tap":
			err = CheckTap()
		case "createtap":
			err = CreateTap()
		default:
			err = fmt.Errorf("unknown check %q", sc.Text())
		}
		if err != nil {
			fmt.Fprintf(out, "%v\n", oneLine(err.Error()))
		} else {
			fmt.Fprintf(out, "ok\n")
		}
	}
	return 0
}

func loIsUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		return errors.New("lo is still down")
	}
	return nil
}

// slirpHostMain starts slirp4netns against the pid in argv, prints its pid
// once it is ready and waits to be killed.
func slirpHostMain() int {
	pid, _ := strconv.Atoi(os.Getenv("_RABBITC_NETNS_TEST_PID"))
	feat, err := Check(Config{})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	s, err := StartSlirp(pid, Config{}, feat)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := s.WaitReady(context.Background()); err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println(s.Pid())
	<-s.Done()
	return 2
}

// sandbox is the test binary running sandboxMain in a new user and network
// namespace, with this user mapped to root, as rabbitc's sandbox runs.
type sandbox struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startSandbox(t *testing.T) *sandbox {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), testRoleEnv+"="+roleSandbox)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSPC) {
			t.Skipf("unprivileged user namespaces disabled: %v (%s)", err, usernsSetting())
		}
		t.Fatal(err)
	}
	sb := &sandbox{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(sb.close)
	return sb
}

// usernsSetting names the sysctl that disables user namespaces on this host.
func usernsSetting() string {
	for _, s := range []struct{ path, bad string }{
		{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"},
		{"/proc/sys/kernel/unprivileged_userns_clone", "0"},
		{"/proc/sys/user/max_user_namespaces", "0"},
	} {
		b, err := os.ReadFile(s.path)
		if err == nil && strings.TrimSpace(string(b)) == s.bad {
			name := strings.ReplaceAll(strings.TrimPrefix(s.path, "/proc/sys/"), "/", ".")
			return name + "=" + s.bad
		}
	}
	return "check kernel.apparmor_restrict_unprivileged_userns, kernel.unprivileged_userns_clone and user.max_user_namespaces"
}

func (sb *sandbox) check(t *testing.T, what string) string {
	t.Helper()
	if _, err := fmt.Fprintln(sb.in, what); err != nil {
		t.Fatalf("ask sandbox %s: %v", what, err)
	}
	line, err := sb.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read sandbox answer to %s: %v", what, err)
	}
	return strings.TrimSpace(line)
}

func (sb *sandbox) close() {
	sb.in.Close()
	done := make(chan struct{})
	go func() { sb.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		sb.cmd.Process.Kill()
		<-done
	}
}

// requireSlirp returns the features of the host's slirp4netns, failing when
// it is missing (a setup problem) and skipping when /dev/net/tun is unusable
// (a host setting).
func requireSlirp(t *testing.T) *Features {
	t.Helper()
	if err := checkTun(); err != nil {
		t.Skipf("/dev/net/tun unusable: %v", err)
	}
	feat, err := Check(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return feat
}

// openFDs lists this process's open descriptors.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]string{}
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[e.Name()] = target
	}
	return fds
}

func checkNoLeaks(t *testing.T, before map[string]string, goroutines int) {
	t.Helper()
	after := openFDs(t)
	for fd, target := range after {
		if _, ok := before[fd]; !ok && !strings.HasPrefix(target, "/proc/") {
			t.Errorf("descriptor %s -> %s leaked", fd, target)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines left, %d before", n, goroutines)
	}
}

// processGone reports whether pid has been reaped (it is ours, so it is
// either a live child, a zombie or gone).
func processGone(pid int) bool {
	return unix.Kill(pid, 0) == unix.ESRCH
}

func TestSlirp(t *testing.T) {
	feat := requireSlirp(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	sb := startSandbox(t)
	if got := sb.check(t, "tap"); !strings.Contains(got, "no such interface") {
		t.Errorf("CheckTap before slirp4netns = %q, want a missing tap0", got)
	}

	start := time.Now()
	s, err := StartSlirp(sb.cmd.Process.Pid, Config{}, feat)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("slirp4netns %v: started in %v, ready in %v", feat, started, time.Since(start))

	if got := sb.check(t, "tap"); got != "ok" {
		t.Errorf("CheckTap = %q", got)
	}
	if got := sb.check(t, "lo"); got != "ok" {
		t.Errorf("SetupLoopback = %q", got)
	}
	select {
	case <-s.Done():
		t.Fatalf("slirp4netns exited while running: %v", s.Err())
	default:
	}

	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err after Stop = %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if !processGone(s.Pid()) {
		t.Errorf("slirp4netns %d still exists after Stop", s.Pid())
	}
	// tap0 went away with slirp4netns.
	if got := sb.check(t, "tap"); !strings.Contains(got, "no such interface") {
		t.Errorf("CheckTap after Stop = %q, want a missing tap0", got)
	}
	sb.close()
	checkNoLeaks(t, fds, goroutines)
}

// TestSlirpOnPersistentTap: slirp4netns attaches to the tap0 that
// CreateTap made (as the sandbox and init do before slirp4netns starts),
// configures it, and leaves it behind when it stops: the device goes with
// the namespace, not with slirp4netns's file, so slirp4netns's exit does not
// wait for its removal.
func TestSlirpOnPersistentTap(t *testing.T) {
	feat := requireSlirp(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	sb := startSandbox(t)
	if got := sb.check(t, "createtap"); got != "ok" {
		t.Fatalf("CreateTap = %q", got)
	}
	if got := sb.check(t, "tap"); got != "check tap0: interface is down" {
		t.Errorf("CheckTap after CreateTap = %q, want an unconfigured tap0", got)
	}
	s, err := StartSlirp(sb.cmd.Process.Pid, Config{}, feat)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sb.check(t, "tap"); got != "ok" {
		t.Errorf("CheckTap with slirp4netns on the persistent tap0 = %q", got)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if !processGone(s.Pid()) {
		t.Errorf("slirp4netns %d still exists after Stop", s.Pid())
	}
	if got := sb.check(t, "tap"); strings.Contains(got, "no such interface") {
		t.Errorf("CheckTap after Stop = %q, want tap0 still there (persistent)", got)
	}
	sb.close()
	checkNoLeaks(t, fds, goroutines)
}

func TestSetupLoopbackNoSlirp(t *testing.T) {
	sb := startSandbox(t)
	if got := sb.check(t, "lo"); got != "ok" {
		t.Errorf("SetupLoopback = %q", got)
	}
	if got := sb.check(t, "tap"); got != "check tap0: no such interface (slirp4netns did not create it)" {
		t.Errorf("CheckTap without slirp4netns = %q", got)
	}
}

func TestSlirpExitsBeforeReady(t *testing.T) {
	feat := requireSlirp(t)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	// A pid that no longer exists: slirp4netns cannot open its netns.
	gone := exec.Command("/bin/true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	pid := gone.Process.Pid
	s, err := StartSlirp(pid, Config{}, feat)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = s.WaitReady(ctx)
	want := fmt.Sprintf("slirp4netns: exited before ready: /proc/%d/ns/net: No such file or directory", pid)
	if err == nil || err.Error() != want {
		t.Errorf("WaitReady = %v, want %q", err, want)
	}
	<-s.Done()
	if err := s.Err(); err == nil || !strings.HasPrefix(err.Error(), "slirp4netns: exit status 1: /proc/") {
		t.Errorf("Err = %v, want exit status 1 and the reason", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	checkNoLeaks(t, fds, goroutines)
}

func TestSlirpKilledWhileRunning(t *testing.T) {
	feat := requireSlirp(t)
	sb := startSandbox(t)
	s, err := StartSlirp(sb.cmd.Process.Pid, Config{MTU: 1500, AllowHostLoopback: true}, feat)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(s.Pid(), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after slirp4netns was killed")
	}
	if err := s.Err(); err == nil || err.Error() != "slirp4netns: killed by signal 9 (killed)" {
		t.Errorf("Err = %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop after death = %v", err)
	}
}

func TestWaitReadyCanceled(t *testing.T) {
	feat := requireSlirp(t)
	sb := startSandbox(t)
	s, err := StartSlirp(sb.cmd.Process.Pid, Config{}, feat)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitReady(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitReady(canceled) = %v", err)
	}
	// Stop right after start, ready or not.
	if err := s.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if !processGone(s.Pid()) {
		t.Errorf("slirp4netns %d still exists after Stop", s.Pid())
	}
}

// TestSlirpParentKilled kills the process that started slirp4netns, as a
// SIGKILL to rabbitc would, and checks that slirp4netns goes with it.
func TestSlirpParentKilled(t *testing.T) {
	requireSlirp(t)
	sb := startSandbox(t)
	// Orphans come to us instead of to a PID 1 that may not reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

	host := exec.Command("/proc/self/exe", "-test.run=^$")
	host.Env = append(os.Environ(), testRoleEnv+"="+roleSlirpHost, "_RABBITC_NETNS_TEST_PID="+strconv.Itoa(sb.cmd.Process.Pid))
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	slirpPid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		host.Process.Kill()
		host.Wait()
		t.Fatalf("slirp host said %q", line)
	}
	if got := sb.check(t, "tap"); got != "ok" {
		t.Errorf("CheckTap = %q", got)
	}
	host.Process.Kill()
	host.Wait()

	exited := make(chan error, 1)
	go func() {
		var ws unix.WaitStatus
		_, err := unix.Wait4(slirpPid, &ws, 0, nil)
		exited <- err
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("wait for slirp4netns %d: %v", slirpPid, err)
		}
	case <-time.After(5 * time.Second):
		unix.Kill(slirpPid, unix.SIGKILL)
		<-exited
		t.Errorf("slirp4netns %d still running 5s after its parent was killed", slirpPid)
	}
}
