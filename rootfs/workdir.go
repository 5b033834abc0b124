package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Workdir resolves the working directory unsafePath inside the container's
// root, after PivotRoot, and returns a handle on it to fchdir into. A
// missing directory is created, as docker does, and given to uid:gid, but
// only once what exists of the path is known to lie inside the root:
// symlinks are followed as if the root were "/", never through a magic link
// (/proc/self/fd/N, /proc/PID/cwd: they lead to whatever the process holds,
// outside the root, CVE-2024-21626), and nothing is created in /proc, where
// such links live. The result must be a directory. Without create (exec, as
// docker exec) a missing directory is an error.
func Workdir(unsafePath string, uid, gid int, create bool) (*os.File, error) {
	r, err := openRoot("/")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	h, err := r.open(unsafePath)
	if errors.Is(err, unix.ENOENT) && create {
		h, err = r.createWorkdir(unsafePath, uid, gid)
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("workdir %w (a symlink loop, or a link through /proc such as /proc/self/fd/N, which leads out of the container's root)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("workdir %w", err)
	}
	if err := checkKind(h, unsafePath, true); err != nil {
		h.Close()
		return nil, fmt.Errorf("workdir %w", err)
	}
	return h, nil
}

// createWorkdir creates the missing part of the working directory where the
// path leads inside the root (dangling symlinks included, as openOrCreate
// resolves them), after checking where its deepest existing directory is.
func (r *root) createWorkdir(unsafePath string, uid, gid int) (*os.File, error) {
	joined, err := securejoin.SecureJoin(r.path, unsafePath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", unsafePath, err)
	}
	if !r.within(joined) {
		return nil, fmt.Errorf("%s: resolves outside the root (%s)", unsafePath, joined)
	}
	rel := "/" + strings.TrimPrefix(strings.TrimPrefix(joined, r.path), "/")
	for p := path.Dir(rel); ; p = path.Dir(p) {
		h, err := r.open(p)
		if errors.Is(err, unix.ENOENT) && p != "/" {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = isFS(procMagic)(h)
		h.Close()
		if err == nil {
			return nil, fmt.Errorf("%s: resolves into /proc (%s), no place for a working directory", unsafePath, rel)
		}
		break
	}
	h, err := pathrs.MkdirAllHandle(r.dir, rel, 0o755)
	if err != nil {
		return nil, fmt.Errorf("%s: create: %w", unsafePath, err)
	}
	if err := r.check(h, unsafePath); err != nil {
		h.Close()
		return nil, err
	}
	// The new directory belongs to the payload's user, as with docker (its
	// parents, if any were missing, to root). Best effort: an unmapped id
	// leaves it root's.
	unix.Fchownat(int(h.Fd()), "", uid, gid, unix.AT_EMPTY_PATH)
	return h, nil
}
