// Package nsenter owns the one step of `rabbitc exec` that Go code cannot
// do: joining a running container's namespaces, its user namespace first.
// The kernel lets only a single-threaded process setns(2) into a user (or a
// mount) namespace, and the Go runtime has started several threads before
// any Go code runs.
//
// So the package provides the binary's ELF entry point, in assembly
// (entry_amd64.s, entry_arm64.s), set with the linker's -E flag (BuildFlag).
// It runs in the one thread the kernel started, before the runtime, and on
// every start of the binary: it marks that it ran (Linked), looks at argv,
// and unless argv is an exec request (Args) jumps straight into the
// runtime's own entry, a few instructions later. For an exec request it
//
//  1. makes the process non-dumpable, so that nothing in the container can
//     open /proc/PID/exe of a process that runs the host's binary
//     (CVE-2019-5736; that takes CAP_SYS_PTRACE in the user namespace the
//     binary was exec'd in, the host's),
//  2. joins, in one setns(2) on the pidfd of the container's init inherited
//     as PidFD, the namespaces named by the flags in argv (the kernel
//     enters the user namespace first and the others with its
//     capabilities; pidfds work with setns since Linux 5.8),
//  3. forks, since a PID namespace applies to children only. The parent,
//     still without a runtime, closes its descriptors, waits for the child
//     and exits with its status (128+N when signal N killed it), so the
//     caller waits for an ordinary child. The child jumps into the Go
//     runtime, inside every namespace of the container; its Go code asks
//     Joined whether all went well.
//
// With PlanArgs (argv[4] "plan") the child starts no runtime: it reads a
// Plan from the sync channel and makes its system calls, up to the execve
// of the command (plan.go); or, given the Go marker instead, it starts the
// runtime as above.
//
// A failed step stores its number and errno and starts the runtime in the
// same process, unforked, whose Go code reports them (Joined).
//
// Why not cgo, as runc's nsexec: a cgo binary is linked dynamically, and
// rabbitc's binary is exec'd three or four times per container start, each
// time through the dynamic loader (about 12% more CPU per start here).
//
// It leaves everything else to its caller: it reads no settings but argv,
// opens nothing and prints nothing.
package nsenter
