package tests

// Issue 5: hardening. Each test runs an attacker-shaped payload and checks
// the outcome on the host.

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Point 1 (CVE-2019-5736): a payload cannot rewrite the rabbitc binary
// through /proc/PID/exe, even when the user owns a writable copy of it.
func TestProcExeCannotRewriteRabbitc(t *testing.T) {
	requireSetup(t)
	dir := userDir(t, "own-rabbitc", 0o755)
	bin := filepath.Join(dir, "rabbitc")
	data, err := os.ReadFile(env.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chownToUser(bin); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	o := opts{bin: bin}
	for _, args := range [][]string{
		rcNoNet("--", "/bin/probe", "exewrite"),
		rcNoNet(sh("/bin/probe exewrite; /bin/probe exewrite")),
		rcNoNet("-u", "1000:1000", "--", "/bin/probe", "exewrite"),
		rc("--", "/bin/probe", "exewrite"),
		// The payload is whatever /proc/self/exe is when it is started.
		rcNoNet("--cmd", "/proc/self/exe", "--", "version"),
		// --init keeps a copy of rabbitc running as PID 1 for the container's life.
		rcNoNet("--init", "--", "/bin/probe", "exewrite"),
		rcNoNet("--init", sh("readlink /proc/1/exe; /bin/probe exewrite")),
		rcNoNet(sh("readlink /proc/1/exe; ls -l /proc/self/fd/")),
	} {
		r := runOpt(t, o, args...)
		if strings.Contains(r.stdout, "written: ") && !strings.Contains(r.stdout, "written: 0") {
			t.Errorf("the payload wrote to a binary through /proc/*/exe:\n%s", r)
		}
		now, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(now) != sum {
			t.Fatalf("the user's rabbitc binary changed during:\n%s", r)
		}
		if strings.Contains(r.stdout, bin) {
			t.Errorf("the host path of the rabbitc binary is visible inside the container:\n%s", r)
		}
	}
}

// Point 2 (CVE-2024-21626): the working directory is inside the new root,
// whatever rabbitc's own working directory on the host.
func TestWorkdirInsideRoot(t *testing.T) {
	root := copyRootfs(t)
	if err := os.Symlink("../../../../../../../../../..", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	hostDir := userDir(t, "host-cwd", 0o755)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--rootfs", root, "--net", "none", "--", "/bin/fdlist"}, "cwd -> /\n"},
		{[]string{"run", "--rootfs", root, "--net", "none", "-w", "/tmp", "--", "/bin/fdlist"}, "cwd -> /tmp\n"},
		{[]string{"run", "--rootfs", root, "--net", "none", "-w", "/escape", "--", "/bin/fdlist"}, "cwd -> /\n"},
		{[]string{"run", "--rootfs", root, "--net", "none", "-w", "/escape/tmp", "--", "/bin/fdlist"}, "cwd -> /tmp\n"},
	} {
		r := runOpt(t, opts{dir: hostDir}, tc.args...)
		if r.code == 125 {
			wantRuntimeError(t, r)
			continue
		}
		wantCode(t, r, 0)
		if !strings.Contains(r.stdout, tc.want) || strings.Contains(r.stdout, "unreachable") {
			t.Errorf("want %q:\n%s", tc.want, r)
		}
	}
}

// Point 3: a rootfs whose /proc, /dev, /sys, /etc or mount destinations are
// symlinks (dangling, absolute, escaping) never gets a file or directory
// created outside it; rabbitc either contains the mount or refuses.
func TestRootfsSymlinkAttacks(t *testing.T) {
	src := userDir(t, "attack-src", 0o755)
	userFile(t, filepath.Join(src, "marker"), "volume-source\n", 0o644)
	hostFile := filepath.Join(userDir(t, "attack-hostfile", 0o755), "hosts")
	userFile(t, hostFile, "original host file\n", 0o644)

	cases := []struct {
		name    string
		link    string // path in the rootfs replaced by a symlink to target
		target  string // "HOST" is replaced by an empty host directory the user can write
		args    []string
		check   string // shell run inside when rabbitc accepts the rootfs
		wantOut string
	}{
		{"proc-absolute", "proc", "HOST", nil, "head -1 /proc/self/status", "Name:"},
		{"proc-relative", "proc", "../../../../../../../../../..HOST", nil, "head -1 /proc/self/status", "Name:"},
		{"dev-absolute", "dev", "HOST", nil, "echo x > /dev/null && echo dev-ok", "dev-ok"},
		{"sys-dangling", "sys", "/no/such/dir/deep", nil, "echo sys-ok", "sys-ok"},
		{"sys-absolute", "sys", "HOST", nil, "echo sys-ok", "sys-ok"},
		{"etc-absolute", "etc", "HOST", nil, "cat /etc/hostname", "attacked"},
		{"volume-absolute", "mnt/vol", "HOST", []string{"-v", src + ":/mnt/vol"}, "cat /mnt/vol/marker", "volume-source"},
		{"volume-relative", "mnt/vol", "../../../../../../../../../..HOST", []string{"-v", src + ":/mnt/vol"}, "cat /mnt/vol/marker", "volume-source"},
		{"volume-parent", "mnt/esc", "HOST", []string{"-v", src + ":/mnt/esc/sub/dir"}, "cat /mnt/esc/sub/dir/marker", "volume-source"},
		{"volume-dotdot", "mnt/esc", "HOST", []string{"-v", src + ":/mnt/esc/../esc/x"}, "cat /mnt/esc/x/marker", "volume-source"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := copyRootfs(t)
			host := userDir(t, "attack-target", 0o777)
			target := strings.ReplaceAll(tc.target, "HOST", host)
			link := filepath.Join(root, tc.link)
			if err := os.RemoveAll(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			chownToUser(link)
			args := append([]string{"run", "--rootfs", root, "--net", "none", "--hostname", "attacked"}, tc.args...)
			args = append(args, "--", "sh", "-c", tc.check)
			r := run(t, args...)
			if r.code == 125 {
				wantRuntimeError(t, r)
			} else if r.code != 0 || !strings.Contains(r.stdout, tc.wantOut) {
				t.Errorf("want the mount contained in the rootfs (%q) or a refusal (125):\n%s", tc.wantOut, r)
			}
			if left := listTree(host); len(left) > 0 {
				t.Errorf("rabbitc created files outside the rootfs through the symlink %s -> %s:\n  %s", tc.link, target, strings.Join(left, "\n  "))
			}
		})
	}

	t.Run("etc-hosts-file", func(t *testing.T) {
		root := copyRootfs(t)
		os.Remove(filepath.Join(root, "etc/hosts"))
		if err := os.Symlink(hostFile, filepath.Join(root, "etc/hosts")); err != nil {
			t.Fatal(err)
		}
		r := run(t, "run", "--rootfs", root, "--net", "none", "--hostname", "attacked", "--", "cat", "/etc/hosts")
		if r.code == 125 {
			wantRuntimeError(t, r)
		} else if r.code != 0 || !strings.Contains(r.stdout, "attacked") {
			t.Errorf("want generated /etc/hosts or a refusal:\n%s", r)
		}
		if data, _ := os.ReadFile(hostFile); string(data) != "original host file\n" {
			t.Errorf("the host file behind the /etc/hosts symlink changed: %q", data)
		}
	})
}

// Point 3: a second process swaps a directory and a symlink to a host
// directory in a loop while containers start; nothing is ever created
// outside the rootfs.
func TestRootfsSymlinkRace(t *testing.T) {
	requireSetup(t)
	root := copyRootfs(t)
	src := userDir(t, "race-src", 0o755)
	host := userDir(t, "race-target", 0o777)
	spot := filepath.Join(root, "mnt/race")
	var stopSwap atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tmpLink := filepath.Join(root, "mnt/.race-link")
		tmpDir := filepath.Join(root, "mnt/.race-dir")
		for i := 0; !stopSwap.Load() && i < 1_000_000; i++ {
			os.RemoveAll(tmpLink)
			os.RemoveAll(tmpDir)
			if i%2 == 0 {
				os.Symlink(host, tmpLink)
				os.RemoveAll(spot)
				os.Rename(tmpLink, spot)
			} else {
				os.MkdirAll(filepath.Join(tmpDir, "a/b"), 0o755)
				os.RemoveAll(spot)
				os.Rename(tmpDir, spot)
			}
			chownToUser(spot)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 30 && time.Now().Before(deadline); i++ {
		r := run(t, "run", "--rootfs", root, "--net", "none", "-v", src+":/mnt/race/a/b", "--", "true")
		if r.code != 0 {
			wantRuntimeError(t, r)
		}
		if left := listTree(host); len(left) > 0 {
			t.Errorf("run %d created files outside the rootfs:\n  %s", i, strings.Join(left, "\n  "))
			break
		}
	}
	stopSwap.Store(true)
	wg.Wait()
}

var maskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
	"/sys/devices/virtual/powercap"}

var readOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// Point 4: masked paths read empty, read-only paths are mounted read-only.
func TestMaskedAndReadOnlyPaths(t *testing.T) {
	r := run(t, rcNoNet(sh("cat /proc/self/mountinfo; echo ==; /bin/probe masked "+strings.Join(maskedPaths, " ")))...)
	wantCode(t, r, 0)
	mountinfo, probe, _ := strings.Cut(r.stdout, "==\n")
	ms := parseMountinfo(mountinfo)
	results := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(probe), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			results[k] = v
		}
	}
	for _, p := range maskedPaths {
		if _, err := os.Lstat(p); err != nil {
			continue // not on this kernel
		}
		if findMount(ms, p) == nil {
			t.Errorf("%s is not masked (no mount on it)", p)
		}
		if v := results[p]; v != "dir 0 ok" && v != "file 0 ok" && v != "ENOENT" {
			t.Errorf("%s reads %q inside, want empty", p, v)
		}
	}
	for _, p := range append(readOnlyPaths, "/sys") {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		var m *mountEntry
		for i := range ms { // the innermost mount holding p
			if p == ms[i].point || strings.HasPrefix(p, strings.TrimSuffix(ms[i].point, "/")+"/") {
				if m == nil || len(ms[i].point) >= len(m.point) {
					m = &ms[i]
				}
			}
		}
		if m == nil || !hasOpt(m.opts, "ro") {
			t.Errorf("%s is not on a read-only mount: %+v", p, m)
		}
	}
	r = run(t, rcNoNet(sh("echo 1 > /proc/sys/kernel/ns_last_pid; echo rc=$?; echo h > /proc/sysrq-trigger; echo rc=$?"))...)
	if strings.Count(r.stdout, "rc=0") != 0 {
		t.Errorf("writes to /proc/sys or /proc/sysrq-trigger succeeded:\n%s", r)
	}
}

