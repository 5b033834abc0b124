package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestCheckCommand resolves commands in a rootfs on disk as init would after
// the mounts, symlinks inside the rootfs included.
func TestCheckCommand(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "rootfs")
	for _, d := range []string{"bin", "usr/bin", "app", "data"} {
		mustMkdir(t, filepath.Join(root, d))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("\x7fELF"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin/data"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(root, "app/run"), []byte("x"), 0o700))
	must(os.WriteFile(filepath.Join(base, "outside"), []byte("x"), 0o755)) // next to the rootfs: never found
	mustSymlink(t, "busybox", filepath.Join(root, "bin/sh"))
	mustSymlink(t, "/bin/busybox", filepath.Join(root, "usr/bin/env"))
	mustSymlink(t, "../../../../../outside", filepath.Join(root, "bin/escape"))
	mustSymlink(t, "/opt/bin/server", filepath.Join(root, "bin/server")) // into a volume
	mustSymlink(t, "/data", filepath.Join(root, "srv"))                  // a volume destination through a symlink
	must(unix.Mkfifo(filepath.Join(root, "bin/fifo"), 0o755))

	vols := Config{Rootfs: root, Mounts: []specs.Mount{
		{Type: "bind", Source: base, Destination: "/opt/bin"},
		{Type: "bind", Source: base, Destination: "/srv"},
		{Type: "tmpfs", Source: "tmpfs", Destination: "/run"},
	}}
	const path = "/usr/local/bin:/usr/bin:/bin"
	for _, tc := range []struct {
		cfg            Config
		name, wd, path string
		code           int
		want           string // in the error
	}{
		{Config{Rootfs: root}, "/bin/sh", "", path, 0, ""},
		{Config{Rootfs: root}, "sh", "", path, 0, ""},
		{Config{Rootfs: root}, "env", "", path, 0, ""},
		{Config{Rootfs: root}, "./run", "/app", path, 0, ""},
		{Config{Rootfs: root}, "run", "/app", "bin:.", 0, ""},
		{Config{Rootfs: root}, "/bin/nosuch", "", path, 127, "exec /bin/nosuch: no such file or directory"},
		{Config{Rootfs: root}, "nosuch", "", path, 127, `exec: "nosuch": executable file not found in $PATH`},
		{Config{Rootfs: root}, "/bin/escape", "", path, 127, "no such file or directory"},
		{Config{Rootfs: root}, "/bin/data", "", path, 126, "exec /bin/data: permission denied"},
		{Config{Rootfs: root}, "data", "", path, 126, "exec /bin/data: permission denied"},
		{Config{Rootfs: root}, "/bin", "", path, 126, "is a directory"},
		{Config{Rootfs: root}, "/bin/fifo", "", path, 126, "not a regular file"},
		{Config{Rootfs: root}, "/bin/sh/x", "", path, 126, "not a directory"},
		{Config{Rootfs: root}, "/opt/bin/server", "", path, 127, "no such file"},
		{Config{Rootfs: root}, "", "", path, 127, "empty command"},
		{Config{Rootfs: root}, "/proc/self/exe", "", path, 0, ""}, // rabbitc's own mounts exist only later
		{Config{Rootfs: root}, "/dev/stdin", "", path, 0, ""},
		// What a volume or tmpfs will hold is init's to find.
		{vols, "/opt/bin/server", "", path, 0, ""},
		{vols, "/bin/server", "", path, 0, ""},
		{vols, "server", "", "/opt/bin", 0, ""},
		{vols, "/data/x", "", path, 0, ""},
		{vols, "/run/x", "", path, 0, ""},
		{vols, "/bin/nosuch", "", path, 127, "no such file"},
	} {
		code, err := CheckCommand(tc.cfg, tc.name, tc.wd, tc.path)
		if code != tc.code || (code != 0) != (err != nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckCommand(%q, wd %q, PATH %q, %d mounts) = %d, %v; want %d, %q",
				tc.name, tc.wd, tc.path, len(tc.cfg.Mounts), code, err, tc.code, tc.want)
		}
	}
}
