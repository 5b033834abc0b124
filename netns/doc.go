// Package netns owns the container's network: the slirp4netns lifecycle
// (start, ready, stop, death), the host-side checks that slirp4netns can run
// (binary present, /dev/net/tun usable), and what the sandbox configures or
// checks itself with netlink (lo up, tap0 present and up).
//
// It leaves host ports (portfwd) and the rootfs alone.
package netns
