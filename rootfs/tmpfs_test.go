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
		if got.Dest != tc.dest || got.Flags != tc.flags || got.Data != tc.data {
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
		if !strings.HasPrefix(got.Dest, "/") || got.Dest == "/" || filepath.Clean(got.Dest) != got.Dest {
			t.Fatalf("%q: dest %q", s, got.Dest)
		}
		for _, d := range strings.Split(got.Data, ",") {
			if d != "" && !strings.HasPrefix(d, "size=") && !strings.HasPrefix(d, "mode=") {
				t.Fatalf("%q: data %q", s, got.Data)
			}
		}
	})
}
