package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ProbeLayers lays out in dir (empty) two layers in the store's format, an
// upper and a work directory and a mount point, for a probe of a driver:
// the bottom layer has /gone and /opaque/below, the top one whites out
// /gone and makes /opaque opaque, with /opaque/above. It runs where the
// layers are unpacked (root of the user namespace, Linux 5.8+ for the
// whiteout). lower is top first.
func ProbeLayers(dir string) (lower []string, upper, work, merged string, err error) {
	top, bottom := filepath.Join(dir, "l0"), filepath.Join(dir, "l1")
	upper, work, merged = filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	steps := []func() error{
		func() error {
			return mkdirs(top, bottom, upper, work, merged, filepath.Join(top, "opaque"), filepath.Join(bottom, "opaque"))
		},
		func() error { return os.WriteFile(filepath.Join(bottom, "gone"), []byte("x\n"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(bottom, "opaque", "below"), []byte("x\n"), 0o644) },
		func() error { return os.WriteFile(filepath.Join(top, "opaque", "above"), []byte("x\n"), 0o644) },
		func() error { return unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR|0o600, 0) },
		func() error { return unix.Lsetxattr(filepath.Join(top, "opaque"), opaqueXattr, []byte("y"), 0) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, "", "", "", fmt.Errorf("lay out the probe's layers in %s: %w", dir, err)
		}
	}
	return []string{top, bottom}, upper, work, merged, nil
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// CheckMerged checks a root made of ProbeLayers's layers, mounted on
// merged: the whiteout and the opaque directory hide what is below them,
// the rest shows, and a write goes through (into the upper directory).
func CheckMerged(merged string) error {
	exists := func(name string) bool {
		_, err := os.Lstat(filepath.Join(merged, name))
		return err == nil
	}
	switch {
	case !exists("opaque/above"):
		return errors.New("the top layer's /opaque/above is missing")
	case exists("gone"):
		return errors.New("a whiteout (a character device 0/0) does not hide the lower layer's file")
	case exists("opaque/below"):
		return errors.New("an opaque directory (" + opaqueXattr + ") shows the lower layer's files")
	}
	if err := os.WriteFile(filepath.Join(merged, "opaque", "written"), []byte("x\n"), 0o644); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := os.Remove(filepath.Join(merged, "opaque", "above")); err != nil {
		return fmt.Errorf("remove a lower layer's file: %w", err)
	}
	if exists("opaque/above") {
		return errors.New("a removed lower layer's file still shows")
	}
	return nil
}
