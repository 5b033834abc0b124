package unpack

// The malicious corpus of issue 15 (item 3 and 8): every archive must leave
// everything outside the layer directory as it was, and either fail with an
// error saying why or be contained in the layer. A canary directory next to
// the layer is the "outside": names that would escape point at it, absolute
// ones by its absolute path, so a broken defence shows up here and not in
// /etc.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type attack struct {
	name string
	ents func(canary string) []ent
	// wantErr is a substring of the error; "" means the archive must unpack
	// (contained), and then check, if set, looks at the layer.
	wantErr string
	check   func(t *testing.T, layer, canary string)
}

func attacks() []attack {
	return []attack{
		{name: "dotdot", wantErr: "climbs out",
			ents: func(string) []ent { return []ent{file("../canary/x", "pwned")} }},
		{name: "dotdot inside", wantErr: "climbs out",
			ents: func(string) []ent { return []ent{file("a/../../canary/x", "pwned")} }},
		{name: "absolute", ents: func(c string) []ent { return []ent{file(c+"/x", "contained")} },
			check: wantFile("CANARY/x", "contained")},
		{name: "symlink to root then through it",
			ents:  func(c string) []ent { return []ent{symlink("s", "/"), file("s"+c+"/x", "contained")} },
			check: wantFile("CANARY/x", "contained")},
		{name: "symlink to dotdot then through it",
			ents:  func(string) []ent { return []ent{symlink("s", ".."), file("s/canary/x", "contained")} },
			check: wantFile("canary/x", "contained")},
		{name: "symlink out then through it", wantErr: "file exists",
			ents: func(c string) []ent { return []ent{symlink("s", c), file("s/x", "pwned")} }},
		{name: "symlink relative out then through it", wantErr: "file exists",
			ents: func(string) []ent { return []ent{symlink("s", "../canary"), file("s/x", "pwned")} }},
		{name: "file over a symlink out", wantErr: "",
			ents:  func(string) []ent { return []ent{symlink("s", "../canary/keep"), file("s", "pwned")} },
			check: wantFile("s", "pwned")},
		{name: "dir over a symlink out then file",
			ents:  func(c string) []ent { return []ent{symlink("d", c), dir("d/", perm(0o777)), file("d/x", "in")} },
			check: wantFile("d/x", "in")},
		{name: "symlink over a dir then file under it", wantErr: "file exists",
			ents: func(c string) []ent {
				return []ent{dir("d/"), file("d/keep", "k"), symlink("d", c), file("d/x", "pwned")}
			}},
		{name: "symlink over a dir keeps its mode off the target",
			ents: func(string) []ent { return []ent{dir("d/", perm(0o777), mtime(t2)), symlink("d", "../canary")} },
			check: func(t *testing.T, layer, _ string) {
				if s := lstat(t, filepath.Join(layer, "d")); s.Mode&unix.S_IFMT != unix.S_IFLNK {
					t.Errorf("d: mode %o, want the symlink", s.Mode)
				}
			}},
		{name: "hardlink dotdot", wantErr: "climbs out",
			ents: func(string) []ent { return []ent{hardlink("h", "../canary/keep")} }},
		{name: "hardlink absolute", wantErr: "no such file",
			ents: func(c string) []ent { return []ent{hardlink("h", c+"/keep")} }},
		{name: "hardlink etc passwd", wantErr: "no such file",
			ents: func(string) []ent { return []ent{hardlink("h", "/etc/passwd")} }},
		{name: "hardlink through a symlink out", wantErr: "no such file",
			ents: func(string) []ent { return []ent{symlink("s", "../canary"), hardlink("h", "s/keep")} }},
		{name: "hardlink to a symlink out links the symlink",
			ents: func(string) []ent { return []ent{symlink("s", "../canary/keep"), hardlink("h", "s")} },
			check: func(t *testing.T, layer, _ string) {
				if got, _ := os.Readlink(filepath.Join(layer, "h")); got != "../canary/keep" {
					t.Errorf("h -> %q, want the symlink itself", got)
				}
			}},
		{name: "pending dir metadata after its path became a symlink",
			ents: func(string) []ent {
				// a/b comes first, so its pending mode is applied last
				return []ent{dir("a/b/", perm(0o777)), dir("c/b/", perm(0o700)), symlink("a", "c")}
			},
			check: func(t *testing.T, layer, _ string) {
				if s := lstat(t, filepath.Join(layer, "c/b")); s.Mode&0o7777 != 0o700 {
					t.Errorf("c/b: mode %o, want 0700: a/b's mode went through the symlink a", s.Mode&0o7777)
				}
			}},
		{name: "whiteout dotdot", wantErr: "climbs out",
			ents: func(string) []ent { return []ent{file("../canary/.wh.keep", "")} }},
		{name: "whiteout of dotdot", wantErr: "whiteout of",
			ents: func(string) []ent { return []ent{file(".wh..", "")} }},
		{name: "whiteout through a symlink out", wantErr: "file exists",
			ents: func(string) []ent { return []ent{symlink("s", "../canary"), file("s/.wh.keep", "")} }},
		{name: "opaque in a symlinked dir out", wantErr: "file exists",
			ents: func(c string) []ent { return []ent{symlink("s", c), file("s/.wh..wh..opq", "")} }},
		{name: "opaque in a symlinked dir to root",
			ents: func(string) []ent { return []ent{symlink("s", "/"), file("s/.wh..wh..opq", "")} },
			check: func(t *testing.T, layer, _ string) {
				if n, err := unix.Lgetxattr(layer, opaqueXattr, make([]byte, 4)); err != nil || n != 1 {
					t.Errorf("layer root: %s: %v, want it set in-root", opaqueXattr, err)
				}
			}},
		{name: "symlink as the layer root", wantErr: "cannot replace the layer root",
			ents: func(c string) []ent { return []ent{symlink(".", c), file("x", "pwned")} }},
		{name: "symlink as ./", wantErr: "cannot replace the layer root",
			ents: func(string) []ent { return []ent{symlink("./", "../canary"), file("x", "pwned")} }},
		{name: "file as .", wantErr: "cannot replace the layer root",
			ents: func(string) []ent { return []ent{file(".", "pwned")} }},
		{name: "overlay xattr from the layer",
			ents: func(string) []ent {
				return []ent{dir("d/", xattr("user.overlay.opaque", "y"), xattr("user.overlay.redirect", "/etc"))}
			},
			check: func(t *testing.T, layer, _ string) {
				if _, err := unix.Lgetxattr(filepath.Join(layer, "d"), "user.overlay.redirect", make([]byte, 16)); err == nil {
					t.Error("d: user.overlay.redirect was set from the layer")
				}
			}},
		{name: "symlink loop", wantErr: "too many levels",
			ents: func(string) []ent { return []ent{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")} }},
		{name: "long name climbing out", wantErr: "climbs out",
			ents: func(string) []ent { return []ent{file(strings.Repeat("a/../", 100)+"../canary/x", "pwned")} }},
		{name: "name too long for the kernel", wantErr: "file name too long",
			ents: func(string) []ent { return []ent{file(strings.Repeat("n", 300), "x")} }},
	}
}

// wantFile checks a regular file in the layer; CANARY in p stands for the
// canary's absolute path (an absolute name lands under the layer).
func wantFile(p, body string) func(t *testing.T, layer, canary string) {
	return func(t *testing.T, layer, canary string) {
		t.Helper()
		p := strings.Replace(p, "CANARY", canary, 1)
		s := lstat(t, filepath.Join(layer, p))
		b, _ := os.ReadFile(filepath.Join(layer, p))
		if s.Mode&unix.S_IFMT != unix.S_IFREG || string(b) != body {
			t.Errorf("%s: mode %o contents %q, want a file holding %q", p, s.Mode, b, body)
		}
	}
}

func TestLayerAttacks(t *testing.T) {
	needIDs(t, 0)
	for _, a := range attacks() {
		t.Run(a.name, func(t *testing.T) {
			base := t.TempDir()
			layer, canary := filepath.Join(base, "layer"), filepath.Join(base, "canary")
			for _, d := range []string{layer, canary} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(canary, "keep"), []byte("canary"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, base)
			var notes []string
			_, err := Layer(layer, bytes.NewReader(mkTar(t, a.ents(canary)...)), testOptions(&notes))
			if after := snapshot(t, base); after != before {
				t.Errorf("outside the layer changed:\nbefore %s\nafter  %s", before, after)
			}
			switch {
			case a.wantErr == "" && err != nil:
				t.Fatalf("want it contained, got %v", err)
			case a.wantErr != "" && (err == nil || !strings.Contains(err.Error(), a.wantErr)):
				t.Fatalf("err = %v, want one with %q", err, a.wantErr)
			case a.check != nil:
				a.check(t, layer, canary)
			}
		})
	}
}

// snapshot describes everything under base except inside base/layer: names,
// types, modes, sizes, contents of small files, link counts, mtimes, xattrs.
func snapshot(t *testing.T, base string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if rel == "layer" { // its own metadata is the layer's to set
			lines = append(lines, fmt.Sprintf("layer %o", st.Mode&unix.S_IFMT))
			return fs.SkipDir
		}
		line := fmt.Sprintf("%s %o %d:%d n%d %d %s", rel, st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, time.Unix(st.Mtim.Unix()).UTC().Format(time.RFC3339Nano))
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		buf := make([]byte, 1024)
		if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
			line += " xattrs:" + string(bytes.ReplaceAll(buf[:n], []byte{0}, []byte{','}))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n       ")
}

func TestLayerShortData(t *testing.T) {
	needIDs(t, 0)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 1 << 30, Mode: 0o644})
	tw.Write([]byte("only this"))
	// no Close: the archive ends 1 GiB early
	layer, _, err := unpackBytes(t, b.Bytes(), Options{})
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if _, err := os.Lstat(filepath.Join(layer, "big")); !os.IsNotExist(err) {
		t.Errorf("big: %v, want the partial file removed", err)
	}
}

// TestLayerManyEntries: a tar bomb of small entries is just work, bounded.
func TestLayerManyEntries(t *testing.T) {
	needIDs(t, 0)
	const n = 20000
	ents := make([]ent, 0, n)
	for i := range n {
		ents = append(ents, file(fmt.Sprintf("d%d/f%d", i%100, i), "x"))
	}
	start := time.Now()
	_, st, err := unpackBytes(t, mkTar(t, ents...), Options{})
	if err != nil || st.Entries != n {
		t.Fatalf("stats %+v, err %v", st, err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("%d entries took %v", n, d)
	}
	t.Logf("%d entries in %v", n, time.Since(start))
}
