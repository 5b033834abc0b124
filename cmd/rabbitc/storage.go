package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/storage"
	"github.com/rabbitc/rabbitc/userns"
)

// A container of an image gets its root by one of package storage's
// drivers: the kernel's overlayfs (init mounts it), fuse-overlayfs (init
// mounts a FUSE file system, the sandbox serves it: fuse.go) or a copy of
// the layers (made here, at create, in a user namespace stage). Which one
// works is probed once per kernel, in a stage of its own, and cached in the
// store; a run of a cached image reads the cache and nothing more.

// storageChoice is the driver for a container of an image.
type storageChoice struct {
	driver      storage.Driver
	fuseProgram string // fuse-overlayfs, found by the probe
	warning     string // the copy's, for the user
}

// chooseStorage picks the driver: the one $RABBITC_STORAGE_DRIVER forces,
// if it works here, else the first that works. It probes (once per kernel)
// when the store has no answer yet.
func chooseStorage(store string) (*storageChoice, error) {
	forced := os.Getenv(storage.EnvDriver)
	if _, err := storage.ParseDriver(forced); err != nil {
		return nil, err
	}
	p, ok := storage.ReadCache(store)
	if !ok || p.Stale(exec.LookPath) {
		var err error
		if p, err = probeStorage(store); err != nil {
			return nil, err
		}
	}
	d, warning, err := storage.Choose(p, forced)
	if err != nil {
		return nil, err
	}
	return &storageChoice{driver: d, fuseProgram: p.FuseProgram, warning: warning}, nil
}

// probeRequest asks the storage-probe stage to try the drivers in Dir.
type probeRequest struct {
	Dir         string
	FuseProgram string
}

// probeReply says why each driver does not work ("" if it does).
type probeReply struct {
	Overlay string
	Fuse    string
}

// probeStorage tries the kernel's overlayfs and fuse-overlayfs, each on
// a fixture of two layers in the store, as a container would use them
// (root of a user namespace with the containers' mappings, a mount
// namespace of its own), and caches the answer in the store.
func probeStorage(store string) (*storage.Probe, error) {
	p := &storage.Probe{Kernel: storage.KernelRelease()}
	if prog, err := exec.LookPath("fuse-overlayfs"); err == nil {
		p.FuseProgram, _ = filepath.Abs(prog)
	}
	// A temporary name of the store's (pid-starttime-...): what a killed
	// probe leaves goes with the next image command.
	dir := filepath.Join(store, "tmp", fmt.Sprintf("%d-%d-storage-probe", os.Getpid(), procStartTime(os.Getpid())))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("probe the storage drivers: %w", err)
	}
	defer userns.RemoveTrees("/proc/self/exe", dir)
	var reply probeReply
	if err := userns.RunMapped("/proc/self/exe", "storage-probe", probeRequest{Dir: dir, FuseProgram: p.FuseProgram}, &reply); err != nil {
		return nil, fmt.Errorf("probe the storage drivers: %w", err)
	}
	p.Overlay, p.Fuse = reply.Overlay, reply.Fuse
	if p.FuseProgram == "" {
		p.Fuse = storage.ErrNoFuseProgram.Error()
	}
	if err := storage.WriteCache(store, p); err != nil {
		fmt.Fprintf(os.Stderr, "rabbitc: warning: %v (the next run probes again)\n", err)
	}
	return p, nil
}

