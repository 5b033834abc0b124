package rootfs

// Namespace tests: the test binary re-execs itself from TestMain into new
// user, mount, PID, IPC and UTS (and usually network) namespaces with a
// single-id mapping, which needs no privileges, and runs a child function
// there. The child prints what went wrong and exits 1; the parent then checks
// the host side (nothing mounted, nothing created outside the rootfs).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	childEnv     = "_RABBITC_ROOTFS_TEST_CHILD"
	childArgsEnv = "_RABBITC_ROOTFS_TEST_ARGS"
	// exitSkip is the exit code of a child that found a kernel feature
	// missing; its output says which.
	exitSkip = 3
)

// childArgs is what a child gets, as JSON in childArgsEnv.
type childArgs struct {
	Config Config
	// Marker is a host file outside the rootfs that must be unreachable
	// after PivotRoot.
	Marker string
	// CoverProc: the nested child covers a file in every procfs it sees,
	// so that the kernel refuses a fresh one one user namespace deeper.
	CoverProc bool
	// LockedVolume is the destination of a read-only volume whose source
	// mount has nosuid,nodev,noexec locked; they must survive the remount.
	LockedVolume string
	// Deadline and MaxRuns bound the race child.
	Deadline time.Time
	MaxRuns  int
	// Nested is the child the nested child runs one level deeper; NestedSrc
	// gets a nosuid,nodev,noexec tmpfs before.
	Nested    string
	NestedSrc string
	NewNet    bool
	// TTYGroup: gid 5 is mapped, the pty slaves must belong to it.
	TTYGroup bool
	// FakeNull is bound over the host's /dev/null (in the child's mount
	// namespace) before Setup.
	FakeNull string
	// Checks are what childFull checks of the container's mounts beyond
	// rabbitc run's defaults.
	Checks []mountCheck
}

var children = map[string]func(a childArgs) error{
	"probe":        func(childArgs) error { return nil },
	"full":         childFull,
	"setup-only":   childSetupOnly,
	"race":         childRace,
	"nested":       childNested,
	"proc-refused": childProcRefused,
}

func TestMain(m *testing.M) {
	if os.Getenv(waitMapEnv) != "" {
		waitForMaps()
	}
	if name := os.Getenv(childEnv); name != "" {
		os.Exit(runChild(name))
	}
	os.Exit(m.Run())
}

func runChild(name string) int {
	var a childArgs
	if err := json.Unmarshal([]byte(os.Getenv(childArgsEnv)), &a); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: bad args: %v\n", name, err)
		return 1
	}
	f, ok := children[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "no child %q\n", name)
		return 1
	}
	if err := f(a); err != nil {
		var skip skipError
		if errors.As(err, &skip) {
			fmt.Fprintf(os.Stderr, "SKIP: %s\n", skip.reason)
			return exitSkip
		}
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 1
	}
	return 0
}

type skipError struct{ reason string }

func (s skipError) Error() string { return "skip: " + s.reason }

// spawn runs the named child in new namespaces with a single-id mapping and
// returns its output and exit code.
func spawn(name string, a childArgs, newNet bool) (string, int, error) {
	return spawnWith(name, a, newNet, false)
}

// spawnWith is spawn; with subids the child gets the full mapping a real run
// has (0 -> the user, 1..65536 -> the user's subordinate range), written with
// newuidmap/newgidmap (or directly, as root) while the child waits.
func spawnWith(name string, a childArgs, newNet, subids bool) (string, int, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", -1, err
	}
	js, err := json.Marshal(a)
	if err != nil {
		return "", -1, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+name, childArgsEnv+"="+string(js))
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if newNet {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: unix.SIGKILL}
	var mapped *os.File
	if subids {
		r, w, err := os.Pipe()
		if err != nil {
			return "", -1, err
		}
		defer r.Close()
		defer w.Close()
		mapped = w
		cmd.ExtraFiles = []*os.File{r}
		cmd.Env = append(cmd.Env, waitMapEnv+"=1")
	} else {
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", -1, err
	}
	if mapped != nil {
		if err := writeSubidMaps(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return out.String(), -1, err
		}
		mapped.Write([]byte("m"))
		mapped.Close()
	}
	err = cmd.Wait()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return out.String(), ee.ExitCode(), nil
	}
	return out.String(), 0, err
}

