package rootfs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// device is a host character device bind-mounted into the container's /dev.
type device struct {
	name         string
	major, minor uint32
}

// devices are bound from the host's /dev; in a user namespace mknod is not
// allowed, and each source is checked to be the right character device first.
var devices = []device{
	{"null", 1, 3},
	{"zero", 1, 5},
	{"full", 1, 7},
	{"random", 1, 8},
	{"urandom", 1, 9},
	{"tty", 5, 0},
}

// devSymlinks are created in the container's /dev (name -> target).
var devSymlinks = [][2]string{
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
	{"core", "/proc/kcore"},
	{"ptmx", "pts/ptmx"},
}

// ttyGID is the conventional "tty" group that owns the slave ptys.
const ttyGID = 5

// devMounts is the plan for /dev and the file systems below it. gidMapped
// tells whether ttyGID exists in the user namespace: devpts refuses a gid=
// that is not mapped (the single-id fallback maps only 0).
func devMounts(ttyGIDMapped bool) []fsMount {
	pts := "newinstance,ptmxmode=0666,mode=0620"
	if ttyGIDMapped {
		pts += ",gid=" + strconv.Itoa(ttyGID)
	}
	return []fsMount{
		{dest: "/dev", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_STRICTATIME, data: "mode=755,size=65536k", magic: tmpfsMagic},
		{dest: "/dev/pts", fstype: "devpts", flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: pts, magic: devptsMagic},
		{dest: "/dev/shm", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, data: "mode=1777,size=65536k", magic: tmpfsMagic},
		{dest: "/dev/mqueue", fstype: "mqueue", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, magic: mqueueMagic},
	}
}

// idMapped reports whether id is inside one of the ranges of a
// /proc/self/{uid,gid}_map ("inside outside count" per line).
func idMapped(r io.Reader, id uint32) (bool, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		inside, err1 := strconv.ParseUint(f[0], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil {
			return false, fmt.Errorf("parse id map line %q", sc.Text())
		}
		if uint64(id) >= inside && uint64(id) < inside+count {
			return true, nil
		}
	}
	return false, sc.Err()
}

func ttyGIDMapped() (bool, error) {
	f, err := os.Open("/proc/self/gid_map")
	if err != nil {
		return false, fmt.Errorf("read gid map: %w", err)
	}
	defer f.Close()
	return idMapped(f, ttyGID)
}

// openHostDevice opens /dev/NAME of the host as an O_PATH handle and checks
// that it is the character device it should be (CVE-2025-31133: a /dev/null
// that is not the null device must never be used to mask anything).
func openHostDevice(d device) (*os.File, error) {
	p := "/dev/" + d.name
	f, err := os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := isDevice(f, d); err != nil {
		f.Close()
		return nil, fmt.Errorf("host %s: %w", p, err)
	}
	return f, nil
}

// isDevice checks with fstat that the handle is the character device d.
func isDevice(f *os.File, d device) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != d.major || unix.Minor(st.Rdev) != d.minor {
		return fmt.Errorf("not the character device %d:%d (mode %#o, rdev %d:%d)",
			d.major, d.minor, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return nil
}

// openAt opens name below dir without following a symlink in its last
// component.
func openAt(dir *os.File, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// setupDev mounts a tmpfs on /dev and fills it. Everything below /dev is
// created through the handle on the new tmpfs, which only this process can
// have changed, so plain *at calls with O_NOFOLLOW are enough there.
func (r *root) setupDev(null *os.File) error {
	mapped, err := ttyGIDMapped()
	if err != nil {
		return err
	}
	plan := devMounts(mapped)
	under, err := r.openOrCreate("/dev", true)
	if err != nil {
		return fmt.Errorf("mount point %w", err)
	}
	defer under.Close()
	if err := mountOn(under, plan[0]); err != nil {
		return err
	}
	dev, err := r.reopenMounted(under, "/dev", isFS(plan[0].magic))
	if err != nil {
		return err
	}
	defer dev.Close()

	for _, d := range devices {
		if err := bindDevice(dev, d, null); err != nil {
			return err
		}
	}
	for _, l := range devSymlinks {
		if err := unix.Symlinkat(l[1], int(dev.Fd()), l[0]); err != nil {
			return fmt.Errorf("symlink /dev/%s -> %s: %w", l[0], l[1], err)
		}
	}
	for _, m := range plan[1:] {
		name := strings.TrimPrefix(m.dest, "/dev/")
		if err := unix.Mkdirat(int(dev.Fd()), name, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dest, err)
		}
		h, err := openAt(dev, name, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", m.dest, err)
		}
		err = mountOn(h, m)
		h.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// bindDevice creates /dev/NAME as an empty file in the container's /dev and
// binds the host's device on it, then checks what the name now opens.
func bindDevice(dev *os.File, d device, null *os.File) error {
	dest := "/dev/" + d.name
	src := null
	if d.name != "null" {
		var err error
		if src, err = openHostDevice(d); err != nil {
			return err
		}
		defer src.Close()
	}
	target, err := openAt(dev, d.name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY, 0o666)
	if err != nil {
		return fmt.Errorf("create %s: %w", dest, err)
	}
	err = bindOn(src, target, false, dest, dest)
	target.Close()
	if err != nil {
		return err
	}
	got, err := openAt(dev, d.name, unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dest, err)
	}
	defer got.Close()
	if err := isDevice(got, d); err != nil {
		return fmt.Errorf("verify %s: %w", dest, err)
	}
	return nil
}
