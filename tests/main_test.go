package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// idRange is one line of /etc/subuid or /etc/subgid.
type idRange struct{ start, count int }

// testUser is the unprivileged user that runs rabbitc: the invoking user, or,
// when the tests run as root, RABBITC_TEST_USER (default "rabbit").
type testUser struct {
	name   string
	uid    int
	gid    int
	groups []uint32
	home   string
	drop   bool // the tests run as root and start rabbitc with this user's credentials
	subuid []idRange
	subgid []idRange
}

// env is what TestMain prepared for all tests.
var env struct {
	repo   string // repository root
	base   string // temporary directory of this run (0755, readable by the test user)
	bin    string // the rabbitc binary under test
	rootfs string // the shared test rootfs (busybox-static + tests/payloads), owned by the test user
	user   testUser
	hostNS map[string]string // readlink /proc/self/ns/* of the host

	setupErr   error  // a host setup problem: tests fail with this message
	netErr     error  // slirp4netns or /dev/net/tun unusable: network tests fail with this message
	skipReason string // the kernel lacks a feature: tests skip with this message
}

const fixIt = "run `make test` as root once, or tests/setup.sh as root"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// Orphans of every run are reparented to this process, so a process that
	// a run left behind is found among our descendants.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "tests: prctl PR_SET_CHILD_SUBREAPER:", err)
		return 1
	}
	var err error
	if env.repo, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	if env.base, err = os.MkdirTemp("", "rabbitc-tests-"); err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer cleanupBase()
	if err := os.Chmod(env.base, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	env.hostNS = namespacesOf("self")
	env.setupErr = findTestUser()
	if env.setupErr == nil {
		env.setupErr = checkHostTools()
	}
	if env.setupErr == nil {
		env.skipReason, env.setupErr = probeUserNamespaces()
	}
	env.netErr = checkNetworking()
	if err := buildRabbitc(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: build rabbitc:", err)
		return 1
	}
	if err := buildRootfs(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: build test rootfs:", err)
		return 1
	}
	code := m.Run()
	reapStrays()
	return code
}

// cleanupBase removes the run's temporary directory. Files written by
// containers with ids other than 0 belong to subordinate ids; the tests
// remove those through rabbitc, and as root RemoveAll gets the rest.
func cleanupBase() {
	if os.Getenv("RABBITC_TEST_KEEP") != "" {
		fmt.Fprintln(os.Stderr, "tests: keeping", env.base)
		return
	}
	os.RemoveAll(env.base)
}

// requireSetup fails or skips the test when the host cannot run rabbitc.
func requireSetup(t testing.TB) {
	t.Helper()
	if env.setupErr != nil {
		t.Fatalf("host setup: %v", env.setupErr)
	}
	if env.skipReason != "" {
		t.Skip(env.skipReason)
	}
}

// requireNet is requireSetup for tests that need slirp4netns.
func requireNet(t testing.TB) {
	t.Helper()
	requireSetup(t)
	if env.netErr != nil {
		if errors.Is(env.netErr, errKernelFeature) {
			t.Skip(env.netErr)
		}
		t.Fatalf("host setup: %v", env.netErr)
	}
}

var errKernelFeature = errors.New("kernel feature missing")

func findTestUser() error {
	var u *user.User
	var err error
	if os.Geteuid() == 0 {
		name := os.Getenv("RABBITC_TEST_USER")
		if name == "" {
			name = "rabbit"
		}
		if u, err = user.Lookup(name); err != nil {
			return fmt.Errorf("look up test user %q: %w (%s)", name, err, fixIt)
		}
		if u.Uid == "0" {
			return fmt.Errorf("test user %q is root: the tests need an unprivileged user (set RABBITC_TEST_USER)", name)
		}
		env.user.drop = true
	} else if u, err = user.Current(); err != nil {
		return fmt.Errorf("look up current user: %w", err)
	}
	env.user.name = u.Username
	env.user.uid, _ = strconv.Atoi(u.Uid)
	env.user.gid, _ = strconv.Atoi(u.Gid)
	env.user.home = u.HomeDir
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil {
			env.user.groups = append(env.user.groups, uint32(n))
		}
	}
	if env.user.subuid, err = readSubIDs("/etc/subuid", env.user.name, env.user.uid); err != nil {
		return err
	}
	if env.user.subgid, err = readSubIDs("/etc/subgid", env.user.name, env.user.uid); err != nil {
		return err
	}
	return nil
}

// readSubIDs returns the ranges of user (by name or by uid) in an /etc/subuid-style file.
func readSubIDs(file, name string, uid int) ([]idRange, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w (%s)", file, err, fixIt)
	}
	var out []idRange
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 || (f[0] != name && f[0] != strconv.Itoa(uid)) {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil && count > 0 {
			out = append(out, idRange{start, count})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no range for %s in %s (%s, or add \"%s:100000:65536\" to /etc/subuid and /etc/subgid)",
			name, file, fixIt, name)
	}
	return out, nil
}

func checkHostTools() error {
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found in $PATH (install uidmap: %s)", tool, fixIt)
		}
	}
	return nil
}

