package rootfs

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseVolume(t *testing.T) {
	tests := []struct {
		in      string
		want    specs.Mount
		wantErr string
	}{
		{in: "/src:/dst", want: specs.Mount{Type: "bind", Source: "/src", Destination: "/dst", Options: []string{"rbind"}}},
		{in: "/src:/dst:ro", want: specs.Mount{Type: "bind", Source: "/src", Destination: "/dst", Options: []string{"rbind", "ro"}}},
		{in: "/src:/dst:rw", want: specs.Mount{Type: "bind", Source: "/src", Destination: "/dst", Options: []string{"rbind"}}},
		{in: "data:/data", want: specs.Mount{Type: "bind", Source: "/home/u/data", Destination: "/data", Options: []string{"rbind"}}},
		{in: "./a/../b:/x/./y/", want: specs.Mount{Type: "bind", Source: "/home/u/b", Destination: "/x/y", Options: []string{"rbind"}}},
		{in: "/s:/a/../../etc", want: specs.Mount{Type: "bind", Source: "/s", Destination: "/etc", Options: []string{"rbind"}}},
		{in: "/src", wantErr: `volume "/src": want 2 or 3 fields separated by ':' (syntax SRC:DST[:ro|:rw])`},
		{in: "/a:/b:ro:x", wantErr: "want 2 or 3 fields"},
		{in: "/a:/b:", wantErr: `mode "" is not ro or rw`},
		{in: "/a:/b:RO", wantErr: `mode "RO" is not ro or rw`},
		{in: ":/b", wantErr: "empty source"},
		{in: "/a:", wantErr: "empty destination"},
		{in: "/a:b", wantErr: `destination "b" is not an absolute path`},
		{in: "/a:/", wantErr: "destination cannot be /"},
		{in: "/a:/x/..", wantErr: "destination cannot be /"},
		{in: "/a\x00:/b", wantErr: `volume "/a\x00:/b": contains a NUL byte`},
		{in: "", wantErr: "want 2 or 3 fields"},
	}
	for _, tt := range tests {
		got, err := ParseVolume(tt.in, "/home/u")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseVolume(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseVolume(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseVolumeRelativeWithoutCwd(t *testing.T) {
	if _, err := ParseVolume("data:/data", ""); err == nil {
		t.Fatal("relative source with empty cwd: want an error")
	}
	// Found by FuzzParseVolume (testdata/fuzz/FuzzParseVolume/d266ce063a45a312).
	if _, err := ParseVolume("0:/00", "/\x00"); err == nil {
		t.Fatal("cwd with a NUL byte: want an error")
	}
	if _, err := ParseVolume("data:/data", "rel"); err == nil {
		t.Fatal("relative source with relative cwd: want an error")
	}
}

func FuzzParseVolume(f *testing.F) {
	for _, s := range []string{"/a:/b", "/a:/b:ro", "a:/b:rw", ":", "::", "/a:/", "a\nb:/c", "/a:/b/../..", "\x00"} {
		f.Add(s, "/cwd")
	}
	f.Fuzz(func(t *testing.T, s, cwd string) {
		m, err := ParseVolume(s, cwd)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error for %q: %q", s, err)
			}
			return
		}
		for _, p := range []string{m.Source, m.Destination} {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.IndexByte(p, 0) >= 0 {
				t.Fatalf("ParseVolume(%q, %q) = %+v: path %q not absolute and clean", s, cwd, m, p)
			}
		}
		if m.Destination == "/" {
			t.Fatalf("ParseVolume(%q) accepted / as destination", s)
		}
	})
}
