//go:build linux && arm64

package security

import "golang.org/x/sys/unix"

const (
	// nativeArch is the seccomp_data.arch of this architecture's syscalls.
	nativeArch = unix.AUDIT_ARCH_AARCH64
	// x32Bit is zero: arm64 has no second ABI sharing its arch value.
	x32Bit = 0
)
