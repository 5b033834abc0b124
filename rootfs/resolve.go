package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// root is the container's root directory: an O_PATH handle on the top of the
// rootfs bind mount and its real host path. Every unsafePath is resolved
// against dir with RESOLVE_IN_ROOT semantics (pathrs-lite), so symlinks are
// followed as if dir were "/" and ".." never climbs above it.
type root struct {
	dir  *os.File
	path string // real host path of dir, from /proc/self/fd
}

// maxCreateTries bounds the open-or-create loop in openOrCreate; only a
// concurrent rename/unlink in the rootfs makes it go round more than twice.
const maxCreateTries = 8

// fdPath names a handle for mount(2): the kernel follows the magic link to the
// exact inode, so a concurrent rename of a directory into a symlink cannot
// redirect the mount.
func fdPath(f *os.File) string {
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
}

// bareErr strips the *os.PathError that os.OpenFile wraps around its errno,
// for messages that name the path themselves.
func bareErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// realPath returns where a handle really is, as the current process sees it.
func realPath(f *os.File) (string, error) {
	return os.Readlink(fdPath(f))
}

// openRoot opens the rootfs directory (after its self-bind, so the handle
// sits on the top mount).
func openRoot(path string) (*root, error) {
	dir, err := os.OpenFile(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs %s: %w", path, bareErr(err))
	}
	real, err := realPath(dir)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("open rootfs %s: %w", path, err)
	}
	return &root{dir: dir, path: real}, nil
}

func (r *root) Close() error { return r.dir.Close() }

// within reports whether a real host path lies inside the root.
func (r *root) within(p string) bool {
	if r.path == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == r.path || strings.HasPrefix(p, r.path+"/")
}

// check verifies that handle h, obtained for unsafePath, really is inside
// the root. It catches a directory renamed out of the rootfs during the walk.
func (r *root) check(h *os.File, unsafePath string) error {
	p, err := realPath(h)
	if err != nil {
		return fmt.Errorf("%s: %w", unsafePath, err)
	}
	if !r.within(p) {
		return fmt.Errorf("%s: resolves outside the rootfs (%s)", unsafePath, p)
	}
	return nil
}

// open resolves unsafePath inside the root and returns an O_PATH handle.
func (r *root) open(unsafePath string) (*os.File, error) {
	h, err := openInRoot(r.dir, unsafePath)
	if err != nil {
		// pathrs-lite wraps the errno in one or two *os.PathError naming
		// the path again; keep the errno alone when there is one.
		var errno unix.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		return nil, fmt.Errorf("%s: %w", unsafePath, err)
	}
	if err := r.check(h, unsafePath); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// noOpenat2 is set once openat2 turned out to be missing (Linux < 5.6) or
// denied (an outer seccomp profile that predates it).
var noOpenat2 atomic.Bool

// scopedRetries bounds the retries of openat2 on EAGAIN or EXDEV, which a
// rename or mount anywhere on the system can cause during the walk (or an
// attacker, who then gets the error): pathrs-lite's limit.
const scopedRetries = 128

// openInRoot opens unsafePath (O_PATH) with RESOLVE_IN_ROOT: the kernel
// scopes every symlink and ".." to dir, fails with EXDEV should the result
// lie outside it, and with EAGAIN when a rename or mount races the walk.
//
// pathrs-lite's OpenatInRoot makes the same openat2 call, then reads the
// handle's path back through a private procfs instance only to name the
// *os.File, and dups it: 6-7 system calls per path where this makes one
// (root.check still reads the path back once, to check it), about 25 paths
// per container, and a procfs mount (fsopen, fsconfig, fsmount) per start.
// Init's root set-up took a quarter less (2.0 to 1.5 ms, trace medians of
// 60 starts on the bench's machine, busy at the time). Without openat2,
// pathrs-lite's userspace walk.
func openInRoot(dir *os.File, unsafePath string) (*os.File, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
		for tries := 0; ; tries++ {
			fd, err := unix.Openat2(int(dir.Fd()), unsafePath, &how)
			if err == nil {
				return os.NewFile(uintptr(fd), unsafePath), nil
			}
			if (err == unix.EAGAIN || err == unix.EXDEV || err == unix.EINTR) && tries < scopedRetries {
				continue
			}
			if err != unix.ENOSYS && err != unix.EPERM {
				return nil, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	return pathrs.OpenatInRoot(dir, unsafePath)
}

// openOrCreate returns an O_PATH handle on unsafePath inside the root,
// creating it (and its parents) when missing: a directory when dir is set,
// else an empty regular file. This is the only way rabbitc writes into the
// user's rootfs. A dangling symlink on the way is resolved inside the root and
// its target created there; nothing is ever created outside the root.
func (r *root) openOrCreate(unsafePath string, dir bool) (*os.File, error) {
	for range maxCreateTries {
		h, err := r.open(unsafePath)
		if err == nil {
			if err := checkKind(h, unsafePath, dir); err != nil {
				h.Close()
				return nil, err
			}
			return h, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return nil, err
		}
		// Resolve (lexically, inside the root) what the path names, dangling
		// symlinks included; then create it with handle-based, symlink-free
		// steps. A race here only makes the next open see something else.
		joined, err := securejoin.SecureJoin(r.path, unsafePath)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", unsafePath, err)
		}
		if !r.within(joined) {
			return nil, fmt.Errorf("%s: resolves outside the rootfs (%s)", unsafePath, joined)
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(joined, r.path), "/")
		if err := r.create(rel, dir); err != nil {
			return nil, fmt.Errorf("%s: create: %w", unsafePath, err)
		}
	}
	return nil, fmt.Errorf("%s: the rootfs keeps changing under it (gave up after %d tries)", unsafePath, maxCreateTries)
}

// create makes rel (a symlink-free path relative to the root) as a directory
// or an empty file. An existing entry is not an error: the caller re-resolves.
func (r *root) create(rel string, dir bool) error {
	if dir {
		h, err := pathrs.MkdirAllHandle(r.dir, rel, 0o755)
		if err != nil {
			return err
		}
		return h.Close()
	}
	parentRel, base := filepath.Split(rel)
	if base == "" || base == "." || base == ".." {
		return fmt.Errorf("%s: not a file name", rel)
	}
	parent, err := pathrs.MkdirAllHandle(r.dir, parentRel, 0o755)
	if err != nil {
		return err
	}
	defer parent.Close()
	fd, err := unix.Openat(int(parent.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0o644)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// checkKind makes sure a mount point has the kind its source needs: the
// kernel refuses to bind a directory on a file and the other way round.
func checkKind(h *os.File, unsafePath string, dir bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", unsafePath, err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	switch {
	case dir && !isDir:
		return fmt.Errorf("%s: not a directory", unsafePath)
	case !dir && isDir:
		return fmt.Errorf("%s: is a directory, the source is a file", unsafePath)
	}
	return nil
}
