package hostcheck

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// SeccompNotify asks the kernel whether a seccomp filter may hand a
// system call to a supervisor (SECCOMP_RET_USER_NOTIF, Linux 5.0), which
// network acceleration needs, and reports accel, why acceleration cannot
// run otherwise (netaccel.Supported, passed in by cmd). Without it
// outbound connections go through slirp4netns as before: a warning.
func SeccompNotify(accel error) Check {
	const name = "seccomp-notify"
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	if errno == 0 {
		var sizes [3]uint16 // struct seccomp_notif_sizes
		_, _, errno = unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sizes)))
	}
	if errno != 0 {
		return rootFix(Warning, name, "SECCOMP_RET_USER_NOTIF: "+errno.Error()+" (network acceleration off: outbound TCP goes through slirp4netns)", "boot Linux 5.9 or later")
	}
	if accel != nil {
		return userFix(Warning, name, "supported, but network acceleration is off: "+accel.Error()+" (outbound TCP goes through slirp4netns)", "")
	}
	return ok(name, "SECCOMP_RET_USER_NOTIF supported: outbound TCP goes through host sockets (network acceleration)")
}
