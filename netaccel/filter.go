//go:build linux

package netaccel

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// abi is one system call ABI the filter decodes: its seccomp_data.arch and
// the numbers of the calls it traps (-1: the ABI has no such call).
type abi struct {
	arch   uint32
	native bool // the supervisor switches sockets only for native calls

	connect, bind, listen     int
	sendto, sendmsg, sendmmsg int
	setsockopt, ioUringSetup  int
	socketcall                int
}

// socketcall(2) call numbers (linux/net.h).
const (
	sysBind    = 2
	sysConnect = 3
	sysListen  = 4
)

// Sizes of the socket addresses the filter traps connect with.
const (
	sizeofSockaddrInet4 = 16
	sizeofSockaddrInet6 = 28
)

// Offsets in struct seccomp_data; arguments are little-endian 64-bit
// words, and the filter reads their low halves, which is all the kernel
// reads of an int or a socklen_t.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argLow(i int) uint32 { return uint32(offArgs + 8*i) }

const (
	retAllow      = unix.SECCOMP_RET_ALLOW
	retNotify     = unix.SECCOMP_RET_USER_NOTIF
	retKill       = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM      = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retEOPNOTSUPP = unix.SECCOMP_RET_ERRNO | uint32(unix.EOPNOTSUPP)
)

// Filter is the classic BPF program of the second seccomp filter, the one
// stacked on the container's profile. Per ABI it sends to the supervisor
// (SECCOMP_RET_USER_NOTIF):
//
//   - connect with an address length of 16 or 28 (sockaddr_in,
//     sockaddr_in6): the filter cannot read the address, so a Unix socket
//     address of exactly those lengths reaches the supervisor too, which
//     answers CONTINUE;
//   - bind, whatever the length, and listen: both are rare, and a switched
//     socket that could bind a host port behind the supervisor's back (an
//     inet bind takes any length from 16 up) could squat it;
//   - on i386, socketcall(SYS_CONNECT, SYS_BIND, SYS_LISTEN), whose
//     arguments are in memory.
//
// It refuses with EOPNOTSUPP what would open a TCP Fast Open connection
// (sendto, sendmsg and sendmmsg with MSG_FASTOPEN, setsockopt
// TCP_FASTOPEN_CONNECT), as the kernel does when TFO is off, and
// io_uring_setup with EPERM, as docker's default profile does: io_uring
// submissions bypass seccomp. Everything else is allowed; an architecture
// it does not decode (x32, AArch32) kills the process, as rabbitc's
// profiles do.
func Filter() []unix.SockFilter {
	var a asm
	a.ld(offArch)
	for i, b := range abis {
		a.jeq(b.arch, fmt.Sprintf("abi%d", i), "")
	}
	a.ret(retKill)
	for i, b := range abis {
		p := fmt.Sprintf("abi%d.", i)
		a.label(fmt.Sprintf("abi%d", i))
		a.ld(offNr)
		if b.native && x32Bit != 0 {
			a.jset(x32Bit, "kill", "")
		}
		a.jeq(uint32(b.connect), p+"connect", "")
		a.jeq(uint32(b.bind), "notify", "")
		a.jeq(uint32(b.listen), "notify", "")
		a.jeq(uint32(b.sendto), p+"flags3", "")
		a.jeq(uint32(b.sendmsg), p+"flags2", "")
		a.jeq(uint32(b.sendmmsg), p+"flags3", "")
		a.jeq(uint32(b.setsockopt), p+"setsockopt", "")
		a.jeq(uint32(b.ioUringSetup), "eperm", "")
		if b.socketcall >= 0 {
			a.jeq(uint32(b.socketcall), p+"socketcall", "")
		}
		a.ret(retAllow)

		a.label(p + "connect") // connect(fd, addr, addrlen)
		a.ld(argLow(2))
		a.jeq(sizeofSockaddrInet4, "notify", "")
		a.jeq(sizeofSockaddrInet6, "notify", "allow")
		a.label(p + "flags3") // sendto(fd, buf, len, flags, ...), sendmmsg(fd, vec, n, flags)
		a.ld(argLow(3))
		a.jset(unix.MSG_FASTOPEN, "eopnotsupp", "allow")
		a.label(p + "flags2") // sendmsg(fd, msg, flags)
		a.ld(argLow(2))
		a.jset(unix.MSG_FASTOPEN, "eopnotsupp", "allow")
		a.label(p + "setsockopt") // setsockopt(fd, level, optname, ...)
		a.ld(argLow(1))
		a.jeq(unix.IPPROTO_TCP, "", "allow")
		a.ld(argLow(2))
		a.jeq(unix.TCP_FASTOPEN_CONNECT, "eopnotsupp", "allow")
		if b.socketcall >= 0 {
			a.label(p + "socketcall") // socketcall(call, args)
			a.ld(argLow(0))
			a.jeq(sysConnect, "notify", "")
			a.jeq(sysBind, "notify", "")
			a.jeq(sysListen, "notify", "allow")
		}
	}
	a.label("notify")
	a.ret(retNotify)
	a.label("allow")
	a.ret(retAllow)
	a.label("eperm")
	a.ret(retEPERM)
	a.label("eopnotsupp")
	a.ret(retEOPNOTSUPP)
	a.label("kill")
	a.ret(retKill)
	prog, err := a.assemble()
	if err != nil {
		panic("netaccel: " + err.Error()) // a bug in the program above, caught by the tests
	}
	return prog
}

