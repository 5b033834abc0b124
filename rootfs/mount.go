package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Filesystem magics checked after mounting (statfs f_type).
const (
	procMagic   = unix.PROC_SUPER_MAGIC
	sysfsMagic  = unix.SYSFS_MAGIC
	tmpfsMagic  = unix.TMPFS_MAGIC
	devptsMagic = unix.DEVPTS_SUPER_MAGIC
	mqueueMagic = 0x19800202 // MQUEUE_MAGIC, not in x/sys
	cgroupMagic = unix.CGROUP2_SUPER_MAGIC
)

// statvfs f_flag bits (linux/statfs.h ST_*), which x/sys does not define.
const (
	stRdonly      = 0x1
	stNosuid      = 0x2
	stNodev       = 0x4
	stNoexec      = 0x8
	stNoatime     = 0x400
	stNodiratime  = 0x800
	stRelatime    = 0x1000
	stNosymfollow = 0x2000
)

// keptFlags maps the per-mount flags that statfs reports to the mount(2)
// flags a bind remount must repeat. In a user namespace the kernel locks
// nosuid, nodev, noexec, the atime mode and ro of mounts inherited from a more
// privileged namespace, and a remount that would clear one fails with EPERM;
// a remount that repeats them is allowed.
func keptFlags(statfsFlags int64) uintptr {
	pairs := []struct {
		st int64
		ms uintptr
	}{
		{stRdonly, unix.MS_RDONLY},
		{stNosuid, unix.MS_NOSUID},
		{stNodev, unix.MS_NODEV},
		{stNoexec, unix.MS_NOEXEC},
		{stNoatime, unix.MS_NOATIME},
		{stNodiratime, unix.MS_NODIRATIME},
		{stRelatime, unix.MS_RELATIME},
		{stNosymfollow, unix.MS_NOSYMFOLLOW},
	}
	var ms uintptr
	for _, p := range pairs {
		if statfsFlags&p.st != 0 {
			ms |= p.ms
		}
	}
	return ms
}

// flagNames renders mount(2) flags the way mount(8) prints options; used in
// the mount plan and its tests.
func flagNames(flags uintptr) string {
	names := []struct {
		f    uintptr
		name string
	}{
		{unix.MS_RDONLY, "ro"},
		{unix.MS_NOSUID, "nosuid"},
		{unix.MS_NODEV, "nodev"},
		{unix.MS_NOEXEC, "noexec"},
		{unix.MS_NOATIME, "noatime"},
		{unix.MS_NODIRATIME, "nodiratime"},
		{unix.MS_RELATIME, "relatime"},
		{unix.MS_STRICTATIME, "strictatime"},
		{unix.MS_NOSYMFOLLOW, "nosymfollow"},
		{unix.MS_REMOUNT, "remount"},
		{unix.MS_BIND, "bind"},
		{unix.MS_REC, "rec"},
	}
	var out []string
	for _, n := range names {
		if flags&n.f != 0 {
			out = append(out, n.name)
			flags &^= n.f
		}
	}
	if flags != 0 {
		out = append(out, fmt.Sprintf("%#x", flags))
	}
	return strings.Join(out, ",")
}

// fsMount is a fresh filesystem instance in the mount plan.
type fsMount struct {
	dest   string // inside the container
	source string // "" is fstype
	fstype string
	flags  uintptr
	data   string
	magic  int64 // statfs f_type after mounting; 0 for a type rabbitc does not know
}

// check is what the new mount must be once looked up again: of its file
// system type, when rabbitc knows the type's magic.
func (m fsMount) check() func(*os.File) error {
	if m.magic == 0 {
		return nil
	}
	return isFS(m.magic)
}

// options renders the flags and data like mount(8) would.
func (m fsMount) options() string {
	o := flagNames(m.flags)
	if m.data != "" {
		if o != "" {
			o += ","
		}
		o += m.data
	}
	return o
}

// mountOn mounts a fresh instance of m on the handle h.
func mountOn(h *os.File, m fsMount) error {
	source := m.source
	if source == "" {
		source = m.fstype
	}
	if err := unix.Mount(source, fdPath(h), m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dest, err)
	}
	return nil
}