// waitMapEnv tells a child to wait on fd 3 for its id maps and then re-exec
// itself: it started unmapped, so it has no capabilities until then.
const waitMapEnv = "_RABBITC_ROOTFS_TEST_WAITMAP"

// waitForMaps is the child's half of spawnWith(subids).
func waitForMaps() {
	f := os.NewFile(3, "maps-written")
	b := make([]byte, 1)
	if n, _ := f.Read(b); n != 1 || b[0] != 'm' {
		os.Exit(1)
	}
	f.Close()
	os.Unsetenv(waitMapEnv)
	err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "re-exec after the id maps: %v\n", err)
	os.Exit(1)
}

// writeSubidMaps maps 0 to the invoking user and 1..65536 to its subordinate
// ids: as root directly, else with newuidmap and newgidmap.
func writeSubidMaps(pid int) error {
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		for _, f := range []string{"uid_map", "gid_map"} {
			m := "0 0 1\n1 100000 65536\n"
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/%s", pid, f), []byte(m), 0); err != nil {
				return fmt.Errorf("write %s: %w", f, err)
			}
		}
		return nil
	}
	for _, tool := range []struct {
		cmd, file string
		id        int
	}{{"newgidmap", "/etc/subgid", gid}, {"newuidmap", "/etc/subuid", uid}} {
		start, count, err := subidRange(tool.file, uid)
		if err != nil {
			return err
		}
		args := []string{strconv.Itoa(pid), "0", strconv.Itoa(tool.id), "1", "1", start, count}
		if out, err := exec.Command(tool.cmd, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s (install uidmap)", tool.cmd, strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// subidRange finds the invoking user's first range in /etc/subuid or
// /etc/subgid, by name or by uid.
func subidRange(file string, uid int) (start, count string, err error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", file, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 3 && (f[0] == u.Username || f[0] == u.Uid) {
			return f[1], f[2], nil
		}
	}
	return "", "", fmt.Errorf("no range for %s in %s (add \"%s:100000:65536\" to /etc/subuid and /etc/subgid)", u.Username, file, u.Username)
}

var (
	usernsOnce sync.Once
	usernsSkip string
)

// requireUserns skips when unprivileged user namespaces are disabled, naming
// the setting, after probing with a real child.
func requireUserns(t *testing.T) {
	t.Helper()
	usernsOnce.Do(func() {
		out, code, err := spawn("probe", childArgs{}, true)
		if err == nil && code == 0 {
			return
		}
		reason := fmt.Sprintf("cannot start a child in a new user namespace: %v %s", err, out)
		for file, bad := range map[string]string{
			"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1",
			"/proc/sys/kernel/unprivileged_userns_clone":             "0",
			"/proc/sys/user/max_user_namespaces":                     "0",
		} {
			if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == bad {
				reason = fmt.Sprintf("unprivileged user namespaces disabled (%s=%s)",
					strings.ReplaceAll(strings.TrimPrefix(file, "/proc/sys/"), "/", "."), bad)
			}
		}
		usernsSkip = reason
	})
	if usernsSkip != "" {
		if strings.HasPrefix(usernsSkip, "unprivileged") {
			t.Skip(usernsSkip)
		}
		t.Fatal(usernsSkip)
	}
}

// run spawns a child and fails the test on a non-zero exit; it skips when the
// child reports a missing kernel feature.
func run(t *testing.T, name string, a childArgs, newNet bool) string {
	t.Helper()
	return runWith(t, name, a, newNet, false)
}