// asm assembles a classic BPF program whose jumps name labels; "" is the
// next instruction.
type asm struct {
	code   []unix.SockFilter
	jumps  []asmJump
	labels map[string]int
}

type asmJump struct {
	pc     int
	jt, jf string
}

func (a *asm) ld(off uint32) {
	a.code = append(a.code, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
}

func (a *asm) ldh(off uint32) {
	a.code = append(a.code, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: off})
}

func (a *asm) ret(k uint32) {
	a.code = append(a.code, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k})
}

func (a *asm) jeq(k uint32, jt, jf string)  { a.jump(unix.BPF_JEQ, k, jt, jf) }
func (a *asm) jset(k uint32, jt, jf string) { a.jump(unix.BPF_JSET, k, jt, jf) }

func (a *asm) jump(op uint16, k uint32, jt, jf string) {
	a.jumps = append(a.jumps, asmJump{len(a.code), jt, jf})
	a.code = append(a.code, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.code)
}

func (a *asm) assemble() ([]unix.SockFilter, error) {
	off := func(pc int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := a.labels[name]
		if !ok {
			return 0, fmt.Errorf("no label %q", name)
		}
		d := to - pc - 1
		if d < 0 || d > 255 {
			return 0, fmt.Errorf("jump from %d to %q (%d) out of range", pc, name, to)
		}
		return uint8(d), nil
	}
	for _, j := range a.jumps {
		var err error
		if a.code[j.pc].Jt, err = off(j.pc, j.jt); err != nil {
			return nil, err
		}
		if a.code[j.pc].Jf, err = off(j.pc, j.jf); err != nil {
			return nil, err
		}
	}
	if len(a.code) > 4096 {
		return nil, fmt.Errorf("%d instructions", len(a.code))
	}
	return a.code, nil
}

// Install loads Filter on every thread of the calling process and returns
// the listener, the descriptor the supervisor receives notifications on
// (close-on-exec: the caller passes it to the supervisor and closes its own
// copy before the payload runs, or the payload could answer its own calls).
// The caller needs no_new_privs or CAP_SYS_ADMIN in its user namespace.
// Filters stack: the container's profile keeps its denials whatever order
// the two are loaded in, and must allow seccomp(2) if it is loaded first.
//
// The filter is loaded without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, on
// purpose: see the package documentation.
func Install() (listener int, err error) {
	return InstallProgram(Filter())
}

// InstallProgram is Install with the program Filter returned, made
// beforehand: by a parent beside a container's start-up, and passed to the
// process that installs it (Filter takes 20-100 us, most of it in a fresh
// process).
func InstallProgram(prog []unix.SockFilter) (listener int, err error) {
	if len(prog) == 0 || len(prog) > 4096 {
		return -1, fmt.Errorf("load the network seccomp filter: a program of %d instructions", len(prog))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH)
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		if errno == unix.EACCES {
			return -1, fmt.Errorf("load the network seccomp filter: %w (set no_new_privs first)", errno)
		}
		return -1, fmt.Errorf("load the network seccomp filter: %w", errno)
	}
	return int(fd), nil
}

// minKernel is the oldest kernel with all the supervisor uses: user
// notification (5.0), pidfd_getfd (5.6), TSYNC with NEW_LISTENER (5.7),
// SECCOMP_IOCTL_NOTIF_ADDFD with SETFD (5.9).
var minKernel = [2]int{5, 9}

// Supported tells whether this kernel has what Install and the Supervisor
// need, and whether the host lets the supervisor pin switched sockets; the
// error names what is missing.
func Supported() error {
	if err := supportedKernel(); err != nil {
		return err
	}
	return probePin()
}

func supportedKernel() error {
	action := uint32(unix.SECCOMP_RET_USER_NOTIF)
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&action)))
	if errno != 0 {
		return fmt.Errorf("seccomp user notification: %w (needs Linux %d.%d with CONFIG_SECCOMP_FILTER)", errno, minKernel[0], minKernel[1])
	}
	var sizes notifSizes
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_NOTIF_SIZES, 0, uintptr(unsafe.Pointer(&sizes))); errno != 0 {
		return fmt.Errorf("seccomp notification sizes: %w", errno)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(uts.Release[:])
	v, err := kernelVersion(rel)
	if err != nil {
		return err
	}
	if v[0] < minKernel[0] || v[0] == minKernel[0] && v[1] < minKernel[1] {
		return fmt.Errorf("kernel %s lacks SECCOMP_IOCTL_NOTIF_ADDFD (needs Linux %d.%d)", rel, minKernel[0], minKernel[1])
	}
	return nil
}

// probePin attaches and locks a pin on a scratch socket. Linux lets any
// process attach a classic socket filter, but a security module may not
// (some require CAP_NET_ADMIN): without the pin no socket is switched.
func probePin() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := pin(fd, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 1)); err != nil {
		return fmt.Errorf("attach a socket filter to a host socket: %w (refused by a security module; switched sockets need one)", err)
	}
	return nil
}

// kernelVersion parses the major and minor numbers of a release string
// such as "6.18.44-fc-v1272".
func kernelVersion(rel string) ([2]int, error) {
	var v [2]int
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return v, fmt.Errorf("kernel release %q: no version", rel)
	}
	for i := range v {
		s := parts[i]
		if n := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); n >= 0 {
			s = s[:n]
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return v, errors.New("kernel release " + strconv.Quote(rel) + ": no version")
		}
		v[i] = n
	}
	return v, nil
}
