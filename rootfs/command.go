package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// CheckCommand looks, from the host and before anything starts, for the
// payload's command in the rootfs on disk, as init's lookup will after the
// mounts: a directory that is no root filesystem (the README's `rabbitc
// --rootfs=./rootfs` typed in a source tree) is refused before a single
// mount point is created in it. It only reads.
//
// A name with a '/' is taken relative to workdir; a bare name is searched in
// pathEnv (relative entries relative to workdir), as execvp does. Symlinks
// are followed inside the rootfs (RESOLVE_IN_ROOT). It returns 127 when the
// command is not there, 126 when it is no regular file with an execute bit,
// and 0 when it is, or when the rootfs alone cannot tell: the path leads
// under the destination of one of cfg.Mounts (a volume, a --tmpfs), or
// /proc, /dev or /sys, which exist only once mounted, or
// through a directory the user may not search (init, root in the container,
// may). Init's own lookup decides those.
func CheckCommand(cfg Config, name, workdir, pathEnv string) (int, error) {
	if name == "" {
		return 127, errors.New("exec: empty command")
	}
	dir, err := os.OpenFile(cfg.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil // Setup says what is wrong with it
	}
	defer dir.Close()
	l := &lookup{dir: dir, rootfs: cfg.Rootfs}
	for _, m := range cfg.Mounts {
		l.addMount(m.Destination)
	}
	// /proc/self/exe, /dev/stdin and the like exist only once mounted;
	// /dev gets its devices and symlinks even without a mount of its own.
	for _, m := range []string{"/proc", "/dev", "/sys"} {
		l.addMount(m)
	}
	if workdir == "" {
		workdir = "/"
	}
	if strings.Contains(name, "/") {
		if code, why := l.check(inDir(workdir, name)); code != 0 {
			return code, fmt.Errorf("exec %s: %s", name, why)
		}
		return 0, nil
	}
	denied := ""
	for _, d := range filepath.SplitList(pathEnv) {
		p := inDir(workdir, path.Join(d, name))
		code, why := l.check(p)
		if code == 0 {
			return 0, nil
		}
		if code == 126 && denied == "" {
			denied = p + ": " + why
		}
	}
	if denied != "" {
		return 126, fmt.Errorf("exec %s", denied)
	}
	return 127, fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// inDir makes p absolute against dir, as a relative path is for a process
// whose working directory is dir.
func inDir(dir, p string) string {
	if path.IsAbs(p) {
		return p
	}
	return path.Join(dir, p)
}

// lookup resolves candidate paths of the command in the rootfs on disk.
type lookup struct {
	dir    *os.File // O_PATH handle on the rootfs
	rootfs string
	mounts []string // host paths where cfg.Mounts will be mounted
}

// addMount records where the mount on unsafeDest will be, resolved inside
// the rootfs as Setup will resolve it.
func (l *lookup) addMount(unsafeDest string) {
	if p, err := securejoin.SecureJoin(l.rootfs, unsafeDest); err == nil {
		l.mounts = append(l.mounts, p)
	}
}

// underMount reports whether a host path lies on or under a mount point.
func (l *lookup) underMount(p string) bool {
	for _, m := range l.mounts {
		if p == m || strings.HasPrefix(p, m+"/") {
			return true
		}
	}
	return false
}

// check says what the rootfs holds at p (absolute inside it): 0 for an
// executable or for a path it cannot judge, else 127 or 126 and why.
func (l *lookup) check(p string) (int, string) {
	if len(l.mounts) > 0 {
		// Resolve lexically, taking what lies under a mount point as absent
		// (the mount will cover it): a path that leads there, by its name or
		// through a symlink, is the mount's to answer.
		joined, err := securejoin.SecureJoinVFS(l.rootfs, p, mountedVFS{l})
		if err != nil || l.underMount(joined) {
			return 0, ""
		}
	}
	h, err := openInRoot(l.dir, p)
	switch {
	case errors.Is(err, unix.ENOENT):
		return 127, "no such file or directory"
	case errors.Is(err, unix.ENOTDIR):
		return 126, "not a directory"
	case err != nil:
		return 0, "" // EACCES and the like: init may see more
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return 0, ""
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return 126, "is a directory"
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return 126, "not a regular file"
	case st.Mode&0o111 == 0:
		return 126, "permission denied"
	}
	return 0, ""
}

// mountedVFS is the host's file system with the mount points' contents
// hidden, for SecureJoinVFS.
type mountedVFS struct{ l *lookup }

func (v mountedVFS) Lstat(p string) (os.FileInfo, error) {
	if v.l.underMount(p) {
		return nil, &fs.PathError{Op: "lstat", Path: p, Err: unix.ENOENT}
	}
	return os.Lstat(p)
}

func (v mountedVFS) Readlink(p string) (string, error) { return os.Readlink(p) }
