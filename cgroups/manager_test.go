package cgroups

// Tests on a real cgroup2 hierarchy. TestRealCgroup2 re-runs the test binary
// in a mount namespace of its own (as root; as another user, in a user and
// cgroup namespace too), which mounts a fresh cgroup2 on /sys/fs/cgroup
// there, so that New finds it as on a unified host, and runs the test body
// on it. The cgroups it creates are real (a fresh cgroup2 mount shows the
// same hierarchy as the host's), so the parent checks that none is left.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// childEnv holds, in the re-run test binary, the name of the test
// cgroup: /rabbitc-test-PID of the parent.
const childEnv = "_RABBITC_CGROUPS_TEST_CHILD"

// skipMark starts the reason of a child's skip, which the parent repeats.
const skipMark = "SKIP REASON: "

func TestRealCgroup2(t *testing.T) {
	if name := os.Getenv(childEnv); name != "" {
		realCgroup2(t, name)
		return
	}
	name := fmt.Sprintf("rabbitc-test-%d", os.Getpid())
	out, err := spawnInMountNS(t, name)
	t.Logf("child:\n%s", out)
	if leftover := hostLeftovers(name); leftover != "" {
		t.Errorf("left on the host: %s", leftover)
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if _, reason, ok := strings.Cut(out, skipMark); ok {
		reason, _, _ = strings.Cut(reason, "\n")
		t.Skip(reason)
	}
}

// spawnInMountNS re-runs this test in new namespaces. As root, a mount
// namespace is enough; as another user, a user namespace mapping the user
// to 0 and a cgroup namespace it owns let it mount cgroup2.
func spawnInMountNS(t *testing.T, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRealCgroup2$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWCGROUP
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Skipf("start the test in a new mount namespace: %v (unprivileged user namespaces disabled?)", err)
	}
	return string(out), err
}

// hostLeftovers looks for the test's cgroup in the host's cgroup2 mount.
func hostLeftovers(name string) string {
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			if _, err := os.Stat(filepath.Join(root, name)); err == nil {
				return filepath.Join(root, name)
			}
		}
	}
	return ""
}

// realCgroup2 is the test body, in the child's own mount namespace.
func realCgroup2(t *testing.T, name string) {
	const root = "/sys/fs/cgroup"
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	if err := unix.Mount("none", root, "cgroup2", 0, ""); err != nil {
		t.Skipf(skipMark+"mount -t cgroup2 none %s: %v (kernel without cgroup2, or no cgroup namespace)", root, err)
	}
	t.Cleanup(func() { removeTestCgroups(t, filepath.Join(root, name)) })
	if unix.Access(root, unix.W_OK) != nil {
		checkNoDelegation(t, name)
		var st unix.Stat_t
		_ = unix.Stat(root, &st)
		t.Skipf(skipMark+"the cgroup2 root is not writable here (owner uid %d, seen from a user namespace): "+
			"only the error without delegation was tested; run as root for the rest", st.Uid)
	}
	avail := fields(root, "cgroup.controllers")
	t.Logf("controllers available at the cgroup2 root: %q (the others are bound to cgroup v1 on a hybrid host)", avail)

	r, check := limitsFor(avail)
	m, err := New("/"+name+"/ctr", "unused", r)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, name, "ctr"); m.Path != want {
		t.Fatalf("New: path %s, want %s", m.Path, want)
	}
	w := startWorkload(t)
	if err := m.Apply(w.pid(), r); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for f, want := range check {
		if got := strings.TrimSpace(readString(t, filepath.Join(m.Path, f))); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if got, want := strings.TrimSpace(readString(t, fmt.Sprintf("/proc/%d/cgroup", w.pid()))), "0::/"+name+"/ctr"; !strings.Contains(got, want) {
		t.Errorf("/proc/PID/cgroup: %q, want a line %q", got, want)
	}
	w.fork(t)
	pids := waitPids(t, m, 3)
	if !slices.Contains(pids, w.pid()) {
		t.Errorf("Pids %v lacks the moved process %d", pids, w.pid())
	}

	checkNotEmpty(t, m)
	checkMissingController(t, name, avail)

	// A signal other than SIGKILL: the cgroup is frozen while the pids are
	// signalled, and thawed after.
	if err := m.Kill(unix.SIGTERM); err != nil {
		t.Fatalf("Kill(SIGTERM): %v", err)
	}
	w.wait(t)
	waitPids(t, m, 0)
	if got := strings.TrimSpace(readString(t, filepath.Join(m.Path, "cgroup.freeze"))); got != "0" {
		t.Errorf("cgroup.freeze after Kill = %q, want 0 (thawed)", got)
	}

	checkSIGKILL(t, name)
	checkDestroy(t, m)
}

// limitsFor builds resources for what this hierarchy can carry: cgroup v2's
// core files always, the controllers' limits where they are available.
// check maps file names to the values they must read back.
func limitsFor(avail []string) (*specs.LinuxResources, map[string]string) {
	r := &specs.LinuxResources{Unified: map[string]string{"cgroup.max.descendants": "5", "cgroup.max.depth": "2"}}
	check := map[string]string{"cgroup.max.descendants": "5", "cgroup.max.depth": "2"}
	if slices.Contains(avail, "pids") {
		r.Pids = &specs.LinuxPids{Limit: ptr(int64(50))}
		check["pids.max"] = "50"
	}
	if slices.Contains(avail, "memory") {
		r.Memory = &specs.LinuxMemory{Limit: ptr(int64(256 << 20)), Reservation: ptr(int64(16 << 20))}
		check["memory.max"], check["memory.low"] = "268435456", "16777216"
	}
	if slices.Contains(avail, "cpu") {
		r.CPU = &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000))}
		check["cpu.weight"], check["cpu.max"] = "20", "50000 100000"
	}
	return r, check
}

