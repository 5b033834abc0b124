package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// The overlay metadata of the layers (package unpack writes them, kernel
// overlayfs reads them with userxattr).
const (
	opaqueXattr   = "user.overlay.opaque"
	overlayXattrs = "user.overlay."
)

// Copy makes dst, an empty directory, the root the layers (top first, as
// an overlay's lower directories) make: applied bottom up, as their tars
// were, each entry of a layer replaces what the layers below put at its
// name, except a directory over a directory, whose contents merge; a
// whiteout (a character device 0/0) removes the name, and an opaque
// directory (user.overlay.opaque=y) first loses what the layers below put
// in it. Owners, modes (setuid, setgid, sticky), xattrs (but the overlay's
// own user.overlay.*), times, and hard links within a layer are kept; dst
// itself stays as it is, as an overlay's root is its upper directory.
//
// It runs as root of a user namespace that maps every owner of the layers'
// files (the one they were unpacked in). Every name is opened beneath a
// directory handle without following symlinks, in the layers and in dst.
func Copy(dst string, lower []string) error {
	root, err := openDir(unix.AT_FDCWD, dst)
	if err != nil {
		return fmt.Errorf("copy the image to %s: %w", dst, err)
	}
	defer root.Close()
	c := &copier{root: root, dirTimes: map[string][2]unix.Timespec{}}
	for i := len(lower) - 1; i >= 0; i-- {
		if err := c.layer(lower[i]); err != nil {
			return fmt.Errorf("copy the image's layer %s to %s: %w", lower[i], dst, err)
		}
	}
	// Last, when nothing more is written into them: the directories' times,
	// as the topmost layer that has each gives them.
	if err := c.setDirTimes(root, "."); err != nil {
		return fmt.Errorf("copy the image to %s: %w", dst, err)
	}
	return nil
}

// copier is one Copy.
type copier struct {
	root *os.File
	// links maps a file of the current layer with several links (device,
	// inode) to the path of its first copy.
	links map[[2]uint64]string
	// dirTimes are the directories' atime and mtime, by path in dst.
	dirTimes map[string][2]unix.Timespec
}

// layer applies one layer on dst.
func (c *copier) layer(dir string) error {
	src, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return err
	}
	defer src.Close()
	// The root keeps dst's owner and mode, as an overlay's root has its
	// upper directory's: a layer's own directory says nothing.
	c.links = map[[2]uint64]string{}
	return c.dir(src, c.root, ".")
}

