package rootfs

// The child functions that run inside the namespaces (see ns_test.go).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// childFull runs the whole sequence and then checks the container's view.
func childFull(a childArgs) error {
	if err := Setup(a.Config); err != nil {
		return fmt.Errorf("Setup: %w", err)
	}
	if err := PivotRoot(a.Config.Rootfs); err != nil {
		if errors.Is(err, unix.EINVAL) {
			var st unix.Statfs_t
			if unix.Statfs(a.Config.Rootfs, &st) == nil && (st.Type == unix.RAMFS_MAGIC) {
				return skipError{fmt.Sprintf("pivot_root refused on the test's file system (ramfs): %v", err)}
			}
		}
		return fmt.Errorf("PivotRoot: %w", err)
	}
	if err := Finish(a.Config); err != nil {
		return fmt.Errorf("Finish: %w", err)
	}
	c := &checker{}
	c.pid1()
	c.devices()
	c.pty(a.TTYGroup)
	c.masked(a.Config.MaskedPaths)
	c.readonly(a)
	c.oldRootGone(a.Marker)
	c.rootMode(a.Config.ReadOnly)
	c.volumes(a)
	c.etcFiles(a.Config.EtcFiles)
	c.busybox()
	for _, mc := range a.Checks {
		c.mount(mc)
	}
	if len(c.errs) > 0 {
		return errors.New(strings.Join(c.errs, "\n"))
	}
	fmt.Println("ok")
	return nil
}

type checker struct{ errs []string }

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

func statfsFlags(p string) (int64, int64, error) {
	var st unix.Statfs_t
	err := unix.Statfs(p, &st)
	return int64(st.Type), st.Flags, err
}

func (c *checker) pid1() {
	self, err := os.Readlink("/proc/self")
	switch {
	case err != nil:
		c.errorf("readlink /proc/self: %v", err)
	case self != "1":
		c.errorf("/proc/self = %s, want 1 (a procfs of the new PID namespace)", self)
	}
}

func (c *checker) devices() {
	for _, d := range devices {
		f, err := os.OpenFile("/dev/"+d.name, unix.O_PATH, 0)
		if err != nil {
			c.errorf("open /dev/%s: %v", d.name, err)
			continue
		}
		if err := isDevice(f, d); err != nil {
			c.errorf("/dev/%s: %v", d.name, err)
		}
		f.Close()
	}
	if err := os.WriteFile("/dev/null", []byte("x"), 0); err != nil {
		c.errorf("write /dev/null: %v", err)
	}
	if f, err := os.Open("/dev/zero"); err != nil {
		c.errorf("open /dev/zero: %v", err)
	} else {
		b := make([]byte, 8)
		if n, err := f.Read(b); err != nil || n != 8 || !bytes.Equal(b, make([]byte, 8)) {
			c.errorf("read /dev/zero: %d %v %v", n, err, b)
		}
		f.Close()
	}
	if err := os.WriteFile("/dev/full", []byte("x"), 0); !errors.Is(err, unix.ENOSPC) {
		c.errorf("write /dev/full: %v, want ENOSPC", err)
	}
	for _, l := range devSymlinks {
		if got, err := os.Readlink("/dev/" + l[0]); err != nil || got != l[1] {
			c.errorf("readlink /dev/%s = %q, %v; want %q", l[0], got, err, l[1])
		}
	}
	for p, magic := range map[string]int64{"/dev": tmpfsMagic, "/dev/pts": devptsMagic, "/dev/shm": tmpfsMagic, "/dev/mqueue": mqueueMagic} {
		if typ, _, err := statfsFlags(p); err != nil || typ != magic {
			c.errorf("statfs %s: type %#x, %v; want %#x", p, typ, err, magic)
		}
	}
	if err := os.WriteFile("/dev/shm/probe", []byte("x"), 0o644); err != nil {
		c.errorf("write /dev/shm: %v", err)
	}
}

func (c *checker) pty(ttyGroup bool) {
	master, slave, err := OpenPTY()
	if err != nil {
		c.errorf("OpenPTY: %v", err)
		return
	}
	defer master.Close()
	defer slave.Close()
	if _, err := slave.Write([]byte("ping\n")); err != nil {
		c.errorf("write pty slave: %v", err)
		return
	}
	b := make([]byte, 64)
	n, err := master.Read(b)
	if err != nil || !strings.Contains(string(b[:n]), "ping") {
		c.errorf("read pty master: %q %v", b[:n], err)
	}
	if !strings.HasPrefix(slave.Name(), "/dev/pts/") {
		c.errorf("pty slave name %q", slave.Name())
	}
	var st, console unix.Stat_t
	if err := BindConsole(slave); err != nil {
		c.errorf("BindConsole: %v", err)
	} else if err := unix.Stat("/dev/console", &console); err != nil || unix.Fstat(int(slave.Fd()), &st) != nil || console.Rdev != st.Rdev {
		c.errorf("/dev/console rdev %#x, pty slave %#x, %v", console.Rdev, st.Rdev, err)
	}
	if err := unix.Fstat(int(slave.Fd()), &st); err != nil {
		c.errorf("stat pty slave: %v", err)
	} else if ttyGroup && (st.Gid != ttyGID || st.Mode&0o777 != 0o620) {
		c.errorf("pty slave gid %d mode %#o, want gid %d mode 0620", st.Gid, st.Mode&0o777, ttyGID)
	}
}

