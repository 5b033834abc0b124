// Package rootfs owns everything inside the container's mount namespace:
// binds, propagation, /proc /dev /sys, masked and read-only paths, volumes,
// the generated /etc files, and pivot_root.
//
// It runs in the init stage (stage 2), which is root in the container's user
// namespace, already in fresh mount/PID/UTS/IPC namespaces, single-threaded
// in spirit (no goroutines of its own). It never starts processes and never
// touches host paths outside Config.Rootfs except the sources it is given.
//
// Contract used by cmd/rabbitc:
//
//	if err := rootfs.Setup(cfg); err != nil { ... }   // all mounts, under cfg.Rootfs
//	if err := rootfs.PivotRoot(cfg.Rootfs); err != nil { ... }
//	if err := rootfs.Finish(cfg); err != nil { ... }  // after pivot: read-only remounts of / etc.
//
// A path from the user or from the image is an unsafePath until it has been
// resolved inside the rootfs (filepath-securejoin); a symlink in the rootfs can
// never place a mount outside it.
package rootfs
