// Package security owns what the payload is allowed to do once it runs:
// its capability sets, no_new_privs, its session keyring and its seccomp
// filter.
//
// A [Config] is in the runtime spec's terms (process.capabilities,
// process.noNewPrivileges, linux.seccomp), so that docker-like flags and an
// OCI bundle's config.json take one path. For `rabbitc run` the parent
// turns --cap-add, --cap-drop and --security-opt into one with [ParseFlags],
// which also reads and compiles a seccomp profile file (init cannot see host
// files). An OCI config is taken as it is and validated by [Config.Check]
// before anything starts. The parent calls [Config.Compile] while init sets
// up, off the start-up path, and hands init the program. Init, strictly in
// sequence and on one locked OS thread, calls [PrepareCaps] before it
// changes its uid and [Finalize] as the very last step before execve.
//
// Capabilities follow runc: the bounding set is dropped to, the ambient set
// cleared and keep-caps set before the uid change; after it, the effective,
// permitted and inheritable sets are set as given and each ambient
// capability is raised (one the kernel refuses is an error). A root payload
// then has its bounding set after execve (root gains it), any other uid only
// its ambient set.
// ParseFlags gives docker's set as bounding, effective and permitted, with
// empty inheritable and ambient sets, as docker does. Capability names this
// package does not know are an error; those the running kernel lacks are
// skipped.
//
// The default seccomp profile is docker's, taken as Go data from
// github.com/moby/profiles/seccomp with its capability- and kernel-gated rules
// resolved against the container's bounding set, plus rules docker does not
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
// The default profile ([Config.Default]) is the only one that gets
// rabbitc's additions. A profile file (--security-opt seccomp=FILE.json, in
// docker's format, its includes and excludes resolved against the bounding
// set) and an OCI config's linux.seccomp are used as written, with runc's
// reading of them (unknown syscall names are skipped; an argument compared
// twice in one rule means either value). ERRNO defaults to EPERM, TRACE
// becomes ERRNO (ENOSYS unless errnoRet says otherwise), NOTIFY is refused.
//
// This package does not create namespaces, mount anything or start
// processes; it only changes the calling process.
package security