func (c *checker) masked(paths []string) {
	seen := 0
	for _, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			c.errorf("stat %s: %v", p, err)
			continue
		}
		seen++
		if fi.IsDir() {
			if ents, err := os.ReadDir(p); err != nil || len(ents) != 0 {
				c.errorf("masked dir %s: %d entries, %v; want empty", p, len(ents), err)
			}
			if err := os.WriteFile(p+"/x", nil, 0o644); !errors.Is(err, unix.EROFS) {
				c.errorf("write in masked dir %s: %v, want EROFS", p, err)
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			c.errorf("masked file %s: not /dev/null (mode %#o rdev %#x %v)", p, st.Mode, st.Rdev, err)
		}
		if b, err := os.ReadFile(p); err != nil || len(b) != 0 {
			c.errorf("read masked %s: %d bytes, %v", p, len(b), err)
		}
	}
	if seen < 3 {
		c.errorf("only %d masked paths exist in this container; the test proves little", seen)
	}
}

func (c *checker) readonly(a childArgs) {
	for _, p := range append([]string{"/sys"}, a.Config.ReadonlyPaths...) {
		_, flags, err := statfsFlags(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil || flags&stRdonly == 0 {
			c.errorf("%s is not read-only (flags %#x, %v)", p, flags, err)
		}
	}
	if _, flags, err := statfsFlags("/proc"); err != nil || flags&stRdonly != 0 {
		c.errorf("/proc should stay writable (flags %#x, %v)", flags, err)
	}
	// A sysctl of our own network namespace is writable by its root unless
	// the mount is read-only.
	if _, err := os.Stat("/proc/sys/net/ipv4/ip_forward"); err == nil && !a.Config.HostNetwork {
		err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0\n"), 0)
		if !errors.Is(err, unix.EROFS) {
			c.errorf("write /proc/sys/net/ipv4/ip_forward: %v, want EROFS", err)
		}
	}
	if a.Config.HostNetwork {
		if _, flags, err := statfsFlags("/sys/fs/cgroup"); err == nil && flags&stRdonly == 0 {
			c.errorf("/sys/fs/cgroup (under the host's /sys) is not read-only (flags %#x)", flags)
		}
	}
	// On the host's /sys the firmware mask must be a tmpfs, not sysfs.
	if typ, _, err := statfsFlags("/sys/firmware"); err == nil && typ != tmpfsMagic {
		c.errorf("/sys/firmware type %#x, want the masking tmpfs", typ)
	}
}

func (c *checker) oldRootGone(marker string) {
	for _, p := range []string{marker, "/usr/bin/busybox", filepath.Dir(marker)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			c.errorf("host path %s reachable after pivot_root: %v", p, err)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		c.errorf("read mountinfo: %v", err)
		return
	}
	if n := strings.Count(string(mi), "\n"); n > 60 {
		c.errorf("%d mounts visible, the old root seems attached:\n%s", n, mi)
	}
}

func (c *checker) rootMode(readOnly bool) {
	err := os.WriteFile("/rw-probe", []byte("x"), 0o644)
	if readOnly {
		if !errors.Is(err, unix.EROFS) {
			c.errorf("write / with --read-only: %v, want EROFS", err)
		}
		for _, p := range []string{"/dev/shm/ro-probe", "/dev/ro-probe"} {
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				c.errorf("write %s with --read-only: %v, want it writable", p, err)
			}
		}
		return
	}
	if err != nil {
		c.errorf("write /: %v", err)
	}
	os.Remove("/rw-probe")
}

