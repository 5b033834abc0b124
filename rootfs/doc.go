// Package rootfs owns everything inside the container's mount namespace:
// binds, propagation, /proc /dev /sys, masked and read-only paths, volumes,
// the generated /etc files, pivot_root, and the container's pty.
//
// Its Config is the runtime spec's view of the rootfs: root.path and
// root.readonly, the mounts (specs.Mount, in order), linux.maskedPaths,
// linux.readonlyPaths, linux.devices and linux.rootfsPropagation, so that
// `rabbitc run` (DefaultMounts, then ParseVolume's and ParseTmpfs's mounts)
// and a bundle's config.json (podman, containerd, `runc spec --rootless`)
// take the same path.
//
// It runs in the init stage (stage 2), which is root in the container's user
// namespace, already in fresh mount/PID/UTS/IPC namespaces, single-threaded
// in spirit (no goroutines of its own). It never starts processes and never
// touches host paths outside Config.Rootfs except the sources it is given
// (binds, the host's nodes of Config.Devices, the host's
// /dev/{null,zero,full,random,urandom,tty}, and the host's /sys where a fresh
// sysfs cannot be had; never the host's /proc).
//
// Contract used by cmd/rabbitc:
//
//	cfg.Mounts = append(rootfs.DefaultMounts(), mounts...)   // rabbitc run: ParseVolume, ParseTmpfs
//	cfg.MaskedPaths, cfg.ReadonlyPaths = rootfs.DefaultMaskedPaths, rootfs.DefaultReadonlyPaths
//	                                                  // (rabbitc create: config.json's mounts and lists)
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
// /etc/hosts or a volume destination, and, when the mounts have no tmpfs on
// /dev, the /dev symlinks (an existing name is left alone; a symlink where a
// device is to be bound is refused). It never writes file contents there.
// Workdir creates a missing working directory the same way, after checking
// that what exists of the path is inside the root and not in /proc: a -w
// through a symlink to /proc/self/fd/N is refused (openat2
// RESOLVE_NO_MAGICLINKS), not followed to whatever init holds open.
//
// # Mounts
//
// For a container of an image, Config.Overlay is mounted on Config.Rootfs
// first (MountOverlay, which a probe of the storage drivers calls too): the
// kernel's overlayfs with userxattr, or, with Overlay.Fuse, a FUSE file
// system mounted over an open /dev/fuse the process inherited. It starts no
// daemon: it writes one byte on Fuse.Mounted, and the caller starts
// fuse-overlayfs then (a FUSE daemon can read its device only once it is
// mounted); until it answers, the rest of Setup waits on the mount.
//
// "/" gets Config.RootPropagation (rslave by default; with a shared one the
// mount holding the rootfs is made private first, as runc does, and Finish
// applies it to the new "/"); the rootfs is bound on itself. Config.Mounts
// follow in order, each by its type, with runc's option words (flags,
// propagation, the recursive rro-like words through mount_setattr; unknown
// words are the file system's data; tmpcopyup and X-* are ignored; idmap,
// uid/gid mappings and remount of a fresh mount are refused):
//
//   - proc: a fresh procfs. If the kernel refuses it (EPERM,
//     mount_too_revealing: rabbitc runs below a /proc with covered paths, as
//     in a container that masks some), Setup fails with that cause, as runc
//     and crun do, and never binds the host's /proc, which would show every
//     process of the outer system and reach their files.
//   - sysfs: a fresh sysfs; with Config.HostNetwork (not our network
//     namespace, so the kernel refuses a fresh one), or if refused, the
//     host's /sys bound recursively, its flags (ro) made recursive.
//   - cgroup, cgroup2: the container's cgroup namespace as cgroup2, where
//     the kernel allows it (else the directory stays as it was); none with
//     Config.HostNetwork, whose /sys has the host's.
//   - tmpfs on /dev: the host's null, zero, full, random, urandom and tty
//     are bound in (each checked by fstat to be the right character device),
//     the fd/stdin/stdout/stderr/core/ptmx symlinks made, and the /etc files
//     bound right away, before the mounts that follow (see below). Without a
//     tmpfs on /dev in the list, the devices and symlinks go into the
//     rootfs's /dev after the mounts, as runc does.
//   - devpts: a gid= or uid= the user namespace does not map is dropped.
//   - bind, or any type with the bind or rbind option (`runc spec
//     --rootless` binds the host's /sys with type "none"): the absolute
//     source, recursively with rbind, then remounted with ro, nosuid, nodev,
//     noexec or an atime mode when asked, repeating the flags its source
//     mount already has (a user namespace may not clear a locked one); ro
//     on an rbind is recursive.
//   - any other type: mount(type, source, flags, data).
//
// Each new mount is looked up again and verified before its propagation
// words apply to it. The /etc files (their contents come in Config) are
// written into a small tmpfs, mounted for the moment on /dev/.rabbitc, bound
// on their destinations, and the tmpfs is detached: they need the fresh
// /dev, and binding them before the mounts listed after /dev lets a volume
// on /etc/hosts win. Then Config.Devices are bound from the host's node of
// the same path under /dev, which must be a device of the type and numbers
// given (mknod is not allowed in a user namespace; file mode, uid and gid
// are the host node's). Last, the masked paths get the verified host
// /dev/null (files) or an empty read-only tmpfs (directories), and the
// read-only paths are bound on themselves and remounted read-only.
//
// DefaultMounts is rabbitc run's list: /proc (nosuid, nodev, noexec), /dev
// (tmpfs), /dev/pts (a new devpts instance), /dev/shm, /dev/mqueue, /sys
// (read-only sysfs), /sys/fs/cgroup (read-only), as `runc spec` writes them;
// DefaultMaskedPaths and DefaultReadonlyPaths are its lists.
package rootfs
