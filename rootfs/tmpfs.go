package rootfs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// tmpfsFlags are the flag options of --tmpfs: each sets or clears one flag.
var tmpfsFlags = map[string]struct {
	flag uintptr
	set  bool
}{
	"rw": {unix.MS_RDONLY, false}, "ro": {unix.MS_RDONLY, true},
	"exec": {unix.MS_NOEXEC, false}, "noexec": {unix.MS_NOEXEC, true},
	"suid": {unix.MS_NOSUID, false}, "nosuid": {unix.MS_NOSUID, true},
	"dev": {unix.MS_NODEV, false}, "nodev": {unix.MS_NODEV, true},
}

const tmpfsSyntax = "DST[:OPTIONS], OPTIONS of rw, ro, exec, noexec, suid, nosuid, dev, nodev, size=N[k|m|g], mode=OCTAL"

// ParseTmpfs parses the value of --tmpfs, "DST[:OPTIONS]" as in docker run,
// into a tmpfs mount: DST absolute and not "/", OPTIONS comma-separated. The
// default, as docker's, is rw,noexec,nosuid,nodev, with the kernel's size
// (half the memory) unless size= says otherwise. The mount's options are
// the resulting flags (rw or ro, then nosuid, nodev, noexec as set) and the
// size= and mode= given.
func ParseTmpfs(s string) (specs.Mount, error) {
	bad := func(why string) (specs.Mount, error) {
		return specs.Mount{}, fmt.Errorf("tmpfs %q: %s (syntax %s)", s, why, tmpfsSyntax)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return bad("contains a NUL byte")
	}
	dst, opts, _ := strings.Cut(s, ":")
	if !filepath.IsAbs(dst) {
		return bad(fmt.Sprintf("destination %q is not an absolute path", dst))
	}
	dst = filepath.Clean(dst)
	if dst == "/" {
		return bad("destination cannot be /")
	}
	flags := uintptr(unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV)
	var data []string
	for _, o := range strings.Split(opts, ",") {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case o == "" && opts == "":
		case tmpfsFlags[o].flag != 0:
			if f := tmpfsFlags[o]; f.set {
				flags |= f.flag
			} else {
				flags &^= f.flag
			}
		case k == "size" && hasValue && validSize(v):
			data = append(data, o)
		case k == "mode" && hasValue && validMode(v):
			data = append(data, o)
		default:
			return bad(fmt.Sprintf("unknown option %q", o))
		}
	}
	return specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: append(tmpfsOptions(flags), data...)}, nil
}

// tmpfsOptions renders the flags of --tmpfs as option words.
func tmpfsOptions(flags uintptr) []string {
	opts := []string{"rw"}
	if flags&unix.MS_RDONLY != 0 {
		opts[0] = "ro"
	}
	for _, w := range []string{"nosuid", "nodev", "noexec"} {
		if flags&mountFlags[w].flag != 0 {
			opts = append(opts, w)
		}
	}
	return opts
}

// validSize accepts tmpfs's size= forms: a number of bytes with an optional
// k, m or g suffix, or a percentage of the memory.
func validSize(v string) bool {
	n := strings.TrimRight(v, "kmgKMG%")
	if len(v)-len(n) > 1 || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

func validMode(v string) bool {
	m, err := strconv.ParseUint(v, 8, 32)
	return err == nil && m <= 0o7777
}
