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
// bounding set from it, clears the ambient set, and lowers permitted and
// effective to the permitted set plus CAP_SETUID and CAP_SETGID, which the
// uid change needs (Finalize takes them back). Keep-caps is set so that
// permitted survives a setuid to another uid: Finalize then sets the sets
// the config asks for, for any uid, as runc does. The inheritable set is
// set here, where it still can be: once CAP_SETPCAP is gone, capset(2) only
// lowers it.
//
// With no-new-privileges=false it also joins the session keyring and loads
// the seccomp filter here: without no_new_privs, loading a filter needs
// CAP_SYS_ADMIN, which is about to go. The profile must then allow what init
// does until execve (docker's does), as in runc.
func PrepareCaps(c Config) error {
	runtime.LockOSThread()
	last := lastCap()
	sets, err := resolveCaps(c.Capabilities, last)
	if err != nil {
		return err
	}
	if !c.NoNewPrivs {
		if err := joinSessionKeyring(); err != nil {
			return err
		}
		if err := loadSeccomp(c); err != nil {
			return err
		}
	}
	for n := 0; n <= last; n++ {
		if sets.bounding&(1<<n) != 0 {
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
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keep-caps: %w", err)
	}
	cur, err := getCaps()
	if err != nil {
		return err
	}
	keep := (sets.permitted | 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID) & cur.permitted
	// The kernel refuses an inheritable capability outside the bounding
	// set (capset(2)); it could never reach the payload anyway.
	inh := sets.inheritable & (cur.inheritable | sets.bounding&cur.permitted)
	return setCaps(capState{effective: keep, permitted: keep, inheritable: inh})
}

// Finalize runs in init after the uid change, as the very last step before
// execve, on the thread PrepareCaps locked. It joins a new anonymous session
// keyring (the payload cannot reach the user's keys), sets the effective,
// permitted and inheritable sets the config asks for and raises its ambient
// set, sets no_new_privs and loads the seccomp filter on every thread of the
// process. With no-new-privileges=false the keyring and the filter were done
// by PrepareCaps.
//
// After execve a root payload has its bounding set (root gains it); any
// other uid keeps only its ambient set, so with docker's flags, which leave
// it empty, it has none.
func Finalize(c Config) error {
	last := lastCap()
	sets, err := resolveCaps(c.Capabilities, last)
	if err != nil {
		return err
	}
	if c.NoNewPrivs {
		if err := joinSessionKeyring(); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keep-caps: %w", err)
	}
	cur, err := getCaps()
	if err != nil {
		return err
	}
	// capset(2) can only lower the sets now: what PrepareCaps could not
	// keep is left out rather than failing.
	prm := sets.permitted & cur.permitted
	next := capState{effective: sets.effective & prm, permitted: prm, inheritable: sets.inheritable & cur.inheritable}
	if err := setCaps(next); err != nil {
		return err
	}
	if err := raiseAmbient(sets.ambient, last); err != nil {
		return err
	}
	if !c.NoNewPrivs {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return loadSeccomp(c)
}

// raiseAmbient raises each capability of set in the ambient set, the only
// one a payload that is not root keeps across execve. A capability the
// kernel refuses is an error, as in runc: the payload would run without
// what its config grants. A kernel without ambient capabilities (before
// 4.3) gets none, as runc does.
func raiseAmbient(set uint64, last int) error {
	if set == 0 {
		return nil
	}
	if _, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, 0, 0, 0); errors.Is(err, unix.EINVAL) {
		return nil
	}
	for n := 0; n <= last; n++ {
		if set&(1<<n) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(n), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %s: %w (an ambient capability must be in the permitted and inheritable sets too)", capName(n), err)
		}
	}
	return nil
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

// loadSeccomp loads the program c carries, or compiles the profile c asks
// for when it carries none, on every thread.
func loadSeccomp(c Config) error {
	var f *filter
	var err error
	if len(c.Filter) > 0 {
		f, err = filterFromBytes(c.Filter, c.FilterFlags)
	} else {
		f, err = buildFilter(c)
	}
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

// capState is a thread's capability sets as capget(2) and capset(2) see
// them, one bit a capability.
type capState struct {
	effective, permitted, inheritable uint64
}

func getCaps() (capState, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capState{}, fmt.Errorf("capget: %w", err)
	}
	join := func(lo, hi uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }
	return capState{
		effective:   join(data[0].Effective, data[1].Effective),
		permitted:   join(data[0].Permitted, data[1].Permitted),
		inheritable: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

// setCaps sets the calling thread's effective, permitted and inheritable
// sets.
func setCaps(s capState) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		shift := 32 * i
		data[i].Effective = uint32(s.effective >> shift)
		data[i].Permitted = uint32(s.permitted >> shift)
		data[i].Inheritable = uint32(s.inheritable >> shift)
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}
