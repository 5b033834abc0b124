package security

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The kernel tests re-exec the test binary into a new user namespace (a
// single-id mapping: root inside, no privileges needed), where it applies
// PrepareCaps/Finalize as init does and then probes or execs.

const childEnv = "_RABBITC_SECURITY_TEST_CHILD"

// childTask is what the re-exec'd test binary does.
type childTask struct {
	Mode     string // "probe", "status", "status-noexec" or "x32"
	Config   Config
	Prepare  bool // call PrepareCaps
	Finalize bool // call Finalize
	// FilterOnly sets no_new_privs and loads the filter without touching
	// capabilities: every EPERM then comes from the filter.
	FilterOnly bool
	SetUID     int // after PrepareCaps, setuid to this (0: stay root)
}

func TestMain(m *testing.M) {
	if task := os.Getenv(childEnv); task != "" {
		os.Exit(childMain(task))
	}
	os.Exit(m.Run())
}

func childMain(task string) int {
	var t childTask
	if err := json.Unmarshal([]byte(task), &t); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	runtime.LockOSThread()
	if t.Prepare {
		if err := PrepareCaps(t.Config); err != nil {
			fmt.Fprintln(os.Stderr, "PrepareCaps:", err)
			return 3
		}
	}
	if t.SetUID != 0 {
		if err := unix.Setgid(t.SetUID); err != nil {
			fmt.Fprintln(os.Stderr, "setgid:", err)
			return 3
		}
		if err := unix.Setuid(t.SetUID); err != nil {
			fmt.Fprintln(os.Stderr, "setuid:", err)
			return 3
		}
	}
	if t.Finalize {
		if err := Finalize(t.Config); err != nil {
			fmt.Fprintln(os.Stderr, "Finalize:", err)
			return 3
		}
	}
	if t.FilterOnly {
		err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
		if err == nil {
			err = loadSeccomp(t.Config)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "load filter:", err)
			return 3
		}
	}
	switch t.Mode {
	case "status":
		err := unix.Exec("/bin/cat", []string{"cat", "/proc/self/status"}, os.Environ())
		fmt.Fprintln(os.Stderr, "exec /bin/cat:", err)
		return 4
	case "status-noexec":
		// The sets as Finalize left them, before execve recomputes them.
		b, err := os.ReadFile("/proc/thread-self/status")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 4
		}
		os.Stdout.Write(b)
		return 0
	case "x32":
		if x32Bit != 0 {
			unix.RawSyscall(x32Bit|unix.SYS_GETPID, 0, 0, 0)
		}
		return 0
	}
	b, _ := json.Marshal(probe())
	os.Stdout.Write(b)
	return 0
}

func errnoName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func rawErr(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// probe tries the calls a hostile payload would, and ordinary ones.
func probe() map[string]string {
	res := map[string]string{}
	devnull, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		res["open"] = err.Error()
		return res
	}
	defer devnull.Close()
	fd := devnull.Fd()

	_, _, e := unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
	res["getpid"] = errnoName(rawErr(e))
	_, err = devnull.Write([]byte("x"))
	res["write"] = errnoName(err)
	_, _, e = unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd) /* KEY_SPEC_SESSION_KEYRING */, 0)
	res["keyctl"] = errnoName(rawErr(e))
	res["unshare-user"] = errnoName(unix.Unshare(unix.CLONE_NEWUSER))
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER}
	res["clone-user"] = errnoName(cmd.Run())
	_, _, e = unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	res["clone3"] = errnoName(rawErr(e))
	c := byte('x')
	for name, req := range map[string]uint64{"tiocsti": unix.TIOCSTI, "tiocsti-high": 1<<32 | unix.TIOCSTI, "tioclinux": unix.TIOCLINUX} {
		_, _, e = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(unsafe.Pointer(&c)))
		res[name] = errnoName(rawErr(e))
	}
	dir, err := os.MkdirTemp("", "mnt")
	if err == nil {
		err = unix.Mount("none", dir, "tmpfs", 0, "")
		if err == nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		os.Remove(dir)
	}
	res["mount"] = errnoName(err)
	_, _, e = unix.Syscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0) // wrong magic: EINVAL unless denied
	res["reboot"] = errnoName(rawErr(e))
	_, _, e = unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	res["personality-query"] = errnoName(rawErr(e))
	_, _, e = unix.Syscall(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0)
	res["personality-set"] = errnoName(rawErr(e))

	// The Go runtime keeps working: threads, GC, timers, fork+exec.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			b := make([][]byte, 0, 64)
			for range 64 {
				b = append(b, make([]byte, 64<<10))
			}
			runtime.GC()
			time.Sleep(time.Millisecond)
			_ = b
		})
	}
	wg.Wait()
	res["runtime"] = "ok"
	res["exec"] = errnoName(exec.Command("/bin/true").Run())

	// This thread's: no_new_privs is a thread's, and without a filter
	// (TSYNC carries it to every thread) only the locked thread that ran
	// Finalize has it; /proc/self is the thread group leader, which it
	// need not be.
	st, err := os.ReadFile("/proc/thread-self/status")
	if err == nil {
		s := parseStatus(st)
		res["status-seccomp"], res["status-nnp"] = s["Seccomp"], s["NoNewPrivs"]
	}
	// Every thread is filtered (TSYNC), not only this one.
	tasks, _ := os.ReadDir("/proc/self/task")
	unfiltered := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err == nil && parseStatus(b)["Seccomp"] != res["status-seccomp"] {
			unfiltered++
		}
	}
	res["threads"] = strconv.Itoa(len(tasks))
	res["threads-differing"] = strconv.Itoa(unfiltered)
	return res
}