// statusOf runs probe status with extra flags and returns its fields.
func statusOf(t *testing.T, flags ...string) (map[string]string, result) {
	t.Helper()
	r := run(t, rcNoNet(flags, "--", "/bin/probe", "status")...)
	m := map[string]string{}
	for _, l := range strings.Split(r.out(), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = v
		}
	}
	return m, r
}

const dockerDefaultCaps = 0x00000000a80425fb

func capMask(t testing.TB, hex string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		t.Fatalf("capability mask %q: %v", hex, err)
	}
	return v
}

func allCaps(t testing.TB) uint64 {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return 1<<(last+1) - 1
}

// Point 5: docker's 14 default capabilities in the bounding, permitted and
// effective sets, empty ambient and inheritable sets, no_new_privs;
// --cap-add and --cap-drop (ALL accepted).
func TestCapabilities(t *testing.T) {
	type want struct{ bnd, prm, eff uint64 }
	d := uint64(dockerDefaultCaps)
	for _, tc := range []struct {
		flags []string
		want  want
	}{
		{nil, want{d, d, d}},
		{[]string{"-u", "1000:1000"}, want{d, 0, 0}},
		{[]string{"--cap-drop", "ALL"}, want{0, 0, 0}},
		{[]string{"--cap-add", "SYS_ADMIN"}, want{d | 1<<21, d | 1<<21, d | 1<<21}},
		{[]string{"--cap-add", "CAP_NET_ADMIN", "--cap-drop", "net_raw"}, want{(d | 1<<12) &^ (1 << 13), (d | 1<<12) &^ (1 << 13), (d | 1<<12) &^ (1 << 13)}},
		{[]string{"--cap-drop", "ALL", "--cap-add", "CHOWN"}, want{1, 1, 1}},
		{[]string{"--cap-add", "ALL"}, want{allCaps(t), allCaps(t), allCaps(t)}},
	} {
		s, r := statusOf(t, tc.flags...)
		wantCode(t, r, 0)
		got := want{capMask(t, s["CapBnd"]), capMask(t, s["CapPrm"]), capMask(t, s["CapEff"])}
		if got != tc.want {
			t.Errorf("%v: bounding/permitted/effective %#x/%#x/%#x, want %#x/%#x/%#x\n%s", tc.flags,
				got.bnd, got.prm, got.eff, tc.want.bnd, tc.want.prm, tc.want.eff, r)
		}
		if capMask(t, s["CapInh"]) != 0 || capMask(t, s["CapAmb"]) != 0 {
			t.Errorf("%v: inheritable %s, ambient %s, want empty", tc.flags, s["CapInh"], s["CapAmb"])
		}
		if s["NoNewPrivs"] != "1" {
			t.Errorf("%v: NoNewPrivs %q, want 1", tc.flags, s["NoNewPrivs"])
		}
	}
	// The capabilities act: chown needs CAP_CHOWN.
	r := run(t, rcNoNet(sh("touch /tmp/c && chown 1000 /tmp/c && echo chowned; rm -f /tmp/c"))...)
	if r.out() != "chowned" {
		t.Errorf("chown with the default capabilities failed:\n%s", r)
	}
	r = run(t, rcNoNet("--cap-drop", "CHOWN", sh("touch /tmp/c && chown 1000 /tmp/c && echo chowned; s=$?; rm -f /tmp/c; exit $s"))...)
	if r.code == 0 || strings.Contains(r.stdout, "chowned") {
		t.Errorf("chown succeeded without CAP_CHOWN:\n%s", r)
	}
	for _, bad := range [][]string{{"--cap-add", "NOT_A_CAP"}, {"--cap-drop", "CAP_BOGUS"}} {
		wantRuntimeError(t, run(t, rcNoNet(bad, "--", "true")...), bad[1])
	}
}

