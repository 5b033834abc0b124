package hostcheck

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// SeccompNotify asks the kernel whether a seccomp filter may hand a
// system call to a supervisor (SECCOMP_RET_USER_NOTIF, Linux 5.0), what
// an accelerated network would need. rabbitc does not use it yet, so its
// absence is only a warning.
func SeccompNotify() Check {
	const name = "seccomp-notify"
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	if errno == 0 {
		var sizes [3]uint16 // struct seccomp_notif_sizes
		_, _, errno = unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sizes)))
	}
	if errno != 0 {
		return rootFix(Warning, name, "SECCOMP_RET_USER_NOTIF: "+errno.Error()+" (not used by rabbitc yet)", "boot Linux 5.0 or later")
	}
	return ok(name, "SECCOMP_RET_USER_NOTIF supported (not used by rabbitc yet)")
}
