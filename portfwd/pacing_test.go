package portfwd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The pacing role exits with skipBBR when this kernel has no BBR.
const skipBBR = 3

// pacingEnv set: the test binary is the pacing role.
const pacingEnv = "PORTFWD_TEST_PACING"

// TestLoopbackHopsUnpaced checks that, where the network namespace's default
// congestion control is BBR (which paces), the sockets the child dials and
// those accepted on a loopback listener take one that does not, while a
// listener on another address keeps the default. It runs the pacing role in
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
		t.Skipf("no BBR congestion control on this kernel (modprobe tcp_bbr as root): %s", out)
	case err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC)):
		t.Skipf("no unprivileged user namespaces: %v", err)
	case err != nil:
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("%s", out)
}

// pacingRole runs in a new user and network namespace as its root.
func pacingRole() error {
	if err := setLinkUp("lo"); err != nil {
		return err
	}
	const knob = "/proc/sys/net/ipv4/tcp_congestion_control"
	if err := os.WriteFile(knob, []byte("bbr"), 0); err != nil {
		fmt.Println(err)
		os.Exit(skipBBR)
	}
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := backend.Addr().(*net.TCPAddr).Port

	// The child's dial, through newChild as the sandbox makes it.
	parent, childEnd, err := NewSocketpair()
	if err != nil {
		return err
	}
	c, err := newChild(childEnd)
	if err != nil {
		return err
	}
	if err := c.dial(request{id: 1, proto: 't', addr: netip.MustParseAddr("127.0.0.1"), port: uint16(port)}); err != nil {
		return err
	}
	buf, oob := make([]byte, maxReplySize), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(parent.Fd()), buf, oob, 0)
	if err != nil {
		return err
	}
	fd := receivedFD(oob[:oobn])
	if fd < 0 {
		return fmt.Errorf("the child's reply carries no socket")
	}
	if err := wantCC(fd, "the socket the child dialed", false); err != nil {
		return err
	}
	unix.Close(fd)

	// Listeners: on loopback unpaced, on 0.0.0.0 the namespace's default.
	for _, tc := range []struct {
		ip    string
		paced bool
	}{{"127.0.0.1", false}, {"0.0.0.0", true}} {
		lfd, err := bindSocket(Spec{Proto: "tcp", HostIP: tc.ip, HostPort: 0, ContainerPort: 80})
		if err != nil {
			return err
		}
		sa, err := unix.Getsockname(lfd)
		if err != nil {
			return err
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port))
		if err != nil {
			return err
		}
		afd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return err
		}
		if err := wantCC(afd, "a socket accepted on "+tc.ip, tc.paced); err != nil {
			return err
		}
		conn.Close()
		unix.Close(afd)
		unix.Close(lfd)
	}
	return nil
}

// wantCC checks the congestion control of fd: bbr when paced, else another.
func wantCC(fd int, what string, paced bool) error {
	cc, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	if err != nil {
		return err
	}
	if strings.HasPrefix(cc, "bbr") != paced {
		return fmt.Errorf("%s has congestion control %q, want bbr=%v", what, cc, paced)
	}
	fmt.Printf("%s: %s\n", what, cc)
	return nil
}

// setLinkUp sets IFF_UP on the named link.
func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
