package portfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Listeners are the bound host sockets of a set of published ports and,
// after Serve, the event loop that forwards them (see loop.go for the
// design and its numbers).
type Listeners struct {
	// UDPIdleTimeout closes a UDP flow (one client address) after this long
	// without a datagram in either direction. Set it before Serve; zero
	// means DefaultUDPIdleTimeout.
	UDPIdleTimeout time.Duration
	// DialTimeout bounds each dial the child makes in the container's
	// network namespace. Set it before Serve; zero means DefaultDialTimeout.
	// A dial to a port nobody listens on fails at once (connection refused);
	// the timeout only matters for a container that drops packets.
	DialTimeout time.Duration
	// Loops is the number of event loops (threads) that forward TCP
	// connections; zero means one per four Ps (GOMAXPROCS), at least one,
	// at most 4. One loop serves the listeners, the child socket and UDP,
	// and forwards its share of connections too. With as many loops as Ps
	// or more, the loops park in the runtime's poller instead of blocking
	// a thread in epoll_wait, which costs latency (see loop.go).
	Loops int
	// OnError, if set before Serve, receives the errors of single
	// connections and flows (a failed dial, a failed accept). It is called
	// from the forwarding goroutines, possibly at once, and must not block. Errors that stop
	// forwarding altogether are returned by Wait instead.
	OnError func(error)

	lns    []*listener
	direct []Direct // TCP ports the forwarder leaves alone (ListenConfig.Direct)
	specs  []Spec   // every port in the order given to Listen
	stats  counters

	mu      sync.Mutex
	served  bool
	closed  bool
	stopped atomic.Bool
	wakefd  int // eventfd of the running loop, -1 before Serve
	done    chan struct{}
	err     error // set before done is closed
	failed  error // the first error that stopped forwarding, under mu
}

// fail records why forwarding must stop and stops it.
func (l *Listeners) fail(err error) {
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
	}
	l.mu.Unlock()
	l.wake()
}

func (l *Listeners) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// DefaultUDPIdleTimeout is the idle timeout of a UDP flow, as in conntrack's
// default for unreplied UDP (30s) doubled for replied streams.
const DefaultUDPIdleTimeout = 60 * time.Second

// DefaultDialTimeout is the timeout of a dial in the container.
const DefaultDialTimeout = 3 * time.Second

// listener is one bound host socket.
type listener struct {
	spec   Spec
	fd     int
	target netip.AddrPort // set by Serve

	// owned by the loop:
	slot    int32
	ready   bool          // may have connections or datagrams to take
	paused  time.Time     // do not accept before this (descriptor exhaustion)
	backoff time.Duration // next pause
	// refusing: out of descriptors, new connections are reset (reported
	// once until one is accepted again).
	refusing bool
	// conns counts the client sockets accepted and still open, from
	// accept until their pair closes, on any loop.
	conns atomic.Int64
	flows map[netip.AddrPort]*flow
	// pktinfo is set on a UDP listener bound to 0.0.0.0 or ::: it learns
	// each datagram's destination address (IP_PKTINFO), and replies from it.
	pktinfo bool
	// localCC is set on a TCP listener bound to 0.0.0.0 or :: where the
	// default congestion control paces: the one its connections reached at
	// a loopback address take (see unpaced).
	localCC string
}

// Direct is a listening host socket the forwarder leaves alone: its owner
// hands it to the container (rabbitc's --publish-mode=direct). Connections
// wait in its accept queue until someone accepts them.
type Direct struct {
	Spec Spec
	Fd   int // owned by the Listeners: Close closes it
}

// ListenConfig says which TCP ports are bound for a direct handover
// instead of the forwarder.
type ListenConfig struct {
	// Direct chooses the TCP ports the forwarder never serves. Their host
	// sockets are plain (none of the forwarder's options, which accepted
	// sockets would inherit), blocking, with SO_REUSEADDR.
	Direct func(Spec) bool
	// BeforeListen, if set, is called on each direct socket after bind and
	// before listen: what it attaches is inherited by every connection.
	BeforeListen func(fd int) error
}

// Listen binds every host socket of specs now, before anything else starts,
// so that a port in use or a privileged port fails early. On failure the
// sockets bound so far are closed and nothing is left behind.
func Listen(specs []Spec) (*Listeners, error) { return ListenConfig{}.Listen(specs) }

