package portfwd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

var goodSpecs = []struct {
	in   string
	want []Spec
}{
	{"8080:80", []Spec{{"tcp", "0.0.0.0", 8080, 80}}},
	{"8080:80/tcp", []Spec{{"tcp", "0.0.0.0", 8080, 80}}},
	{"8080:80/udp", []Spec{{"udp", "0.0.0.0", 8080, 80}}},
	{"1:65535", []Spec{{"tcp", "0.0.0.0", 1, 65535}}},
	{"127.0.0.1:8080:80", []Spec{{"tcp", "127.0.0.1", 8080, 80}}},
	{"127.0.0.1:5353:53/udp", []Spec{{"udp", "127.0.0.1", 5353, 53}}},
	{"0.0.0.0:8080:80/tcp", []Spec{{"tcp", "0.0.0.0", 8080, 80}}},
	{"[::1]:8080:80", []Spec{{"tcp", "::1", 8080, 80}}},
	{"[::]:8080:80/udp", []Spec{{"udp", "::", 8080, 80}}},
	{"[2001:db8::1]:443:8443", []Spec{{"tcp", "2001:db8::1", 443, 8443}}},
	{"[::ffff:127.0.0.1]:8080:80", []Spec{{"tcp", "127.0.0.1", 8080, 80}}},
	{"8000-8002:8000-8002", []Spec{{"tcp", "0.0.0.0", 8000, 8000}, {"tcp", "0.0.0.0", 8001, 8001}, {"tcp", "0.0.0.0", 8002, 8002}}},
	{"127.0.0.1:9000-9001:80-81/udp", []Spec{{"udp", "127.0.0.1", 9000, 80}, {"udp", "127.0.0.1", 9001, 81}}},
	{"[::1]:7000-7001:7000-7001", []Spec{{"tcp", "::1", 7000, 7000}, {"tcp", "::1", 7001, 7001}}},
	{"8080-8080:80-80", []Spec{{"tcp", "0.0.0.0", 8080, 80}}},
}

var badSpecs = []struct {
	in, why string
}{
	{"", "empty"},
	{"abc", "missing host port"},
	{"80", "missing host port"},
	{"70000:80", "host port 70000 is out of range"},
	{"8080:70000", "container port 70000 is out of range"},
	{"0:80", "host port 0 is out of range"},
	{":80", "missing host port"},
	{"8080:", "missing container port"},
	{"80/sctp", `unsupported protocol "sctp"`},
	{"/sctp", `unsupported protocol "sctp"`},
	{"8080:80/sctp", `unsupported protocol "sctp"`},
	{"8080:80/", "empty protocol"},
	{"8080:80/TCP", `unsupported protocol "TCP"`},
	{"8080:80/tcp/udp", `unsupported protocol "tcp/udp"`},
	{"a-b:1", `host port "a" is not a number`},
	{"8080:abc", `container port "abc" is not a number`},
	{"+80:80", `host port "+80" is not a number`},
	{"080080:80", `host port "080080" is not a number`},
	{"8000-8002:80", "differ in length"},
	{"80:8000-8002", "differ in length"},
	{"8002-8000:8002-8000", "reversed"},
	{"1-2000:1-2000", "longer than 1024 ports"},
	{"8000-:80", "missing host port"},
	{"localhost:8080:80", `host ip "localhost" is not an IP address`},
	{"1.2.3:8080:80", `host ip "1.2.3" is not an IP address`},
	{"127.0.0.1::80", "missing host port"},
	{"127.0.0.1:8080:", "missing container port"},
	{"127.0.0.1:8080", "missing container port"},
	{"::1:8080:80", "brackets"},
	{"[::1]8080:80", "missing : after ]"},
	{"[::1:8080:80", "missing ]"},
	{"[fe80::1%eth0]:8080:80", "is not an IP address"},
	{"8080:80:90", `host ip "8080" is not an IP address`},
	{"1.2.3.4:8080:10.0.2.100:80", "too many colons"},
}

