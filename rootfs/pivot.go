package rootfs

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PivotRoot makes newRoot (the rootfs bound on itself by Setup) the root of
// the mount namespace and detaches the old root, so nothing of the host's
// tree stays reachable. The old root is stacked on the new one by
// pivot_root(".", "."), made a slave so the detach cannot propagate, and
// lazily unmounted, as runc does. Errors are *os.PathError.
//
// The old root is reached through a handle opened before the pivot: "." in
// the new root is the new root's own mount for mount(2) (only umount(2)
// looks through to the mount on top), and a recursive slave there would
// undo the propagation Setup gave the container's mounts (rshared volumes).
func PivotRoot(newRoot string) error {
	oldFD, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open old root", Path: "/", Err: err}
	}
	defer unix.Close(oldFD)
	fd, err := unix.Open(newRoot, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open new root", Path: newRoot, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		return &os.PathError{Op: "chdir to new root", Path: newRoot, Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: newRoot, Err: err}
	}
	if err := unix.Fchdir(oldFD); err != nil {
		return &os.PathError{Op: "chdir to old root", Path: newRoot, Err: err}
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return &os.PathError{Op: "make old root a slave mount", Path: newRoot, Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "detach old root", Path: newRoot, Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}

// Finish runs after PivotRoot: it checks that /proc is a procfs, gives "/"
// cfg.RootPropagation when set (the rootfs bind became private on the way
// when the propagation is shared, see parentMountPrivate) and, with
// cfg.ReadOnly, remounts "/" read-only (the mounts below it keep their mode).
func Finish(cfg Config) error {
	if cfg.RootPropagation != "" {
		prop, err := parsePropagation(cfg.RootPropagation)
		if err != nil {
			return err
		}
		if err := unix.Mount("", "/", "", prop, ""); err != nil {
			return fmt.Errorf("make / a %s mount: %w", cfg.RootPropagation, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/proc", &st); err != nil {
		return fmt.Errorf("check /proc: %w", err)
	}
	if int64(st.Type) != procMagic {
		return fmt.Errorf("check /proc: file system type %#x is not procfs", st.Type)
	}
	if !cfg.ReadOnly {
		return nil
	}
	h, err := os.OpenFile("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer h.Close()
	return remountReadOnly(h, "/", false)
}