func seccompProbe(t *testing.T, flags ...string) (map[string]string, result) {
	t.Helper()
	r := run(t, rcNoNet(flags, sh("/bin/probe status; /bin/probe seccomp; unshare -U true 2>/dev/null; echo userns: $?"))...)
	m := map[string]string{}
	for _, l := range strings.Split(r.out(), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = v
		}
	}
	return m, r
}

// Point 6: the default seccomp profile (docker's) denies keyctl, nfsservctl,
// get_mempolicy without CAP_SYS_NICE, and nested user namespaces;
// seccomp=unconfined lifts it; seccomp=FILE loads a profile;
// no-new-privileges=false clears no_new_privs.
func TestSeccomp(t *testing.T) {
	m, r := seccompProbe(t)
	wantCode(t, r, 0)
	if m["Seccomp"] != "2" {
		t.Errorf("Seccomp %q, want 2 (filter):\n%s", m["Seccomp"], r)
	}
	for _, k := range []string{"keyctl", "nfsservctl", "get_mempolicy"} {
		if m[k] != "EPERM" {
			t.Errorf("%s: %q under the default profile, want EPERM:\n%s", k, m[k], r)
		}
	}
	if m["userns"] == "0" {
		t.Errorf("a nested user namespace was created under the default profile:\n%s", r)
	}

	m, r = seccompProbe(t, "--security-opt", "seccomp=unconfined")
	wantCode(t, r, 0)
	if m["Seccomp"] != "0" || m["nfsservctl"] != "ENOSYS" || m["get_mempolicy"] != "ok" || m["keyctl"] == "EPERM" {
		t.Errorf("seccomp=unconfined: want no filter and the calls through:\n%s", r)
	}
	if m["userns"] != "0" {
		t.Logf("note: no nested user namespace even unconfined (userns: %s)", m["userns"])
	}

	dir := userDir(t, "seccomp-profile", 0o755)
	profile := filepath.Join(dir, "profile.json")
	userFile(t, profile, `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["get_mempolicy"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}`, 0o644)
	m, r = seccompProbe(t, "--security-opt", "seccomp="+profile)
	wantCode(t, r, 0)
	if m["Seccomp"] != "2" || m["get_mempolicy"] != "EPERM" || m["keyctl"] == "EPERM" || m["nfsservctl"] != "ENOSYS" {
		t.Errorf("seccomp=%s: want only get_mempolicy denied:\n%s", profile, r)
	}

	m, r = seccompProbe(t, "--security-opt", "no-new-privileges=false")
	wantCode(t, r, 0)
	if m["NoNewPrivs"] != "0" {
		t.Errorf("no-new-privileges=false: NoNewPrivs %q, want 0:\n%s", m["NoNewPrivs"], r)
	}

	bad := filepath.Join(dir, "bad.json")
	userFile(t, bad, `{"defaultAction": `, 0o644)
	for _, opt := range []string{"seccomp=" + bad, "seccomp=/no/such/profile.json", "bogus=1", "no-new-privileges=maybe"} {
		wantRuntimeError(t, run(t, rcNoNet("--security-opt", opt, "--", "true")...))
	}
}

