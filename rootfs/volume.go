package rootfs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Mount is one bind mount from the host into the container.
type Mount struct {
	// Source is an absolute host path. cmd/rabbitc checks that it exists.
	Source string
	// Dest is an unsafePath inside the container (absolute); Setup resolves
	// it inside the rootfs.
	Dest string
	// ReadOnly remounts the bind read-only.
	ReadOnly bool
}

const volumeSyntax = "SRC:DST[:ro|:rw]"

// ParseVolume parses the value of -v/--volume, "SRC:DST[:ro|:rw]". A relative
// SRC is made absolute against cwd; DST must be absolute and may not be "/".
// Both are cleaned. It touches no file.
func ParseVolume(s, cwd string) (Mount, error) {
	bad := func(why string) (Mount, error) {
		return Mount{}, fmt.Errorf("volume %q: %s (syntax %s)", s, why, volumeSyntax)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return bad("contains a NUL byte")
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad("want 2 or 3 fields separated by ':'")
	}
	src, dst := parts[0], parts[1]
	m := Mount{}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return bad(fmt.Sprintf("mode %q is not ro or rw", parts[2]))
		}
	}
	if src == "" {
		return bad("empty source")
	}
	if !filepath.IsAbs(src) {
		if !filepath.IsAbs(cwd) {
			return bad(fmt.Sprintf("relative source and no absolute working directory (%q)", cwd))
		}
		if strings.IndexByte(cwd, 0) >= 0 {
			return bad("working directory contains a NUL byte")
		}
		src = filepath.Join(cwd, src)
	}
	if dst == "" {
		return bad("empty destination")
	}
	if !filepath.IsAbs(dst) {
		return bad(fmt.Sprintf("destination %q is not an absolute path", dst))
	}
	m.Source = filepath.Clean(src)
	m.Dest = filepath.Clean(dst)
	if m.Dest == "/" {
		return bad("destination cannot be /")
	}
	return m, nil
}
