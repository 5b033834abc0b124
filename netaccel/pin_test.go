package netaccel

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packet is what a TCP socket's filter sees: the network header (reached
// with negative offsets), then the TCP header at offset 0.
type packet struct {
	proto   uint16
	netHdr  []byte
	tcpHead []byte
}

func tcpPacket(src netip.AddrPort) packet {
	p := packet{tcpHead: make([]byte, 20)}
	binary.BigEndian.PutUint16(p.tcpHead[0:], src.Port())
	binary.BigEndian.PutUint16(p.tcpHead[2:], 40000)
	if a := src.Addr(); a.Is4() {
		p.proto = ethPIP
		p.netHdr = make([]byte, 20)
		p.netHdr[0] = 0x45
		b := a.As4()
		copy(p.netHdr[12:], b[:])
	} else {
		p.proto = ethPIPv6
		p.netHdr = make([]byte, 40)
		p.netHdr[0] = 0x60
		b := a.As16()
		copy(p.netHdr[8:], b[:])
	}
	return p
}

func (p packet) run(prog []unix.SockFilter) (uint32, error) {
	return runBPF(prog, p.tcpHead, func(k uint32, size int) (uint32, bool) {
		off := int(int32(k))
		if off == skfAdOff+skfAdProtocol {
			return uint32(p.proto), true
		}
		off -= skfNetOff
		if off < 0 || off+size > len(p.netHdr) {
			return 0, false
		}
		switch size {
		case 4:
			return binary.BigEndian.Uint32(p.netHdr[off:]), true
		case 2:
			return uint32(binary.BigEndian.Uint16(p.netHdr[off:])), true
		}
		return uint32(p.netHdr[off]), true
	})
}

func TestPinFilter(t *testing.T) {
	tests := []struct {
		peer, from string
		accept     bool
	}{
		{"127.0.0.1:8080", "127.0.0.1:8080", true},
		{"127.0.0.1:8080", "127.0.0.1:8081", false},
		{"127.0.0.1:8080", "127.0.0.2:8080", false},
		{"127.0.0.1:8080", "[::1]:8080", false},
		{"127.0.0.1:8080", "[::ffff:127.0.0.1]:8080", false}, // an IPv6 packet is never the IPv4 peer
		{"192.0.2.1:443", "192.0.2.1:443", true},
		{"192.0.2.1:443", "192.0.2.1:80", false},
		{"[2001:db8::1]:443", "[2001:db8::1]:443", true},
		{"[2001:db8::1]:443", "[2001:db8::2]:443", false},
		{"[2001:db8::1]:443", "[2001:db9::1]:443", false},
		{"[2001:db8::1]:443", "[2001:db8::1]:444", false},
		{"[2001:db8::1]:443", "192.0.2.1:443", false},
		{"[::ffff:192.0.2.1]:443", "192.0.2.1:443", true}, // an AF_INET6 socket's mapped peer talks IPv4
	}
	for _, tc := range tests {
		peer := netip.MustParseAddrPort(tc.peer)
		from := netip.MustParseAddrPort(tc.from)
		if from.Addr().Is4In6() {
			// only the IPv6 header spelling of a mapped address
			p := tcpPacket(netip.AddrPortFrom(netip.MustParseAddr("::1"), from.Port()))
			b := from.Addr().As16()
			copy(p.netHdr[8:], b[:])
			got, err := p.run(pinFilter(peer))
			if err != nil || (got != 0) != tc.accept {
				t.Errorf("pin %s, packet from %s: %#x %v", tc.peer, tc.from, got, err)
			}
			continue
		}
		got, err := tcpPacket(from).run(pinFilter(peer))
		if err != nil || (got != 0) != tc.accept {
			t.Errorf("pin %s, packet from %s: %#x %v, want accept=%v", tc.peer, tc.from, got, err, tc.accept)
		}
		back, ok := pinnedPeer(pinFilter(peer))
		if want := netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()); !ok || back != want {
			t.Errorf("pinnedPeer(pinFilter(%s)) = %s %v", tc.peer, back, ok)
		}
	}
	if _, ok := pinnedPeer(nil); ok {
		t.Error("pinnedPeer(nil) ok")
	}
	if len(pinFilter(netip.MustParseAddrPort("[2001:db8::1]:443"))) > maxPinFilterSz {
		t.Error("pin filter longer than maxPinFilterSz")
	}
}

