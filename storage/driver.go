package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Driver is how a container's root is made from the image's layers.
type Driver string

// The drivers, in the order Choose tries them.
const (
	Overlay       Driver = "overlay"        // kernel overlayfs in the user namespace
	FuseOverlayfs Driver = "fuse-overlayfs" // overlayfs in FUSE
	VFS           Driver = "vfs"            // a copy of the layers
)

// EnvDriver forces a driver, as podman's --storage-driver (and
// STORAGE_DRIVER) do; unset or empty, Choose takes the first that works.
const EnvDriver = "RABBITC_STORAGE_DRIVER"

// CacheFile is the probe's cache in the store.
const CacheFile = "storage-driver"

// Probe is what a probe found on one kernel: for each driver that may not
// work, "" when it works, else why not (with the fix where there is one).
type Probe struct {
	Kernel      string // uname -r
	Overlay     string
	Fuse        string
	FuseProgram string // the fuse-overlayfs the probe ran, "" if none was found
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ReadCache reads the probe's answer for this kernel from the store; false
// when there is none, it is of another kernel, or it cannot be read.
func ReadCache(store string) (*Probe, bool) {
	b, err := os.ReadFile(filepath.Join(store, CacheFile))
	if err != nil {
		return nil, false
	}
	p, err := parseCache(b)
	if err != nil || p.Kernel != KernelRelease() {
		return nil, false
	}
	return p, true
}

// parseCache reads the cache's lines, "KEY VALUE", where a value of "ok"
// is a driver that works.
func parseCache(b []byte) (*Probe, error) {
	p := &Probe{}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		if v == "ok" {
			v = ""
		}
		switch k {
		case "kernel":
			p.Kernel = v
		case "overlay":
			p.Overlay = v
		case "fuse-overlayfs":
			p.Fuse = v
		case "fuse-program":
			p.FuseProgram = v
		default:
			continue
		}
		seen[k] = true
	}
	for _, k := range []string{"kernel", "overlay", "fuse-overlayfs"} {
		if !seen[k] {
			return nil, fmt.Errorf("no %s line", k)
		}
	}
	return p, nil
}

// format is the cache file's content.
func (p *Probe) format() []byte {
	ok := func(s string) string {
		if s == "" {
			return "ok"
		}
		return strings.ReplaceAll(s, "\n", " ")
	}
	var b bytes.Buffer
	b.WriteString("# rabbitc's storage drivers on this kernel (see RABBITC_STORAGE_DRIVER); remove the file to probe again\n")
	fmt.Fprintf(&b, "kernel %s\noverlay %s\nfuse-overlayfs %s\n", p.Kernel, ok(p.Overlay), ok(p.Fuse))
	if p.FuseProgram != "" {
		fmt.Fprintf(&b, "fuse-program %s\n", p.FuseProgram)
	}
	return b.Bytes()
}

// WriteCache replaces the store's cache with p, by rename: a reader sees
// the old file or the new one, whole.
func WriteCache(store string, p *Probe) error {
	tmp, err := os.CreateTemp(store, "."+CacheFile+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(store, CacheFile), err)
	}
	_, err = tmp.Write(p.format())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(store, CacheFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Join(store, CacheFile), err)
	}
	return nil
}

// Stale tells whether the answer is worth a new probe although the kernel
// is the same: the kernel's overlayfs does not work and the probe found no
// fuse-overlayfs, which lookPath finds now (installed since, as the copy's
// warning asks).
func (p *Probe) Stale(lookPath func(string) (string, error)) bool {
	if p.Overlay == "" || p.FuseProgram != "" {
		return false
	}
	_, err := lookPath("fuse-overlayfs")
	return err == nil
}

// ParseDriver checks a driver's name (EnvDriver's value); "" is none.
func ParseDriver(name string) (Driver, error) {
	switch d := Driver(name); d {
	case "", Overlay, FuseOverlayfs, VFS:
		return d, nil
	}
	return "", fmt.Errorf("%s=%s: no such storage driver (overlay, fuse-overlayfs or vfs; unset it to take the first that works)", EnvDriver, name)
}

// Choose picks the driver: forced (EnvDriver's value) if it works, else
// the first that works. The copy comes with a warning line (without
// "rabbitc: warning: "), unless it was asked for.
func Choose(p *Probe, forced string) (Driver, string, error) {
	d, err := ParseDriver(forced)
	if err != nil {
		return "", "", err
	}
	why := map[Driver]string{Overlay: p.Overlay, FuseOverlayfs: p.Fuse}
	if d != "" {
		if why[d] != "" {
			return "", "", fmt.Errorf("storage driver %s (%s): does not work here: %s", d, EnvDriver, why[d])
		}
		return d, "", nil
	}
	switch {
	case p.Overlay == "":
		return Overlay, "", nil
	case p.Fuse == "":
		return FuseOverlayfs, "", nil
	}
	fuse := "no fuse-overlayfs: install fuse-overlayfs"
	if p.FuseProgram != "" {
		fuse = "fuse-overlayfs does not work: " + p.Fuse
	}
	return VFS, fmt.Sprintf("copying the image, which takes time and space (no overlayfs in a user namespace on Linux %s, %s)", p.Kernel, fuse), nil
}

// ErrNoFuseProgram is the probe's answer when fuse-overlayfs is not found.
var ErrNoFuseProgram = errors.New("fuse-overlayfs not found in $PATH (install fuse-overlayfs)")
