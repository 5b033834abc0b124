//go:build linux && amd64

package security

import "golang.org/x/sys/unix"

const (
	// nativeArch is the seccomp_data.arch of this architecture's syscalls.
	nativeArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks x32 syscalls, which also carry AUDIT_ARCH_X86_64.
	x32Bit = 0x40000000
	// compatArch is the 32-bit ABI amd64 kernels also run (i386), with
	// its own syscall numbers (compatSyscallNumber); compatArchName is how
	// a profile's "architectures" names it. Docker's default profile lists
	// it, so 32-bit binaries run as under docker.
	compatArch     = unix.AUDIT_ARCH_I386
	compatArchName = "SCMP_ARCH_X86"
	nativeArchName = "SCMP_ARCH_X86_64"
)