// volumes checks the binds of the config (its volumes) whose source has a
// hello.txt.
func (c *checker) volumes(a childArgs) {
	for _, v := range a.Config.Mounts {
		if v.Type != "bind" {
			continue
		}
		dest, readOnly := v.Destination, parseMountOptions(v.Options).flags&unix.MS_RDONLY != 0
		b, err := os.ReadFile(dest + "/hello.txt")
		if err != nil || string(b) != "hello\n" {
			c.errorf("volume %s: hello.txt = %q, %v", dest, b, err)
		}
		err = os.WriteFile(dest+"/written-inside", []byte("x"), 0o644)
		if readOnly && !errors.Is(err, unix.EROFS) {
			c.errorf("write in read-only volume %s: %v, want EROFS", dest, err)
		}
		if !readOnly && err != nil {
			c.errorf("write in volume %s: %v", dest, err)
		}
		if dest == a.LockedVolume {
			_, flags, err := statfsFlags(dest)
			want := int64(stRdonly | stNosuid | stNodev | stNoexec)
			if err != nil || flags&want != want {
				c.errorf("volume %s flags %#x, %v; want ro,nosuid,nodev,noexec kept", dest, flags, err)
			}
		}
	}
}

func (c *checker) etcFiles(fs []File) {
	for _, f := range fs {
		if b, err := os.ReadFile(f.Dest); err != nil || string(b) != string(f.Content) {
			c.errorf("%s = %q, %v; want %q", f.Dest, b, err, f.Content)
		}
	}
	// The tmpfs that held them is gone, and nothing else of it shows.
	if _, err := os.Lstat(generatedFS.dest); err == nil {
		c.errorf("%s is still there", generatedFS.dest)
	}
}

func (c *checker) busybox() {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return
	}
	out, err := exec.Command("/bin/busybox", "sh", "-c", "/bin/busybox ps -o pid,args").CombinedOutput()
	if err != nil {
		c.errorf("busybox ps: %v\n%s", err, out)
		return
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 5 || !strings.HasPrefix(strings.TrimSpace(lines[1]), "1 ") {
		c.errorf("busybox ps shows more than the container:\n%s", out)
	}
}

// mountCheck is what a test expects at one path of the container.
type mountCheck struct {
	Path     string
	Magic    int64    // statfs type; 0: any
	Opts     []string // in the mount's own options (mountinfo); "ro" also makes a write fail with EROFS
	NoOpts   []string // not in them
	Optional string   // "shared", "master" or "private" (no propagation field); "": any
	Mode     uint32   // permission bits of the path; 0: any
	Bytes    uint64   // the file system's size (statfs); 0: any
	Char     []uint32 // major, minor of the character device at Path
}

func (c *checker) mount(mc mountCheck) {
	if len(mc.Char) == 2 {
		var st unix.Stat_t
		if err := unix.Stat(mc.Path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR ||
			unix.Major(st.Rdev) != mc.Char[0] || unix.Minor(st.Rdev) != mc.Char[1] {
			c.errorf("%s: mode %#o rdev %d:%d, %v; want the character device %d:%d",
				mc.Path, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), err, mc.Char[0], mc.Char[1])
		}
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mc.Path, &st); err != nil {
		c.errorf("statfs %s: %v", mc.Path, err)
		return
	}
	if mc.Magic != 0 && int64(st.Type) != mc.Magic {
		c.errorf("%s: file system type %#x, want %#x", mc.Path, st.Type, mc.Magic)
	}
	if mc.Bytes != 0 && st.Blocks*uint64(st.Bsize) != mc.Bytes {
		c.errorf("%s: %d bytes, want %d", mc.Path, st.Blocks*uint64(st.Bsize), mc.Bytes)
	}
	if fi, err := os.Stat(mc.Path); mc.Mode != 0 && (err != nil || uint32(fi.Mode().Perm()) != mc.Mode) {
		c.errorf("%s: mode %v, %v; want %#o", mc.Path, fi.Mode(), err, mc.Mode)
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mc.Path))
	if err != nil || len(ms) == 0 {
		c.errorf("%s: not a mount point (%v)", mc.Path, err)
		return
	}
	m := ms[len(ms)-1] // the one on top
	opts := strings.Split(m.Options, ",")
	for _, o := range mc.Opts {
		if !contains(opts, o) {
			c.errorf("%s: options %s, want %s", mc.Path, m.Options, o)
		}
	}
	for _, o := range mc.NoOpts {
		if contains(opts, o) {
			c.errorf("%s: options %s, want no %s", mc.Path, m.Options, o)
		}
	}
	switch {
	case mc.Optional == "private" && m.Optional != "":
		c.errorf("%s: propagation %q, want private", mc.Path, m.Optional)
	case mc.Optional != "" && mc.Optional != "private" && !strings.Contains(m.Optional, mc.Optional+":"):
		c.errorf("%s: propagation %q, want %s", mc.Path, m.Optional, mc.Optional)
	}
	if contains(mc.Opts, "ro") {
		if err := os.WriteFile(mc.Path+"/ro-probe", nil, 0o644); !errors.Is(err, unix.EROFS) {
			c.errorf("write in %s: %v, want EROFS", mc.Path, err)
		}
	}
}

