package hostcheck

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirInfo is what Dirs found about a directory, or, when it does not
// exist yet, about the nearest one above it (base), where it will be made.
type dirInfo struct {
	path     string
	exists   bool
	isDir    bool
	owner    int
	mode     fs.FileMode
	base     string // path itself when it exists
	writable bool   // base is writable by the user
	free     uint64 // bytes available to the user on base's file system
}

func statDir(path string) dirInfo {
	d := dirInfo{path: path, base: existingAncestor(path)}
	if st, err := os.Stat(path); err == nil {
		d.exists, d.isDir, d.mode = true, st.IsDir(), st.Mode().Perm()
		d.owner = int(st.Sys().(*syscall.Stat_t).Uid)
	}
	d.writable = unix.Access(d.base, unix.W_OK) == nil
	var sfs unix.Statfs_t
	if unix.Statfs(d.base, &sfs) == nil {
		d.free = sfs.Bavail * uint64(sfs.Bsize)
	}
	return d
}

// Dirs checks $XDG_RUNTIME_DIR, the state directory and the image store:
// the user's, private, with room.
func Dirs(h Host) []Check {
	return []Check{
		xdgRuntimeDir(os.Getenv("XDG_RUNTIME_DIR"), h.UID, h.GID),
		dirVerdict("state", statDir(h.StateDir), h.UID, h.GID, 16<<20),
		dirVerdict("store", statDir(h.StoreDir), h.UID, h.GID, 1<<30),
	}
}

func xdgRuntimeDir(v string, uid, gid int) Check {
	const name = "XDG_RUNTIME_DIR"
	if v != "" {
		return dirVerdict(name, statDir(v), uid, gid, 16<<20)
	}
	detail := fmt.Sprintf("not set: the state goes to %s/rabbitc-%d, which outlives your session", os.TempDir(), uid)
	run := fmt.Sprintf("/run/user/%d", uid)
	if d := statDir(run); d.exists && d.owner == uid {
		return userFix(Warning, name, detail, "export XDG_RUNTIME_DIR="+run)
	}
	return userFix(Warning, name, detail+" (a login through pam_systemd sets it)", "")
}

// dirVerdict judges a directory that rabbitc makes when it needs it:
// minFree is the room under which it warns.
func dirVerdict(name string, d dirInfo, uid, gid int, minFree uint64) Check {
	chown := fmt.Sprintf("chown -R %d:%d %s", uid, gid, d.path)
	switch {
	case d.exists && !d.isDir:
		return userFix(Error, name, d.path+" is not a directory", "rm "+d.path)
	case d.exists && d.owner != uid:
		return rootFix(Error, name, fmt.Sprintf("%s belongs to uid %d, not to you (uid %d)", d.path, d.owner, uid), chown)
	case !d.exists && !d.writable:
		return rootFix(Error, name, d.path+" does not exist, and you cannot make it in "+d.base,
			fmt.Sprintf("mkdir -p %s && %s", d.path, chown))
	case d.exists && d.mode&0o077 != 0:
		return userFix(Warning, name, fmt.Sprintf("%s is mode %04o: other users can look inside", d.path, d.mode), "chmod 0700 "+d.path)
	case d.free < minFree:
		return userFix(Warning, name, fmt.Sprintf("%s: only %s free on %s", d.path, size(d.free), d.base), "make room on "+d.base)
	case !d.exists:
		return ok(name, fmt.Sprintf("%s, made when needed (%s free on %s)", d.path, size(d.free), d.base))
	}
	return ok(name, fmt.Sprintf("%s, yours, mode %04o, %s free", d.path, d.mode, size(d.free)))
}

// size is n bytes for a reader: "512 KiB", "3.1 GiB".
func size(n uint64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f, i = f/1024, i+1
	}
	if i == 0 || f >= 100 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
