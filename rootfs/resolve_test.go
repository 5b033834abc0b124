package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// openInRoot keeps every symlink and ".." inside the root, with openat2 and
// with pathrs-lite's walk (kernels without openat2).
func TestOpenInRoot(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "root")
	for _, d := range []string{"root/etc", "root/target", "outside"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"root/abs":     "/target",
		"root/dotdot":  "../../../../../../target",
		"root/etc/up":  "../../outside",
		"root/loop":    "loop",
		"root/magic":   "/proc/self/root",
		"root/escape2": "/../outside",
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(top, name)); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for _, without := range []bool{false, true} {
		noOpenat2.Store(without)
		for path, want := range map[string]string{
			"/abs": "/target", "/dotdot": "/target", "/../../target": "/target", "etc/../target": "/target",
			"/etc/up": "", "/escape2": "", "/loop": "", "/magic": "",
		} {
			h, err := openInRoot(dir, path)
			if want == "" {
				if err == nil {
					real, _ := realPath(h)
					h.Close()
					if !strings.HasPrefix(real, root+"/") && real != root {
						t.Errorf("without openat2 %v: %s opened %s, outside the root", without, path, real)
					}
				}
				continue
			}
			if err != nil {
				t.Errorf("without openat2 %v: %s: %v", without, path, err)
				continue
			}
			real, err := realPath(h)
			h.Close()
			if err != nil || real != root+want {
				t.Errorf("without openat2 %v: %s opened %s (%v), want %s", without, path, real, err, root+want)
			}
		}
	}
	noOpenat2.Store(false)
}
