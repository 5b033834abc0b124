package storage

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestCacheRoundTrip(t *testing.T) {
	store := t.TempDir()
	if _, ok := ReadCache(store); ok {
		t.Fatal("a cache in an empty store")
	}
	p := &Probe{Kernel: KernelRelease(), Overlay: "mount overlay: invalid argument\n(needs 5.11)", FuseProgram: "/usr/bin/fuse-overlayfs"}
	if err := WriteCache(store, p); err != nil {
		t.Fatal(err)
	}
	got, ok := ReadCache(store)
	want := *p
	want.Overlay = "mount overlay: invalid argument (needs 5.11)" // one line
	if !ok || !reflect.DeepEqual(*got, want) {
		t.Errorf("ReadCache = %+v, %v; want %+v", got, ok, want)
	}
	if ents, _ := os.ReadDir(store); len(ents) != 1 {
		t.Errorf("the store holds %d files, want the cache alone", len(ents))
	}
	// Another kernel's answer is no answer.
	b, _ := os.ReadFile(filepath.Join(store, CacheFile))
	os.WriteFile(filepath.Join(store, CacheFile), []byte(strings.Replace(string(b), "kernel "+p.Kernel, "kernel 4.19.0-old", 1)), 0o644)
	if _, ok := ReadCache(store); ok {
		t.Error("a cache of another kernel was taken")
	}
	// Nor is a file without a driver's line.
	os.WriteFile(filepath.Join(store, CacheFile), []byte("kernel "+p.Kernel+"\noverlay ok\n"), 0o644)
	if _, ok := ReadCache(store); ok {
		t.Error("a cache without a fuse-overlayfs line was taken")
	}
}

func TestChoose(t *testing.T) {
	works := &Probe{Kernel: "6.1.0"}
	noOverlay := &Probe{Kernel: "5.4.0", Overlay: "mount overlay: invalid argument", FuseProgram: "/usr/bin/fuse-overlayfs"}
	noFuse := &Probe{Kernel: "5.4.0", Overlay: "mount overlay: invalid argument", Fuse: ErrNoFuseProgram.Error()}
	brokenFuse := &Probe{Kernel: "5.4.0", Overlay: "x", Fuse: "open /dev/fuse: permission denied", FuseProgram: "/usr/bin/fuse-overlayfs"}
	for _, tc := range []struct {
		p       *Probe
		forced  string
		want    Driver
		warning string // a part of it
		err     string
	}{
		{p: works, want: Overlay},
		{p: works, forced: "fuse-overlayfs", want: FuseOverlayfs},
		{p: works, forced: "vfs", want: VFS},
		{p: noOverlay, want: FuseOverlayfs},
		{p: noOverlay, forced: "overlay", err: "storage driver overlay (RABBITC_STORAGE_DRIVER): does not work here: mount overlay: invalid argument"},
		{p: noFuse, want: VFS, warning: "copying the image, which takes time and space (no overlayfs in a user namespace on Linux 5.4.0, no fuse-overlayfs: install fuse-overlayfs)"},
		{p: noFuse, forced: "fuse-overlayfs", err: "does not work here: fuse-overlayfs not found in $PATH (install fuse-overlayfs)"},
		{p: noFuse, forced: "vfs", want: VFS},
		{p: brokenFuse, want: VFS, warning: "fuse-overlayfs does not work: open /dev/fuse: permission denied"},
		{p: works, forced: "overlay2", err: "RABBITC_STORAGE_DRIVER=overlay2: no such storage driver (overlay, fuse-overlayfs or vfs"},
	} {
		d, warning, err := Choose(tc.p, tc.forced)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Choose(%+v, %q) = %q, %v; want error %q", tc.p, tc.forced, d, err, tc.err)
			}
		case err != nil || d != tc.want || !strings.Contains(warning, tc.warning) || (tc.warning == "") != (warning == ""):
			t.Errorf("Choose(%+v, %q) = %q, %q, %v; want %q, %q", tc.p, tc.forced, d, warning, err, tc.want, tc.warning)
		}
	}
}

func TestStale(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/fuse-overlayfs", nil }
	missing := func(string) (string, error) { return "", errors.New("not found") }
	noFuse := &Probe{Overlay: "x", Fuse: ErrNoFuseProgram.Error()}
	if !noFuse.Stale(found) {
		t.Error("a fuse-overlayfs installed since the probe does not make it stale")
	}
	if noFuse.Stale(missing) {
		t.Error("stale with still no fuse-overlayfs")
	}
	if (&Probe{}).Stale(found) {
		t.Error("stale where the kernel's overlayfs works")
	}
	if (&Probe{Overlay: "x", Fuse: "y", FuseProgram: "/usr/bin/fuse-overlayfs"}).Stale(found) {
		t.Error("stale where the probe ran fuse-overlayfs already")
	}
}

func TestFuseCommand(t *testing.T) {
	lower := []string{"/store/layers/sha256/aaa", "/store/layers/sha256/bbb"}
	cmd, err := FuseCommand("/usr/bin/fuse-overlayfs", lower, "/store/containers/c/upper", "/store/containers/c/work")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fuse-overlayfs", "-f", "-o", "lowerdir=aaa:bbb,upperdir=/store/containers/c/upper,workdir=/store/containers/c/work", "/dev/fd/3"}
	if !reflect.DeepEqual(cmd.Args, want) || cmd.Dir != "/store/layers/sha256" || cmd.Path != "/usr/bin/fuse-overlayfs" {
		t.Errorf("FuseCommand: %q in %s (%s), want %q in /store/layers/sha256", cmd.Args, cmd.Dir, cmd.Path, want)
	}
	// No common parent: absolute paths, from /.
	cmd, err = FuseCommand("/usr/bin/fuse-overlayfs", []string{"/a/x", "/b/y"}, "", "")
	if err != nil || cmd.Args[3] != "lowerdir=/a/x:/b/y" || cmd.Dir != "/" {
		t.Errorf("FuseCommand without a common parent: %q in %s, %v", cmd.Args, cmd.Dir, err)
	}
	for _, bad := range []string{"/a,b", "/a:b", "relative", `/a\b`} {
		if _, err := FuseCommand("/usr/bin/fuse-overlayfs", []string{bad}, "", ""); err == nil {
			t.Errorf("FuseCommand took the layer %q", bad)
		}
	}
	if _, err := FuseCommand("", lower, "", ""); !errors.Is(err, ErrNoFuseProgram) {
		t.Errorf("FuseCommand without a program: %v", err)
	}
}