func parseStatus(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// runChild runs task in a re-exec'd child in new user, mount and PID
// namespaces, root inside, and returns its stdout.
func runChild(t *testing.T, task childTask) ([]byte, error) {
	t.Helper()
	b, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	attr := &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if task.SetUID != 0 {
		// Only root can map a second id without newuidmap.
		attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: task.SetUID, HostID: 100000 + task.SetUID, Size: 1})
		attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: task.SetUID, HostID: 100000 + task.SetUID, Size: 1})
	}
	cmd.SysProcAttr = attr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			skipWithoutUserns(t, err)
		}
		return out, fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return out, nil
}

// skipWithoutUserns skips when the child could not be started because the
// kernel does not allow unprivileged user namespaces.
func skipWithoutUserns(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) {
		if b, _ := os.ReadFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); strings.TrimSpace(string(b)) == "1" {
			t.Skipf("unprivileged user namespaces disabled (kernel.apparmor_restrict_unprivileged_userns=1): %v", err)
		}
		if b, _ := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); strings.TrimSpace(string(b)) == "0" {
			t.Skipf("unprivileged user namespaces disabled (kernel.unprivileged_userns_clone=0): %v", err)
		}
		if b, _ := os.ReadFile("/proc/sys/user/max_user_namespaces"); strings.TrimSpace(string(b)) == "0" {
			t.Skipf("user namespaces disabled (user.max_user_namespaces=0): %v", err)
		}
	}
	t.Fatalf("start child in a user namespace: %v", err)
}

func runProbe(t *testing.T, task childTask) map[string]string {
	t.Helper()
	task.Mode = "probe"
	out, err := runChild(t, task)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]string{}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	return res
}

// checkProbe compares probe results with want; a want of "!X" means
// anything but X.
func checkProbe(t *testing.T, res, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if not, ok := strings.CutPrefix(v, "!"); ok && res[k] == not || !ok && res[k] != v {
			t.Errorf("%s: got %s, want %s", k, res[k], v)
		}
	}
}

