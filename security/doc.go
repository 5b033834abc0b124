// Package security owns what the payload is allowed to do once it runs:
// its capability sets, no_new_privs, its session keyring and its seccomp
// filter.
//
// The parent validates the user's --cap-add, --cap-drop and --security-opt
// values with [ParseConfig], which also reads a seccomp profile file (init
// cannot see host files). Init, strictly in sequence and on one locked OS
// thread, calls [PrepareCaps] before it changes its uid and [Finalize] as the
// very last step before execve.
//
// The default seccomp profile is docker's, taken as Go data from
// github.com/moby/profiles/seccomp with its capability- and kernel-gated rules
// resolved against the container's capability set, plus rules docker does not
// have: the TIOCSTI and TIOCLINUX ioctls and nested user namespaces are denied
// (clone and unshare with CLONE_NEWUSER fail with EPERM, clone3 with ENOSYS so
// that libc falls back to clone). Profiles are compiled to classic BPF in this
// process, without libseccomp: an architecture check, a binary search over
// the syscall number, and the profile's argument conditions with 64-bit
// compares (32-bit ones for the deny rules on int arguments, which the
// kernel truncates). On amd64, when the profile lists SCMP_ARCH_X86 (docker's
// default does), i386 system calls get a search of their own over i386
// numbers (zsysnum_linux_amd64_compat.go), with the same rules, rabbitc's
// additions included, comparing the low halves of arguments as libseccomp
// does for a 32-bit ABI; x32 calls, and every other architecture, kill the
// process. On arm64 only native calls pass. Numbers beyond the newest syscall this package knows return
// ENOSYS, as runc does, so that libc falls back to older calls.
//
// A profile file (--security-opt seccomp=FILE.json) is docker's format and
// is used as written, with runc's reading of it (unknown syscall names are
// skipped; an argument compared twice in one rule means either value): the
// rules rabbitc adds to the default profile are not added to it. ERRNO
// defaults to EPERM, TRACE becomes ERRNO (ENOSYS unless errnoRet says
// otherwise), NOTIFY is refused.
//
// This package does not create namespaces, mount anything or start
// processes; it only changes the calling process.
package security