// childSetupOnly runs Setup and checks that every new mount is inside the
// rootfs; a Setup error is printed (for the parent) but is no failure.
func childSetupOnly(a childArgs) error {
	root, err := filepath.EvalSymlinks(a.Config.Rootfs)
	if err != nil {
		return err
	}
	if a.FakeNull != "" {
		if err := unix.Mount(a.FakeNull, "/dev/null", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s over /dev/null: %w", a.FakeNull, err)
		}
	}
	before, err := mountIDs()
	if err != nil {
		return err
	}
	setupErr := Setup(a.Config)
	bad, err := newMountsOutside(before, root)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return fmt.Errorf("mounted outside the rootfs %s: %v (Setup: %v)", root, bad, setupErr)
	}
	if setupErr != nil {
		fmt.Printf("SETUP-ERROR: %v\n", setupErr)
	}
	return nil
}

// childRace runs Setup again and again while the parent swaps directories
// and symlinks in the rootfs, checking after each run that no mount landed
// outside the rootfs, and detaching the tree before the next run.
func childRace(a childArgs) error {
	root, err := filepath.EvalSymlinks(a.Config.Rootfs)
	if err != nil {
		return err
	}
	runs, failed := 0, 0
	var sample []string
	for runs < a.MaxRuns && time.Now().Before(a.Deadline) {
		before, err := mountIDs()
		if err != nil {
			return err
		}
		setupErr := Setup(a.Config)
		runs++
		if setupErr != nil {
			failed++
			if len(sample) < 3 {
				sample = append(sample, setupErr.Error())
			}
		}
		bad, err := newMountsOutside(before, root)
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			return fmt.Errorf("run %d: mounted outside the rootfs %s: %v (Setup: %v)", runs, root, bad, setupErr)
		}
		for unix.Unmount(root, unix.MNT_DETACH) == nil {
		}
	}
	fmt.Printf("runs=%d failed=%d %q\n", runs, failed, sample)
	return nil
}

// childNested prepares, in its own user namespace, what only a more
// privileged namespace can give a container: mounts whose flags are locked
// (a nosuid,nodev,noexec tmpfs as a volume source) and, with a.CoverProc, a
// /proc with a covered file (so that a fresh procfs is refused). It then
// runs a.Nested one user namespace deeper.
func childNested(a childArgs) error {
	if err := unix.Mount("tmpfs", a.NestedSrc, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=1m,mode=755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", a.NestedSrc, err)
	}
	if err := os.WriteFile(a.NestedSrc+"/hello.txt", []byte("hello\n"), 0o644); err != nil {
		return err
	}
	if err := freshProc(a.CoverProc); err != nil {
		return err
	}
	name := a.Nested
	a.Nested, a.CoverProc = "", false
	out, code, err := spawn(name, a, a.NewNet)
	fmt.Print(out)
	if err != nil {
		return err
	}
	if code == exitSkip {
		return skipError{"nested: " + strings.TrimSpace(out)}
	}
	if code != 0 {
		return fmt.Errorf("nested child %s exited %d", name, code)
	}
	return nil
}

// freshProc mounts the procfs of this PID namespace, which os/exec needs to
// write the nested child's id maps. With cover, a file is covered in every
// procfs of this namespace, the host's and the fresh one: one user namespace
// deeper these covers are locked, no procfs there is fully visible, and the
// kernel refuses a new one (mount_too_revealing), as inside a container that
// masks /proc paths.
func freshProc(cover bool) error {
	if cover {
		if err := unix.Mount("/dev/null", "/proc/version", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("cover /proc/version: %w", err)
		}
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if cover {
		if err := unix.Mount("/dev/null", "/proc/version", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("cover /proc/version: %w", err)
		}
	}
	return nil
}

// childProcRefused runs Setup under a /proc that has a covered file: it must
// fail on /proc, saying why, and mount no procfs at all (the host's /proc
// bound in its place would show every process of the outer system).
func childProcRefused(a childArgs) error {
	before, err := mountIDs()
	if err != nil {
		return err
	}
	setupErr := Setup(a.Config)
	if setupErr == nil || !strings.Contains(setupErr.Error(), "mount proc on /proc: operation not permitted") ||
		!strings.Contains(setupErr.Error(), "covered") {
		return fmt.Errorf("Setup under a covered /proc = %v, want the refused procfs and its cause", setupErr)
	}
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if !before[m.ID] && m.FSType == "proc" {
			return fmt.Errorf("a procfs was mounted on %s (Setup: %v)", m.Mountpoint, setupErr)
		}
	}
	fmt.Println("ok")
	return nil
}
