package netaccel

import (
	"net/netip"
	"testing"
)

func TestDecide(t *testing.T) {
	slirp := Policy{
		Subnet:       netip.MustParsePrefix("10.0.2.0/24"),
		HostLoopback: netip.MustParseAddr("10.0.2.2"),
	}
	loop := slirp
	loop.AllowHostLoopback = true
	v6 := loop
	v6.IPv6 = true
	v6.Subnet6 = netip.MustParsePrefix("fd00::/64")

	stay := ""
	tests := []struct {
		name string
		p    Policy
		dst  string
		want string // the host address, or stay
	}{
		// The host's loopback, only with --allow-host-loopback.
		{"host loopback denied", slirp, "10.0.2.2:8080", stay},
		{"host loopback allowed", loop, "10.0.2.2:8080", "127.0.0.1:8080"},
		{"host loopback mapped", loop, "[::ffff:10.0.2.2]:8080", "127.0.0.1:8080"},
		{"host loopback mapped denied", slirp, "[::ffff:10.0.2.2]:8080", stay},
		{"host loopback port 0", loop, "10.0.2.2:0", stay},

		// Loopback never leaves, in any spelling.
		{"loopback", loop, "127.0.0.1:22", stay},
		{"loopback /8", loop, "127.1.2.3:22", stay},
		{"loopback mapped", loop, "[::ffff:127.0.0.1]:22", stay},
		{"loopback v6", v6, "[::1]:22", stay},
		{"loopback v6 without v6", loop, "[::1]:22", stay},

		// Unspecified, "this network", broadcast.
		{"unspecified", loop, "0.0.0.0:80", stay},
		{"unspecified mapped", loop, "[::ffff:0.0.0.0]:80", stay},
		{"unspecified v6", v6, "[::]:80", stay},
		{"this network", loop, "0.1.2.3:80", stay},
		{"broadcast", loop, "255.255.255.255:80", stay},
		{"broadcast mapped", loop, "[::ffff:255.255.255.255]:80", stay},

		// Link-local and multicast.
		{"link-local", loop, "169.254.169.254:80", stay},
		{"link-local mapped", loop, "[::ffff:169.254.1.1]:80", stay},
		{"link-local v6", v6, "[fe80::1]:80", stay},
		{"multicast", loop, "224.0.0.1:80", stay},
		{"multicast high", loop, "239.255.255.250:1900", stay},
		{"multicast v6", v6, "[ff02::1]:80", stay},
		{"multicast v6 global", v6, "[ff0e::1]:80", stay},

		// The container's own subnets: gateway, DNS, itself, broadcast.
		{"subnet dns", loop, "10.0.2.3:53", stay},
		{"subnet self", loop, "10.0.2.100:80", stay},
		{"subnet other", loop, "10.0.2.5:80", stay},
		{"subnet broadcast", loop, "10.0.2.255:80", stay},
		{"subnet mapped", loop, "[::ffff:10.0.2.100]:80", stay},
		{"subnet6", v6, "[fd00::100]:80", stay},

		// Everything else goes to the host's network as it is.
		{"public", slirp, "192.0.2.10:443", "192.0.2.10:443"},
		{"public mapped", slirp, "[::ffff:192.0.2.10]:443", "192.0.2.10:443"},
		{"private 10/8", slirp, "10.1.2.3:5432", "10.1.2.3:5432"},
		{"private 10.0.3", slirp, "10.0.3.2:5432", "10.0.3.2:5432"},
		{"private 192.168", slirp, "192.168.1.10:80", "192.168.1.10:80"},
		{"private 172.16", slirp, "172.16.0.1:80", "172.16.0.1:80"},
		{"public port 0", slirp, "192.0.2.10:0", stay},

		// IPv6 only where the container has it.
		{"v6 without v6", loop, "[2001:db8::1]:443", stay},
		{"v6", v6, "[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"ula", v6, "[fd12:3456::1]:443", "[fd12:3456::1]:443"},
		{"ula without v6", loop, "[fd12:3456::1]:443", stay},
		{"v4-compatible", v6, "[::127.0.0.1]:22", stay},
		{"v4-compatible public", v6, "[::192.0.2.1]:22", stay},
		{"nat64", v6, "[64:ff9b::c000:20a]:80", "[64:ff9b::c000:20a]:80"},
		{"zone", v6, "[2001:db8::1%eth0]:443", stay},

		// A policy without a subnet or alias (zero values) still keeps
		// loopback and the rest.
		{"zero policy loopback", Policy{}, "127.0.0.1:80", stay},
		{"zero policy 10.0.2.2", Policy{}, "10.0.2.2:80", "10.0.2.2:80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Decide(netip.MustParseAddrPort(tc.dst), tc.p)
			switch {
			case tc.want == stay && ok:
				t.Errorf("Decide(%s) = %s, want stay", tc.dst, got)
			case tc.want != stay && !ok:
				t.Errorf("Decide(%s) stays, want %s", tc.dst, tc.want)
			case tc.want != stay && got != netip.MustParseAddrPort(tc.want):
				t.Errorf("Decide(%s) = %s, want %s", tc.dst, got, tc.want)
			}
		})
	}
}

// A switched destination is never loopback, whatever the policy: the host's
// loopback is only reached through the alias, and the alias is in no
// subnet the tests above give.
func TestDecideNeverLoopbackUnlessAlias(t *testing.T) {
	p := Policy{AllowHostLoopback: true, IPv6: true, HostLoopback: netip.MustParseAddr("10.0.2.2")}
	for _, s := range []string{"127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1", "::ffff:127.9.9.9"} {
		a := netip.MustParseAddr(s)
		if host, ok := Decide(netip.AddrPortFrom(a, 80), p); ok {
			t.Errorf("Decide(%s) = %s, want stay", s, host)
		}
	}
}
