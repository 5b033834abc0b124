package hostcheck

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// probeCommand is the probe (Host.Probe) with args appended, its stderr
// kept for the error.
func probeCommand(probe []string, args ...string) *exec.Cmd {
	argv := append(append([]string(nil), probe...), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"GOMAXPROCS=1"}
	return cmd
}

// ProbeMain is the probe's side, in the child that UserNamespace and
// Overlay start in new namespaces: "userns" exits at once, "overlay DIR"
// mounts an overlay of DIR's l, u and w on DIR/m and writes through it.
// It prints what failed on stderr and returns the exit status.
func ProbeMain(args []string) int {
	var err error
	switch {
	case len(args) == 1 && args[0] == "userns":
	case len(args) == 2 && args[0] == "overlay":
		err = mountOverlay(args[1])
	default:
		err = fmt.Errorf("unknown probe %q", args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// mountOverlay mounts kernel overlayfs as rabbitc mounts an image's root:
// in a user namespace, with userxattr.
func mountOverlay(dir string) error {
	d := func(n string) string { return filepath.Join(dir, n) }
	opts := "lowerdir=" + d("l") + ",upperdir=" + d("u") + ",workdir=" + d("w") + ",userxattr"
	if err := unix.Mount("overlay", d("m"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay with userxattr: %w", err)
	}
	if err := os.Remove(d("m/lower")); err != nil { // a whiteout in u
		return fmt.Errorf("remove a lower file through the overlay: %w", err)
	}
	if err := os.WriteFile(d("m/upper"), nil, 0o600); err != nil {
		return fmt.Errorf("write through the overlay: %w", err)
	}
	return unix.Unmount(d("m"), 0)
}
