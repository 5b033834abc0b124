//go:build linux && arm64

package netaccel

import "golang.org/x/sys/unix"

// On arm64 the filter decodes native calls only; AArch32 calls are killed,
// as rabbitc's profiles do.
var abis = []abi{
	{
		arch: unix.AUDIT_ARCH_AARCH64, native: true,
		connect: unix.SYS_CONNECT, bind: unix.SYS_BIND, listen: unix.SYS_LISTEN,
		sendto: unix.SYS_SENDTO, sendmsg: unix.SYS_SENDMSG, sendmmsg: unix.SYS_SENDMMSG,
		setsockopt: unix.SYS_SETSOCKOPT, ioUringSetup: unix.SYS_IO_URING_SETUP, socketcall: -1,
	},
}

const x32Bit = 0
