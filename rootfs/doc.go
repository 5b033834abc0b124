// Package rootfs owns everything inside the container's mount namespace:
// binds, propagation, /proc /dev /sys, masked and read-only paths, volumes,
// the generated /etc files, pivot_root, and the container's pty.
//
// It runs in the init stage (stage 2), which is root in the container's user
// namespace, already in fresh mount/PID/UTS/IPC namespaces, single-threaded
// in spirit (no goroutines of its own). It never starts processes and never
// touches host paths outside Config.Rootfs except the sources it is given
// (volumes, the host's /dev/{null,zero,full,random,urandom,tty},
// and the host's /sys where a fresh sysfs cannot be had; never the host's
// /proc).
//
// Contract used by cmd/rabbitc:
//
//	code, err := rootfs.CheckCommand(cfg, argv0, workdir, path) // the parent, before anything starts
//	if err := rootfs.Setup(cfg); err != nil { ... }   // all mounts, under cfg.Rootfs
//	if err := rootfs.PivotRoot(cfg.Rootfs); err != nil { ... }
//	if err := rootfs.Finish(cfg); err != nil { ... }  // after pivot: read-only "/" with --read-only
//	dir, err := rootfs.Workdir(unsafePath, uid, gid, create) // after pivot: the payload's -w, to fchdir into
//	master, slave, err := rootfs.OpenPTY()            // with -t, from the container's /dev/pts
//
// CheckCommand alone runs on the host side, in the parent, and only reads:
// it resolves the payload's command in the rootfs on disk (in-root, as
// init's lookup will), so that a directory that holds no such program (a
// source tree's rootfs/) is refused with 127 or 126 before any mount point
// is created in it. A command under a volume or --tmpfs destination is not
// on disk yet: the check leaves it to init.
//
// # The rootfs is untrusted
//
// A path from the user or from the image is an unsafePath until it has been
// resolved inside the rootfs. Every mount destination is resolved with
// pathrs-lite (filepath-securejoin, openat2 RESOLVE_IN_ROOT where the kernel
// has it) against an O_PATH handle on the rootfs, as if the rootfs were "/":
// a symlink at /proc, /dev, /sys, /etc/hosts or a volume destination,
// absolute or full of "..", dangling or not, is followed inside the rootfs
// and never out of it. The result is an O_PATH handle, checked to be inside
// the rootfs, and the mount goes onto /proc/self/fd/N of that handle, so a
// concurrent swap of a directory with a symlink cannot redirect it. After a
// mount, the destination is looked up again and must be the new mount, of
// the expected file system or inode, at the same place; otherwise Setup
// fails with an error naming the path.
//
// Setup writes into the rootfs on disk only to create missing mount points:
// directories (0755) and empty files (0644), such as /proc, /sys, /dev,
// /etc/hosts or a volume destination. It never writes file contents there.
// Workdir creates a missing working directory the same way, after checking
// that what exists of the path is inside the root and not in /proc: a -w
// through a symlink to /proc/self/fd/N is refused (openat2
// RESOLVE_NO_MAGICLINKS), not followed to whatever init holds open.
//
// # Defaults
//
// "/" is made a recursive slave; the rootfs is bound on itself. /proc is a
// fresh procfs (nosuid,nodev,noexec); if the kernel refuses it (EPERM,
// mount_too_revealing: rabbitc runs below a /proc with covered paths, as in
// a container that masks some), Setup fails with that cause, as runc and
// crun do, and never binds the host's /proc, which would show every process
// of the outer system and reach their files. /sys is a fresh read-only
// sysfs, with the container's cgroup namespace mounted read-only on
// /sys/fs/cgroup (cgroup2, where the kernel allows it); with --net host
// (not our network namespace, so the kernel refuses a fresh sysfs), or if
// refused, the host's /sys is bound and made read-only recursively.
// /dev is a tmpfs with the host's null, zero, full, random, urandom and tty
// bound in (each checked by fstat to be the right character device), the
// fd/stdin/stdout/stderr/core/ptmx symlinks, a new devpts instance on
// /dev/pts, /dev/shm and /dev/mqueue. The /etc files (their contents come
// in Config) are written into a small tmpfs, mounted for the moment on
// /dev/.rabbitc, bound on their destinations, and the tmpfs is detached.
// The volumes are bound next, then the --tmpfs mounts; read-only volumes
// are remounted read-only with the flags their source mount already has (a
// user namespace may not clear a locked nosuid/nodev/noexec). Last, the
// masked paths get the verified host /dev/null (files) or an empty
// read-only tmpfs (directories), and the read-only paths are bound on
// themselves and remounted read-only.
package rootfs