// storageProbeMain is the storage-probe stage: root of a user namespace
// with the containers' mappings, in a mount namespace of its own.
func storageProbeMain(ch *userns.Channel) int {
	var req probeRequest
	if err := ch.WaitSpec(&req); err != nil {
		return 125
	}
	// From the main thread, where the fuse-overlayfs child starts too.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		ch.SendError("storage-probe", fmt.Errorf("unshare the mount namespace: %w", err), 0)
		return 125
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		ch.SendError("storage-probe", fmt.Errorf("make / private: %w", err), 0)
		return 125
	}
	reply := probeReply{Overlay: errText(probeOverlay(filepath.Join(req.Dir, "overlay")))}
	if req.FuseProgram != "" {
		reply.Fuse = errText(probeFuse(filepath.Join(req.Dir, "fuse"), req.FuseProgram))
	}
	os.RemoveAll(req.Dir)
	if err := ch.SendSpec(reply); err != nil {
		return 125
	}
	return 0
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// probeOverlay mounts the fixture with the kernel's overlayfs, as init
// does (rootfs.MountOverlay), and checks it.
func probeOverlay(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	lower, upper, work, merged, err := storage.ProbeLayers(dir)
	if err != nil {
		return err
	}
	if err := rootfs.MountOverlay(&rootfs.Overlay{Lower: lower, Upper: upper, Work: work}, merged); err != nil {
		return err
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	if err := storage.CheckMerged(merged); err != nil {
		return fmt.Errorf("overlayfs in a user namespace: %w", err)
	}
	return nil
}

// probeFuse mounts the fixture as a container's fuse-overlayfs root is
// mounted and served (rootfs.MountOverlay with Fuse, the daemon given the
// mounted /dev/fuse), checks it, unmounts it, and checks that the daemon
// ends then, as it must when a container ends.
func probeFuse(dir, program string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	lower, upper, work, merged, err := storage.ProbeLayers(dir)
	if err != nil {
		return err
	}
	f, err := openFuse(&fuseSpec{Program: program, Lower: lower, Upper: upper, Work: work})
	if err != nil {
		return err
	}
	defer f.close()
	// The mount's descriptors, as init gets them (it closes them).
	devFD, err := unix.Dup(int(f.dev.Fd()))
	if err != nil {
		return err
	}
	mountedFD, err := unix.Dup(int(f.mountedW.Fd()))
	if err != nil {
		unix.Close(devFD)
		return err
	}
	if err := rootfs.MountOverlay(&rootfs.Overlay{Fuse: &rootfs.FuseMount{Dev: devFD, Mounted: mountedFD}}, merged); err != nil {
		return err
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	}()
	ok, err := f.start()
	if err != nil || !ok {
		return fmt.Errorf("start fuse-overlayfs: %v", err)
	}
	// Here, unlike in a container, the daemon's death must fail the check
	// rather than hang it: no other copy of the device.
	f.dev.Close()
	f.dev = nil
	timer := time.AfterFunc(10*time.Second, func() { f.p.Signal(syscall.SIGKILL) })
	err = storage.CheckMerged(merged)
	timer.Stop()
	if err != nil {
		select {
		case <-f.p.Done():
			return f.endedErr()
		case <-time.After(100 * time.Millisecond):
		}
		return fmt.Errorf("fuse-overlayfs: %w", err)
	}
	unix.Unmount(merged, unix.MNT_DETACH)
	mounted = false
	select {
	case <-f.p.Done():
		if code := f.p.ExitCode(); code != 0 {
			return f.endedErr()
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("fuse-overlayfs did not end within 10 s of its unmount")
	}
}

// copyRequest asks the storage-copy stage to copy the layers into Dst.
type copyRequest struct {
	Dst   string
	Lower []string
}

// copyImage copies the image's layers into the container's root (the vfs
// driver), from a user namespace with the containers' mappings: their
// owners stay.
func copyImage(dst string, lower []string) error {
	return userns.RunMapped("/proc/self/exe", "storage-copy", copyRequest{Dst: dst, Lower: lower}, &struct{}{})
}

// storageCopyMain is the storage-copy stage.
func storageCopyMain(ch *userns.Channel) int {
	var req copyRequest
	if err := ch.WaitSpec(&req); err != nil {
		return 125
	}
	if err := storage.Copy(req.Dst, req.Lower); err != nil {
		ch.SendError("storage-copy", err, 0)
		return 125
	}
	if err := ch.SendSpec(struct{}{}); err != nil {
		return 125
	}
	return 0
}
