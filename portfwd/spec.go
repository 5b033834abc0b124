package portfwd

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is one forwarded port after parsing and range expansion.
type Spec struct {
	Proto         string // "tcp" or "udp"
	HostIP        string // "0.0.0.0" default (docker), "::1", "127.0.0.1", "::" ...
	HostPort      int    // 0: one the kernel chooses (run -P), which Listeners.Specs reports
	ContainerPort int
}

// String formats s in the long form of the publish syntax,
// e.g. "0.0.0.0:8080:80/tcp" or "[::1]:8080:80/udp".
func (s Spec) String() string {
	return fmt.Sprintf("%s:%d/%s", s.hostAddr(), s.ContainerPort, s.Proto)
}

// hostAddr is "HOST_IP:HOST_PORT" with brackets around an IPv6 address.
func (s Spec) hostAddr() string {
	ip := s.HostIP
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return ip + ":" + strconv.Itoa(s.HostPort)
}

// published names the host side of s as error messages do: "0.0.0.0:8080/tcp".
func (s Spec) published() string {
	return s.hostAddr() + "/" + s.Proto
}

const (
	specSyntax = "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp], e.g. 8080:80 or 127.0.0.1:8080:80/udp"
	// maxRange bounds one range so that a typo such as 1-65535 cannot open
	// tens of thousands of listeners.
	maxRange = 1024
)

// ParseSpec parses one -p/--publish value in docker's syntax:
// [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp], with equal-length ranges
// ("8000-8002:8000-8002") and bracketed IPv6 host addresses ("[::1]:8080:80").
// HOST_IP defaults to 0.0.0.0 and the protocol to tcp. Docker's forms without
// a host port (a random one) are refused: rabbitc publishes fixed ports only.
//
// The parser is ours, not RootlessKit's portutil: importing portutil links
// its pkg/port, which imports net/http, and the package initialisation of
// net/http, crypto/tls and http2 then runs in every exec of rabbitc (four per
// container start). Measured with GODEBUG=inittrace=1 on this machine:
// package init ends at 11 ms with portutil linked, at ~3 ms without it; the
// bench's start-up bar (<= 1.0x crun) cannot be met with it. portutil also
// does not take docker's short forms, ranges or a default protocol.
func ParseSpec(s string) ([]Spec, error) {
	specs, err := parseSpec(s)
	if err != nil {
		return nil, fmt.Errorf("invalid publish spec %q: %w (%s)", s, err, specSyntax)
	}
	return specs, nil
}

func parseSpec(s string) ([]Spec, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	rest, proto, err := splitProto(s)
	if err != nil {
		return nil, err
	}
	hostIP, rest, err := splitHostIP(rest)
	if err != nil {
		return nil, err
	}
	hostPorts, containerPorts, ok := strings.Cut(rest, ":")
	if !ok {
		if hostIP != "" {
			return nil, errors.New("missing container port")
		}
		return nil, errors.New("missing host port")
	}
	if _, err := netip.ParseAddr(hostPorts); err == nil {
		return nil, errors.New("missing container port")
	}
	if strings.Contains(containerPorts, ":") {
		return nil, errors.New("too many colons (put an IPv6 host address in brackets: [::1]:8080:80)")
	}
	if hostIP == "" {
		hostIP = "0.0.0.0"
	}
	hostLo, hostHi, err := parseRange("host port", hostPorts)
	if err != nil {
		return nil, err
	}
	ctrLo, ctrHi, err := parseRange("container port", containerPorts)
	if err != nil {
		return nil, err
	}
	if hostHi-hostLo != ctrHi-ctrLo {
		return nil, fmt.Errorf("host range %s and container range %s differ in length", hostPorts, containerPorts)
	}
	specs := make([]Spec, 0, hostHi-hostLo+1)
	for i := 0; i <= hostHi-hostLo; i++ {
		specs = append(specs, Spec{Proto: proto, HostIP: hostIP, HostPort: hostLo + i, ContainerPort: ctrLo + i})
	}
	return specs, nil
}

// splitProto splits the "/tcp" or "/udp" suffix off s; tcp is the default.
func splitProto(s string) (string, string, error) {
	rest, proto, ok := strings.Cut(s, "/")
	if !ok {
		return s, "tcp", nil
	}
	switch proto {
	case "tcp", "udp":
		return rest, proto, nil
	case "":
		return "", "", errors.New("empty protocol after /")
	default:
		return "", "", fmt.Errorf("unsupported protocol %q (use tcp or udp)", proto)
	}
}

// splitHostIP splits an optional host address off "IP:HP:CP", "[IP6]:HP:CP" or "HP:CP".
func splitHostIP(s string) (string, string, error) {
	var ipText, rest string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", errors.New("missing ] after IPv6 host address")
		}
		ipText, rest = s[1:end], s[end+1:]
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("missing : after ]")
		}
		rest = rest[1:]
	} else {
		if strings.Count(s, ":") < 2 {
			return "", s, nil
		}
		i := strings.LastIndex(s, ":")
		i = strings.LastIndex(s[:i], ":")
		ipText, rest = s[:i], s[i+1:]
		if strings.Contains(ipText, ":") {
			if ip, err := netip.ParseAddr(ipText); err == nil && ip.Is6() {
				return "", "", errors.New("put an IPv6 host address in brackets: [::1]:8080:80")
			}
			return "", "", errors.New("too many colons")
		}
	}
	ip, err := netip.ParseAddr(ipText)
	if err != nil || ip.Zone() != "" {
		return "", "", fmt.Errorf("host ip %q is not an IP address", ipText)
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	return ip.String(), rest, nil
}

// parseRange parses "8080" or "8000-8002".
func parseRange(what, s string) (int, int, error) {
	loText, hiText, isRange := strings.Cut(s, "-")
	lo, err := parsePort(what, loText)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err := parsePort(what, hiText)
	if err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("%s range %s is reversed", what, s)
	}
	if hi-lo >= maxRange {
		return 0, 0, fmt.Errorf("%s range %s is longer than %d ports", what, s, maxRange)
	}
	return lo, hi, nil
}

func parsePort(what, s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("missing %s", what)
	}
	if len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%s %q is not a number", what, s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s %d is out of range 1-65535", what, n)
	}
	return n, nil
}

// CheckConflicts rejects the same host address, port and protocol published
// twice. A wildcard host address (0.0.0.0 or ::) overlaps every address of its
// family on the same port.
func CheckConflicts(specs []Spec) error {
	for i, a := range specs {
		for _, b := range specs[:i] {
			if a.Proto == b.Proto && a.HostPort == b.HostPort && a.HostPort != 0 && overlaps(a.HostIP, b.HostIP) {
				return fmt.Errorf("publish %s: host port %d/%s is published twice (%s and %s)", a.published(), a.HostPort, a.Proto, b, a)
			}
		}
	}
	return nil
}

func overlaps(x, y string) bool {
	a, errA := netip.ParseAddr(x)
	b, errB := netip.ParseAddr(y)
	if errA != nil || errB != nil {
		return x == y
	}
	if a.Is4() != b.Is4() {
		return false
	}
	return a == b || a.IsUnspecified() || b.IsUnspecified()
}
