package netaccel

import "net/netip"

// Policy is what the container's network lets leave through a host socket.
type Policy struct {
	// AllowHostLoopback switches connects to HostLoopback:PORT to the
	// host's 127.0.0.1:PORT (--allow-host-loopback).
	AllowHostLoopback bool
	// Subnet is the container's own IPv4 network (10.0.2.0/24 with
	// slirp4netns): its addresses, the gateway and DNS included, stay.
	Subnet netip.Prefix
	// HostLoopback is the address under which the container reaches the
	// host's loopback (10.0.2.2 with slirp4netns).
	HostLoopback netip.Addr
	// IPv6 tells that the container's network carries IPv6. Without it an
	// IPv6 destination stays, so that a container without IPv6 does not
	// gain it through the switch (its connects keep failing as they do).
	IPv6 bool
	// Subnet6 is the container's own IPv6 network, when it has one.
	Subnet6 netip.Prefix
}

// limitedBroadcast is 255.255.255.255.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// thisNetwork is 0.0.0.0/8, "this host on this network" (RFC 1122), which
// Linux treats as local.
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// v4Compatible is ::/96, the deprecated IPv4-compatible IPv6 addresses.
var v4Compatible = netip.MustParsePrefix("::/96")

// Decide tells whether a TCP connect to dst is switched to a host socket
// and, if so, the address that socket connects to. ok is false when the
// connect stays in the container's network namespace (the supervisor
// answers CONTINUE).
//
// An IPv4-mapped IPv6 destination is decided as the IPv4 address it maps
// (::ffff:127.0.0.1 is loopback), and host is then IPv4 too: the caller
// maps it back for an AF_INET6 socket. Port 0, loopback, unspecified,
// link-local, multicast and broadcast addresses, 0.0.0.0/8, ::/96 and the
// container's own subnets stay; so does HostLoopback unless
// AllowHostLoopback, in which case it becomes 127.0.0.1 on the same port.
// Every other unicast destination, private ones (10/8, 172.16/12,
// 192.168/16, fc00::/7) included, is switched to itself: slirp4netns reaches
// them through host sockets as well.
func Decide(dst netip.AddrPort, p Policy) (host netip.AddrPort, ok bool) {
	a := dst.Addr().Unmap()
	if !a.IsValid() || dst.Port() == 0 || a.Zone() != "" {
		return netip.AddrPort{}, false
	}
	if p.HostLoopback.IsValid() && a == p.HostLoopback.Unmap() {
		if !p.AllowHostLoopback {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port()), true
	}
	if a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast() {
		return netip.AddrPort{}, false
	}
	if a.Is4() {
		if a == limitedBroadcast || thisNetwork.Contains(a) || p.Subnet.IsValid() && p.Subnet.Contains(a) {
			return netip.AddrPort{}, false
		}
	} else {
		if !p.IPv6 || v4Compatible.Contains(a) || p.Subnet6.IsValid() && p.Subnet6.Contains(a) {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(a, dst.Port()), true
}
