package unpack

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// capNetRaw is a v2 security.capability value: cap_net_raw permitted and
// effective.
var capNetRaw = func() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|0x1) // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	binary.LittleEndian.PutUint32(b[4:], 1<<13)          // permitted: cap_net_raw
	return string(b)
}()

var (
	longDir  = "long/" + strings.Repeat("d", 200)
	longFile = longDir + "/" + strings.Repeat("f", 250)
	longLink = strings.Repeat("../", 60) + "target"
)

// goodLayer has what issue 15 asks a layer to keep, one of each.
func goodLayer(t testing.TB) []byte {
	return mkTar(t,
		dir("./", perm(0o755)),
		dir("etc/", mtime(t2)),
		file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		file("etc/.wh.passwd", ""), // same layer: passwd stays
		file("etc/.wh.shadow", ""),
		dir("home/user/", owner(1000, 1000), perm(0o700), mtime(t2)),
		file("home/user/notes", "hi", owner(1000, 1001), perm(0o640), mtime(t2)),
		dir("bin/"),
		file("bin/su", "su", perm(0o4755)),
		file("bin/sgid", "sg", owner(0, 42), perm(0o2755)),
		file("bin/ping", "ping", perm(0o755), xattr("security.capability", capNetRaw), xattr("user.note", "kept"), xattr("trusted.x", "no")),
		hardlink("bin/su-link", "bin/su"),
		symlink("bin/sh", "busybox", owner(0, 42), mtime(t2)),
		dir("tmp/", perm(0o1777)),
		node(tar.TypeChar, "dev/null", 1, 3),
		node(tar.TypeBlock, "dev/sda", 8, 0),
		node(tar.TypeFifo, "run/fifo", 0, 0, owner(5, 5), perm(0o620)),
		dir("var/"),
		file("var/keep", "upper"),
		file("var/.wh..wh..opq", ""),
		dir(longDir),
		file(longFile, "long"),
		hardlink("long/hard", longFile),
		symlink("long/sym", longLink),
		file("x", "one"),
		file("x", "two"),
		dir("d/"),
		file("d/a", "a"),
		file("d", "now a file"),
		dir("m/", perm(0o700)),
		file("m/kept", "k"),
		dir("m/", owner(7, 7), perm(0o750)),
		file("implicit/a/b", "parents made"),
		file(".wh..wh.plnk/1.2", "aufs"),
	)
}

func unpackBytes(t *testing.T, tarball []byte, o Options) (string, Stats, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := Layer(dir, bytes.NewReader(tarball), o)
	return dir, st, err
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func TestLayerKeeps(t *testing.T) {
	needIDs(t, 1001)
	var notes []string
	dir, st, err := unpackBytes(t, goodLayer(t), testOptions(&notes))
	if err != nil {
		t.Fatal(err)
	}
	in := func(p string) string { return filepath.Join(dir, p) }
	type want struct {
		path     string
		typ      uint32
		mode     uint32 // permission bits; 0: not checked
		uid, gid uint32
		body     string
	}
	for _, w := range []want{
		{"etc/passwd", unix.S_IFREG, 0o644, 0, 0, "root:x:0:0::/root:/bin/sh\n"},
		{"home/user", unix.S_IFDIR, 0o700, 1000, 1000, ""},
		{"home/user/notes", unix.S_IFREG, 0o640, 1000, 1001, "hi"},
		{"bin/su", unix.S_IFREG, 0o4755, 0, 0, "su"},
		{"bin/sgid", unix.S_IFREG, 0o2755, 0, 42, "sg"},
		{"bin/sh", unix.S_IFLNK, 0, 0, 42, ""},
		{"tmp", unix.S_IFDIR, 0o1777, 0, 0, ""},
		{"run/fifo", unix.S_IFIFO, 0o620, 5, 5, ""},
		{longFile, unix.S_IFREG, 0o644, 0, 0, "long"},
		{"x", unix.S_IFREG, 0o644, 0, 0, "two"},
		{"d", unix.S_IFREG, 0o644, 0, 0, "now a file"},
		{"m", unix.S_IFDIR, 0o750, 7, 7, ""},
		{"m/kept", unix.S_IFREG, 0o644, 0, 0, "k"},
		{"implicit/a", unix.S_IFDIR, 0o755, 0, 0, ""},
		{"implicit/a/b", unix.S_IFREG, 0o644, 0, 0, "parents made"},
	} {
		s := lstat(t, in(w.path))
		if s.Mode&unix.S_IFMT != w.typ || (w.mode != 0 && s.Mode&0o7777 != w.mode) || s.Uid != w.uid || s.Gid != w.gid {
			t.Errorf("%s: mode %o owner %d:%d, want type %o mode %o owner %d:%d", w.path, s.Mode, s.Uid, s.Gid, w.typ, w.mode, w.uid, w.gid)
		}
		if w.typ == unix.S_IFREG {
			if b, _ := os.ReadFile(in(w.path)); string(b) != w.body {
				t.Errorf("%s: contents %q, want %q", w.path, b, w.body)
			}
		}
	}
	checkTimes(t, dir)
	checkLinks(t, dir)
	checkWhiteouts(t, dir)
	checkXattrs(t, dir)
	for _, gone := range []string{"dev/null", "dev/sda", "d/a", ".wh..wh.plnk", "etc/.wh.shadow", "var/.wh..wh..opq"} {
		if _, err := os.Lstat(in(gone)); !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("%s: exists (%v), want it skipped or removed", gone, err)
		}
	}
	for _, note := range []string{"dev/null: device node 1:3 skipped", "dev/sda: device node 8:0", "xattr trusted.x skipped", ".wh..wh.plnk/1.2: aufs metadata skipped"} {
		if !strings.Contains(strings.Join(notes, "\n"), note) {
			t.Errorf("no note %q in %q", note, notes)
		}
	}
	if st.Entries != 34 || st.Bytes == 0 {
		t.Errorf("stats %+v, want 34 entries and some bytes", st)
	}
}

