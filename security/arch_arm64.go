//go:build linux && arm64

package security

import "golang.org/x/sys/unix"

const (
	// nativeArch is the seccomp_data.arch of this architecture's syscalls.
	nativeArch = unix.AUDIT_ARCH_AARCH64
	// x32Bit is zero: arm64 has no second ABI sharing its arch value.
	x32Bit = 0
	// compatArch is zero: the filter has no branch for arm64's 32-bit ABI
	// (AArch32), whose syscalls it kills.
	compatArch     = 0
	compatArchName = ""
	nativeArchName = "SCMP_ARCH_AARCH64"
	// maxCompatSyscallNr goes with compatSyscallNumber: no table.
	maxCompatSyscallNr = 0
)

// compatSyscallNumber knows no names: there is no compat table on arm64.
func compatSyscallNumber(string) (uint32, bool) { return 0, false }