// bindOn bind-mounts the handle src (recursively when rec is set) on the
// handle h; srcName and dest only name them in the error.
func bindOn(src, h *os.File, rec bool, srcName, dest string) error {
	flags := uintptr(unix.MS_BIND)
	if rec {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(fdPath(src), fdPath(h), "", flags, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", srcName, dest, err)
	}
	return nil
}

// mountID returns the mount id of a handle and whether it is the root of its
// mount; known is false on kernels without STATX_MNT_ID (< 5.8).
func mountID(h *os.File) (id uint64, isRoot, known bool) {
	var stx unix.Statx_t
	err := unix.Statx(int(h.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx)
	if err != nil || stx.Mask&unix.STATX_MNT_ID == 0 || stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return 0, false, false
	}
	return stx.Mnt_id, stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, true
}

// reopenMounted re-resolves unsafePath after something was mounted on the
// handle under (which still points below the new mount) and returns a handle
// on the new mount's root, checked by verifyNewMount.
func (r *root) reopenMounted(under *os.File, unsafePath string, want func(*os.File) error) (*os.File, error) {
	h, err := r.open(unsafePath)
	if err != nil {
		return nil, fmt.Errorf("reopen %w", err)
	}
	if err := verifyNewMount(under, h, want); err != nil {
		h.Close()
		return nil, fmt.Errorf("reopen %s: %w (the rootfs changed during setup)", unsafePath, err)
	}
	return h, nil
}

// verifyNewMount checks that h is the root of a mount other than under's, at
// the same place, and runs want on it (file system type, inode): a rootfs
// changed between the mount and the lookup is refused instead of followed.
func verifyNewMount(under, h *os.File, want func(*os.File) error) error {
	p0, err0 := realPath(under)
	p1, err1 := realPath(h)
	if err0 != nil || err1 != nil || p0 != p1 {
		return fmt.Errorf("found at %s, mounted on %s", p1, p0)
	}
	id0, _, known0 := mountID(under)
	id1, isRoot, known1 := mountID(h)
	if known0 && known1 && (id0 == id1 || !isRoot) {
		return errors.New("not the new mount")
	}
	if want != nil {
		return want(h)
	}
	return nil
}

// isFS returns a check that a handle is on a file system of type magic.
func isFS(magic int64) func(*os.File) error {
	return func(h *os.File) error {
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(h.Fd()), &st); err != nil {
			return err
		}
		if int64(st.Type) != magic {
			return fmt.Errorf("file system type %#x, want %#x", st.Type, magic)
		}
		return nil
	}
}

// sameInode returns a check that a handle is the same inode as src.
func sameInode(src *os.File) func(*os.File) error {
	return func(h *os.File) error {
		var a, b unix.Stat_t
		if err := unix.Fstat(int(src.Fd()), &a); err != nil {
			return err
		}
		if err := unix.Fstat(int(h.Fd()), &b); err != nil {
			return err
		}
		if a.Dev != b.Dev || a.Ino != b.Ino {
			return errors.New("not the bind source")
		}
		return nil
	}
}

// bindRemountFlags are the flags a bind remount can set; the options'
// others (sync, dirsync...) belong to the file system, not to a bind.
const bindRemountFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
	atimeFlags | unix.MS_NODIRATIME | unix.MS_NOSYMFOLLOW

// atimeFlags are the atime modes, of which a mount has one.
const atimeFlags = unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

// remountReadOnly makes the mount whose root is h read-only (see remountBind).
func remountReadOnly(h *os.File, dest string, recursive bool) error {
	return remountBind(h, dest, unix.MS_RDONLY, recursive)
}

// remountBind remounts the bind whose root is h with the bind flags of
// flags (ro, nosuid...), repeating those it already has (see keptFlags);
// nothing to set, nothing done. With recursive and ro, the mounts below it
// are made read-only too where the kernel has mount_setattr (5.12+); on
// older kernels only the top mount is.
func remountBind(h *os.File, dest string, flags uintptr, recursive bool) error {
	want := flags & bindRemountFlags
	if want == 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h.Fd()), &st); err != nil {
		return fmt.Errorf("remount %s: statfs: %w", dest, err)
	}
	kept := keptFlags(st.Flags)
	if want&atimeFlags != 0 {
		kept &^= atimeFlags // the options choose the atime mode
	}
	all := unix.MS_REMOUNT | unix.MS_BIND | want | kept
	err := unix.Mount("", fdPath(h), "", all, "")
	if errors.Is(err, unix.EPERM) && want&atimeFlags != 0 {
		// The source's atime mode is locked (a mount from a more
		// privileged namespace): keep it, as runc does, rather than fail
		// over an atime option.
		all = unix.MS_REMOUNT | unix.MS_BIND | want&^atimeFlags | keptFlags(st.Flags)
		err = unix.Mount("", fdPath(h), "", all, "")
	}
	if err != nil {
		return fmt.Errorf("remount %s %s: %w", dest, flagNames(all), err)
	}
	if !recursive || want&unix.MS_RDONLY == 0 {
		return nil
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	err = unix.MountSetattr(int(h.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr)
	if err != nil && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("remount %s read-only recursively: %w", dest, err)
	}
	return nil
}
