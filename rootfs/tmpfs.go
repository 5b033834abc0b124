package rootfs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Tmpfs is one --tmpfs mount: a fresh tmpfs on Dest (an unsafePath inside
// the container), mounted after the volumes.
type Tmpfs struct {
	Dest  string
	Flags uintptr // MS_* flags
	Data  string  // size=, mode=
}

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

// ParseTmpfs parses the value of --tmpfs, "DST[:OPTIONS]" as in docker run:
// DST absolute and not "/", OPTIONS comma-separated. The default, as
// docker's, is rw,noexec,nosuid,nodev, with the kernel's size (half the
// memory) unless size= says otherwise.
func ParseTmpfs(s string) (Tmpfs, error) {
	bad := func(why string) (Tmpfs, error) {
		return Tmpfs{}, fmt.Errorf("tmpfs %q: %s (syntax %s)", s, why, tmpfsSyntax)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return bad("contains a NUL byte")
	}
	dst, opts, _ := strings.Cut(s, ":")
	if !filepath.IsAbs(dst) {
		return bad(fmt.Sprintf("destination %q is not an absolute path", dst))
	}
	t := Tmpfs{Dest: filepath.Clean(dst), Flags: unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV}
	if t.Dest == "/" {
		return bad("destination cannot be /")
	}
	var data []string
	for _, o := range strings.Split(opts, ",") {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case o == "" && opts == "":
		case tmpfsFlags[o].flag != 0:
			if f := tmpfsFlags[o]; f.set {
				t.Flags |= f.flag
			} else {
				t.Flags &^= f.flag
			}
		case k == "size" && hasValue && validSize(v):
			data = append(data, o)
		case k == "mode" && hasValue && validMode(v):
			data = append(data, o)
		default:
			return bad(fmt.Sprintf("unknown option %q", o))
		}
	}
	t.Data = strings.Join(data, ",")
	return t, nil
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

// mountTmpfs mounts t on its destination, resolved inside the root (a
// missing directory is created there), and checks the new mount.
func (r *root) mountTmpfs(t Tmpfs) error {
	h, err := r.openOrCreate(t.Dest, true)
	if err != nil {
		return fmt.Errorf("tmpfs destination %w", err)
	}
	defer h.Close()
	m := fsMount{dest: t.Dest, fstype: "tmpfs", flags: t.Flags, data: t.Data, magic: tmpfsMagic}
	if err := mountOn(h, m); err != nil {
		return err
	}
	top, err := r.reopenMounted(h, t.Dest, isFS(tmpfsMagic))
	if err != nil {
		return err
	}
	return top.Close()
}
