// Package cgroups applies an OCI bundle's linux.cgroupsPath and
// linux.resources with cgroup v2, the way runc's cgroupfs driver does.
//
// It owns one container's cgroup directory: resolving the path, creating
// it, writing the limits, moving the container's init in, and later
// listing, signalling and removing what is inside. It knows nothing of
// namespaces or of the container's state: the caller keeps Manager.Path
// with the container's state and rebuilds a Manager from it.
//
// # How rabbitc uses it
//
//	create:     if cgroups.Needed(path, res) { m, err := cgroups.New(path, id, res) // before anything starts
//	            ... start init ...; err = m.Apply(initPid, res) }                    // before start lets it run
//	kill --all: (&cgroups.Manager{Path: saved}).Kill(sig)
//	ps:         (&cgroups.Manager{Path: saved}).Pids()
//	delete:     (&cgroups.Manager{Path: saved}).Destroy()                            // after the processes are gone
//
// Needed is false for a spec with no cgroupsPath and no limit: rabbitc
// then runs the container in the cgroup it was started in, and needs no
// permission on any cgroup. Engines that always send a cgroupsPath
// (docker's "/docker/ID") get a cgroup, and, without delegation, runc's
// error; errors.Is(err, fs.ErrPermission) tells that case.
//
// # Paths
//
// "/a/b" is relative to the cgroup2 mount (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid host); "a/b" relative to the parent of
// rabbitc's own cgroup, as runc does; "" is the container id, relative. A
// path that leaves the mount ("/../x"), or is its root, is an error, and so
// is a systemd "slice:prefix:name" path: rabbitc has no systemd driver.
//
// # Resources
//
// Written in runc's order, with runc's conversions: pids.max (-1 is max,
// 0 is a limit); memory.swap.max (the spec's swap is memory+swap; v2's is
// swap alone), memory.max, memory.low (from reservation); io.weight (blkio
// weight 10..1000 to 1..10000), io.max; cpu.weight (shares:
// 1 + (shares-2)*9999/262142), cpu.max, cpu.max.burst, cpu.idle;
// cpuset.cpus, cpuset.mems; hugetlb.SIZE.max; rdma.max; then unified as
// given, in key order (memory.high has no field of its own and comes from
// there). A unified key must be a file name ("/", "." and ".." refused) and
// may not be cgroup.procs, cgroup.threads or cgroup.kill.
//
// Not applied, as with runc on cgroup v2: memory kernel, kernelTCP,
// swappiness, disableOOMKiller, useHierarchy; blockIO leafWeight; network
// (v1 only). realtimeRuntime/realtimePeriod are an error. Device rules are
// not enforced through the cgroup (v2 needs a BPF program, which rabbitc
// does not load): the container's user namespace already keeps it from
// opening device nodes the user could not open on the host.
//
// # What was tested, and where
//
// The development host has hybrid cgroups: every controller is bound to
// cgroup v1, its cgroup2 hierarchy (/sys/fs/cgroup/unified) has none, and
// nothing is delegated to the unprivileged user. So:
//
//   - Tested as pure functions (any user): path resolution from mountinfo
//     and /proc/self/cgroup contents (absolute, relative, id, bound mounts,
//     escapes, the mount's root, systemd paths, v1-only hosts); the file
//     list of every resource (conversions, unset versus max, swap rules,
//     refusals); Needed.
//   - Tested on a real cgroup2 mount, as root, in the test's own mount
//     namespace (TestRealCgroup2): New, Apply with cgroup v2 core limits
//     (cgroup.max.descendants and cgroup.max.depth through unified) and
//     nested mkdir, the move of a process (checked in /proc/PID/cgroup),
//     Pids of a process and its children forked inside, the refusal of a
//     cgroup that is not empty, the error naming a controller the
//     hierarchy lacks (and the removal of what Apply created), Kill with
//     SIGTERM (freeze, signal, thaw), Kill with SIGKILL (cgroup.kill),
//     Destroy with a sub-cgroup, twice, and Pids and Kill afterwards.
//   - Tested as an unprivileged user: the error without delegation, in the
//     host's hierarchy (TestNoDelegation) and on a cgroup2 mounted in a
//     user and cgroup namespace (TestRealCgroup2, which then skips the
//     rest and says why).
//
// Not tested here, for want of a cgroup2 with controllers: that the
// kernel accepts the memory, pids, cpu, cpuset, io, hugetlb and rdma
// values as written (TestRealCgroup2 writes and reads back pids, memory
// and cpu limits on a host whose cgroup2 root offers those controllers),
// enabling controllers in subtree_control, a delegated subtree used
// rootless, a cgroup namespace's view, and kernels older than 5.14
// (no cgroup.kill: Kill falls back to the freeze-and-signal path).
package cgroups
