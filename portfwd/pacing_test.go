package portfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The pacing role exits with skipBBR when it cannot make bbr its namespace's
// default: no BBR in this kernel, or bbr not in the host's
// net.ipv4.tcp_allowed_congestion_control (a namespace other than the
// host's may only default to an allowed one; the host's default is).
const skipBBR = 3

// pacingEnv set: the test binary is the pacing role.
const pacingEnv = "PORTFWD_TEST_PACING"

// TestLoopbackHopsUnpaced checks that, where the network namespace's default
// congestion control is BBR (which paces), the forwarder's loopback hops take
// one that does not: the sockets the child dials, and those accepted at a
// loopback address (on a loopback listener or on 0.0.0.0), while a
// connection to 0.0.0.0 at another address keeps the default. It runs the pacing role in
// a network namespace of its own whose default it sets to bbr.
func TestLoopbackHopsUnpaced(t *testing.T) {
	if os.Getenv(pacingEnv) != "" {
		if err := pacingRole(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestLoopbackHopsUnpaced$")
	cmd.Env = append(os.Environ(), pacingEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == skipBBR:
		t.Skipf("cannot make bbr a network namespace's default: %s(as root: modprobe tcp_bbr, and add bbr to net.ipv4.tcp_allowed_congestion_control, which a namespace's default must be in; .ci/run does both)", out)
	case err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC)):
		t.Skipf("no unprivileged user namespaces: %v", err)
	case err != nil:
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("%s", out)
}

// pacingRole runs in a new user and network namespace as its root: a
// forwarder (Listen, Serve, ServeChild in this process) publishes a backend
// on 127.0.0.1 and on 0.0.0.0, clients connect to each at 127.0.0.1 and to
// the latter also at a second address of lo, and the namespace's socket
// table (sock_diag, which gives BBR's state only for a BBR socket) tells
// which sockets pace.
func pacingRole() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	other := netip.MustParseAddr("10.1.2.3") // a local address, not loopback
	if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: other.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		return err
	}
	const knob = "/proc/sys/net/ipv4/tcp_congestion_control"
	if err := os.WriteFile(knob, []byte("bbr"), 0); err != nil {
		fmt.Println(err)
		os.Exit(skipBBR)
	}

	backend, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		return err
	}
	defer backend.Close()
	var held []net.Conn // every connection stays open until the check
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	backendPort := backend.Addr().(*net.TCPAddr).Port
	l, err := Listen([]Spec{
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 0, ContainerPort: backendPort},
		{Proto: "tcp", HostIP: "0.0.0.0", HostPort: 0, ContainerPort: backendPort},
	})
	if err != nil {
		return err
	}
	defer l.Close()
	parent, child, err := NewSocketpair()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeChild(ctx, child)
	l.Serve(ctx, parent, "127.0.0.1")
	var ports [2]int
	for i, ln := range l.lns {
		sa, err := unix.Getsockname(ln.fd)
		if err != nil {
			return err
		}
		ports[i] = sa.(*unix.SockaddrInet4).Port
	}

	// Each client: the address it connects to, and whether the forwarder's
	// end of its connection should pace.
	clients := []struct {
		addr  netip.AddrPort
		paced bool
	}{
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ports[0])), false},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ports[1])), false},
		{netip.AddrPortFrom(other, uint16(ports[1])), true},
	}
	want := map[uint16]bool{} // the client's port -> the accepted socket paces
	for _, c := range clients {
		conn, err := net.Dial("tcp4", c.addr.String())
		if err != nil {
			return err
		}
		held = append(held, conn)
		want[uint16(conn.LocalAddr().(*net.TCPAddr).Port)] = c.paced
	}
	for deadline := time.Now().Add(5 * time.Second); l.Stats().Conns < len(clients); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the forwarder has %d connections, want %d", l.Stats().Conns, len(clients))
		}
	}

	socks, err := netlink.SocketDiagTCPInfo(unix.AF_INET)
	if err != nil {
		return err
	}
	accepted, dialed := 0, 0
	for _, s := range socks {
		id, paced := s.InetDiagMsg.ID, s.TCPBBRInfo != nil
		switch {
		case s.InetDiagMsg.State != unix.BPF_TCP_ESTABLISHED:
		case id.SourcePort == uint16(ports[0]) || id.SourcePort == uint16(ports[1]):
			w, ok := want[id.DestinationPort]
			if !ok {
				return fmt.Errorf("an accepted socket from unknown port %d", id.DestinationPort)
			}
			if paced != w {
				return fmt.Errorf("the forwarder's socket for %v:%d -> %v:%d paces: %v, want %v", id.Destination, id.DestinationPort, id.Source, id.SourcePort, paced, w)
			}
			accepted++
		case id.DestinationPort == uint16(backendPort):
			if paced {
				return fmt.Errorf("the child's socket %v:%d -> %v:%d paces", id.Source, id.SourcePort, id.Destination, id.DestinationPort)
			}
			dialed++
		}
	}
	if accepted != len(clients) || dialed != len(clients) {
		return fmt.Errorf("found %d accepted and %d dialed sockets, want %d of each", accepted, dialed, len(clients))
	}
	// The check itself can tell: the backend's own sockets keep bbr.
	for _, s := range socks {
		if s.InetDiagMsg.ID.SourcePort == uint16(backendPort) && s.InetDiagMsg.State == unix.BPF_TCP_ESTABLISHED && s.TCPBBRInfo == nil {
			return fmt.Errorf("the backend's socket does not pace: sock_diag shows no BBR state")
		}
	}
	fmt.Printf("%d accepted and %d dialed sockets as expected\n", accepted, dialed)
	return nil
}