// 32-bit programs run under the default profile, as under docker's (it
// lists i386 beside amd64), and meet the same rules through their own
// syscall numbers: the filter kills them unless it has an i386 branch.
func TestSeccomp32Bit(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the i386 branch is for amd64 hosts")
	}
	if out, err := exec.Command(filepath.Join(env.rootfs, "bin", "probe32"), "keyring").CombinedOutput(); err != nil {
		t.Skipf("this kernel does not run 32-bit programs (CONFIG_IA32_EMULATION): %v %s", err, out)
	}
	r := run(t, rcNoNet(sh("/bin/probe32 status; /bin/probe32 seccomp"))...)
	wantCode(t, r, 0)
	m := map[string]string{}
	for _, l := range strings.Split(r.out(), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = v
		}
	}
	if m["Seccomp"] != "2" {
		t.Errorf("Seccomp %q, want 2 (filter):\n%s", m["Seccomp"], r)
	}
	for _, k := range []string{"keyctl", "nfsservctl", "get_mempolicy", "tioclinux"} {
		if m[k] != "EPERM" {
			t.Errorf("32-bit %s: %q under the default profile, want EPERM:\n%s", k, m[k], r)
		}
	}
	dir := userDir(t, "seccomp-native", 0o755)
	profile := filepath.Join(dir, "profile.json")
	userFile(t, profile, `{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"]}`, 0o644)
	r = run(t, rcNoNet("--security-opt", "seccomp="+profile, "--", "/bin/probe32", "status")...)
	if r.signaled != syscall.SIGSYS && r.code != 128+int(syscall.SIGSYS) {
		t.Errorf("a profile for x86_64 only: want the 32-bit probe killed by SIGSYS:\n%s", r)
	}
}

