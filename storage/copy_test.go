package storage

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// layout makes a layer directory from a list of steps.
type step func(root string) error

func file(name, content string, mode os.FileMode) step {
	return func(root string) error {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
		return unix.Chmod(p, uint32(mode)) // past the umask, setuid included
	}
}

func dir(name string, mode os.FileMode) step {
	return func(root string) error {
		p := filepath.Join(root, name)
		if err := os.Mkdir(p, mode); err != nil {
			return err
		}
		return unix.Chmod(p, uint32(mode))
	}
}

func symlink(name, target string) step {
	return func(root string) error { return os.Symlink(target, filepath.Join(root, name)) }
}

func hardlink(name, target string) step {
	return func(root string) error { return os.Link(filepath.Join(root, target), filepath.Join(root, name)) }
}

func whiteout(name string) step {
	return func(root string) error { return unix.Mknod(filepath.Join(root, name), unix.S_IFCHR|0o600, 0) }
}

func xattr(name, key, value string) step {
	return func(root string) error { return unix.Lsetxattr(filepath.Join(root, name), key, []byte(value), 0) }
}

func mtime(name string, t time.Time) step {
	return func(root string) error { return os.Chtimes(filepath.Join(root, name), t, t) }
}

func layer(t *testing.T, steps ...step) string {
	t.Helper()
	root := t.TempDir()
	for _, s := range steps {
		if err := s(root); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP) {
				t.Skipf("lay out a layer: %v (a whiteout needs Linux 5.8+, user xattrs a file system that has them)", err)
			}
			t.Fatal(err)
		}
	}
	return root
}

// TestCopy: the layers applied bottom up as overlayfs shows them, with
// their metadata and hard links; never through a symlink of a lower layer.
func TestCopy(t *testing.T) {
	outside := t.TempDir()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	bottom := layer(t,
		dir("etc", 0o755), file("etc/passwd", "p\n", 0o644), file("etc/gone", "g\n", 0o644), symlink("etc/link", "passwd"),
		dir("var", 0o755), dir("var/old", 0o755), file("var/old/a", "a\n", 0o644),
		symlink("escape", outside), file("hard1", "hh\n", 0o4755), hardlink("hard2", "hard1"),
		file("attrs", "x\n", 0o600), xattr("attrs", "user.test", "v"),
		dir("marked", 0o755), xattr("marked", opaqueXattr, "y"), file("marked/kept", "k\n", 0o644),
		func(root string) error { return unix.Mkfifo(filepath.Join(root, "fifo"), 0o640) },
		mtime("etc/passwd", old),
	)
	top := layer(t,
		dir("etc", 0o750), whiteout("etc/gone"), file("etc/passwd", "P2\n", 0o600),
		dir("var", 0o755), dir("var/old", 0o755), xattr("var/old", opaqueXattr, "y"), file("var/old/b", "b\n", 0o644),
		dir("escape", 0o755), file("escape/f", "f\n", 0o644),
		mtime("etc", old), mtime("var/old/b", old),
	)
	dst := t.TempDir()
	os.Chmod(dst, 0o711)
	if err := Copy(dst, []string{top, bottom}); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(b)
	}
	if got := read("etc/passwd"); got != "P2\n" {
		t.Errorf("/etc/passwd replaced by the top layer: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dst, "etc/gone")); !os.IsNotExist(err) {
		t.Errorf("/etc/gone, whited out: %v", err)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "etc/link")); l != "passwd" {
		t.Errorf("/etc/link: %q", l)
	}
	if names := list(t, filepath.Join(dst, "var/old")); len(names) != 1 || names[0] != "b" {
		t.Errorf("/var/old, opaque in the top layer: %v", names)
	}
	if names := list(t, filepath.Join(dst, "marked")); len(names) != 1 {
		t.Errorf("/marked, opaque in the bottom layer, keeps its own files: %v", names)
	}
	for _, name := range []string{"marked", "var/old"} {
		if _, err := unix.Lgetxattr(filepath.Join(dst, name), opaqueXattr, make([]byte, 8)); err == nil {
			t.Errorf("/%s carries %s into the copy", name, opaqueXattr)
		}
	}
	if st, err := os.Lstat(filepath.Join(dst, "escape")); err != nil || !st.IsDir() || read("escape/f") != "f\n" {
		t.Errorf("/escape, a symlink replaced by a directory: %v, %v", st, err)
	}
	if names := list(t, outside); len(names) != 0 {
		t.Errorf("the copy wrote through a lower layer's symlink: %v", names)
	}
	var h1, h2 unix.Stat_t
	unix.Lstat(filepath.Join(dst, "hard1"), &h1)
	unix.Lstat(filepath.Join(dst, "hard2"), &h2)
	if h1.Ino != h2.Ino || h1.Nlink != 2 || h1.Mode&0o7777 != 0o4755 {
		t.Errorf("hard links: inodes %d %d, %d links, mode %o", h1.Ino, h2.Ino, h1.Nlink, h1.Mode&0o7777)
	}
	if st, err := os.Lstat(filepath.Join(dst, "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm() != 0o640 {
		t.Errorf("fifo: %v, %v", st, err)
	}
	if v := make([]byte, 8); true {
		n, err := unix.Lgetxattr(filepath.Join(dst, "attrs"), "user.test", v)
		if err != nil || string(v[:n]) != "v" {
			t.Errorf("xattr user.test: %q, %v", v[:max(n, 0)], err)
		}
	}
	for name, want := range map[string]os.FileMode{"etc": 0o750, "etc/passwd": 0o600, "attrs": 0o600, ".": 0o711} {
		if st, err := os.Lstat(filepath.Join(dst, name)); err != nil || st.Mode().Perm() != want {
			t.Errorf("/%s: mode %v, %v; want %v", name, st.Mode().Perm(), err, want)
		}
	}
	for _, name := range []string{"etc", "var/old/b"} {
		if st, err := os.Lstat(filepath.Join(dst, name)); err != nil || !st.ModTime().Equal(old) {
			t.Errorf("/%s: mtime %v, %v; want %v", name, st.ModTime(), err, old)
		}
	}
	if st, _ := os.Lstat(filepath.Join(dst, "etc/passwd")); st.ModTime().Equal(old) {
		t.Errorf("/etc/passwd has the bottom layer's mtime, not the top's")
	}
}

// TestCopyOwners: owners stay (as root, or root of a user namespace).
func TestCopyOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to other ids needs root (rabbitc copies as root of a user namespace)")
	}
	l := layer(t, dir("d", 0o750), file("d/f", "x\n", 0o2755), symlink("s", "d"),
		func(root string) error {
			if err := os.Lchown(filepath.Join(root, "d/f"), 1000, 1001); err != nil {
				return err
			}
			if err := unix.Chmod(filepath.Join(root, "d/f"), 0o2755); err != nil { // chown cleared it
				return err
			}
			if err := os.Lchown(filepath.Join(root, "s"), 7, 8); err != nil {
				return err
			}
			return os.Lchown(filepath.Join(root, "d"), 101, 102)
		})
	dst := t.TempDir()
	if err := Copy(dst, []string{l}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][3]uint32{"d": {101, 102, 0o750}, "d/f": {1000, 1001, 0o2755}, "s": {7, 8, 0o777}} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dst, name), &st); err != nil || st.Uid != want[0] || st.Gid != want[1] || st.Mode&0o7777 != want[2] {
			t.Errorf("/%s: %d:%d %o, %v; want %d:%d %o", name, st.Uid, st.Gid, st.Mode&0o7777, err, want[0], want[1], want[2])
		}
	}
}

func list(t *testing.T, d string) []string {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}