// checkNoDelegation: a user who may not write to the hierarchy gets runc's
// error, with the fix, and nothing is created.
func checkNoDelegation(t *testing.T, name string) {
	t.Helper()
	m, err := New("/"+name+"/ctr", "unused", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Apply(os.Getpid(), nil)
	want := "unable to apply cgroup configuration: mkdir " + filepath.Dir(m.Path) + ": permission denied (rootless cgroups need a delegated cgroup v2 subtree"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Apply without delegation: %v; want an fs.ErrPermission starting %q", err, want)
	}
	t.Logf("without delegation: %v", err)
}

// checkNotEmpty: create refuses a cgroup that already holds processes. The
// process offered is a fresh one, never the test's own: in the cgroup, the
// test would freeze itself in Kill.
func checkNotEmpty(t *testing.T, m *Manager) {
	t.Helper()
	err := m.Apply(startWorkload(t).pid(), nil)
	if err == nil || !strings.Contains(err.Error(), "container's cgroup is not empty: 3 process(es) found") {
		t.Errorf("Apply to a busy cgroup: %v", err)
	}
}

// checkMissingController: a limit whose controller the cgroup lacks is an
// error naming the controller, and the directories Apply made are gone.
func checkMissingController(t *testing.T, name string, avail []string) {
	t.Helper()
	r := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 30))}}
	ctrl := "memory"
	if slices.Contains(avail, "memory") {
		r, ctrl = &specs.LinuxResources{Unified: map[string]string{"nosuchctl.max": "1"}}, "nosuchctl"
	}
	m, err := New("/"+name+"/missing/ctr", "unused", r)
	if err != nil {
		t.Fatal(err)
	}
	err = m.Apply(startWorkload(t).pid(), r)
	want := "the " + ctrl + " controller is not in the cgroup2 hierarchy at /sys/fs/cgroup (a hybrid host binds it to cgroup v1"
	if slices.Contains(avail, ctrl) {
		want = "the " + ctrl + " controller is not enabled for this cgroup by its parent's cgroup.subtree_control"
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Apply with %s limits: %v; want the missing controller named", ctrl, err)
	}
	t.Logf("missing controller: %v", err)
	if _, err := os.Stat(filepath.Dir(m.Path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed Apply left %s: %v", filepath.Dir(m.Path), err)
	}
}

// checkSIGKILL kills a fresh workload with SIGKILL (cgroup.kill where the
// kernel has it).
func checkSIGKILL(t *testing.T, name string) {
	t.Helper()
	m, err := New("/"+name+"/killed", "unused", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := startWorkload(t)
	if err := m.Apply(w.pid(), nil); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	w.fork(t)
	waitPids(t, m, 3)
	_, err = os.Stat(filepath.Join(m.Path, "cgroup.kill"))
	t.Logf("cgroup.kill present: %v", err == nil)
	if err := m.Kill(unix.SIGKILL); err != nil {
		t.Fatalf("Kill(SIGKILL): %v", err)
	}
	w.wait(t)
	waitPids(t, m, 0)
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

// checkDestroy removes a cgroup with a sub-cgroup; the second Destroy, and
// Pids and Kill after it, behave.
func checkDestroy(t *testing.T, m *Manager) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(m.Path, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(m.Path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Destroy, %s: %v", m.Path, err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if _, err := m.Pids(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Pids of a destroyed cgroup: %v, want ErrNotExist", err)
	}
	if err := m.Kill(unix.SIGKILL); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Kill of a destroyed cgroup: %v, want ErrNotExist", err)
	}
}

// workload is a shell that, once told to on stdin (after it has been moved
// into the cgroup), starts two sleeps and waits for them.
type workload struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan error
}

func startWorkload(t *testing.T) *workload {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read x; sleep 60 & sleep 60 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &workload{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.done
	})
	return w
}

func (w *workload) pid() int { return w.cmd.Process.Pid }

func (w *workload) fork(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
}

func (w *workload) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.done:
		w.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the workload outlived its signal by 10s")
	}
}

// waitPids waits (up to 5s) until the cgroup holds n processes.
func waitPids(t *testing.T, m *Manager, n int) []int {
	t.Helper()
	var pids []int
	var err error
	for range 500 {
		if pids, err = m.Pids(); err == nil && len(pids) == n {
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("Pids: %v, %v; want %d processes", pids, err, n)
	return nil
}

// removeTestCgroups kills what is left in the test's cgroups and removes
// them, deepest first.
func removeTestCgroups(t *testing.T, top string) {
	m := &Manager{Path: top}
	if _, err := os.Stat(top); err != nil {
		return
	}
	_ = m.Kill(unix.SIGKILL)
	if err := m.Destroy(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNoDelegation applies a cgroup in the host's own hierarchy as a user
// who may not write to it: the one error line, with the fix.
func TestNoDelegation(t *testing.T) {
	m, err := New("/rabbitc-test-"+strconv.Itoa(os.Getpid())+"/ctr", "unused", nil)
	if err != nil {
		t.Skipf("New: %v", err)
	}
	if unix.Access(m.root, unix.W_OK) == nil {
		t.Skipf("the cgroup2 root %s is writable by uid %d (root, or delegated)", m.root, os.Geteuid())
	}
	err = m.Apply(os.Getpid(), &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(10))}})
	want := "unable to apply cgroup configuration: mkdir " + filepath.Dir(m.Path) + ": permission denied (rootless cgroups need a delegated cgroup v2 subtree: systemd's Delegate=yes on the user's unit, or run as root)"
	if err == nil || err.Error() != want || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Apply: %v\nwant: %s", err, want)
	}
}
