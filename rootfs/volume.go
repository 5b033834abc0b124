package rootfs

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const volumeSyntax = "SRC:DST[:ro|:rw]"

// ParseVolume parses the value of -v/--volume, "SRC:DST[:ro|:rw]", into a
// recursive bind (options rbind, and ro with :ro). A relative SRC is made
// absolute against cwd; DST must be absolute and may not be "/". Both are
// cleaned. It touches no file; cmd/rabbitc checks that the source exists.
func ParseVolume(s, cwd string) (specs.Mount, error) {
	bad := func(why string) (specs.Mount, error) {
		return specs.Mount{}, fmt.Errorf("volume %q: %s (syntax %s)", s, why, volumeSyntax)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return bad("contains a NUL byte")
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad("want 2 or 3 fields separated by ':'")
	}
	src, dst := parts[0], parts[1]
	m := specs.Mount{Type: "bind", Options: []string{"rbind"}}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.Options = append(m.Options, "ro")
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
	m.Destination = filepath.Clean(dst)
	if m.Destination == "/" {
		return bad("destination cannot be /")
	}
	return m, nil
}
