// Package storage owns how a container of an image gets its root from the
// image's unpacked layers, by one of three drivers, named as podman names
// them:
//
//   - overlay: the kernel's overlayfs, mounted with userxattr in the
//     container's user namespace (Linux 5.11+), the layers under a directory
//     of the container's own writes;
//   - fuse-overlayfs: the same overlay served by fuse-overlayfs (Debian's
//     package), for kernels whose overlayfs refuses a user namespace
//     (podman's overlay driver with mount_program);
//   - vfs: a copy of the layers into a directory of the container's own,
//     made once when the container is created.
//
// It owns the choice (Choose: the first that works here, or the one
// $RABBITC_STORAGE_DRIVER names), the probe's fixture (ProbeLayers,
// CheckMerged) and its answer, cached in the store per kernel release
// (ReadCache, WriteCache), fuse-overlayfs's command line (FuseCommand), and
// the copy (Copy). Whatever the driver, the layers are only read.
//
// It leaves alone mounting (package rootfs mounts kernel overlayfs, and the
// FUSE file system that fuse-overlayfs serves, in the container's mount
// namespace), starting processes and user namespaces (cmd/rabbitc runs the
// probe and the copy as root of a user namespace with the containers'
// mappings, and starts fuse-overlayfs), and where the store is.
//
// Contract used by cmd/rabbitc:
//
//	p, ok := storage.ReadCache(store)              // every run of an image: one small read
//	if !ok || p.Stale(exec.LookPath) { p = probe(); storage.WriteCache(store, p) }
//	d, warning, err := storage.Choose(p, os.Getenv(storage.EnvDriver))
//	cmd, err := storage.FuseCommand(p.FuseProgram, lower, upper, work) // its fd 3: the mounted /dev/fuse
//	err := storage.Copy(dst, lower)                // vfs: root of the user namespace, once
//
// # The layers' format
//
// The layers are what package unpack writes, the format kernel overlayfs
// reads with userxattr: a whiteout is a character device 0/0, an opaque
// directory has the xattr user.overlay.opaque=y. fuse-overlayfs (1.10,
// Debian 12) reads both: a 0/0 device or a ".wh.NAME" file is a whiteout,
// and a directory is opaque when trusted.overlay.opaque, user.overlay.opaque
// or user.fuseoverlayfs.opaque is "y" (in that order; trusted.* reads as
// absent in a user namespace) or it holds ".wh..wh..opq". It writes its own
// opaque directories in the upper directory as user.fuseoverlayfs.opaque,
// and hides the user.overlay.* and user.fuseoverlayfs.* xattrs from the
// container. Copy applies the same rules and leaves user.overlay.* out of
// the copy.
//
// # The probe's cache
//
// $STORE/storage-driver says, for one kernel release, which drivers work
// and why the others do not, as lines of "KEY VALUE": kernel, overlay,
// fuse-overlayfs, fuse-program ("ok" or the reason). It is replaced by
// rename. A run of an image reads it (one read and uname: the start-up of a
// cached image pays nothing more); a kernel of another release, or a
// fuse-overlayfs installed since a probe that found none while the kernel's
// overlayfs does not work, makes the caller probe again.
package storage
