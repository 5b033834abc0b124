// Package netns owns the container's network: the slirp4netns lifecycle
// (start, ready, stop, death), the host-side checks that slirp4netns can run
// (binary present and able to confine itself, /dev/net/tun usable), what the sandbox configures or
// checks itself (lo up, tap0 made persistent before slirp4netns attaches to
// it, tap0 present and up), and the generated
// /etc/resolv.conf and /etc/hosts.
//
// The parent calls, in this order:
//
//	feat, err := netns.Check(cfg)              // before anything is started
//	s, err := netns.StartSlirp(pid, cfg, feat) // once the sandbox's id maps are written
//	...                                        // prepare the rootfs meanwhile
//	err = s.WaitReady(ctx)                     // before the payload starts
//	<-s.Done()                                 // slirp4netns died under the container
//	s.Stop()                                   // teardown
//
// The sandbox (or init, when there is no sandbox) calls PrepareNamespace
// before the parent starts slirp4netns; init calls CheckTap just before
// exec.
//
// It leaves host ports (portfwd) and the rootfs alone, and it does not enter
// namespaces: slirp4netns joins them itself, and the netlink calls work in
// whatever network namespace the calling process is in.
package netns