// TestSeccompProbes runs an attacker-shaped probe with and without the
// default filter. The unfiltered run shows that each probe would succeed (or
// fail differently) without the defence.
func TestSeccompProbes(t *testing.T) {
	common := map[string]string{
		"getpid": "ok", "write": "ok", "personality-query": "ok", "runtime": "ok", "exec": "ok",
	}
	// The default filter, installed alone or by the init sequence: what it
	// denies, and the same filter on every thread.
	filtered := map[string]string{
		"keyctl": "EPERM", "unshare-user": "EPERM", "clone-user": "EPERM", "clone3": "ENOSYS",
		"tiocsti": "EPERM", "tiocsti-high": "EPERM", "tioclinux": "EPERM",
		"mount": "EPERM", "reboot": "EPERM", "personality-set": "EPERM",
		"status-seccomp": "2", "status-nnp": "1", "threads-differing": "0",
	}
	t.Run("unfiltered", func(t *testing.T) {
		res := runProbe(t, childTask{})
		checkProbe(t, res, common)
		checkProbe(t, res, map[string]string{
			"keyctl": "!EPERM", "unshare-user": "EINVAL", "clone-user": "ok", "clone3": "EINVAL",
			"tiocsti": "ENOTTY", "tiocsti-high": "ENOTTY", "tioclinux": "ENOTTY",
			"mount": "ok", "reboot": "EINVAL", "personality-set": "ok", "status-seccomp": "0",
		})
	})
	t.Run("default", func(t *testing.T) {
		// The child keeps all capabilities of its user namespace, so
		// every EPERM here comes from the filter.
		res := runProbe(t, childTask{Config: mustFlags(t, nil, nil, nil), FilterOnly: true})
		checkProbe(t, res, common)
		checkProbe(t, res, filtered)
		if n, _ := strconv.Atoi(res["threads"]); n < 2 {
			t.Errorf("only %d threads: TSYNC not exercised", n)
		}
	})
	t.Run("sys_admin", func(t *testing.T) {
		res := runProbe(t, childTask{Config: mustFlags(t, []string{"SYS_ADMIN"}, nil, nil), FilterOnly: true})
		checkProbe(t, res, common)
		checkProbe(t, res, map[string]string{
			"mount": "ok", "unshare-user": "EPERM", "clone-user": "EPERM", "clone3": "ENOSYS",
			"tiocsti": "EPERM", "keyctl": "EPERM",
		})
	})
	t.Run("init-sequence", func(t *testing.T) {
		res := runProbe(t, childTask{Config: mustFlags(t, nil, nil, nil), Prepare: true, Finalize: true})
		checkProbe(t, res, common)
		checkProbe(t, res, filtered)
	})
	t.Run("no-new-privileges=false", func(t *testing.T) {
		res := runProbe(t, childTask{Config: mustFlags(t, nil, nil, []string{"no-new-privileges=false"}), Prepare: true, Finalize: true})
		checkProbe(t, res, common)
		checkProbe(t, res, map[string]string{"tiocsti": "EPERM", "status-seccomp": "2", "status-nnp": "0", "threads-differing": "0"})
	})
	t.Run("unconfined", func(t *testing.T) {
		cfg := mustFlags(t, []string{"SYS_ADMIN"}, nil, []string{"seccomp=" + SeccompUnconfined})
		res := runProbe(t, childTask{Config: cfg, Prepare: true, Finalize: true})
		checkProbe(t, res, common)
		checkProbe(t, res, map[string]string{"mount": "ok", "personality-set": "ok", "status-seccomp": "0", "status-nnp": "1", "keyctl": "ok"})
	})
	t.Run("oci profile", func(t *testing.T) {
		// An OCI config's profile is loaded as given: nothing of
		// rabbitc's hardening, only its own rule.
		var all []string
		for n := range capNames {
			all = append(all, capName(n))
		}
		cfg := Config{
			Capabilities: &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all},
			NoNewPrivs:   true,
			Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"reboot"}, Action: specs.ActErrno},
			}},
		}
		if err := cfg.Check(); err != nil {
			t.Fatal(err)
		}
		res := runProbe(t, childTask{Config: cfg, Prepare: true, Finalize: true})
		checkProbe(t, res, common)
		checkProbe(t, res, map[string]string{
			"unshare-user": "EINVAL", "clone-user": "ok", "clone3": "EINVAL", "tiocsti": "ENOTTY", "tioclinux": "ENOTTY",
			"mount": "ok", "reboot": "EPERM", "status-seccomp": "2", "status-nnp": "1", "threads-differing": "0",
		})
	})
}

