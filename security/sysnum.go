//go:build linux

package security

//go:generate go run gen_sysnum.go amd64 arm64 386@amd64

// maxSyscall is the highest syscall number this build knows: the filter
// answers ENOSYS above it, for syscalls newer than the build.
func maxSyscall() uint32 { return maxSyscallNr }
