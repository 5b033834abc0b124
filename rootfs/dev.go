package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// devptsData drops from a devpts mount's data a gid= or uid= that the user
// namespace does not map: devpts refuses one (the single-id fallback maps
// only 0, so DefaultMounts' gid=5 goes), as `runc spec --rootless` drops
// them all. mapped says whether an id is in /proc/self/{uid,gid}_map.
func devptsData(data string, mapped func(idMap string, id uint32) (bool, error)) (string, error) {
	var keep []string
	for _, o := range strings.Split(data, ",") {
		k, v, _ := strings.Cut(o, "=")
		if k == "gid" || k == "uid" {
			id, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return "", fmt.Errorf("option %q: not an id", o)
			}
			ok, err := mapped("/proc/self/"+k+"_map", uint32(id))
			if err != nil {
				return "", err
			}
			if !ok {
				continue
			}
		}
		if o != "" {
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ","), nil
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

// idMappedIn reports whether id is mapped in the id map file idMap.
func idMappedIn(idMap string, id uint32) (bool, error) {
	f, err := os.Open(idMap)
	if err != nil {
		return false, fmt.Errorf("read id map: %w", err)
	}
	defer f.Close()
	return idMapped(f, id)
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
	return isNode(f, unix.S_IFCHR, d.major, d.minor)
}

// isNode checks with fstat that the handle is the device node of type ifmt
// (S_IFCHR, S_IFBLK) and numbers major:minor.
func isNode(f *os.File, ifmt, major, minor uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != ifmt || unix.Major(st.Rdev) != major || unix.Minor(st.Rdev) != minor {
		return fmt.Errorf("not the %s device %d:%d (mode %#o, rdev %d:%d)",
			nodeKinds[ifmt], major, minor, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return nil
}

// nodeKinds name the device node types in errors.
var nodeKinds = map[uint32]string{unix.S_IFCHR: "character", unix.S_IFBLK: "block"}

// openAt opens name below dir without following a symlink in its last
// component.
func openAt(dir *os.File, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// setupDev mounts the list's tmpfs on /dev and fills it: the default
// devices, the symlinks, then the /etc files, which need a fresh /dev for
// their own tmpfs (see bindFiles). Binding them here, right after /dev and
// before the mounts that follow it in the list, keeps rabbitc run's order:
// a volume on /etc/hosts covers the generated file, not the other way
// round. Everything below /dev is created through the handle on the new
// tmpfs, which only this process can have changed, so plain *at calls with
// O_NOFOLLOW are enough there.
func (s *setup) setupDev(m specs.Mount, o mountOptions) (*os.File, error) {
	dev, err := s.mountFresh(m, "/dev", o)
	if err != nil {
		return nil, err
	}
	if err := s.fillDev(dev); err != nil {
		dev.Close()
		return nil, err
	}
	s.devFilled = true
	if err := s.bindFiles(s.cfg.EtcFiles); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

// fillDevOnDisk gives a /dev that is no tmpfs of the list (the rootfs's
// own, or a bind) the default devices and symlinks, as runc does: the
// devices' mount points and the missing symlinks are created in the rootfs.
func (s *setup) fillDevOnDisk() error {
	dev, err := s.openOrCreate("/dev", true)
	if err != nil {
		return fmt.Errorf("mount point %w", err)
	}
	defer dev.Close()
	return s.fillDev(dev)
}

// fillDev binds the default devices into the directory dev (/dev) and
// makes the symlinks; an existing symlink of that name is left as it is.
func (s *setup) fillDev(dev *os.File) error {
	for _, d := range devices {
		if err := bindDevice(dev, d, s.null); err != nil {
			return err
		}
	}
	for _, l := range devSymlinks {
		err := unix.Symlinkat(l[1], int(dev.Fd()), l[0])
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s -> %s: %w", l[0], l[1], err)
		}
	}
	return nil
}

// bindDevice binds the host's device on /dev/NAME in dev (an empty file,
// created when missing; an existing file or device node is bound over, a
// symlink or directory refused), then checks what the name now opens.
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
	target, err := openAt(dev, d.name, unix.O_PATH, 0)
	if errors.Is(err, unix.ENOENT) {
		target, err = openAt(dev, d.name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY, 0o666)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", dest, err)
	}
	err = checkNodeMountPoint(target, dest)
	if err == nil {
		err = bindOn(src, target, false, dest, dest)
	}
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

// checkNodeMountPoint accepts a regular file or a device node as the mount
// point of a device; the kernel would follow a symlink given as a path.
func checkNodeMountPoint(h *os.File, dest string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", dest, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFCHR, unix.S_IFBLK:
		return nil
	}
	return fmt.Errorf("%s: not a file or device node (mode %#o) to bind a device on", dest, st.Mode)
}

// specDeviceTypes are linux.devices' types rabbitc can bind ("u" is an
// unbuffered character device, a "c" to Linux); a fifo ("p") is no device.
var specDeviceTypes = map[string]uint32{"c": unix.S_IFCHR, "u": unix.S_IFCHR, "b": unix.S_IFBLK}

// bindSpecDevice binds the host's node at d.Path on the same path in the
// container, resolved inside the rootfs, once fstat shows it is the device
// d says: mknod is not allowed in a user namespace. d's file mode, uid and
// gid are not applied: the bind is the host's node, which they would change.
// A default device given again (podman lists them) is already there.
func (s *setup) bindSpecDevice(d specs.LinuxDevice) error {
	p := path.Clean(d.Path)
	ifmt, ok := specDeviceTypes[d.Type]
	switch {
	case !strings.HasPrefix(p, "/dev/") || !path.IsAbs(d.Path):
		return fmt.Errorf("device %q: not a path under /dev", d.Path)
	case !ok:
		return fmt.Errorf("device %s: type %q is not c, u or b", p, d.Type)
	case d.Major < 0 || d.Major > math.MaxUint32 || d.Minor < 0 || d.Minor > math.MaxUint32:
		return fmt.Errorf("device %s: %d:%d out of range", p, d.Major, d.Minor)
	}
	major, minor := uint32(d.Major), uint32(d.Minor)
	for _, def := range devices {
		if p == "/dev/"+def.name && ifmt == unix.S_IFCHR && major == def.major && minor == def.minor {
			return nil
		}
	}
	src, err := os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("device %s: the host has none: %w (rabbitc binds the host's node, mknod is not allowed in a user namespace)", p, bareErr(err))
	}
	defer src.Close()
	if err := isNode(src, ifmt, major, minor); err != nil {
		return fmt.Errorf("device %s: the host's %s is %w (fix the device's type and numbers)", p, p, err)
	}
	h, err := s.openOrCreate(p, false)
	if err != nil {
		return fmt.Errorf("device mount point %w", err)
	}
	defer h.Close()
	if err := bindOn(src, h, false, "the host's "+p, p); err != nil {
		return err
	}
	top, err := s.reopenMounted(h, p, sameInode(src))
	if err != nil {
		return err
	}
	return top.Close()
}