// checkNetworking finds slirp4netns and a /dev/net/tun the test user can open.
func checkNetworking() error {
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		return fmt.Errorf("slirp4netns not found in $PATH (install slirp4netns: %s)", fixIt)
	}
	st, err := os.Stat("/dev/net/tun")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: /dev/net/tun does not exist (the kernel needs CONFIG_TUN: modprobe tun)", errKernelFeature)
		}
		return fmt.Errorf("stat /dev/net/tun: %w", err)
	}
	if st.Mode().Perm()&0o006 != 0o006 {
		return fmt.Errorf("/dev/net/tun is mode %v, the test user cannot open it (chmod 0666 /dev/net/tun: %s)", st.Mode().Perm(), fixIt)
	}
	return nil
}

// probeUserNamespaces checks that the test user can create a user namespace
// and map itself in it (util-linux unshare), and names the setting that
// forbids it otherwise.
func probeUserNamespaces() (skip string, setupErr error) {
	cmd := exec.Command("unshare", "--user", "--map-root-user", "true")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if env.user.drop {
		cmd.SysProcAttr.Credential = credential()
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		return "", nil
	}
	for _, s := range []struct{ file, name, bad string }{
		{"/proc/sys/kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone", "0"},
		{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "kernel.apparmor_restrict_unprivileged_userns", "1"},
		{"/proc/sys/user/max_user_namespaces", "user.max_user_namespaces", "0"},
	} {
		if v, err := os.ReadFile(s.file); err == nil && strings.TrimSpace(string(v)) == s.bad {
			return fmt.Sprintf("unprivileged user namespaces disabled (%s=%s)", s.name, s.bad), nil
		}
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		return "the kernel has no user namespaces (CONFIG_USER_NS)", nil
	}
	return "", fmt.Errorf("unshare --user --map-root-user true as %s: %v: %s", env.user.name, err, strings.TrimSpace(string(out)))
}

func credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(env.user.uid), Gid: uint32(env.user.gid), Groups: env.user.groups}
}

// entryFlag is the linker flag of every rabbitc build (nsenter.BuildFlag;
// the tests do not import the packages they test).
const entryFlag = "-E github.com/rabbitc/rabbitc/nsenter.entry"

// buildRabbitc builds ./cmd/rabbitc once, or takes RABBITC_BIN.
func buildRabbitc() error {
	if b := os.Getenv("RABBITC_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		env.bin = abs
		return err
	}
	env.bin = filepath.Join(env.base, "rabbitc")
	// Built as `make build` does: static, so no dynamic loader runs in
	// each of the stages, and with the entry point of exec (nsenter).
	cmd := exec.Command("go", "build", "-buildvcs=false", "-trimpath", "-ldflags=-s -w "+entryFlag, "-o", env.bin, "./cmd/rabbitc")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = env.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/rabbitc: %v\n%s", err, out)
	}
	// rabbitc-image beside it, where rabbitc looks for it.
	tool := filepath.Join(env.base, "rabbitc-image")
	cmd = exec.Command("go", "build", "-buildvcs=false", "-trimpath", "-ldflags=-s -w", "-o", tool, "./cmd/rabbitc-image")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = env.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/rabbitc-image: %v\n%s", err, out)
	}
	if err := os.Chmod(tool, 0o755); err != nil {
		return err
	}
	return os.Chmod(env.bin, 0o755)
}

// buildRootfs creates the shared test rootfs: busybox-static with a link for
// every applet, the usual directories, passwd/group, and our payloads.
func buildRootfs() error {
	env.rootfs = filepath.Join(env.base, "rootfs")
	r := env.rootfs
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "root",
		"home/user", "mnt", "data", "var/empty", "run"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(r, "tmp"), 0o777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(r, "tmp"), 0o1777); err != nil {
		return err
	}
	busybox := ""
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			busybox = p
			break
		}
	}
	if busybox == "" {
		return fmt.Errorf("busybox not found (install busybox-static: %s)", fixIt)
	}
	if err := copyFile(busybox, filepath.Join(r, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(r, "bin", applet)); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"user:x:1000:1000:user:/home/user:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group": "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
		// Like an Alpine rootfs: hosts and hostname exist, resolv.conf does not.
		"etc/hosts":    "127.0.0.1 localhost image-hosts-file\n",
		"etc/hostname": "image-hostname\n",
		"etc/motd":     "test rootfs of the rabbitc integration tests\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(r, "bin/notexec"), []byte("#!/bin/sh\necho should not run\n"), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(r, "bin")+"/", "./tests/payloads/...")
	cmd.Dir = env.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./tests/payloads/...: %v\n%s", err, out)
	}
	if runtime.GOARCH == "amd64" {
		// A 32-bit probe, for the seccomp filter's i386 branch.
		cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(r, "bin", "probe32"), "./tests/payloads/probe")
		cmd.Dir = env.repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=386")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build GOARCH=386 ./tests/payloads/probe: %v\n%s", err, out)
		}
	}
	return giveToTestUser(r)
}

// giveToTestUser makes path (recursively) belong to the test user, like a
// rootfs the user unpacked, so that container root owns it.
func giveToTestUser(path string) error {
	if !env.user.drop {
		return nil
	}
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, env.user.uid, env.user.gid)
	})
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// namespacesOf reads the namespace links of /proc/PID/ns.
func namespacesOf(pid string) map[string]string {
	out := map[string]string{}
	for _, ns := range []string{"cgroup", "ipc", "mnt", "net", "pid", "user", "uts"} {
		if l, err := os.Readlink("/proc/" + pid + "/ns/" + ns); err == nil {
			out[ns] = l
		}
	}
	return out
}
