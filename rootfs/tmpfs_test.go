package rootfs

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseTmpfs(t *testing.T) {
	const def = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	for _, tc := range []struct {
		in    string
		dest  string
		flags uintptr
		data  string
	}{
		{"/run", "/run", def, ""},
		{"/tmp/../run/", "/run", def, ""},
		{"/run:rw", "/run", def, ""},
		{"/run:ro", "/run", def | unix.MS_RDONLY, ""},
		{"/run:exec", "/run", unix.MS_NOSUID | unix.MS_NODEV, ""},
		{"/run:exec,suid,dev", "/run", 0, ""},
		{"/run:size=64m,mode=1777", "/run", def, "size=64m,mode=1777"},
		{"/run:size=65536k,noexec,nosuid", "/run", def, "size=65536k"},
		{"/run:size=50%", "/run", def, "size=50%"},
	} {
		got, err := ParseTmpfs(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		o := parseMountOptions(got.Options)
		if got.Destination != tc.dest || got.Type != "tmpfs" || got.Source != "tmpfs" || o.flags != tc.flags || o.data != tc.data || o.bind {
			t.Errorf("%q = %+v, want dest %s flags %#x data %q", tc.in, got, tc.dest, tc.flags, tc.data)
		}
	}
	for _, in := range []string{"", "run", "/", "/run:bogus", "/run:size=", "/run:size=12x", "/run:size=1mm",
		"/run:mode=9", "/run:mode=17777", "/run:uid=0", "/run:size=1,mode=", "/r\x00un"} {
		_, err := ParseTmpfs(in)
		if err == nil {
			t.Errorf("%q: accepted", in)
			continue
		}
		if !strings.HasPrefix(err.Error(), "tmpfs ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %q is not one line starting with tmpfs", in, err)
		}
	}
}

// FuzzParseTmpfs: never a panic; a one-line error, or an absolute, clean
// destination other than "/" and data of size= and mode= only.
func FuzzParseTmpfs(f *testing.F) {
	for _, s := range []string{"/run", "/run:ro,size=64m", "/x:mode=1777,exec", "rel", "/:ro", "/run:size=1,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTmpfs(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "tmpfs ") {
				t.Fatalf("%q: error %q", s, err)
			}
			return
		}
		if !strings.HasPrefix(got.Destination, "/") || got.Destination == "/" || filepath.Clean(got.Destination) != got.Destination {
			t.Fatalf("%q: dest %q", s, got.Destination)
		}
		o := parseMountOptions(got.Options)
		for _, d := range strings.Split(o.data, ",") {
			if d != "" && !strings.HasPrefix(d, "size=") && !strings.HasPrefix(d, "mode=") {
				t.Fatalf("%q: data %q", s, o.data)
			}
		}
		if o.bind || len(o.propagation) > 0 || o.attrSet|o.attrClr != 0 {
			t.Fatalf("%q: options %q", s, got.Options)
		}
	})
}
