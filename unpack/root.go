package unpack

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// root is an O_PATH handle on the layer directory. Every name from the tar is
// resolved against it as if it were "/".
type root struct {
	fd int
}

// resolveInRoot: symlinks met while resolving are followed inside the root;
// ".." stops at it; /proc magic links and other mounts are refused.
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// maxAgain bounds the retries of openat2, which returns EAGAIN when a rename
// elsewhere on the file system races with a RESOLVE_IN_ROOT walk.
const maxAgain = 16

var errEscape = errors.New("path climbs out of the layer")

func openRoot(dir string) (*root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open layer directory", Path: dir, Err: err}
	}
	return &root{fd: fd}, nil
}

func (r *root) close() { unix.Close(r.fd) }

// cleanName turns a name from the tar (an unsafe path) into a path relative to
// the root without "." or ".." components; "" is the root itself. Leading
// slashes are dropped, so an absolute name lands inside the root; a name that
// climbs above the root is refused instead of clamped, as it can only come
// from a broken or hostile archive.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", errors.New("name holds a NUL byte")
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == "." {
		return "", nil
	}
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errEscape
	}
	return p, nil
}

// split returns the parent of a cleaned non-root path ("" for the root) and
// its last component.
func split(rel string) (parent, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

// open opens the directory rel (cleaned; "" is the root) in-root with flags
// (O_PATH or O_RDONLY).
func (r *root) open(rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_DIRECTORY | unix.O_CLOEXEC), Resolve: resolveInRoot}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(r.fd, rel, &how)
		if err == unix.EAGAIN && i < maxAgain {
			continue
		}
		if err == unix.ENOSYS {
			return -1, fmt.Errorf("openat2: %w (needs Linux 5.6)", err)
		}
		return fd, err
	}
}

// openParent returns an O_PATH handle on the directory that holds rel,
// creating missing directories on the way.
func (r *root) openParent(rel string) (int, error) {
	dir, _ := split(rel)
	return r.makeDir(dir)
}

// makeDir returns an O_PATH handle on the directory dir, made if missing.
func (r *root) makeDir(dir string) (int, error) {
	fd, err := r.open(dir, unix.O_PATH)
	if err != unix.ENOENT {
		return fd, err
	}
	return r.mkdirAll(dir)
}

// mkdirAll walks dir from the root one component at a time, resolving what
// exists in-root and creating what is missing (0755, owned by the unpacking
// user) with mkdirat on the handle of its parent. A component that exists but
// cannot be opened as a directory (a file, a dangling symlink) is an error:
// the symlink is never replaced by a directory behind the archive's back.
func (r *root) mkdirAll(dir string) (int, error) {
	parent, err := unix.Dup(r.fd)
	if err != nil {
		return -1, err
	}
	comps := strings.Split(dir, "/")
	for i, c := range comps {
		fd, err := r.open(strings.Join(comps[:i+1], "/"), unix.O_PATH)
		if err == unix.ENOENT {
			fd, err = mkdirIn(parent, c)
		}
		unix.Close(parent)
		if err != nil {
			return -1, fmt.Errorf("create parent directory %s: %w", strings.Join(comps[:i+1], "/"), err)
		}
		parent = fd
	}
	return parent, nil
}

// mkdirIn makes the directory name in the directory pfd and opens it; the name
// was just created by us, so nothing on the way is a symlink.
func mkdirIn(pfd int, name string) (int, error) {
	if err := unix.Mkdirat(pfd, name, 0o755); err != nil {
		return -1, err
	}
	if err := unix.Fchmodat(pfd, name, 0o755, 0); err != nil { // the umask may have narrowed it
		return -1, err
	}
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	return unix.Openat2(pfd, name, &how)
}

// removeAll removes name in the directory pfd, and if it is a directory
// everything under it, never following a symlink: each directory is opened
// O_NOFOLLOW relative to its parent's handle.
func removeAll(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAll(fd, n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
}
