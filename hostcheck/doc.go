// Package hostcheck checks, one by one, what rabbitc needs from the host, for
// `rabbitc doctor`: user namespaces (kernel, sysctls, AppArmor, a real
// clone), newuidmap and newgidmap, the user's /etc/subuid and /etc/subgid
// ranges, slirp4netns, /dev/net/tun, the unprivileged port range, overlayfs
// in a user namespace, seccomp user notification, cgroups, and the runtime,
// state and store directories. Each check returns a Check: ok, warning or
// error, what it found, and the exact command or file edit that fixes it.
//
// It imports no sibling package. What another package decides (netns's rule
// for slirp4netns's options) comes in through Host, filled by cmd/rabbitc.
// The checks that need a child in new namespaces (a user namespace, an
// overlay mount) run Host.Probe, which cmd/rabbitc dispatches to ProbeMain.
//
// The pure parts (subordinate id files and their overlaps, file
// capabilities, sysctl values, AppArmor profiles, /proc/self/cgroup, the
// verdict on a directory) take their input as arguments and are tested
// with tables; the rest reads the host and is tested end to end in tests/.
package hostcheck