// runWith is run; subids asks for the full id mapping (see spawnWith).
func runWith(t *testing.T, name string, a childArgs, newNet, subids bool) string {
	t.Helper()
	requireUserns(t)
	before := hostMounts(t)
	out, code, err := spawnWith(name, a, newNet, subids)
	if err != nil {
		t.Fatalf("child %s: %v\n%s", name, err, out)
	}
	if code == exitSkip {
		t.Skip(strings.TrimSpace(out))
	}
	if code != 0 {
		t.Fatalf("child %s exited %d:\n%s", name, code, out)
	}
	if after := hostMounts(t); after != before {
		t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	return out
}

// hostMounts is the part of the host's mount table where a leak from a
// child would show: below TMPDIR (the test trees) and below /proc, /sys and
// /dev (what Setup mounts). Other mounts may change while other packages'
// tests run.
func hostMounts(t *testing.T) string {
	t.Helper()
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range ms {
		for _, dir := range []string{tmp, "/proc", "/sys", "/dev"} {
			if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
				fmt.Fprintf(&b, "%s %s %s %s\n", m.Mountpoint, m.FSType, m.Root, m.Options)
				break
			}
		}
	}
	return b.String()
}

// testTree is a rootfs with busybox, a host-only marker, a state dir with
// /etc files and an outside dir that must stay empty.
type testTree struct {
	base, rootfs, outside, marker, state string
}

func newTree(t *testing.T, withBusybox bool) testTree {
	t.Helper()
	base := t.TempDir()
	tr := testTree{
		base:    base,
		rootfs:  filepath.Join(base, "rootfs"),
		outside: filepath.Join(base, "outside"),
		marker:  filepath.Join(base, "host-only-marker"),
		state:   filepath.Join(base, "state"),
	}
	for _, d := range []string{tr.rootfs + "/bin", tr.rootfs + "/etc", tr.outside, tr.state} {
		mustMkdir(t, d)
	}
	mustWrite(t, tr.marker, "host\n")
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		mustWrite(t, filepath.Join(tr.state, f), "generated "+f+"\n")
	}
	if withBusybox {
		copyBusybox(t, filepath.Join(tr.rootfs, "bin/busybox"))
	}
	return tr
}

// config is the Config of `rabbitc run` for the tree: DefaultMounts, then
// mounts (volumes, --tmpfs), the default masked and read-only paths and the
// /etc files.
func (tr testTree) config(mounts ...specs.Mount) Config {
	return Config{
		Rootfs:        tr.rootfs,
		Mounts:        append(DefaultMounts(), mounts...),
		MaskedPaths:   DefaultMaskedPaths,
		ReadonlyPaths: DefaultReadonlyPaths,
		EtcFiles:      tr.etcFiles(),
	}
}

// volume is the mount of -v src:dest[:ro].
func volume(src, dest string, ro bool) specs.Mount {
	m := specs.Mount{Type: "bind", Source: src, Destination: dest, Options: []string{"rbind"}}
	if ro {
		m.Options = append(m.Options, "ro")
	}
	return m
}

func (tr testTree) etcFiles() []File {
	var fs []File
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		fs = append(fs, File{Dest: "/etc/" + f, Content: []byte("generated " + f + "\n")})
	}
	return fs
}

// requireOutsideEmpty fails when anything was created in the outside dir.
func (tr testTree) requireOutsideEmpty(t *testing.T, keep ...string) {
	t.Helper()
	var found []string
	filepath.Walk(tr.outside, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != tr.outside && !contains(keep, p) {
			found = append(found, p)
		}
		return nil
	})
	if len(found) > 0 {
		t.Errorf("created outside the rootfs: %v", found)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func copyBusybox(t *testing.T, dst string) {
	t.Helper()
	src := "/usr/bin/busybox"
	if _, err := os.Stat(src); err != nil {
		src = "/bin/busybox"
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatalf("%v (install busybox-static)", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// newMountsOutside lists the mounts that appeared since before and are not
// inside root (a real path).
func newMountsOutside(before map[int]bool, root string) ([]string, error) {
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, m := range ms {
		if before[m.ID] {
			continue
		}
		if m.Mountpoint != root && !strings.HasPrefix(m.Mountpoint, root+"/") {
			bad = append(bad, m.Mountpoint+" ("+m.FSType+")")
		}
	}
	return bad, nil
}

func mountIDs() (map[int]bool, error) {
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	ids := map[int]bool{}
	for _, m := range ms {
		ids[m.ID] = true
	}
	return ids, nil
}
