package unpack

import (
	"archive/tar"
	"fmt"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// paxXattr prefixes the PAX records that carry extended attributes.
const paxXattr = "SCHILY.xattr."

// keepXattr decides whether an extended attribute from a layer is set, and
// if not, why.
func keepXattr(name string) (keep bool, why string) {
	switch {
	case strings.HasPrefix(name, "user.overlay."):
		return false, "overlayfs metadata must not come from a layer"
	case strings.HasPrefix(name, "user."), name == "security.capability",
		name == "system.posix_acl_access", name == "system.posix_acl_default":
		return true, ""
	case strings.HasPrefix(name, "trusted."):
		return false, "trusted.* needs CAP_SYS_ADMIN outside the user namespace"
	case strings.HasPrefix(name, "security."):
		return false, "not settable in a user namespace"
	}
	return false, "unknown xattr namespace"
}

// layerXattrs returns the entry's xattrs in a stable order.
func layerXattrs(hdr *tar.Header) []string {
	var names []string
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattr); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// xattrs sets the entry's kept xattrs on fd (a file or a directory). A file
// system without xattrs gets a note, not an error, as with umoci.
func (u *unpacker) xattrs(fd int, hdr *tar.Header) error {
	for _, name := range layerXattrs(hdr) {
		if keep, why := keepXattr(name); !keep {
			u.notef("%s: xattr %s skipped: %s", hdr.Name, name, why)
			continue
		}
		err := unix.Fsetxattr(fd, name, []byte(hdr.PAXRecords[paxXattr+name]), 0)
		if err == unix.ENOTSUP {
			u.notef("%s: xattr %s skipped: %v", hdr.Name, name, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

// noXattrs notes the xattrs of an entry that cannot hold them (user.* is
// only allowed on files and directories).
func (u *unpacker) noXattrs(hdr *tar.Header, what string) {
	for _, name := range layerXattrs(hdr) {
		u.notef("%s: xattr %s skipped on %s", hdr.Name, name, what)
	}
}

// times returns the entry's access and modification times for utimensat; an
// archive without an access time gets the modification time.
func times(hdr *tar.Header) []unix.Timespec {
	ts := func(t time.Time) unix.Timespec { return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())} }
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return []unix.Timespec{ts(atime), ts(hdr.ModTime)}
}

// setTimes sets the times of base in pfd, of the symlink itself if it is one.
func setTimes(pfd int, base string, hdr *tar.Header) error {
	if err := unix.UtimesNanoAt(pfd, base, times(hdr), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// futimens is utimensat(fd, NULL, ts, 0), which x/sys/unix does not wrap.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// pendingDir is a directory whose mode and times wait for the end of the
// layer. dev and ino tell it from whatever a later entry put at its name.
type pendingDir struct {
	rel      string
	dev, ino uint64
	mode     uint32
	times    []unix.Timespec
}

// dirList holds the pending directories in the order they first appeared;
// a later entry for the same directory updates its place.
type dirList struct {
	list  []pendingDir
	index map[string]int
}

func newDirList() dirList { return dirList{index: map[string]int{}} }

func (d *dirList) add(rel string, st unix.Stat_t, hdr *tar.Header) {
	p := pendingDir{rel: rel, dev: uint64(st.Dev), ino: uint64(st.Ino), mode: uint32(hdr.Mode & 0o7777), times: times(hdr)}
	if i, ok := d.index[rel]; ok {
		d.list[i] = p
		return
	}
	d.index[rel] = len(d.list)
	d.list = append(d.list, p)
}

// apply sets the pending modes and times, deepest-first in practice (the
// reverse of the archive's order), so a read-only parent is set after its
// children.
func (d *dirList) apply(r *root) error {
	for i := len(d.list) - 1; i >= 0; i-- {
		if err := d.list[i].apply(r); err != nil {
			return fmt.Errorf("tar entry %q: %w", d.list[i].rel, err)
		}
	}
	return nil
}

// apply finds the directory again, in-root and without following its last
// component, and skips it if a later entry replaced it.
func (p *pendingDir) apply(r *root) error {
	fd, err := p.open(r)
	if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if uint64(st.Dev) != p.dev || uint64(st.Ino) != p.ino {
		return nil
	}
	if err := unix.Fchmod(fd, p.mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := futimens(fd, p.times); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (p *pendingDir) open(r *root) (int, error) {
	if p.rel == "" {
		return r.open("", unix.O_RDONLY)
	}
	dir, base := split(p.rel)
	pfd, err := r.open(dir, unix.O_PATH)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	return unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}
