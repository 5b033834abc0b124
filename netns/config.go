package netns

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Network modes, the values of --net.
const (
	ModeSlirp = "slirp4netns" // own network namespace, slirp4netns on tap0 (the default)
	ModeNone  = "none"        // own network namespace with loopback only
	ModeHost  = "host"        // the host's network namespace
)

// The addresses slirp4netns uses on its default 10.0.2.0/24 network.
const (
	TapName     = "tap0"
	ContainerIP = "10.0.2.100"
	GatewayIP   = "10.0.2.2"
	DNSIP       = "10.0.2.3"
	DefaultMTU  = 65520
)

// The MTU range slirp4netns and the kernel accept for tap0: 68 is the IPv4
// minimum (RFC 791), 65521 is slirp4netns' maximum.
const (
	MinMTU = 68
	MaxMTU = 65521
)

// Config is the container's network setting, filled from --net, --mtu,
// --allow-host-loopback and the --security-opt values about slirp4netns.
type Config struct {
	Mode              string      // ModeSlirp (default, also for ""), ModeNone, ModeHost
	MTU               int         // 0 means DefaultMTU; only for ModeSlirp
	AllowHostLoopback bool        // let the container reach the host's 127.0.0.1 via 10.0.2.2
	ExtraHosts        []HostEntry // --add-host, appended to /etc/hosts
	// NoSlirpSandbox and NoSlirpSeccomp run slirp4netns without
	// --enable-sandbox or --enable-seccomp (--security-opt
	// slirp4netns-sandbox=false, slirp4netns-seccomp=false), with a warning;
	// by default a slirp4netns that lacks either is refused.
	NoSlirpSandbox bool
	NoSlirpSeccomp bool
}

// HostEntry is one --add-host line of /etc/hosts.
type HostEntry struct {
	Name string
	IP   string
}

// ParseHostEntry parses --add-host NAME:IP (or NAME=IP), as docker does,
// for the network cfg: IP "host-gateway" is the host as the container sees
// it, 10.0.2.2 with slirp4netns (its services on 127.0.0.1 only with
// --allow-host-loopback) and 127.0.0.1 with the host's network.
func ParseHostEntry(s string, cfg Config) (HostEntry, error) {
	i := strings.IndexAny(s, ":=")
	if i <= 0 || i == len(s)-1 {
		return HostEntry{}, fmt.Errorf("--add-host %q: expected NAME:IP", s)
	}
	name, ip := s[:i], strings.Trim(s[i+1:], "[]")
	for _, r := range name {
		if !(r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return HostEntry{}, fmt.Errorf("--add-host %q: %q is not a host name", s, name)
		}
	}
	if ip == "host-gateway" {
		switch cfg.mode() {
		case ModeSlirp:
			ip = GatewayIP
		case ModeHost:
			ip = "127.0.0.1"
		default:
			return HostEntry{}, fmt.Errorf("--add-host %q: host-gateway needs --net %s or %s (--net %s has no way to the host)", s, ModeSlirp, ModeHost, ModeNone)
		}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return HostEntry{}, fmt.Errorf("--add-host %q: %q is not an IP address (or host-gateway)", s, ip)
	}
	return HostEntry{Name: name, IP: addr.String()}, nil
}

// ParseMode validates a --net value.
func ParseMode(s string) (string, error) {
	switch s {
	case ModeSlirp, ModeNone, ModeHost:
		return s, nil
	}
	return "", fmt.Errorf("invalid --net %q (use %s, %s or %s)", s, ModeSlirp, ModeNone, ModeHost)
}

// Validate checks the mode and the MTU. Check calls it too.
func (c Config) Validate() error {
	if _, err := ParseMode(c.mode()); err != nil {
		return err
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		return fmt.Errorf("invalid --mtu %d (use %d to %d)", c.MTU, MinMTU, MaxMTU)
	}
	if c.mode() != ModeSlirp {
		if c.MTU != 0 {
			return fmt.Errorf("--mtu needs --net %s (got --net %s)", ModeSlirp, c.mode())
		}
		if c.AllowHostLoopback {
			return fmt.Errorf("--allow-host-loopback needs --net %s (got --net %s)", ModeSlirp, c.mode())
		}
		key := SecurityOptSandbox
		if c.NoSlirpSeccomp {
			key = SecurityOptSeccomp
		}
		if c.NoSlirpSandbox || c.NoSlirpSeccomp {
			return fmt.Errorf("--security-opt %s=false needs --net %s (got --net %s)", key, ModeSlirp, c.mode())
		}
	}
	return nil
}

func (c Config) mode() string {
	if c.Mode == "" {
		return ModeSlirp
	}
	return c.Mode
}

func (c Config) mtu() int {
	if c.MTU == 0 {
		return DefaultMTU
	}
	return c.MTU
}

// Host files read for ModeHost; variables so tests can point them elsewhere.
var (
	hostResolvConf = "/etc/resolv.conf"
	hostHosts      = "/etc/hosts"
)

// ResolvConf returns the container's /etc/resolv.conf. With slirp4netns it
// names slirp's DNS forwarder; with no network it names no server; with the
// host's network it is a copy of the host's file (its 127.0.0.53 stub, if any,
// is reachable because the loopback device is shared).
func ResolvConf(cfg Config) []byte {
	switch cfg.mode() {
	case ModeNone:
		return []byte("# rabbitc: --net none, no name servers\n")
	case ModeHost:
		b, err := os.ReadFile(hostResolvConf)
		if err != nil {
			return []byte("# rabbitc: --net host, but " + oneLine(err.Error()) + "\n")
		}
		return b
	}
	return []byte("nameserver " + DNSIP + "\n")
}

// Hosts returns the container's /etc/hosts: the loopback names, the
// container's hostname (on tap0's address with slirp4netns, on 127.0.1.1
// otherwise) and, only when the host's loopback is reachable,
// host.containers.internal. With the host's network it starts from a copy of
// the host's file.
func Hosts(cfg Config, hostname string) []byte {
	var b bytes.Buffer
	own := ""
	switch cfg.mode() {
	case ModeSlirp:
		own = ContainerIP
	case ModeNone:
		own = "127.0.1.1"
	case ModeHost:
		host, err := os.ReadFile(hostHosts)
		if err == nil {
			b.Write(host)
			if len(host) > 0 && host[len(host)-1] != '\n' {
				b.WriteByte('\n')
			}
			if hostname != "" && !hostsHasName(host, hostname) {
				b.WriteString("127.0.1.1\t" + hostname + "\n")
			}
			addExtraHosts(&b, cfg)
			return b.Bytes()
		}
		own = "127.0.1.1"
	}
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	if hostname != "" {
		b.WriteString(own + "\t" + hostname + "\n")
	}
	if cfg.mode() == ModeSlirp && cfg.AllowHostLoopback {
		b.WriteString(GatewayIP + "\thost.containers.internal\n")
	}
	addExtraHosts(&b, cfg)
	return b.Bytes()
}

func addExtraHosts(b *bytes.Buffer, cfg Config) {
	for _, e := range cfg.ExtraHosts {
		b.WriteString(e.IP + "\t" + e.Name + "\n")
	}
}

// hostsHasName reports whether an /etc/hosts text already maps name.
func hostsHasName(hosts []byte, name string) bool {
	for _, line := range strings.Split(string(hosts), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		for _, n := range f[min(1, len(f)):] {
			if n == name {
				return true
			}
		}
	}
	return false
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
