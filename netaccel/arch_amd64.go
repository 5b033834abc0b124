//go:build linux && amd64

package netaccel

import "golang.org/x/sys/unix"

// The ABIs the filter decodes on amd64: x86_64 and i386 (int 0x80, which
// any process can use, and 32-bit binaries). x32 calls carry the x86_64
// arch value with x32Bit set in the number; rabbitc's profiles kill them,
// and so does this filter.
var abis = []abi{
	{
		arch: unix.AUDIT_ARCH_X86_64, native: true,
		connect: unix.SYS_CONNECT, bind: unix.SYS_BIND, listen: unix.SYS_LISTEN,
		sendto: unix.SYS_SENDTO, sendmsg: unix.SYS_SENDMSG, sendmmsg: unix.SYS_SENDMMSG,
		setsockopt: unix.SYS_SETSOCKOPT, ioUringSetup: unix.SYS_IO_URING_SETUP, socketcall: -1,
	},
	{
		// i386 numbers (arch/x86/entry/syscalls/syscall_32.tbl).
		arch:    unix.AUDIT_ARCH_I386,
		connect: 362, bind: 361, listen: 363,
		sendto: 369, sendmsg: 370, sendmmsg: 345,
		setsockopt: 366, ioUringSetup: 425, socketcall: 102,
	},
}

const x32Bit = 0x40000000