func TestParseSpec(t *testing.T) {
	for _, tc := range goodSpecs {
		got, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseSpecBad(t *testing.T) {
	for _, tc := range badSpecs {
		_, err := ParseSpec(tc.in)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded, want an error with %q", tc.in, tc.why)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.why) || !strings.Contains(msg, fmt.Sprintf("%q", tc.in)) || !strings.Contains(msg, "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT") {
			t.Errorf("ParseSpec(%q) error %q, want it to name the value, say %q and give the syntax", tc.in, msg, tc.why)
		}
		if strings.ContainsAny(msg, "\n") || strings.HasSuffix(msg, ".") {
			t.Errorf("ParseSpec(%q) error %q is not one line without a trailing period", tc.in, msg)
		}
	}
}

func TestSpecString(t *testing.T) {
	for _, tc := range goodSpecs {
		specs, err := ParseSpec(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range specs {
			again, err := ParseSpec(sp.String())
			if err != nil || len(again) != 1 || again[0] != sp {
				t.Errorf("ParseSpec(%q.String() = %q) = %+v, %v", tc.in, sp.String(), again, err)
			}
		}
	}
}

func TestCheckConflicts(t *testing.T) {
	parse := func(specs ...string) []Spec {
		var all []Spec
		for _, s := range specs {
			sp, err := ParseSpec(s)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, sp...)
		}
		return all
	}
	for _, tc := range []struct {
		specs    []string
		conflict bool
	}{
		{[]string{"8080:80", "8081:80"}, false},
		{[]string{"8080:80", "8080:80/udp"}, false},
		{[]string{"127.0.0.1:8080:80", "127.0.0.2:8080:81"}, false},
		{[]string{"127.0.0.1:8080:80", "[::1]:8080:80"}, false},
		{[]string{"8080:80", "[::]:8080:80"}, false},
		{[]string{"8080:80", "8080:81"}, true},
		{[]string{"8080:80", "127.0.0.1:8080:81"}, true},
		{[]string{"127.0.0.1:8080:81", "8080:80"}, true},
		{[]string{"[::]:8080:80", "[::1]:8080:80"}, true},
		{[]string{"8000-8002:8000-8002", "8002:80"}, true},
		{[]string{"8080:80/udp", "127.0.0.1:8080:53/udp"}, true},
	} {
		err := CheckConflicts(parse(tc.specs...))
		if (err != nil) != tc.conflict {
			t.Errorf("CheckConflicts(%q) = %v, want conflict %v", tc.specs, err, tc.conflict)
		}
		if err != nil && !strings.Contains(err.Error(), "published twice") {
			t.Errorf("CheckConflicts(%q) = %q", tc.specs, err)
		}
	}
}

func TestAnnotateListenError(t *testing.T) {
	sp := Spec{Proto: "tcp", HostIP: "0.0.0.0", HostPort: 80, ContainerPort: 80}
	wrap := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4zero, Port: 80}, Err: os.NewSyscallError("bind", errno)}
	}
	start := unprivilegedPortStart()
	for _, tc := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EACCES, fmt.Sprintf("listen tcp 0.0.0.0:80: bind: permission denied (use a host port >= %d, or set net.ipv4.ip_unprivileged_port_start=80)", start)},
		{syscall.EADDRINUSE, "listen tcp 0.0.0.0:80: bind: address already in use (stop what listens on port 80, or publish another host port)"},
		{syscall.EADDRNOTAVAIL, "(HOST_IP must be an address of this host"},
	} {
		if start <= 80 && tc.errno == syscall.EACCES {
			continue
		}
		err := annotateListenError(wrap(tc.errno), sp)
		if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.errno) {
			t.Errorf("annotateListenError(%v) = %q, want %q", tc.errno, err, tc.want)
		}
	}
}

// FuzzParseSpec checks that ParseSpec never panics, that what it accepts is
// in range and prints back to itself, and that its errors are one line.
func FuzzParseSpec(f *testing.F) {
	for _, tc := range goodSpecs {
		f.Add(tc.in)
	}
	for _, tc := range badSpecs {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		specs, err := ParseSpec(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseSpec(%q) error has a newline: %q", s, err)
			}
			return
		}
		if len(specs) == 0 || len(specs) > maxRange {
			t.Fatalf("ParseSpec(%q) = %d specs", s, len(specs))
		}
		for _, sp := range specs {
			if sp.HostPort < 1 || sp.HostPort > 65535 || sp.ContainerPort < 1 || sp.ContainerPort > 65535 ||
				(sp.Proto != "tcp" && sp.Proto != "udp") || net.ParseIP(sp.HostIP) == nil {
				t.Fatalf("ParseSpec(%q) = %+v", s, sp)
			}
			again, err := ParseSpec(sp.String())
			if err != nil || len(again) != 1 || again[0] != sp {
				t.Fatalf("ParseSpec(%q) = %+v does not round-trip: %+v, %v", s, sp, again, err)
			}
		}
	})
}