// Point 6: TIOCSTI on the container's own terminal is denied by the profile
// (and allowed unconfined, which shows it is the profile that denies it).
func TestSeccompTIOCSTI(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{nil, "EPERM"},
		{[]string{"--security-opt", "seccomp=unconfined"}, ""},
	} {
		tty := newPty(t, 24, 80)
		r := runOpt(t, opts{pty: tty}, rcNoNet("-t", tc.flags, sh("/bin/probe tiocsti x; /bin/probe seccomp"))...)
		wantCode(t, r, 0)
		out := strings.ReplaceAll(tty.out.String(), "\r", "")
		if tc.want != "" && (!strings.Contains(out, "tiocsti: "+tc.want) || !strings.Contains(out, "tioclinux: "+tc.want)) {
			t.Errorf("%v: want TIOCSTI and TIOCLINUX %s:\n%s", tc.flags, tc.want, out)
		}
		if tc.want == "" && strings.Contains(out, "tiocsti: EPERM") && legacyTIOCSTI() {
			t.Errorf("%v: TIOCSTI denied although unconfined:\n%s", tc.flags, out)
		}
	}
}

func legacyTIOCSTI() bool {
	data, err := os.ReadFile("/proc/sys/dev/tty/legacy_tiocsti")
	return err != nil || strings.TrimSpace(string(data)) == "1"
}

// Point 7 (CVE-2017-5226): the payload runs in a session of its own without
// a controlling terminal; TIOCSTI cannot push input into the user's
// terminal, even with the terminal passed as stdin (-i) and seccomp off.
func TestTIOCSTICannotReachUserTerminal(t *testing.T) {
	if !legacyTIOCSTI() {
		t.Log("dev.tty.legacy_tiocsti=0: the kernel itself refuses TIOCSTI; the test cannot fail without rabbitc's defence here")
	}
	for _, tc := range []struct {
		flags    []string
		hostTerm bool // no pty of its own: the payload's stdin comes from the user's terminal
	}{
		{[]string{"-i"}, true},
		{[]string{"-i", "--security-opt", "seccomp=unconfined"}, true},
		{[]string{"-it"}, false},
		{[]string{"-it", "--security-opt", "seccomp=unconfined"}, false},
	} {
		flags := tc.flags
		tty := newPty(t, 24, 80)
		r := runOpt(t, opts{pty: tty}, rcNoNet(flags, sh("/bin/probe status; /bin/probe tiocsti 'echo INJECTED'; echo; true"))...)
		wantCode(t, r, 0)
		out := strings.ReplaceAll(tty.out.String(), "\r", "")
		if !strings.Contains(out, "sid: 1\n") {
			t.Errorf("%v: the payload is not the leader of a session of its own:\n%s", flags, out)
		}
		if tc.hostTerm && !strings.Contains(out, "ctty: ENXIO") {
			t.Errorf("%v: the payload has a controlling terminal:\n%s", flags, out)
		}
		if pending := drainInput(t, tty); strings.Contains(pending, "INJECTED") {
			t.Errorf("%v: the payload injected %q into the user's terminal", flags, pending)
		}
	}
}

