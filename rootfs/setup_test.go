package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetup runs Setup, PivotRoot and Finish in new namespaces and checks the
// container's view from inside (childFull) and the host's afterwards.
func TestSetup(t *testing.T) {
	tests := []struct {
		name     string
		readOnly bool
		hostNet  bool // --net host: no network namespace of its own
		newNet   bool
	}{
		{name: "default", newNet: true},
		{name: "read-only", readOnly: true, newNet: true},
		{name: "net host", hostNet: true},
		{name: "sysfs refused", newNet: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t, true)
			rw := filepath.Join(tr.base, "vol-rw")
			ro := filepath.Join(tr.base, "vol-ro")
			for _, d := range []string{rw, ro} {
				mustMkdir(t, d)
				mustWrite(t, d+"/hello.txt", "hello\n")
			}
			cfg := tr.config(volume(rw, "/data/rw", false), volume(ro, "/data/ro", true))
			cfg.ReadOnly = tt.readOnly
			cfg.HostNetwork = tt.hostNet
			run(t, "full", childArgs{Config: cfg, Marker: tr.marker}, tt.newNet)

			if _, err := os.Stat(rw + "/written-inside"); err != nil {
				t.Errorf("write in the rw volume not visible on the host: %v", err)
			}
			if _, err := os.Stat(ro + "/written-inside"); err == nil {
				t.Errorf("write in the ro volume reached the host")
			}
			// The only changes to the rootfs on disk are the mount points.
			var created []string
			filepath.Walk(tr.rootfs, func(p string, fi os.FileInfo, err error) error {
				if err == nil && p != tr.rootfs {
					created = append(created, strings.TrimPrefix(p, tr.rootfs))
				}
				return nil
			})
			want := "/bin /bin/busybox /data /data/ro /data/rw /dev /etc /etc/hostname /etc/hosts /etc/resolv.conf /proc /sys"
			if got := strings.Join(created, " "); got != want {
				t.Errorf("rootfs on disk after the run:\n got %s\nwant %s", got, want)
			}
			if b, err := os.ReadFile(tr.rootfs + "/etc/hosts"); err != nil || len(b) != 0 {
				t.Errorf("rootfs /etc/hosts on disk = %q, %v; want the empty mount point", b, err)
			}
		})
	}
}

// TestSetupNested runs the container one user namespace deeper, below a
// volume source whose nosuid, nodev and noexec are locked: the read-only
// remount must repeat them, or the kernel says EPERM.
func TestSetupNested(t *testing.T) {
	tr := newTree(t, true)
	locked := filepath.Join(tr.base, "locked")
	mustMkdir(t, locked)
	cfg := tr.config(volume(locked, "/locked", true))
	out := run(t, "nested", childArgs{
		Config:       cfg,
		Marker:       tr.marker,
		LockedVolume: "/locked",
		Nested:       "full",
		NestedSrc:    locked,
		NewNet:       true,
	}, true)
	if !strings.Contains(out, "ok") {
		t.Fatalf("nested child output: %s", out)
	}
}

// TestSetupProcCovered runs Setup one user namespace below a /proc with a
// covered file, where the kernel refuses a fresh procfs: Setup fails with
// the cause and binds no procfs, the host's least of all.
func TestSetupProcCovered(t *testing.T) {
	tr := newTree(t, true)
	src := filepath.Join(tr.base, "src")
	mustMkdir(t, src)
	out := run(t, "nested", childArgs{
		Config:    tr.config(),
		CoverProc: true,
		Nested:    "proc-refused",
		NestedSrc: src,
		NewNet:    true,
	}, true)
	if !strings.Contains(out, "ok") {
		t.Fatalf("nested child output: %s", out)
	}
}

// TestSetupSubids runs the container with the mapping of a real run (0 and
// 1..65536 mapped): gid 5 exists, so /dev/pts gets gid=5 and its ptys
// belong to the tty group.
func TestSetupSubids(t *testing.T) {
	tr := newTree(t, true)
	cfg := tr.config()
	runWith(t, "full", childArgs{Config: cfg, Marker: tr.marker, TTYGroup: true}, true, true)
}