// Listen is [Listen] with some TCP ports left to a direct handover.
func (c ListenConfig) Listen(specs []Spec) (*Listeners, error) {
	l := &Listeners{wakefd: -1, done: make(chan struct{})}
	localCC, probed := "", false // one probe for every wildcard listener
	for _, sp := range specs {
		direct := sp.Proto == "tcp" && c.Direct != nil && c.Direct(sp)
		var before func(int) error
		if direct {
			before = func(fd int) error { return c.beforeListen(fd) }
		}
		fd, err := bindSocket(sp, before)
		if err != nil {
			l.closeListeners()
			return nil, fmt.Errorf("publish %s: %w", sp.published(), err)
		}
		if sp.HostPort == 0 {
			// A port the kernel chose (run -P): Specs reports it.
			if sp.HostPort, err = boundPort(fd); err != nil {
				unix.Close(fd)
				l.closeListeners()
				return nil, fmt.Errorf("publish %s: %w", sp.published(), err)
			}
		}
		l.specs = append(l.specs, sp)
		if direct {
			l.direct = append(l.direct, Direct{Spec: sp, Fd: fd})
			continue
		}
		ip, _ := netip.ParseAddr(sp.HostIP)
		ln := &listener{spec: sp, fd: fd, slot: -1, pktinfo: sp.Proto == "udp" && ip.IsUnspecified()}
		if sp.Proto == "tcp" && ip.IsUnspecified() {
			if !probed {
				localCC, probed = unpacedChoice(), true
			}
			ln.localCC = localCC
		}
		l.lns = append(l.lns, ln)
	}
	return l, nil
}

func (c ListenConfig) beforeListen(fd int) error {
	if c.BeforeListen == nil {
		return nil
	}
	return c.BeforeListen(fd)
}

// DirectListeners returns the host sockets ListenConfig.Direct chose, in
// the order given to Listen.
func (l *Listeners) DirectListeners() []Direct { return append([]Direct(nil), l.direct...) }

// bindSocket creates, binds and (for TCP) listens on the host socket of sp.
// It uses raw sockets rather than net.Listen: the event loop accepts with
// accept4 itself, and "0.0.0.0" must mean IPv4 only (net.Listen("tcp",
// "0.0.0.0:80") would open a dual-stack [::] socket). A direct socket
// (before not nil) is made plain and blocking, and before runs ahead of
// listen.
func bindSocket(sp Spec, before func(int) error) (int, error) {
	ip, err := netip.ParseAddr(sp.HostIP)
	if err != nil {
		return -1, fmt.Errorf("host ip %q: %w", sp.HostIP, err)
	}
	var family int
	var sa unix.Sockaddr
	if ip.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: sp.HostPort, Addr: ip.As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: sp.HostPort, Addr: ip.As16()}
	}
	typ, netAddr := unix.SOCK_STREAM, net.Addr(&net.TCPAddr{IP: ip.AsSlice(), Port: sp.HostPort})
	if sp.Proto == "udp" {
		typ, netAddr = unix.SOCK_DGRAM, &net.UDPAddr{IP: ip.AsSlice(), Port: sp.HostPort}
	}
	opErr := func(call string, err error) error {
		return annotateListenError(&net.OpError{Op: "listen", Net: sp.Proto, Addr: netAddr, Err: os.NewSyscallError(call, err)}, sp)
	}
	flags := unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	if before != nil {
		flags = unix.SOCK_CLOEXEC
	}
	fd, err := unix.Socket(family, typ|flags, 0)
	if err != nil {
		return -1, opErr("socket", err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, opErr("setsockopt", err)
		}
	}
	if typ == unix.SOCK_DGRAM && ip.IsUnspecified() {
		// Each datagram's destination, to answer from it (see flow.oob).
		level, opt := unix.IPPROTO_IP, unix.IP_PKTINFO
		if family == unix.AF_INET6 {
			level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			unix.Close(fd)
			return -1, opErr("setsockopt", err)
		}
	}
	if before != nil {
		return listenDirect(fd, sa, before, opErr)
	}
	if typ == unix.SOCK_STREAM {
		// As Go does: a restarted rabbitc can bind the port at once even
		// while old connections linger in TIME_WAIT. TCP_NODELAY and
		// keepalive are inherited by the accepted sockets.
		for _, opt := range [][2]int{{unix.SOL_SOCKET, unix.SO_REUSEADDR}, {unix.IPPROTO_TCP, unix.TCP_NODELAY}} {
			if err := unix.SetsockoptInt(fd, opt[0], opt[1], 1); err != nil {
				unix.Close(fd)
				return -1, opErr("setsockopt", err)
			}
		}
		if err := setKeepalive(fd); err != nil {
			unix.Close(fd)
			return -1, opErr("setsockopt", err)
		}
	}
	if typ == unix.SOCK_STREAM && ip.IsLoopback() {
		// Every client is on this machine: no pacing (inherited by the
		// accepted sockets). A listener on 0.0.0.0 or :: keeps the host's
		// default and unpaces the connections reached at a loopback
		// address (localCC); one on another address keeps it for all, its
		// clients may be far.
		unpaced(fd)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, opErr("bind", err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 4096); err != nil { // the kernel caps it at net.core.somaxconn
			unix.Close(fd)
			return -1, opErr("listen", err)
		}
	}
	return fd, nil
}

// listenDirect binds and listens a direct socket, with SO_REUSEADDR (as
// a server sets it, so that a restarted container can bind the port
// again at once) and before's work between bind and listen.
func listenDirect(fd int, sa unix.Sockaddr, before func(int) error, opErr func(string, error) error) (int, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, opErr("setsockopt", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, opErr("bind", err)
	}
	if err := before(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, opErr("listen", err)
	}
	return fd, nil
}

