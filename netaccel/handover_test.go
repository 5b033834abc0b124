//go:build linux

package netaccel

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// disconnect is connect(fd, {AF_UNSPEC}, 16), which the kernel takes as a
// disconnect: a listener goes to CLOSE and may connect afterwards.
func disconnect(t *testing.T, fd int) {
	var sa [16]byte
	if _, _, errno := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), 16); errno != 0 {
		t.Fatalf("disconnect: %v", errno)
	}
}

// reconnects tells whether fd, connected anew to addr, completes the
// handshake within a second.
func reconnects(t *testing.T, fd int, addr *net.TCPAddr) bool {
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte(addr.IP.To4())}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		t.Logf("connect after the disconnect of fd %d: %v", fd, err)
		return false
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	unix.Poll(pfd, 1000)
	_, err := unix.Getpeername(fd)
	info, _ := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State == 1 // ESTABLISHED
}

// The listener pin lets a listener accept clients, but neither it nor an
// accepted connection, once disconnected, can complete a connect of its
// own; without the pin an accepted connection does (a disconnected
// listener does on kernels before the one this was written on, whose
// connect answers EINVAL).
func TestListenerPin(t *testing.T) {
	other, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	dst := other.Addr().(*net.TCPAddr)
	for _, pinned := range []bool{true, false} {
		ln, sa := loopbackSocket(t)
		defer unix.Close(ln)
		if pinned {
			if err := PinListener(ln); err != nil {
				t.Skipf("cannot attach a socket filter here: %v", err)
			}
		}
		if err := unix.Listen(ln, 8); err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(sa.Port), time.Second)
		if err != nil {
			t.Fatalf("pinned %v: a client cannot connect: %v", pinned, err)
		}
		defer c.Close()
		child, _, err := unix.Accept(ln)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(child)
		disconnect(t, child)
		disconnect(t, ln)
		for name, fd := range map[string]int{"accepted": child, "listener": ln} {
			got := reconnects(t, fd, dst)
			if name == "listener" && !pinned {
				// Linux 6.18 answers EINVAL (older kernels connect): the
				// pin must hold either way, the check without it is moot.
				t.Logf("unpinned listener reconnects: %v", got)
				continue
			}
			if got == pinned {
				t.Errorf("pinned %v: the disconnected %s socket connected again: %v", pinned, name, got)
			}
		}
	}
}

// A server's bind to the published port gets the host's listening socket
// when it can stand for it (IPv4 on the wildcard, the dual-stack IPv6
// wildcard, an MPTCP socket), again after the server closed it, and not
// while another descriptor of the container still has it open, nor for
// an IPv6-only socket or another address: those bind in the container.
func TestHandover(t *testing.T) {
	requirePin(t)
	srv := newHostServers(t)
	ln, sa := loopbackSocket(t) // the supervisor owns it from New on
	port := sa.Port
	unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) // as rabbitc's published sockets
	if err := PinListener(ln); err != nil {
		unix.Close(ln)
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 64); err != nil {
		unix.Close(ln)
		t.Fatal(err)
	}

	// Clients keep arriving on the host port, one at a time, each reading
	// the server's line; those that queue while nobody is handed the
	// socket are served by the next listener that is.
	done := make(chan struct{})
	var clients sync.WaitGroup
	clients.Add(1)
	go func() {
		defer clients.Done()
		for i := 0; i < 100; i++ {
			select {
			case <-done:
				return
			default:
			}
			c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			c.Read(make([]byte, 3))
			c.Close()
		}
	}()
	defer func() { close(done); clients.Wait() }()

	var mu sync.Mutex
	var trace []string
	cfg := defaultConfig()
	cfg.Published = []Published{{Port: pubContainerPort, Fd: ln}}
	cfg.ContainerAddr = netip.MustParseAddr("10.0.2.100")
	cfg.Trace = func(line string) {
		t.Log(line)
		mu.Lock()
		trace = append(trace, line)
		mu.Unlock()
	}
	res, st := runChildTask(t, childTask{Scenario: "handover", PubPort: port}, srv, cfg)
	host, inCtr := "inet:"+strconv.Itoa(port), strconv.Itoa(pubContainerPort)
	want := map[string]string{
		"v4.bind": "ok", "v4.listen": "ok", "v4.local": host, "v4.peer": "127.0.0.1",
		"again.bind": "ok", "again.local": host, "again.peer": "127.0.0.1",
		"held.local": host, "second.bind": "ok", "second.local": "inet:" + inCtr,
		"dual.bind": "ok", "dual.listen": "ok", "dual.local": host, "dual.peer": "127.0.0.1",
		"v6only.local": "inet6:" + inCtr, "loopback.local": "inet:" + inCtr,
	}
	handed := uint64(4) // v4, again, held, dual
	if res["mptcp.socket"] == "" {
		want["mptcp.local"], want["mptcp.peer"] = host, "127.0.0.1"
		handed++
	} else {
		t.Logf("no MPTCP here: %s", res["mptcp.socket"])
	}
	expect(t, res, want)
	mu.Lock()
	defer mu.Unlock()
	held := false
	for _, l := range trace {
		held = held || strings.Contains(l, "handed over already and process")
	}
	if !held {
		t.Errorf("no trace names the process that still has the socket: %q", trace)
	}
	if st.HandedOver != handed {
		t.Errorf("handed over %d times, want %d", st.HandedOver, handed)
	}
}
