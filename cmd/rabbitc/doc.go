// Command rabbitc runs a rootless container from a rootfs directory.
//
// This package owns the command lines (cobra), the spec built from the flags
// (all validation happens in newSpec; the stages never see a flag), the
// order of the parent's steps and their undo, the exit code and the single
// error line. The work of each step lives in its package: userns, rootfs,
// netns, portfwd, security, netaccel.
//
// One container model: spec (spec.go) is an OCI runtime spec plus the few
// things only rabbitc's own run adds (its network, published ports, --init,
// the generated /etc files). `rabbitc run` builds it from its flags; the OCI
// verbs (oci.go, ocicreate.go, ociverbs.go, ociexec.go: runc's command line,
// for engines) read it from a bundle's config.json. Init takes its rootfs
// and security settings from the OCI part alone (spec.rootfsConfig,
// spec.securityConfig), so both faces take one path through rootfs and
// security. An OCI container has no monitor: create clones init with every
// namespace of the config (`rabbitc init oci`), writes the maps, lets init
// set up the root and exits, leaving init blocked on exec.fifo until start.
//
// Images are rabbitc-image's (cmd/rabbitc-image, a second binary beside this
// one, so that its libraries cost no start of this one): rabbitc execs it
// for pull, images, rmi, image and system, and runs `rabbitc-image resolve`
// for `run IMAGE` (imagecmd.go), whose layers become the container's root
// by one of package storage's drivers (storage.go), under the container's
// own writes (spec.Overlay, spec.ContainerDir): the kernel's overlayfs,
// which init mounts; fuse-overlayfs, which init mounts over a /dev/fuse the
// sandbox opened and the sandbox's child serves (fuse.go: such a container
// always has a sandbox); or a copy of the layers (vfs), made at create. The
// driver is probed once per kernel in a user namespace stage
// (`rabbitc init storage-probe`) and cached in the store, or forced with
// $RABBITC_STORAGE_DRIVER; the copy is `rabbitc init storage-copy`.
//
// One binary, three processes (and slirp4netns beside them):
//
//	parent   run.go      host side: Listen, state dir, maps, slirp4netns, signals, console
//	sandbox  sandbox.go  `rabbitc init sandbox`: new user, mount and network namespaces;
//	                     keeps its capabilities through exec (ambient), starts init while
//	                     the maps are written, dials published ports
//	init     init.go     `rabbitc init container`: PID 1 of new mount, PID, UTS, IPC and
//	                     cgroup namespaces; mounts, pivot_root, credentials, exec
//
// The sandbox is there for --publish. Without it, the parent starts init
// itself (`rabbitc init direct`, new user and PID namespaces, the others
// unshared by init while the maps are written) and a watchdog
// (`rabbitc init watchdog`, watchdog.go) takes over the sandbox's other
// job, ending the container through a pidfd of init and removing the state
// when rabbitc is killed: one Go runtime start less
// in front of the payload (runner.startChild says why and what it saves).
// With --init, init execs `rabbitc init reaper` from a sealed copy of the
// binary instead of the payload (reaper.go), which stays PID 1 and starts
// the payload as its child.
//
// Where the network is slirp4netns, init installs package netaccel's
// seccomp filter last before exec and sends its listener to the parent
// (NetFilterInstalled), whose supervisor switches the payload's outbound
// TCP connects to host sockets (netaccel.go: the steps, --net-accel,
// --debug).
//
// `rabbitc exec` (exec.go) starts one more stage, `rabbitc init exec
// FLAGS`, which the binary's own ELF entry point (package nsenter, linked
// with -E) moves into the container's namespaces before the Go runtime
// starts, and forks; the child, execMain, sets the command up as init does
// the payload, from the container's config.json and seccomp.bpf, and execs
// it.
//
// main checks os.Args[1] == "init" before cobra sees the arguments; a stage
// reads its settings from the sync channel (fd 3), never from flags, and
// reports failures as an Error message that the parent prints. The sequence
// of messages is drawn in userns/channel.go.
//
// The parent's run is create (every step up to init waiting for Start,
// each pushing its undo), start, wait and delete (run.go). With -d
// (detach.go) rabbitc run starts a second rabbitc, the monitor, which runs
// the same runner in a session of its own with the payload's output going
// to the container's log (package ctrlog), and reports once the payload
// runs; the verbs on containers (ps.go, verbs.go, logs.go) read the state.
//
// `rabbitc doctor` (doctor.go) runs package hostcheck's checks, with what
// only this package knows (the user, the binary, netns's verdict on
// slirp4netns); its probes run as `rabbitc init probe` in new namespaces.
// run's errors about the host's setup are wrapped with aboutHost, which
// ends them with "run `rabbitc doctor`". `rabbitc info` (info.go) prints
// the paths, maps and helpers in use.
//
// A container's state lives in one directory, $XDG_RUNTIME_DIR/rabbitc/ID
// (or /tmp/rabbitc-UID/ID): state.json (status, pids and start times, exit
// code; replaced by rename under a flock of the directory), config.json (the
// spec), seccomp.bpf (the compiled filter), and for a detached container
// ctr.log; a name is claimed with a name file (names.go). A foreground
// container's directory goes when it ends; a detached one's stays, exited,
// until rabbitc rm (or --rm).
package main