// drainInput reads what is waiting in the terminal's input queue (what the
// user's shell would read next).
func drainInput(t testing.TB, p *pty) string {
	t.Helper()
	fd := int(p.slave.Fd())
	var got []byte
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 200)
		if err != nil || n == 0 {
			return string(got)
		}
		// The terminal is in canonical mode: a read returns up to a line;
		// an injected line without newline is not readable and harmless.
		buf := make([]byte, 4096)
		k, err := unix.Read(fd, buf)
		if err != nil || k <= 0 {
			return string(got)
		}
		got = append(got, buf[:k]...)
	}
}

// Point 7: a new session keyring; the user's keyring is not reachable.
func TestSessionKeyring(t *testing.T) {
	requireSetup(t)
	// Give this thread (which starts rabbitc) a session keyring of its own.
	runtime.LockOSThread() // never unlocked: the thread ends with the test
	name := fmt.Sprintf("rabbitc-test-%d", os.Getpid())
	hostID, err := unix.KeyctlJoinSessionKeyring(name)
	if err != nil {
		t.Fatalf("join a session keyring: %v", err)
	}
	if env.user.drop {
		// Let the test user search it, as a user's own keyring would be.
		unix.KeyctlSetperm(hostID, 0x3f3f3f3f)
	}
	r := run(t, rcNoNet("--security-opt", "seccomp=unconfined", "--", "/bin/probe", "keyring")...)
	wantCode(t, r, 0)
	if strings.TrimSpace(strings.TrimPrefix(r.out(), "keyring:")) == strconv.Itoa(hostID) {
		t.Errorf("the container shares the session keyring %d of its starter:\n%s", hostID, r)
	}
	r = run(t, rcNoNet("--", "/bin/probe", "keyring")...)
	if r.out() != "keyring: EPERM" {
		t.Errorf("keyctl under the default profile: %q, want EPERM", r.out())
	}
}

// Point 3 (CVE-2025-31133 class): a rootfs whose /dev/null is a symlink to
// a sensitive file, or a regular file, must not become the source of the
// masks or of the container's /dev/null.
func TestFakeDevNullInRootfs(t *testing.T) {
	root := copyRootfs(t)
	dev := filepath.Join(root, "dev")
	for name, target := range map[string]string{"null": "/proc/sys/kernel/core_pattern", "zero": "/proc/sysrq-trigger", "full": "../etc/passwd"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			t.Fatal(err)
		}
	}
	userFile(t, filepath.Join(dev, "random"), "not random\n", 0o666)
	var present []string
	for _, p := range maskedPaths {
		if fi, err := os.Lstat(p); err == nil && !fi.IsDir() {
			present = append(present, p)
		}
	}
	r := run(t, append([]string{"run", "--rootfs", root, "--net", "none", "--", "/bin/probe", "stat",
		"/dev/null", "/dev/zero", "/dev/full", "/dev/random"}, present...)...)
	if r.code == 125 {
		wantRuntimeError(t, r)
		return
	}
	wantCode(t, r, 0)
	want := map[string]string{"/dev/null": "char 1:3", "/dev/zero": "char 1:5", "/dev/full": "char 1:7", "/dev/random": "char 1:8"}
	for _, p := range present {
		want[p] = "char 1:3"
	}
	for _, l := range strings.Split(r.out(), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		if w, ok := want[k]; ok && !strings.HasPrefix(v, w) {
			t.Errorf("%s is %q inside, want the real %s", k, v, w)
		}
	}
}
