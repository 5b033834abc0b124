package rootfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultMaskedPaths are the paths `rabbitc run` hides from the container
// (as docker, runc and podman do). Setup masks Config.MaskedPaths: a file
// gets the null device bound on it, a directory an empty read-only tmpfs.
// Paths that do not exist are skipped.
var DefaultMaskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// DefaultReadonlyPaths are the paths `rabbitc run` makes read-only. Setup
// binds each of Config.ReadonlyPaths on itself and remounts it read-only;
// paths that do not exist are skipped.
var DefaultReadonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// maskDir is what covers a masked directory.
var maskDir = fsMount{fstype: "tmpfs", flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, data: "size=0,mode=0555", magic: tmpfsMagic}

// maskPath hides unsafePath: null is the verified host /dev/null.
func (r *root) maskPath(unsafePath string, null *os.File) error {
	h, err := r.open(unsafePath)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mask %w", err)
	}
	defer h.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return fmt.Errorf("mask %s: %w", unsafePath, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		m := maskDir
		m.dest = unsafePath
		return mountOn(h, m)
	}
	return bindOn(null, h, false, "/dev/null", unsafePath)
}

// readonlyPath binds unsafePath on itself and remounts it read-only.
func (r *root) readonlyPath(unsafePath string) error {
	h, err := r.open(unsafePath)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read-only %w", err)
	}
	defer h.Close()
	if err := bindOn(h, h, true, unsafePath, unsafePath); err != nil {
		return err
	}
	top, err := r.reopenMounted(h, unsafePath, sameInode(h))
	if err != nil {
		return err
	}
	defer top.Close()
	return remountReadOnly(top, unsafePath, true)
}