// annotateListenError appends how to fix a bind failure caused by the host.
func annotateListenError(err error, sp Spec) error {
	switch {
	case errors.Is(err, unix.EACCES):
		start := unprivilegedPortStart()
		if sp.HostPort < start {
			return fmt.Errorf("%w (use a host port >= %d, or set net.ipv4.ip_unprivileged_port_start=%d)", err, start, sp.HostPort)
		}
	case errors.Is(err, unix.EADDRINUSE):
		return fmt.Errorf("%w (stop what listens on port %d, or publish another host port)", err, sp.HostPort)
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return fmt.Errorf("%w (HOST_IP must be an address of this host, e.g. 127.0.0.1 or 0.0.0.0)", err)
	case errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%w (IPv6 is disabled on this host; publish on an IPv4 address)", err)
	}
	return err
}

// unprivilegedPortStart reads net.ipv4.ip_unprivileged_port_start (1024 if unreadable).
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// boundPort is the local port of a bound socket.
func boundPort(fd int) (int, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("getsockname: %w", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port, nil
	case *unix.SockaddrInet6:
		return a.Port, nil
	}
	return 0, fmt.Errorf("getsockname: not an IP socket")
}

// Specs returns the published ports in the order given to Listen, with
// the port the kernel chose where HostPort was 0.
func (l *Listeners) Specs() []Spec {
	return append([]Spec(nil), l.specs...)
}

// Serve starts forwarding and returns at once. For each TCP connection, and
// for each new UDP client address, it asks the child over sock to dial
// containerIP:ContainerPort inside the container's network namespace and gets
// the connected socket back with SCM_RIGHTS; then it moves the bytes with
// splice. sock is the parent end from NewSocketpair (a SOCK_SEQPACKET pair);
// Serve uses a duplicate and leaves sock to the caller.
//
// Forwarding stops when ctx is done, when Close is called, or when the child
// closes its end; Wait reports why.
func (l *Listeners) Serve(ctx context.Context, sock *os.File, containerIP string) {
	l.mu.Lock()
	if l.served || l.closed {
		l.mu.Unlock()
		return
	}
	l.served = true
	lp, err := newLoop(l, sock, containerIP)
	if err != nil {
		l.mu.Unlock()
		l.closeListeners()
		l.finish(err)
		return
	}
	l.wakefd = lp.wakefd
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, l.wake)
	lp.start()
	go func() {
		err := lp.run()
		stop()
		l.finish(err)
	}()
}

// finish records why forwarding stopped, closes the wake descriptor and
// releases Wait and Close.
func (l *Listeners) finish(err error) {
	l.mu.Lock()
	if l.wakefd >= 0 {
		unix.Close(l.wakefd)
		l.wakefd = -1
	}
	l.mu.Unlock()
	l.err = err
	close(l.done)
}

// wake tells the loop to stop.
func (l *Listeners) wake() {
	l.stopped.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wakefd >= 0 {
		signal(l.wakefd)
	}
}

// Done is closed when forwarding has stopped and every socket is closed.
func (l *Listeners) Done() <-chan struct{} { return l.done }

// Wait blocks until forwarding has stopped. It returns nil after Close or the
// end of ctx, and the error that stopped forwarding otherwise (the child
// closed its socket, the event loop failed).
func (l *Listeners) Wait() error {
	<-l.done
	return l.err
}

// Close stops accepting, closes the listeners and every live connection and
// flow, and returns after the forwarding goroutine has exited. The host ports
// can be bound again at once. Close is idempotent; it returns nil unless
// forwarding had already failed.
func (l *Listeners) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	served := l.served
	l.mu.Unlock()
	if !served {
		l.closeListeners()
		close(l.done)
		return nil
	}
	l.wake()
	<-l.done
	return l.err
}

func (l *Listeners) closeListeners() {
	for i := range l.direct {
		if l.direct[i].Fd >= 0 {
			unix.Close(l.direct[i].Fd)
			l.direct[i].Fd = -1
		}
	}
	for _, ln := range l.lns {
		if ln.fd >= 0 {
			unix.Close(ln.fd)
			ln.fd = -1
		}
	}
}

// Stats counts what the forwarder holds and has done. Tests use it to check
// that descriptors are not leaked.
type Stats struct {
	Conns      int    // live TCP connections (each holds two sockets)
	Flows      int    // live UDP flows (each holds one socket)
	Pending    int    // dials sent to the child and not answered yet
	Pipes      int    // open splice pipes (each holds two descriptors), pooled or in use
	Accepted   uint64 // TCP connections accepted
	DialErrors uint64 // dials the child could not make, and replies without a socket
	Resets     uint64 // connections ended by an error (reset) rather than both EOFs
	Refused    uint64 // connections reset at accept, the process out of descriptors
}

type counters struct {
	conns, flows, pending, pipes          atomic.Int64
	accepted, dialErrors, resets, refused atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (l *Listeners) Stats() Stats {
	c := &l.stats
	return Stats{
		Conns: int(c.conns.Load()), Flows: int(c.flows.Load()), Pending: int(c.pending.Load()),
		Pipes: int(c.pipes.Load()), Accepted: c.accepted.Load(), DialErrors: c.dialErrors.Load(),
		Resets: c.resets.Load(), Refused: c.refused.Load(),
	}
}