// countingServer listens on 127.0.0.1 and counts the connections it
// accepts; reply, when set, is written to each.
type countingServer struct {
	ln    *net.TCPListener
	n     chan struct{}
	reply []byte
}

func newCountingServer(t testing.TB, reply string) *countingServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &countingServer{ln: ln, n: make(chan struct{}, 1<<16), reply: []byte(reply)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.n <- struct{}{}
			go func() {
				defer c.Close()
				if len(s.reply) > 0 {
					buf := make([]byte, 4)
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Read(buf); err == nil {
						c.Write(s.reply)
					}
				}
				time.Sleep(5 * time.Second)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *countingServer) port() int     { return s.ln.Addr().(*net.TCPAddr).Port }
func (s *countingServer) accepted() int { return len(s.n) }
func (s *countingServer) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(s.port()))
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// connectRaw calls connect(2) with the address bytes b as they are (any
// length, any family).
func connectRaw(fd int, b []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return errno
	}
	return nil
}

func rawInet4(ap netip.AddrPort, length int) []byte {
	b := make([]byte, max(length, 16))
	binary.LittleEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As4()
	copy(b[4:], a[:])
	return b[:length]
}

func rawUnspec(length int) []byte {
	b := make([]byte, max(length, 2))
	binary.LittleEndian.PutUint16(b, unix.AF_UNSPEC)
	return b[:length]
}

// The pin on a real socket, in this process's own network namespace: the
// pinned peer answers; after a disconnect, another server on the same
// host never sees the socket complete a handshake.
func TestPinKernel(t *testing.T) {
	requirePin(t)
	a := newCountingServer(t, "")
	b := newCountingServer(t, "")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := pin(fd, a.addr()); err != nil {
		t.Fatal(err)
	}
	prog, err := socketFilter(fd)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := pinnedPeer(prog); !ok || p != a.addr() {
		t.Fatalf("pinned peer read back: %s %v, want %s", p, ok, a.addr())
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_LOCK_FILTER, 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("unlock the filter: %v, want EPERM", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("detach the filter: %v, want EPERM", err)
	}
	tv := unix.Timeval{Usec: 300000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, sockaddr(a.addr())); err != nil {
		t.Fatalf("connect to the pinned peer: %v", err)
	}
	if err := connectRaw(fd, rawUnspec(2)); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	err = connectRaw(fd, rawInet4(b.addr(), 20))
	if err == nil {
		t.Fatalf("connect to %s after the disconnect succeeded", b.addr())
	}
	time.Sleep(100 * time.Millisecond)
	if n := b.accepted(); n != 0 {
		t.Errorf("the other server accepted %d connections", n)
	}
	if n := a.accepted(); n != 1 {
		t.Errorf("the pinned server accepted %d connections, want 1", n)
	}
}

// A socket of the supervisor's own namespace is a host socket, whether
// SIOCGSKNS answers (root) or refuses (an unprivileged supervisor, which
// does not own the host's namespace); a Unix socket is nobody's business.
func TestClassify(t *testing.T) {
	s := &Supervisor{}
	var err error
	if s.hostNS[0], s.hostNS[1], err = NetnsOf("/proc/thread-self/ns/net"); err != nil {
		t.Fatal(err)
	}
	tcp, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(tcp)
	u, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(u)
	if k := s.classify(tcp); k != kindHost {
		t.Errorf("host TCP socket: kind %d, want host", k)
	}
	if k := s.classify(u); k != kindOther {
		t.Errorf("Unix socket: kind %d, want other", k)
	}
	if k := s.classify(int(os.Stdin.Fd())); k != kindOther {
		t.Errorf("stdin: kind %d, want other", k)
	}
}

// BenchmarkPin is the cost of a switched socket's pin: a TCP socket made,
// pinned and closed, against BenchmarkSocket's socket made and closed (the
// kernel compiles each attached filter and frees it with the socket).
func BenchmarkPin(b *testing.B) {
	if err := probePin(); err != nil {
		b.Skipf("no pin on this host: %v", err)
	}
	peer := netip.MustParseAddrPort("127.0.0.1:80")
	for i := 0; i < b.N; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := pin(fd, peer); err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
}

func BenchmarkSocket(b *testing.B) {
	for i := 0; i < b.N; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
}