// mustFlags is the Config of docker's flags.
func mustFlags(t testing.TB, capAdd, capDrop, securityOpts []string) Config {
	t.Helper()
	c, err := ParseFlags(capAdd, capDrop, securityOpts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestX32Killed(t *testing.T) {
	if x32Bit == 0 {
		t.Skip("no x32 ABI on " + runtime.GOARCH)
	}
	_, err := runChild(t, childTask{Mode: "x32", Config: mustFlags(t, nil, nil, nil), Finalize: true})
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("x32 getpid: got %v, want death by SIGSYS", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("x32 getpid: got %v, want death by SIGSYS", err)
	}
}

// capMask is the bit mask of caps the running kernel has, as
// /proc/PID/status shows it.
func capMask(caps ...int) uint64 {
	last := lastCap()
	var m uint64
	for _, c := range caps {
		if c <= last {
			m |= 1 << c
		}
	}
	return m
}

// wantCaps are a thread's sets as /proc/PID/status shows them.
type wantCaps struct{ bnd, prm, eff, inh, amb uint64 }

// runStatus runs the init sequence in a child with task's config and
// checks its sets: after execve of /bin/cat (mode "status") or just after
// Finalize ("status-noexec").
func runStatus(t *testing.T, task childTask, want wantCaps, nnp string) {
	t.Helper()
	if task.SetUID != 0 && os.Getuid() != 0 {
		t.Skip("mapping a second uid needs root (or newuidmap)")
	}
	task.Prepare, task.Finalize = true, true
	out, err := runChild(t, task)
	if err != nil {
		t.Fatal(err)
	}
	st := parseStatus(out)
	for _, f := range []struct {
		key  string
		want uint64
	}{{"CapBnd", want.bnd}, {"CapPrm", want.prm}, {"CapEff", want.eff}, {"CapInh", want.inh}, {"CapAmb", want.amb}} {
		got, err := strconv.ParseUint(st[f.key], 16, 64)
		if err != nil || got != f.want {
			t.Errorf("%s = %s, want %016x", f.key, st[f.key], f.want)
		}
	}
	if st["NoNewPrivs"] != nnp || st["Seccomp"] != "2" {
		t.Errorf("NoNewPrivs %s Seccomp %s, want %s and 2", st["NoNewPrivs"], st["Seccomp"], nnp)
	}
}

// TestCapabilitySets execs /bin/cat /proc/self/status after the init
// sequence with docker's flags and checks the payload's sets: a root
// payload has exactly the set, another uid none.
func TestCapabilitySets(t *testing.T) {
	all := make([]int, lastCap()+1)
	for i := range all {
		all[i] = i
	}
	def := capMask(defaultCaps...)
	tests := []struct {
		name      string
		add, drop []string
		opts      []string
		setuid    int
		want      wantCaps
	}{
		{name: "default", want: wantCaps{bnd: def, prm: def, eff: def}},
		{name: "add NET_ADMIN", add: []string{"NET_ADMIN"}, want: wantCaps{bnd: def | capMask(unix.CAP_NET_ADMIN), prm: def | capMask(unix.CAP_NET_ADMIN), eff: def | capMask(unix.CAP_NET_ADMIN)}},
		{name: "drop SETUID SETGID", drop: []string{"SETUID", "cap_setgid"}, want: wantCaps{
			bnd: def &^ capMask(unix.CAP_SETUID, unix.CAP_SETGID), prm: def &^ capMask(unix.CAP_SETUID, unix.CAP_SETGID), eff: def &^ capMask(unix.CAP_SETUID, unix.CAP_SETGID)}},
		{name: "drop ALL add CHOWN", drop: []string{"ALL"}, add: []string{"CHOWN"}, want: wantCaps{bnd: capMask(unix.CAP_CHOWN), prm: capMask(unix.CAP_CHOWN), eff: capMask(unix.CAP_CHOWN)}},
		{name: "drop ALL", drop: []string{"ALL"}},
		{name: "add ALL", add: []string{"ALL"}, want: wantCaps{bnd: capMask(all...), prm: capMask(all...), eff: capMask(all...)}},
		{name: "no-new-privileges=false", opts: []string{"no-new-privileges=false"}, want: wantCaps{bnd: def, prm: def, eff: def}},
		{name: "non-root payload", setuid: 1000, want: wantCaps{bnd: def}},
		{name: "non-root payload add ALL", add: []string{"ALL"}, setuid: 1000, want: wantCaps{bnd: capMask(all...)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nnp := "1"
			if len(tt.opts) > 0 {
				nnp = "0"
			}
			runStatus(t, childTask{Mode: "status", Config: mustFlags(t, tt.add, tt.drop, tt.opts), SetUID: tt.setuid}, tt.want, nnp)
		})
	}
}

// TestOCICapabilitySets sets the runtime spec's five sets as runc does and
// checks them just after Finalize (exactly as asked) and after execve
// (what the kernel makes of them: a payload that is not root keeps its
// ambient set, root gains its bounding set).
func TestOCICapabilitySets(t *testing.T) {
	const (
		chown = unix.CAP_CHOWN
		nbs   = unix.CAP_NET_BIND_SERVICE
		kill  = unix.CAP_KILL
	)
	sets := func(bnd, eff, prm, inh, amb []int) *specs.LinuxCapabilities {
		return &specs.LinuxCapabilities{Bounding: capNamesOf(bnd), Effective: capNamesOf(eff), Permitted: capNamesOf(prm), Inheritable: capNamesOf(inh), Ambient: capNamesOf(amb)}
	}
	def := defaultCaps
	one := []int{nbs}
	tests := []struct {
		name   string
		caps   *specs.LinuxCapabilities
		setuid int
		exec   bool
		want   wantCaps
	}{
		{name: "nil", caps: nil, exec: true},
		{name: "nil non-root", caps: nil, setuid: 1000, exec: true},
		// Finalize sets each set exactly, whatever the others hold.
		{name: "exact", caps: sets([]int{chown, nbs}, []int{chown}, []int{chown, nbs, kill}, []int{chown}, nil),
			want: wantCaps{bnd: capMask(chown, nbs), eff: capMask(chown), prm: capMask(chown, nbs, kill), inh: capMask(chown)}},
		{name: "exact non-root", caps: sets([]int{chown, nbs}, []int{chown}, []int{chown, nbs, kill}, []int{chown}, nil), setuid: 1000,
			want: wantCaps{bnd: capMask(chown, nbs), eff: capMask(chown), prm: capMask(chown, nbs, kill), inh: capMask(chown)}},
		// The kernel takes no inheritable capability outside the bounding set.
		{name: "inheritable outside bounding", caps: sets([]int{chown}, nil, []int{chown, kill}, []int{chown, kill}, nil),
			want: wantCaps{bnd: capMask(chown), prm: capMask(chown, kill), inh: capMask(chown)}},
		// Root gains its bounding set at execve: a bounding set smaller
		// than permitted is what it ends with.
		{name: "bounding smaller than permitted", caps: sets([]int{chown}, def, def, nil, nil), exec: true,
			want: wantCaps{bnd: capMask(chown), prm: capMask(chown), eff: capMask(chown)}},
		// A payload that is not root keeps its ambient set across execve.
		{name: "ambient non-root", caps: sets(def, one, one, one, one), setuid: 1000, exec: true,
			want: wantCaps{bnd: capMask(def...), prm: capMask(nbs), eff: capMask(nbs), inh: capMask(nbs), amb: capMask(nbs)}},
		{name: "ambient root", caps: sets([]int{chown, nbs}, []int{chown}, []int{chown, nbs}, []int{nbs}, []int{nbs}), exec: true,
			want: wantCaps{bnd: capMask(chown, nbs), prm: capMask(chown, nbs), eff: capMask(chown, nbs), inh: capMask(nbs), amb: capMask(nbs)}},
		// Without ambient, inheritable alone gives nothing to a binary
		// without file capabilities, but stays set.
		{name: "inheritable non-root", caps: sets(def, one, one, one, nil), setuid: 1000, exec: true,
			want: wantCaps{bnd: capMask(def...), inh: capMask(nbs)}},
		{name: "bounding smaller than permitted non-root", caps: sets([]int{chown}, []int{chown, nbs}, []int{chown, nbs}, []int{chown}, []int{chown}), setuid: 1000, exec: true,
			want: wantCaps{bnd: capMask(chown), prm: capMask(chown), eff: capMask(chown), inh: capMask(chown), amb: capMask(chown)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Capabilities: tt.caps, NoNewPrivs: true, Default: true}
			if err := cfg.Check(); err != nil {
				t.Fatal(err)
			}
			mode := "status-noexec"
			if tt.exec {
				mode = "status"
			}
			runStatus(t, childTask{Mode: mode, Config: cfg, SetUID: tt.setuid}, tt.want, "1")
		})
	}
}

// TestAmbientNotPermitted: an ambient capability that is not also
// permitted and inheritable fails the start, naming it, rather than
// leaving the payload without it.
func TestAmbientNotPermitted(t *testing.T) {
	nbs := []string{"CAP_NET_BIND_SERVICE"}
	cfg := Config{NoNewPrivs: true, Capabilities: &specs.LinuxCapabilities{Bounding: nbs, Effective: nbs, Permitted: nbs, Ambient: nbs}}
	_, err := runChild(t, childTask{Mode: "status", Config: cfg, Prepare: true, Finalize: true})
	want := "Finalize: raise ambient capability CAP_NET_BIND_SERVICE: operation not permitted (an ambient capability must be in the permitted and inheritable sets too)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error with %q", err, want)
	}
}