func checkTimes(t *testing.T, dir string) {
	t.Helper()
	for _, c := range []struct {
		path string
		want int64
	}{{"etc", t2.Unix()}, {"home/user", t2.Unix()}, {"home/user/notes", t2.Unix()}, {"bin/sh", t2.Unix()}, {"bin/su", t1.Unix()}, {".", t1.Unix()}} {
		if s := lstat(t, filepath.Join(dir, c.path)); s.Mtim.Sec != c.want {
			t.Errorf("%s: mtime %d, want %d", c.path, s.Mtim.Sec, c.want)
		}
	}
}

func checkLinks(t *testing.T, dir string) {
	t.Helper()
	su, link := lstat(t, filepath.Join(dir, "bin/su")), lstat(t, filepath.Join(dir, "bin/su-link"))
	if su.Ino != link.Ino || su.Nlink != 2 {
		t.Errorf("bin/su-link: inode %d nlink %d, want bin/su's %d and 2", link.Ino, su.Nlink, su.Ino)
	}
	if lstat(t, filepath.Join(dir, "long/hard")).Ino != lstat(t, filepath.Join(dir, longFile)).Ino {
		t.Error("long/hard is not a hardlink to the long file")
	}
	for p, want := range map[string]string{"bin/sh": "busybox", "long/sym": longLink} {
		if got, err := os.Readlink(filepath.Join(dir, p)); got != want {
			t.Errorf("%s -> %q (%v), want %q", p, got, err, want)
		}
	}
}

func checkWhiteouts(t *testing.T, dir string) {
	t.Helper()
	s := lstat(t, filepath.Join(dir, "etc/shadow"))
	if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Errorf("etc/shadow: mode %o rdev %d, want a 0:0 character device", s.Mode, s.Rdev)
	}
	v := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(dir, "var"), opaqueXattr, v)
	if err != nil || string(v[:n]) != "y" {
		t.Errorf("var: %s = %q (%v), want y", opaqueXattr, v[:n], err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "var/keep")); string(b) != "upper" {
		t.Errorf("var/keep: %q, want the same layer's file", b)
	}
}

func checkXattrs(t *testing.T, dir string) {
	t.Helper()
	ping := filepath.Join(dir, "bin/ping")
	v := make([]byte, 64)
	n, err := unix.Lgetxattr(ping, "security.capability", v)
	// Read back in the namespace that wrote it, a v3 value is shown as v2.
	if err != nil || n < 12 || binary.LittleEndian.Uint32(v[4:]) != 1<<13 {
		t.Errorf("bin/ping: security.capability %x (%v), want cap_net_raw", v[:max(n, 0)], err)
	}
	n, err = unix.Lgetxattr(ping, "user.note", v)
	if err != nil || string(v[:n]) != "kept" {
		t.Errorf("bin/ping: user.note %q (%v), want kept", v[:max(n, 0)], err)
	}
	if _, err := unix.Lgetxattr(ping, "trusted.x", v); err == nil {
		t.Error("bin/ping: trusted.x was set")
	}
}

func TestLayerIDError(t *testing.T) {
	tarball := mkTar(t, dir("a/"), file("a/big", "x", owner(70000, 0)))
	_, _, err := unpackBytes(t, tarball, Options{MaxUID: 65536, MaxGID: 65536})
	var ie *IDError
	if !errors.As(err, &ie) || ie.Name != "a/big" || ie.UID != 70000 || ie.GID != 0 {
		t.Fatalf("err = %v, want an IDError for a/big uid 70000", err)
	}
	if want := "a/big: owned by uid 70000 (highest mapped 65536), not mapped in the user namespace"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"a/b": "a/b", "./a//b/": "a/b", "/etc/x": "etc/x", "//a/../b": "b", ".": "", "./": "", "/": "",
		"../x": "!", "a/../../x": "!", "..": "!", "/..": "!", "a\x00b": "!",
	} {
		got, err := cleanName(in)
		if err != nil {
			got = "!"
		}
		if got != want {
			t.Errorf("cleanName(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

func TestKeepXattr(t *testing.T) {
	for name, want := range map[string]bool{
		"user.foo": true, "security.capability": true, "system.posix_acl_access": true,
		"user.overlay.opaque": false, "user.overlay.redirect": false, "trusted.overlay.opaque": false,
		"security.selinux": false, "weird.x": false,
	} {
		if got, _ := keepXattr(name); got != want {
			t.Errorf("keepXattr(%q) = %v, want %v", name, got, want)
		}
	}
}
