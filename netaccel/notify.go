//go:build linux

package netaccel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The user notification structures of linux/seccomp.h.

type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type notifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

type notifSizes struct {
	Notif, Resp, Data uint16
}

// listener is the supervisor's end of a seccomp filter: receive a
// notification, act on the notifying task, answer.
type listener struct {
	fd    int
	sizes notifSizes // as the kernel has them: buffers are at least this big
}

func newListener(fd int) (*listener, error) {
	l := &listener{fd: fd}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&l.sizes))); errno != 0 {
		return nil, errno
	}
	return l, nil
}

// recv receives one notification. ENOENT means the task left (a signal)
// between the wake-up and the receive.
func (l *listener) recv() (notif, error) {
	size := max(int(l.sizes.Notif), int(unsafe.Sizeof(notif{})))
	buf := make([]byte, size) // zeroed, as the kernel requires
	if err := ioctlPtr(l.fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&buf[0])); err != nil {
		return notif{}, err
	}
	return *(*notif)(unsafe.Pointer(&buf[0])), nil
}

// send answers notification id: CONTINUE, or the call's result (0 or a
// negative errno) without running it.
func (l *listener) send(id uint64, cont bool, errno unix.Errno) error {
	size := max(int(l.sizes.Resp), int(unsafe.Sizeof(notifResp{})))
	buf := make([]byte, size)
	r := (*notifResp)(unsafe.Pointer(&buf[0]))
	r.ID = id
	if cont {
		r.Flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
	} else if errno != 0 {
		r.Error = -int32(errno)
	}
	return ioctlPtr(l.fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&buf[0]))
}

// valid tells whether notification id still waits for an answer: the task
// is alive and in the call, so a pid read before this check is its own.
func (l *listener) valid(id uint64) bool {
	return ioctlPtr(l.fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

// addfd installs src in the notifying task's descriptor table at number
// newfd, replacing what is there, as dup3 would.
func (l *listener) addfd(id uint64, src, newfd int, cloexec bool) error {
	a := notifAddfd{ID: id, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(src), Newfd: uint32(newfd)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	return ioctlPtr(l.fd, unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
}

// syncWakeUp asks the kernel to wake the notifying task on the
// supervisor's CPU when it answers (Linux 6.6); older kernels refuse, which
// is harmless.
func (l *listener) syncWakeUp() error {
	return ioctlInt(l.fd, unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
}

func ioctlPtr(fd int, req uint, p unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(p))
	if errno != 0 {
		return errno
	}
	return nil
}

func ioctlInt(fd int, req uint, v uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), v)
	if errno != 0 {
		return errno
	}
	return nil
}
