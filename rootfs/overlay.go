package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlay is an image's copy-on-write root: the image's layers read-only,
// the container's own writes in Upper. Setup mounts it on Config.Rootfs in
// the container's mount namespace, before anything else, with kernel
// overlayfs in a user namespace (userxattr: the whiteouts and opaque
// markers unpacking wrote as user.overlay.* xattrs, Linux 5.11+), or, with
// Fuse, as a FUSE file system that fuse-overlayfs serves.
type Overlay struct {
	Lower []string // the layers' directories, top first
	Upper string   // the container's writes ("" for a read-only root)
	Work  string   // overlayfs's work directory, on Upper's file system
	// Fuse, where the kernel's overlayfs refuses a user namespace, mounts
	// the root as a FUSE file system over an open /dev/fuse instead; a
	// daemon that the caller starts serves it (fuse-overlayfs, with Lower,
	// Upper and Work).
	Fuse *FuseMount `json:",omitempty"`
}

// ErrOverlay is in the error of a mount of an image's overlay that the
// kernel refused (errors.Is): a matter of the host's kernel, not of the
// image.
var ErrOverlay = errors.New("rootless overlayfs needs Linux 5.11+")

// FuseMount is a FUSE mount made with descriptors the process inherited.
// A FUSE daemon can read from /dev/fuse only once its file system is
// mounted: the caller starts it when the byte written to Mounted arrives.
// Until the daemon answers, whoever touches the mount waits (Setup too).
type FuseMount struct {
	Dev     int // an open /dev/fuse, of this user namespace; closed once mounted
	Mounted int // a pipe's write end: one byte once mounted, then closed
}

// MountOverlay mounts o on target, as Setup does with Config.Overlay; a
// probe of the drivers mounts its own layers with it.
//
// Each lower directory goes to the kernel on its own (fsconfig
// "lowerdir+", Linux 6.8+), so any number of layers fits, where one
// "lowerdir=a:b:c" option is cut at a page (4096 bytes: about 60 layers of
// store paths). Older kernels get the option string, with the layers' paths
// relative to their common parent (init's working directory for the
// mount), which keeps them short.
func MountOverlay(o *Overlay, target string) error {
	if o.Fuse != nil {
		return mountFuse(o.Fuse, target)
	}
	if len(o.Lower) == 0 {
		return errors.New("overlay: no layers")
	}
	for _, l := range append(append([]string(nil), o.Lower...), o.Upper, o.Work) {
		if l != "" && (!filepath.IsAbs(l) || strings.ContainsAny(l, ":,\x00")) {
			return fmt.Errorf("overlay: layer path %q: not absolute, or holds ':' or ','", l)
		}
	}
	err := mountOverlayFsconfig(o, target)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = mountOverlayOptions(o, target)
	}
	if err != nil {
		return fmt.Errorf("mount the image's overlay on %s: %w (%w)", target, err, ErrOverlay)
	}
	return nil
}

func mountOverlayFsconfig(o *Overlay, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, l := range o.Lower {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return err
		}
	}
	if o.Upper != "" {
		if err := unix.FsconfigSetString(fd, "upperdir", o.Upper); err != nil {
			return err
		}
		if err := unix.FsconfigSetString(fd, "workdir", o.Work); err != nil {
			return err
		}
	}
	if err := unix.FsconfigSetFlag(fd, "userxattr"); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return err
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

func mountOverlayOptions(o *Overlay, target string) error {
	parent := filepath.Dir(o.Lower[0])
	rel := make([]string, len(o.Lower))
	for i, l := range o.Lower {
		if filepath.Dir(l) != parent {
			rel = o.Lower // no common parent: absolute paths
			parent = ""
			break
		}
		rel[i] = filepath.Base(l)
	}
	opts := "lowerdir=" + strings.Join(rel, ":")
	if o.Upper != "" {
		opts += ",upperdir=" + o.Upper + ",workdir=" + o.Work
	}
	opts += ",userxattr"
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("%d layers do not fit in one mount option on this kernel (Linux 6.8+ takes any number)", len(o.Lower))
	}
	if parent != "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if err := os.Chdir(parent); err != nil {
			return err
		}
		defer os.Chdir(wd)
	}
	return unix.Mount("overlay", target, "overlay", 0, opts)
}

// mountFuse mounts a FUSE file system on target over the open /dev/fuse
// f.Dev, for every process of the user namespace (allow_other; the kernel
// checks permissions by the files' modes, default_permissions, as
// fuse-overlayfs mounts itself), and tells the caller through f.Mounted.
// Both descriptors are closed here: the device's other copies are the
// daemon's and its starter's, which decides what becomes of the mount
// should the daemon die.
func mountFuse(f *FuseMount, target string) error {
	dev, mounted := os.NewFile(uintptr(f.Dev), "/dev/fuse"), os.NewFile(uintptr(f.Mounted), "mounted")
	defer mounted.Close()
	defer dev.Close()
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", f.Dev)
	if err := unix.Mount("fuse-overlayfs", target, "fuse.fuse-overlayfs", 0, data); err != nil {
		return fmt.Errorf("mount the image's fuse-overlayfs on %s: %w", target, err)
	}
	if _, err := mounted.Write([]byte{1}); err != nil {
		return fmt.Errorf("mount the image's fuse-overlayfs on %s: tell the daemon: %w", target, err)
	}
	return nil
}
