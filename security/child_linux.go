package security

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PrepareCaps runs in init before it changes uid and gid. It locks the
// calling goroutine to its OS thread (capabilities belong to a thread: the
// payload must be exec'd from this one), drops every capability outside the
// container's set from the bounding set, clears the ambient set, empties the
// inheritable set and lowers permitted and effective to the set plus
// CAP_SETUID and CAP_SETGID, which the uid change needs (Finalize takes them
// back). After execve a root payload has exactly the set, since root gains
// its bounding set; any other uid has none.
//
// With no-new-privileges=false it also joins the session keyring and loads
// the seccomp filter here: without no_new_privs, loading a filter needs
// CAP_SYS_ADMIN, which is about to go. The profile must then allow what init
// does until execve (docker's does), as in runc.
func PrepareCaps(c Config) error {
	runtime.LockOSThread()
	set, err := c.Capabilities()
	if err != nil {
		return err
	}
	if !c.NoNewPrivs {
		if err := joinSessionKeyring(); err != nil {
			return err
		}
		if err := loadSeccomp(c, set); err != nil {
			return err
		}
	}
	last := lastCap()
	keep := map[int]bool{}
	for _, n := range set {
		keep[n] = true
	}
	for n := 0; n <= last; n++ {
		if keep[n] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(n), 0, 0, 0); err != nil {
			return fmt.Errorf("drop %s from the bounding set: %w", capName(n), err)
		}
	}
	err = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: kernel < 4.3, no ambient set
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	keep[unix.CAP_SETUID], keep[unix.CAP_SETGID] = true, true
	var mask [2]uint32
	for n := range keep {
		if n <= last {
			mask[n/32] |= 1 << (n % 32)
		}
	}
	return setCaps(mask, mask)
}

// Finalize runs in init after the uid change, as the very last step before
// execve, on the thread PrepareCaps locked. It joins a new anonymous session
// keyring (the payload cannot reach the user's keys), lowers permitted and
// effective to the container's set (a root payload keeps it, another uid
// has none left), sets no_new_privs and loads the seccomp filter on every
// thread of the process. With no-new-privileges=false the keyring and the
// filter were done by PrepareCaps.
func Finalize(c Config) error {
	set, err := c.Capabilities()
	if err != nil {
		return err
	}
	if c.NoNewPrivs {
		if err := joinSessionKeyring(); err != nil {
			return err
		}
	}
	var mask [2]uint32
	for _, n := range set {
		mask[n/32] |= 1 << (n % 32)
	}
	cur, err := getCaps()
	if err != nil {
		return err
	}
	for i := range mask {
		mask[i] &= cur[i]
	}
	if err := setCaps(mask, mask); err != nil {
		return err
	}
	if !c.NoNewPrivs {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return loadSeccomp(c, set)
}

// joinSessionKeyring gives the process a new anonymous session keyring.
// EPERM means an outer seccomp filter denies keyctl, which then binds the
// payload too; ENOSYS means a kernel without keys.
func joinSessionKeyring() error {
	_, _, errno := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	switch errno {
	case 0, unix.ENOSYS, unix.EPERM:
		return nil
	case unix.EDQUOT:
		return fmt.Errorf("join a new session keyring: %w (this user has too many keys: raise the sysctls kernel.keys.maxkeys and kernel.keys.maxbytes)", errno)
	}
	return fmt.Errorf("join a new session keyring: %w", errno)
}

// loadSeccomp compiles the profile c asks for and loads it on every thread.
func loadSeccomp(c Config, caps []int) error {
	if len(c.Filter) > 0 {
		f, err := filterFromBytes(c.Filter, c.FilterFlags)
		if err != nil {
			return err
		}
		return f.load()
	}
	f, err := buildFilter(c, caps)
	if err != nil || f == nil {
		return err
	}
	return f.load()
}

// load installs f on all threads of the process (SECCOMP_FILTER_FLAG_TSYNC).
func (f *filter) load() error {
	prog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f.prog)
	switch {
	case errno == unix.ENOSYS:
		return fmt.Errorf("load seccomp filter: %w (the kernel lacks seccomp: use --security-opt seccomp=unconfined)", errno)
	case errno != 0:
		return fmt.Errorf("load seccomp filter: %w", errno)
	case r != 0:
		return fmt.Errorf("load seccomp filter: thread %d could not be synchronized", r)
	}
	return nil
}

// lastCap is the highest capability the kernel knows.
func lastCap() int {
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	n := 0
	for n < 63 && unix.Prctl(unix.PR_CAPBSET_READ, uintptr(n+1), 0, 0, 0) == nil {
		n++
	}
	return n
}

func getCaps() ([2]uint32, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return [2]uint32{}, fmt.Errorf("capget: %w", err)
	}
	return [2]uint32{data[0].Permitted, data[1].Permitted}, nil
}

// setCaps sets the calling thread's permitted and effective sets and
// empties its inheritable set.
func setCaps(permitted, effective [2]uint32) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i].Permitted, data[i].Effective = permitted[i], effective[i]
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
