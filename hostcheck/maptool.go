package hostcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// MapTool checks newuidmap or newgidmap: in $PATH, and setuid root or with
// the file capability it needs (CAP_SETUID, CAP_SETGID). As root rabbitc
// writes the maps itself.
func MapTool(name string, uid int) Check {
	path, err := exec.LookPath(name)
	switch {
	case err != nil && uid == 0:
		return ok(name, "not found, not needed as root")
	case err != nil:
		return rootFix(Error, name, "not found in $PATH", "apt-get install uidmap")
	}
	st, err := os.Stat(path)
	if err != nil {
		return rootFix(Error, name, err.Error(), "apt-get install --reinstall uidmap")
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid == 0 && st.Mode()&os.ModeSetuid != 0 {
		return ok(name, path+", setuid root")
	}
	capName, capBit := "cap_setuid", unix.CAP_SETUID
	if name == "newgidmap" {
		capName, capBit = "cap_setgid", unix.CAP_SETGID
	}
	if permitted, eff, err := fileCaps(path); err == nil && permitted&(1<<capBit) != 0 {
		flags := "p"
		if eff {
			flags = "ep"
		}
		return ok(name, path+", file capabilities "+capName+"="+flags)
	}
	return rootFix(Error, name, path+" is neither setuid root nor has "+capName+" in its file capabilities",
		fmt.Sprintf("chown root: %s && chmod u+s %s", path, path))
}

// fileCaps reads a file's capabilities (security.capability).
func fileCaps(path string) (permitted uint64, effective bool, err error) {
	b := make([]byte, 64)
	n, err := unix.Getxattr(path, "security.capability", b)
	if err != nil {
		return 0, false, err
	}
	return parseFileCaps(b[:n])
}

// parseFileCaps decodes struct vfs_cap_data (linux/capability.h): a
// little-endian magic with the revision and the effective flag, then
// permitted and inheritable words, one pair (revision 1) or two (2 and 3,
// which adds the namespace's root uid).
func parseFileCaps(b []byte) (permitted uint64, effective bool, err error) {
	if len(b) < 4 {
		return 0, false, errors.New("file capabilities: too short")
	}
	magic := binary.LittleEndian.Uint32(b)
	words := map[uint32]int{0x01000000: 1, 0x02000000: 2, 0x03000000: 2}[magic&0xFF000000]
	if words == 0 || len(b) < 4+8*words {
		return 0, false, fmt.Errorf("file capabilities: revision %#x of %d bytes", magic&0xFF000000, len(b))
	}
	for i := 0; i < words; i++ {
		permitted |= uint64(binary.LittleEndian.Uint32(b[4+8*i:])) << (32 * i)
	}
	return permitted, magic&1 != 0, nil
}
