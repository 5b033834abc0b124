package unpack

import (
	"archive/tar"
	"bytes"
	"testing"
	"time"
)

// ent is one entry of a test archive.
type ent struct {
	h    tar.Header
	body string
}

var (
	t1 = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	t2 = time.Date(2011, 12, 13, 14, 15, 16, 0, time.UTC)
)

type opt func(*tar.Header)

func owner(uid, gid int) opt { return func(h *tar.Header) { h.Uid, h.Gid = uid, gid } }
func perm(m int64) opt       { return func(h *tar.Header) { h.Mode = m } }
func mtime(t time.Time) opt  { return func(h *tar.Header) { h.ModTime = t } }

func xattr(name, value string) opt {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattr+name] = value
	}
}

func mk(typ byte, name string, mode int64, opts []opt) ent {
	e := ent{h: tar.Header{Typeflag: typ, Name: name, Mode: mode, ModTime: t1}}
	for _, o := range opts {
		o(&e.h)
	}
	return e
}

func file(name, body string, opts ...opt) ent {
	e := mk(tar.TypeReg, name, 0o644, opts)
	e.body = body
	e.h.Size = int64(len(body))
	return e
}

func dir(name string, opts ...opt) ent { return mk(tar.TypeDir, name, 0o755, opts) }

func symlink(name, target string, opts ...opt) ent {
	e := mk(tar.TypeSymlink, name, 0o777, opts)
	e.h.Linkname = target
	return e
}

func hardlink(name, target string) ent {
	e := mk(tar.TypeLink, name, 0o644, nil)
	e.h.Linkname = target
	return e
}

func node(typ byte, name string, major, minor int64, opts ...opt) ent {
	e := mk(typ, name, 0o644, opts)
	e.h.Devmajor, e.h.Devminor = major, minor
	return e
}

// mkTar writes the entries as a PAX archive (so names of any length and
// xattrs fit).
func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.h
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("tar body %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
