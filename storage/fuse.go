package storage

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// FuseDevFD is where fuse-overlayfs finds the /dev/fuse its file system is
// mounted with (FuseCommand).
const FuseDevFD = 3

// FuseCommand is fuse-overlayfs serving the layers (top first), upper and
// work over a FUSE file system that is mounted already, with the /dev/fuse
// descriptor the command inherits as FuseDevFD (its ExtraFiles[0]):
// libfuse takes a mount point "/dev/fd/N" for such a descriptor and mounts
// nothing itself. So the mount can be made in the container's mount
// namespace while the daemon lives outside the container's PID namespace,
// out of its reach. It stays in the foreground (-f), the caller's child, and
// ends when the file system is unmounted (the container's mount namespace
// is gone).
//
// The layers' paths go into one option string: they are named relative to
// their common parent, the command's Dir, as rootfs names them for the
// kernel's overlayfs, which keeps 70 layers of the store within 5 KB.
// The caller sets the standard streams and SysProcAttr.
func FuseCommand(program string, lower []string, upper, work string) (*exec.Cmd, error) {
	if program == "" {
		return nil, ErrNoFuseProgram
	}
	if len(lower) == 0 {
		return nil, errors.New("fuse-overlayfs: no layers")
	}
	for _, p := range append(append([]string(nil), lower...), upper, work) {
		if p != "" && (!filepath.IsAbs(p) || strings.ContainsAny(p, ":,\\\x00")) {
			return nil, fmt.Errorf("fuse-overlayfs: layer path %q: not absolute, or holds ':', ',' or '\\'", p)
		}
	}
	dir, rel := relativeLayers(lower)
	opts := "lowerdir=" + strings.Join(rel, ":")
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	cmd := exec.Command(program, "-f", "-o", opts, fmt.Sprintf("/dev/fd/%d", FuseDevFD))
	cmd.Args[0] = "fuse-overlayfs"
	cmd.Dir = dir
	return cmd, nil
}

// relativeLayers names the layers relative to their common parent, when
// they have one (the store's layers/sha256); else absolutely, from "/".
func relativeLayers(lower []string) (string, []string) {
	parent := filepath.Dir(lower[0])
	rel := make([]string, len(lower))
	for i, l := range lower {
		if filepath.Dir(l) != parent {
			return "/", lower
		}
		rel[i] = filepath.Base(l)
	}
	return parent, rel
}
