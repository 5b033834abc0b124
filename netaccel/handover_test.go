//go:build linux

package netaccel

import (
	"net"
	"strconv"
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
		ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(ln)
		if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		if pinned {
			if err := PinListener(ln); err != nil {
				t.Skipf("cannot attach a socket filter here: %v", err)
			}
		}
		if err := unix.Listen(ln, 8); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(ln)
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(sa.(*unix.SockaddrInet4).Port), time.Second)
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
