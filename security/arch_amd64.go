//go:build linux && amd64

package security

import "golang.org/x/sys/unix"

const (
	// nativeArch is the seccomp_data.arch of this architecture's syscalls.
	nativeArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks x32 syscalls, which also carry AUDIT_ARCH_X86_64.
	x32Bit = 0x40000000
)
