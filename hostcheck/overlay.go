package hostcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Overlay mounts kernel overlayfs in a fresh user and mount namespace, as
// rabbitc does for an image's root, in a directory beside the image store
// (whose file system must do as overlayfs's upper layer). fuse-overlayfs,
// the usual fallback elsewhere, is only reported: rabbitc does not use it.
func Overlay(probe []string, storeDir string) Check {
	dir, err := os.MkdirTemp(existingAncestor(storeDir), ".rabbitc-doctor-")
	if err != nil {
		return userFix(Error, "overlay", "cannot try it: "+err.Error(), "")
	}
	defer removeTree(dir)
	if err := overlayDirs(dir); err != nil {
		return userFix(Error, "overlay", "cannot try it: "+err.Error(), "")
	}
	where := "in a user namespace on " + filepath.Dir(dir)
	if err := probeOverlay(probe, dir); err != nil {
		return overlayFailed("kernel overlayfs "+where+": "+err.Error()+"; images cannot run, and rabbitc has no fuse-overlayfs fallback ("+fuseNote()+")",
			KernelRelease())
	}
	return ok("overlay", "kernel overlayfs with userxattr mounts "+where+" ("+fuseNote()+")")
}

// probeOverlay runs the probe's overlay mount on dir in new user and mount
// namespaces, where the user is root; its error is what the probe said.
func probeOverlay(probe []string, dir string) error {
	var stderr bytes.Buffer
	cmd := probeCommand(probe, "overlay", dir)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	err := cmd.Run()
	if why := strings.TrimSpace(stderr.String()); err != nil && why != "" {
		return errors.New(why)
	}
	if err != nil {
		return errors.New(errText(err))
	}
	return nil
}

// overlayFailed names the fix: a newer kernel, or, on one new enough, a
// store on a file system overlayfs takes as its upper layer.
func overlayFailed(detail, release string) Check {
	if !kernelAtLeast(release, 5, 11) {
		return rootFix(Error, "overlay", detail, "boot Linux 5.11 or later, with CONFIG_OVERLAY_FS")
	}
	return userFix(Error, "overlay", detail, "keep the image store on ext4, xfs, btrfs or tmpfs: export XDG_DATA_HOME=DIR on one of them")
}

// kernelAtLeast compares a release (uname -r, "6.1.0-18-amd64") with
// major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if n, _ := fmt.Sscanf(release, "%d.%d", &ma, &mi); n != 2 {
		return true // unknown: do not blame the kernel
	}
	return ma > major || ma == major && mi >= minor
}

func fuseNote() string {
	if p, err := exec.LookPath("fuse-overlayfs"); err == nil {
		return "fuse-overlayfs: " + p
	}
	return "fuse-overlayfs: not installed"
}

// overlayDirs makes the layers of the probe's overlay in dir.
func overlayDirs(dir string) error {
	for _, d := range []string{"l", "u", "w", "m"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "l", "lower"), nil, 0o600)
}

// existingAncestor is the nearest directory at or above path that exists.
func existingAncestor(path string) string {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		if p == filepath.Dir(p) {
			return p
		}
	}
}

// removeTree removes what the probe made, opening up first the directories
// overlayfs leaves at mode 0 (w/work).
func removeTree(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700) // before WalkDir reads it
		}
		return nil
	})
	os.RemoveAll(dir)
}
