package netaccel

import (
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

func init() { scenarios["handover"] = scenarioHandover }

// pubContainerPort is the container port of the handover test's published
// socket.
const pubContainerPort = 80

// scenarioHandover binds servers to the published port in the ways a
// handover must take or leave: each step records the port getsockname
// shows (the host's when handed over) and, for a listener handed over,
// the peer of the one client it accepts (the test's, on the host).
func scenarioHandover(t childTask, r results) {
	step := func(name string, family, proto int, v6only int, addr netip.Addr, serve bool) int {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			r.set(name+".socket", err)
			return -1
		}
		if family == unix.AF_INET6 {
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only)
		}
		var sa unix.Sockaddr = &unix.SockaddrInet6{Port: pubContainerPort, Addr: addr.As16()}
		if family == unix.AF_INET {
			sa = &unix.SockaddrInet4{Port: pubContainerPort, Addr: addr.As4()}
		}
		r.set(name+".bind", unix.Bind(fd, sa))
		r.set(name+".listen", unix.Listen(fd, 16))
		r.set(name+".local", localPort(fd))
		if serve {
			r.set(name+".peer", acceptOne(fd))
		}
		return fd
	}
	any4, any6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	unix.Close(step("v4", unix.AF_INET, 0, 0, any4, true))
	unix.Close(step("again", unix.AF_INET, 0, 0, any4, true)) // closed: handed again
	a := step("held", unix.AF_INET, 0, 0, any4, false)
	unix.Close(step("second", unix.AF_INET, 0, 0, any4, false)) // the first still has it
	unix.Close(a)
	unix.Close(step("dual", unix.AF_INET6, 0, 0, any6, true))
	unix.Close(step("v6only", unix.AF_INET6, 0, 1, any6, false))
	unix.Close(step("loopback", unix.AF_INET, 0, 0, netip.MustParseAddr("127.0.0.1"), false))
	unix.Close(step("mptcp", unix.AF_INET6, unix.IPPROTO_MPTCP, 0, any6, true))
}

// localPort is the family and port getsockname shows.
func localPort(fd int) string {
	sa, err := unix.Getsockname(fd)
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return "inet:" + strconv.Itoa(a.Port)
	case *unix.SockaddrInet6:
		return "inet6:" + strconv.Itoa(a.Port)
	}
	return errnoName(err)
}

// acceptOne accepts a client within 5 s, answers it "hi\n" and returns
// its address.
func acceptOne(fd int) string {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 5000); n != 1 {
		return "no client: " + errnoName(err)
	}
	c, sa, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
	if err != nil {
		return "accept: " + errnoName(err)
	}
	defer unix.Close(c)
	unix.Write(c, []byte("hi\n"))
	if a, ok := sa.(*unix.SockaddrInet4); ok {
		return netip.AddrFrom4(a.Addr).String()
	}
	return "not inet"
}