// dir applies the entries of the layer's directory src on dst's directory
// d, at rel.
func (c *copier) dir(src, d *os.File, rel string) error {
	ents, err := src.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := c.entry(src, d, e.Name(), path.Join(rel, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// entry applies one name of the layer.
func (c *copier) entry(src, d *os.File, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(src.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	var old unix.Stat_t
	exists := unix.Fstatat(int(d.Fd()), name, &old, unix.AT_SYMLINK_NOFOLLOW) == nil
	mode := st.Mode & unix.S_IFMT
	if mode == unix.S_IFDIR {
		return c.subdir(src, d, name, rel, &st, exists && old.Mode&unix.S_IFMT == unix.S_IFDIR, exists)
	}
	if exists {
		if err := removeAt(d, name); err != nil {
			return err
		}
	}
	if mode == unix.S_IFCHR && st.Rdev == 0 {
		return nil // a whiteout: the name is gone
	}
	if st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := c.links[key]; ok {
			return c.link(first, d, name)
		}
		c.links[key] = rel
	}
	switch mode {
	case unix.S_IFREG:
		return c.file(src, d, name, &st)
	case unix.S_IFLNK:
		target, err := readlinkAt(src, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, int(d.Fd()), name); err != nil {
			return err
		}
	case unix.S_IFIFO:
		if err := unix.Mkfifoat(int(d.Fd()), name, 0o600); err != nil {
			return err
		}
	case unix.S_IFSOCK:
		return nil // a socket is nothing without its server
	default:
		return fmt.Errorf("%s: a device node (%#o): layers have none but whiteouts", rel, mode)
	}
	if err := unix.Fchownat(int(d.Fd()), name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", rel, err)
	}
	if mode != unix.S_IFLNK {
		if err := unix.Fchmodat(int(d.Fd()), name, st.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", rel, err)
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(int(d.Fd()), name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// subdir applies a directory of the layer: merged into one that is there,
// emptied first when the layer's is opaque; made anew otherwise.
func (c *copier) subdir(src, d *os.File, name, rel string, st *unix.Stat_t, isDir, exists bool) error {
	s, err := openDir(int(src.Fd()), name)
	if err != nil {
		return err
	}
	defer s.Close()
	if exists && !isDir {
		if err := removeAt(d, name); err != nil {
			return err
		}
	}
	if !isDir {
		if err := unix.Mkdirat(int(d.Fd()), name, 0o700); err != nil {
			return err
		}
	}
	sub, err := openDir(int(d.Fd()), name)
	if err != nil {
		return err
	}
	defer sub.Close()
	if isDir && isOpaque(s) {
		if err := removeContents(sub); err != nil {
			return err
		}
	}
	if err := c.meta(s, sub, rel, st); err != nil {
		return err
	}
	c.dirTimes[rel] = [2]unix.Timespec{st.Atim, st.Mtim}
	return c.dir(s, sub, rel)
}

// file copies a regular file's data (copy_file_range: a reflink where the
// file system has them) and metadata.
func (c *copier) file(src, d *os.File, name string, st *unix.Stat_t) error {
	in, err := openAt(src, name, unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := openAt(d, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	if err := c.meta(in, out, name, st); err != nil {
		return err
	}
	return unix.UtimesNanoAt(int(d.Fd()), name, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// meta gives the open file or directory out the owner, xattrs and mode of
// in (st): chown first, which clears setuid and file capabilities.
func (c *copier) meta(in, out *os.File, rel string, st *unix.Stat_t) error {
	if err := unix.Fchown(int(out.Fd()), int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", rel, err)
	}
	if err := unix.Fchmod(int(out.Fd()), st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", rel, err)
	}
	return copyXattrs(in, out, rel)
}

// link makes name in d a hard link to the copy at first (a path in dst,
// made in this layer), opened beneath dst without symlinks.
func (c *copier) link(first string, d *os.File, name string) error {
	parent, err := unix.Openat2(int(c.root.Fd()), path.Dir(first), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("link %s: %w", first, err)
	}
	defer unix.Close(parent)
	if err := unix.Linkat(parent, path.Base(first), int(d.Fd()), name, 0); err != nil {
		return fmt.Errorf("link %s: %w", first, err)
	}
	return nil
}

// setDirTimes gives the directories under d (at rel), deepest first, the
// times recorded for them.
func (c *copier) setDirTimes(d *os.File, rel string) error {
	ents, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub, err := openDir(int(d.Fd()), e.Name())
		if err != nil {
			return err
		}
		err = c.setDirTimes(sub, path.Join(rel, e.Name()))
		sub.Close()
		if err != nil {
			return err
		}
	}
	if t, ok := c.dirTimes[rel]; ok {
		return unix.UtimesNanoAt(int(d.Fd()), ".", t[:], 0)
	}
	return nil
}

// isOpaque tells whether a layer's directory is opaque.
func isOpaque(dir *os.File) bool {
	var b [1]byte
	n, err := unix.Fgetxattr(int(dir.Fd()), opaqueXattr, b[:])
	return err == nil && n == 1 && b[0] == 'y'
}

// copyXattrs copies the xattrs of in to out, but the overlay's own; an
// xattr the file system or the namespace refuses (trusted.*, security.*
// other than capabilities) is left out, as unpacking left it out.
func copyXattrs(in, out *os.File, rel string) error {
	names, err := listXattrs(in)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list the xattrs of %s: %w", rel, err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, overlayXattrs) {
			continue
		}
		v, err := getXattr(in, n)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read xattr %s of %s: %w", n, rel, err)
		}
		if err := unix.Fsetxattr(int(out.Fd()), n, v, 0); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
				continue
			}
			return fmt.Errorf("set xattr %s of %s: %w", n, rel, err)
		}
	}
	return nil
}

func listXattrs(f *os.File) ([]string, error) {
	size, err := unix.Flistxattr(int(f.Fd()), nil)
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Flistxattr(int(f.Fd()), buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names, nil
}

func getXattr(f *os.File, name string) ([]byte, error) {
	size, err := unix.Fgetxattr(int(f.Fd()), name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Fgetxattr(int(f.Fd()), name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// removeAt removes name in d, a directory with everything in it, without
// following symlinks.
func removeAt(d *os.File, name string) error {
	err := unix.Unlinkat(int(d.Fd()), name, 0)
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	sub, err := openDir(int(d.Fd()), name)
	if err != nil {
		return err
	}
	err = removeContents(sub)
	sub.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(int(d.Fd()), name, unix.AT_REMOVEDIR)
}

// removeContents empties the directory d.
func removeContents(d *os.File) error {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := removeAt(d, n); err != nil {
			return err
		}
	}
	return nil
}

// openDir opens the directory name beneath dirfd, never through a symlink
// at name.
func openDir(dirfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func openAt(d *os.File, name string, flags int, mode uint32) (*os.File, error) {
	fd, err := unix.Openat(int(d.Fd()), name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func readlinkAt(d *os.File, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(d.Fd()), name, buf)
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
