package portfwd

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A direct port is bound and listening, BeforeListen ran on it, the
// forwarder never accepts on it (a client waits in its queue, the child
// is never asked to dial), and Close frees it.
func TestDirectPortLeftAlone(t *testing.T) {
	port := freePort(t, "tcp", "127.0.0.1")
	specs := []Spec{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: port, ContainerPort: 80}}
	called := 0
	l, err := ListenConfig{Direct: func(Spec) bool { return true }, BeforeListen: func(int) error { called++; return nil }}.Listen(specs)
	if err != nil {
		t.Fatal(err)
	}
	ds := l.DirectListeners()
	if len(ds) != 1 || called != 1 || len(l.Specs()) != 1 {
		t.Fatalf("direct %v, BeforeListen called %d times, specs %v", ds, called, l.Specs())
	}
	parent, child, err := NewSocketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	l.Serve(context.Background(), parent, "127.0.0.1")
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pfd := []unix.PollFd{{Fd: int32(child.Fd()), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfd, int((300 * time.Millisecond).Milliseconds())); n > 0 {
		t.Fatalf("the forwarder asked the child to dial for a direct port")
	}
	nfd, _, err := unix.Accept(ds[0].Fd)
	if err != nil {
		t.Fatalf("the waiting client is not in the direct socket's queue: %v", err)
	}
	unix.Close(nfd)
	l.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("after Close the port is still taken: %v", err)
	}
	ln.Close()
}
