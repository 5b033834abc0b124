//go:build linux

package netaccel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultWorkers = 16
	DefaultWaits   = 256
)

// pollSlice is how long a blocking connect's waiter sleeps between checks
// that the container's thread still waits (a signal takes it away).
const pollSlice = 50 * time.Millisecond

// Config is the supervisor's setting for one container.
type Config struct {
	Policy Policy
	// NetnsDev and NetnsIno identify the container's network namespace,
	// as stat(2) of /proc/PID/ns/net gives them ([NetnsOf]). A socket of
	// any other namespace, one nested in the container's included, is left
	// alone.
	NetnsDev, NetnsIno uint64
	// Workers bounds the notifications handled at once (0:
	// DefaultWorkers). When all are busy, a connect is answered CONTINUE
	// at once and a bind or listen is handled by the receiving loop
	// itself.
	Workers int
	// Waits bounds the blocking connects waited on at once (0:
	// DefaultWaits). When all are taken, a connect that would need one is
	// not switched.
	Waits int
	// Trace, when set, is told why a connect was not switched, one line
	// each (for --debug). It is called from several goroutines.
	Trace func(line string)
	// Published are the listening host sockets of the TCP ports published
	// with --publish-mode=direct; a bind of the container's server to one
	// of their ports, on the wildcard or ContainerAddr, gets the socket
	// (handover.go). The supervisor owns their descriptors: Serve closes
	// them (after an error from New the caller still owns them).
	Published     []Published
	ContainerAddr netip.Addr
}

// NetnsOf returns the device and inode of the network namespace at path,
// such as /proc/PID/ns/net.
func NetnsOf(path string) (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Dev, st.Ino, nil
}

// Stats counts what the supervisor answered.
type Stats struct {
	Switched   uint64 // connects that got a host socket
	Continued  uint64 // calls answered CONTINUE: they run in the container's namespace
	Refused    uint64 // calls on a host socket answered EOPNOTSUPP
	Overloaded uint64 // connects answered CONTINUE because every worker or wait was busy
	HandedOver uint64 // published listening sockets installed in the container
}

// Supervisor answers the notifications of one container's network filter.
type Supervisor struct {
	l       *listener
	cfg     Config
	hostNS  [2]uint64 // the supervisor's own network namespace
	defs    map[int]hostDefaults
	workers chan struct{}
	waits   chan struct{}

	mu    sync.Mutex
	socks map[uint64]*hostSock // host sockets being worked on, by SO_COOKIE
	pub   *handover

	switched, continued, refused, overloaded, handed atomic.Uint64
}

// New returns a supervisor for the listener Install returned in the
// container (passed over to this process). The supervisor owns fd: Serve
// closes it when it returns (on an error from New, the caller still owns
// it).
func New(fd int, cfg Config) (*Supervisor, error) {
	l, err := newListener(fd)
	if err != nil {
		return nil, fmt.Errorf("seccomp notification sizes: %w", err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Waits <= 0 {
		cfg.Waits = DefaultWaits
	}
	s := &Supervisor{l: l, cfg: cfg, defs: map[int]hostDefaults{}, socks: map[uint64]*hostSock{},
		workers: make(chan struct{}, cfg.Workers), waits: make(chan struct{}, cfg.Waits)}
	if s.hostNS[0], s.hostNS[1], err = NetnsOf("/proc/thread-self/ns/net"); err != nil {
		return nil, err
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		d, err := readHostDefaults(fam)
		if err != nil && fam == unix.AF_INET {
			return nil, fmt.Errorf("read the defaults of a host socket: %w", err)
		}
		s.defs[fam] = d // nil without IPv6: nothing is taken for a default
	}
	if s.pub, err = newHandover(cfg.Published, cfg.ContainerAddr); err != nil {
		return nil, err
	}
	return s, nil
}

// Stats returns the counts so far.
func (s *Supervisor) Stats() Stats {
	return Stats{Switched: s.switched.Load(), Continued: s.continued.Load(), Refused: s.refused.Load(), Overloaded: s.overloaded.Load(), HandedOver: s.handed.Load()}
}

// Serve receives and answers notifications until ctx is done (it returns
// ctx.Err()) or every task that had the filter has exited (nil). It
// returns after its workers, and closes the listener: a call the filter
// traps afterwards fails with ENOSYS, so cancelling ctx belongs to the
// container's teardown.
func (s *Supervisor) Serve(ctx context.Context) error {
	defer unix.Close(s.l.fd)
	defer s.pub.close()
	// Wake the kernel's notifying task on this CPU (Linux 6.6): the
	// answer usually comes within microseconds.
	_ = s.l.syncWakeUp()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	defer unix.Close(efd)
	stop := context.AfterFunc(ctx, func() {
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		unix.Write(efd, one)
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	fds := []unix.PollFd{{Fd: int32(s.l.fd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("poll the seccomp listener: %w", err)
		}
		if fds[1].Revents != 0 {
			return ctx.Err()
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				return nil
			}
			continue
		}
		n, err := s.l.recv()
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("receive a seccomp notification: %w", err)
		}
		select {
		case s.workers <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &worker{s: s, held: true}
				defer w.done()
				s.answer(n, s.handle(ctx, n, w))
			}()
			// Run the handler now, on this thread's P: otherwise it waits
			// until the runtime takes the P back from this thread, blocked
			// in poll again (20 us to 10 ms). Measured on a switched
			// connect: 17 -> 6 us median from receipt to handler, 89 -> 28
			// us at the 90th percentile.
			runtime.Gosched()
		default:
			if s.isConnect(n) {
				s.overloaded.Add(1)
				s.answer(n, verdictContinue)
				continue
			}
			s.answer(n, s.handle(ctx, n, nil)) // bind and listen: a few quick calls
		}
	}
}

// worker is one handled notification's hold on the worker pool, traded
// for a wait slot while it waits on a blocking connect.
type worker struct {
	s       *Supervisor
	held    bool // a worker slot
	waiting bool // a wait slot
}

// startWait takes a wait slot and gives the worker slot back; false when
// every wait slot is taken.
func (w *worker) startWait() bool {
	if w == nil {
		return false
	}
	if w.waiting {
		return true
	}
	select {
	case w.s.waits <- struct{}{}:
	default:
		return false
	}
	w.waiting = true
	if w.held {
		<-w.s.workers
		w.held = false
	}
	return true
}

func (w *worker) done() {
	if w.held {
		<-w.s.workers
	}
	if w.waiting {
		<-w.s.waits
	}
}

// verdict is an answer to a notification.
type verdict struct {
	cont  bool       // run the call in the container (CONTINUE)
	errno unix.Errno // otherwise its result: 0 or an error
	drop  bool       // the task left: no answer
}

// keep is CONTINUE for a connect the supervisor does not switch; why goes
// to Config.Trace.
func (s *Supervisor) keep(format string, args ...any) verdict {
	if s.cfg.Trace != nil {
		s.cfg.Trace("connect not switched: " + fmt.Sprintf(format, args...))
	}
	return verdictContinue
}

var (
	verdictContinue = verdict{cont: true}
	verdictDrop     = verdict{drop: true}
)

func result(errno unix.Errno) verdict { return verdict{errno: errno} }

func (s *Supervisor) answer(n notif, v verdict) {
	if v.drop {
		return
	}
	switch {
	case v.cont:
		s.continued.Add(1)
	case v.errno == unix.EOPNOTSUPP:
		s.refused.Add(1)
	}
	_ = s.l.send(n.ID, v.cont, v.errno) // ENOENT: the task left meanwhile
}

func (s *Supervisor) abi(n notif) (abi, bool) {
	for _, b := range abis {
		if b.arch == n.Data.Arch {
			return b, true
		}
	}
	return abi{}, false
}

func (s *Supervisor) isConnect(n notif) bool {
	b, ok := s.abi(n)
	if !ok {
		return false
	}
	nr := int(n.Data.Nr)
	return nr == b.connect || nr == b.socketcall && uint32(n.Data.Args[0]) == sysConnect
}

// handle decides one notification. Only native connects are switched and
// native binds and listens handed a published socket (handover.go);
// every other call the filter traps, and an i386 one whatever it is, runs
// in the container unless its socket is a host socket, which refuses.
func (s *Supervisor) handle(ctx context.Context, n notif, w *worker) verdict {
	b, ok := s.abi(n)
	if !ok {
		return s.keep("architecture %#x", n.Data.Arch)
	}
	t, err := openTarget(s.l, n)
	if err != nil {
		if errors.Is(err, errGone) {
			return verdictDrop
		}
		return s.keep("task %d: %v", n.Pid, err)
	}
	defer t.close()
	args := n.Data.Args
	fd := int(int32(args[0]))
	switch nr := int(n.Data.Nr); {
	case nr == b.connect && b.native:
		return s.connect(ctx, t, fd, args[1], uint32(args[2]), w)
	case nr == b.bind && b.native:
		return s.bind(t, fd, args[1], uint32(args[2]))
	case nr == b.listen && b.native:
		return s.listen(t, fd, int(int32(args[1])))
	case nr == b.connect || nr == b.bind || nr == b.listen:
		return s.refuseHost(t, fd)
	case nr == b.socketcall:
		a, err := t.socketcallArgs(uint64(uint32(args[1])))
		if err != nil {
			return s.keep("socketcall arguments: %v", err) // the kernel reports EFAULT
		}
		if !t.valid() {
			return verdictDrop
		}
		return s.refuseHost(t, int(int32(a[0])))
	}
	return s.keep("syscall %d", n.Data.Nr)
}

// sockKind is whose network namespace a socket belongs to.
type sockKind int

const (
	kindOther     sockKind = iota // not an inet socket: never the supervisor's business
	kindContainer                 // an inet socket of the container's namespace
	kindNested                    // of a namespace the container made
	kindHost                      // of any other namespace: a switched socket
)

// classify finds the network namespace of an inet socket with SIOCGSKNS.
// The supervisor owns the container's user namespace, so it may open the
// container's namespaces and those nested in them; EPERM means one it does
// not own: the host's, when the supervisor is unprivileged.
func (s *Supervisor) classify(sock int) sockKind {
	dom, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || dom != unix.AF_INET && dom != unix.AF_INET6 {
		return kindOther
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(sock), unix.SIOCGSKNS, 0)
	if errno != 0 {
		return kindHost
	}
	ns := int(r)
	defer unix.Close(ns)
	var st unix.Stat_t
	if err := unix.Fstat(ns, &st); err != nil {
		return kindHost
	}
	switch {
	case st.Dev == s.cfg.NetnsDev && st.Ino == s.cfg.NetnsIno:
		return kindContainer
	case st.Dev == s.hostNS[0] && st.Ino == s.hostNS[1]:
		return kindHost
	}
	return kindNested // or another namespace the supervisor owns, whose sockets are no host socket
}

// refuseHost answers a call on descriptor fd: EOPNOTSUPP for a host
// socket, CONTINUE otherwise.
func (s *Supervisor) refuseHost(t *target, fd int) verdict {
	sock, gone, err := t.takeSocket(fd)
	if gone {
		return verdictDrop
	}
	if err != nil {
		return s.keep("descriptor %d: %v", fd, err) // no such descriptor: the kernel says so
	}
	defer unix.Close(sock)
	if s.classify(sock) == kindHost {
		return result(unix.EOPNOTSUPP)
	}
	return verdictContinue
}

// maxSockaddr is the longest address the supervisor reads (the filter
// traps 16 and 28).
const maxSockaddr = 128

// connect handles a native connect(fd, addr, addrlen).
func (s *Supervisor) connect(ctx context.Context, t *target, fd int, addr uint64, addrlen uint32, w *worker) verdict {
	if addrlen < 2 || addrlen > maxSockaddr {
		return s.keep("address length %d", addrlen)
	}
	raw := make([]byte, addrlen)
	if err := t.read(addr, raw); err != nil {
		if !t.valid() {
			return verdictDrop
		}
		return s.keep("address: %v", err) // the kernel reports EFAULT
	}
	sock, gone, err := t.takeSocket(fd)
	if gone {
		return verdictDrop
	}
	if err != nil {
		return s.keep("descriptor %d: %v", fd, err)
	}
	defer unix.Close(sock)
	switch s.classify(sock) {
	case kindHost:
		return s.connectHost(ctx, t, sock, raw, w)
	case kindContainer:
		return s.connectContainer(ctx, t, fd, sock, raw, w)
	}
	return s.keep("descriptor %d: not an inet socket of the container", fd)
}

// inetAddr is a connect's destination as the application wrote it.
type inetAddr struct {
	family   int
	ap       netip.AddrPort
	flowinfo uint32
}

// parseInet reads an AF_INET or AF_INET6 address; AF_UNSPEC (a
// disconnect) and other families are not inet addresses.
func parseInet(b []byte) (inetAddr, bool) {
	if len(b) < 2 {
		return inetAddr{}, false
	}
	port := func() uint16 { return binary.BigEndian.Uint16(b[2:4]) }
	switch fam := int(binary.NativeEndian.Uint16(b)); fam {
	case unix.AF_INET:
		if len(b) < unix.SizeofSockaddrInet4 {
			return inetAddr{}, false
		}
		return inetAddr{family: fam, ap: netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port())}, true
	case unix.AF_INET6:
		if len(b) < 24 { // SIN6_LEN_RFC2133, the kernel's minimum
			return inetAddr{}, false
		}
		a := netip.AddrFrom16([16]byte(b[8:24]))
		if len(b) >= unix.SizeofSockaddrInet6 && binary.NativeEndian.Uint32(b[24:28]) != 0 {
			a = a.WithZone("scoped") // a scope id: Decide keeps it in the container
		}
		return inetAddr{family: fam, ap: netip.AddrPortFrom(a, port()), flowinfo: binary.BigEndian.Uint32(b[4:8])}, true
	}
	return inetAddr{family: int(binary.NativeEndian.Uint16(b))}, false
}

// hostSockaddr is the address a host socket of family connects to for
// the decided destination host: IPv4-mapped for an AF_INET6 socket.
func hostSockaddr(family int, host netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(host.Port()), Addr: host.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(host.Port()), Addr: host.Addr().As16()}
}

// eligible checks that the application's socket can be replaced without
// anyone noticing but the network: a TCP socket of the destination's
// family, unbound, unconnected, not shared, with no setting a host socket
// cannot take over. It returns why not, or the socket's file status
// flags and close-on-exec.
//
// A listener handed over (handover.go) may also stand for an MPTCP socket
// (mptcp true), the kind Go's net.Listen makes where the kernel has MPTCP:
// its clients fall back to plain TCP whenever the peer does not speak
// MPTCP, so a TCP listener serves them as the MPTCP one would.
func (s *Supervisor) eligible(t *target, fd, sock, family int, mptcp bool) (nonblock, cloexec bool, why string) {
	proto, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || proto != unix.IPPROTO_TCP && !(mptcp && proto == unix.IPPROTO_MPTCP) {
		return false, false, "not an unconnected TCP socket of the address's family"
	}
	for _, c := range []struct{ level, name, want int }{
		{unix.SOL_SOCKET, unix.SO_DOMAIN, family},
		{unix.SOL_SOCKET, unix.SO_TYPE, unix.SOCK_STREAM},
		{unix.SOL_SOCKET, unix.SO_ACCEPTCONN, 0},
	} {
		if v, err := unix.GetsockoptInt(sock, c.level, c.name); err != nil || v != c.want {
			return false, false, "not an unconnected TCP socket of the address's family"
		}
	}
	if info, err := unix.GetsockoptTCPInfo(sock, unix.IPPROTO_TCP, unix.TCP_INFO); err != nil || info.State != tcpClose {
		return false, false, "not in state CLOSE"
	}
	if sa, err := unix.Getsockname(sock); err != nil || !unbound(sa) {
		return false, false, "bound"
	}
	if _, err := unix.Getpeername(sock); !errors.Is(err, unix.ENOTCONN) {
		return false, false, "connected"
	}
	if why := unswitchable(sock, family); why != "" {
		return false, false, why
	}
	fl, err := unix.FcntlInt(uintptr(sock), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_ASYNC != 0 {
		return false, false, "O_ASYNC"
	}
	var st unix.Stat_t
	if err := unix.Fstat(sock, &st); err != nil {
		return false, false, "fstat"
	}
	// The descriptor still names the socket inspected (otherwise the
	// application raced itself; the ADDFD would replace what is there).
	info, err := t.fdinfo(fd)
	if err != nil || info.haveIno && info.ino != st.Ino {
		return false, false, "the descriptor changed"
	}
	if why, err := t.sharing(fd, st.Ino); err != nil || why != "" {
		if why == "" {
			why = "cannot list the descriptors"
		}
		return false, false, why
	}
	return fl&unix.O_NONBLOCK != 0, info.cloexec, ""
}

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpClose       = 7
)

func unbound(sa unix.Sockaddr) bool {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port == 0 && a.Addr == [4]byte{}
	case *unix.SockaddrInet6:
		return a.Port == 0 && a.Addr == [16]byte{}
	}
	return false
}

// connectContainer switches a connect on a container socket when the
// policy and the socket allow it. Up to the ADDFD nothing is visible to
// the container and any failure answers CONTINUE; after it, never.
func (s *Supervisor) connectContainer(ctx context.Context, t *target, fd, sock int, raw []byte, w *worker) verdict {
	dst, ok := parseInet(raw)
	if !ok {
		return s.keep("destination: not an inet address (family %d)", dst.family)
	}
	peer, ok := Decide(dst.ap, s.cfg.Policy)
	if !ok {
		return s.keep("destination %s: the policy keeps it", dst.ap)
	}
	nonblock, cloexec, why := s.eligible(t, fd, sock, dst.family, false)
	if why != "" {
		return s.keep("descriptor %d: %s", fd, why)
	}
	if dst.family == unix.AF_INET6 && dst.ap.Addr().Is4In6() {
		if v6only, err := unix.GetsockoptInt(sock, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v6only != 0 {
			return s.keep("descriptor %d: IPV6_V6ONLY", fd) // the kernel refuses it (ENETUNREACH)
		}
	}
	if dst.family == unix.AF_INET6 && peer.Addr().Is4() {
		peer = netip.AddrPortFrom(netip.AddrFrom16(peer.Addr().As16()), peer.Port()) // ::ffff:a.b.c.d
	}
	host, err := s.hostSocket(dst.family, peer, nonblock)
	if err != nil {
		return s.keep("descriptor %d: %v", fd, err)
	}
	defer unix.Close(host)
	if err := copyOptions(sock, host, dst.family, dst.family, s.defs[dst.family], false); err != nil {
		return s.keep("descriptor %d: %v", fd, err)
	}
	if !nonblock && !w.startWait() {
		s.overloaded.Add(1)
		return s.keep("every wait is taken")
	}
	cookie, err := unix.GetsockoptUint64(host, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return s.keep("SO_COOKIE: %v", err)
	}
	hs := s.acquire(cookie)
	defer s.release(cookie, hs)
	hs.mu.Lock()
	err = s.l.addfd(t.id, host, fd, cloexec)
	hs.mu.Unlock()
	if err != nil {
		if !t.valid() {
			return verdictDrop
		}
		return s.keep("addfd: %v", err) // nothing was installed
	}
	s.switched.Add(1)
	return s.finishConnect(ctx, t, host, hostSockaddr(dst.family, peer), !nonblock, hs, w)
}

// hostSocket is a fresh host socket of family pinned to peer, with
// O_NONBLOCK as asked.
func (s *Supervisor) hostSocket(family int, peer netip.AddrPort, nonblock bool) (int, error) {
	typ := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if nonblock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(family, typ, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("host socket: %w", err)
	}
	if err := pin(fd, peer); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("pin: %w", err)
	}
	return fd, nil
}

// connectHost handles a connect on a host socket: one the supervisor
// switched (or one it handed over) and installed in the container. It is
// never CONTINUE: the kernel would connect the host socket to whatever
// the container has written at the address by then. A connect to the same
// destination behaves as on any socket (EALREADY, EISCONN, a blocking
// wait, the error of a failed attempt, a new attempt after one); AF_UNSPEC
// and any other destination are refused with EOPNOTSUPP.
func (s *Supervisor) connectHost(ctx context.Context, t *target, sock int, raw []byte, w *worker) verdict {
	dst, ok := parseInet(raw)
	if !ok {
		return result(unix.EOPNOTSUPP)
	}
	prog, err := socketFilter(sock)
	if err != nil {
		return result(unix.EOPNOTSUPP)
	}
	peer, ok := pinnedPeer(prog)
	if !ok {
		return result(unix.EOPNOTSUPP) // not a switched socket: a handed-over listener
	}
	want, ok := Decide(dst.ap, s.cfg.Policy)
	if !ok || want.Addr() != peer.Addr().Unmap() || want.Port() != peer.Port() {
		return result(unix.EOPNOTSUPP)
	}
	family, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || family != dst.family {
		return result(unix.EAFNOSUPPORT)
	}
	fl, err := unix.FcntlInt(uintptr(sock), unix.F_GETFL, 0)
	if err != nil {
		return result(unix.EBADF)
	}
	cookie, err := unix.GetsockoptUint64(sock, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return result(unix.EBADF)
	}
	hs := s.acquire(cookie)
	defer s.release(cookie, hs)
	return s.finishConnect(ctx, t, sock, hostSockaddr(family, peer), fl&unix.O_NONBLOCK == 0, hs, w)
}

// finishConnect makes the connect of a host socket installed in the
// container, and answers as the kernel would on that socket: connect is
// called on it (non-blocking for the call); a blocking one is then waited
// on here, for the socket's SO_SNDTIMEO (EINPROGRESS or EALREADY when it runs
// out, as the kernel answers), and the result is taken by calling connect again,
// which reports the error of a failed attempt and resets the socket as it
// would for the application. The wait ends without an answer when the
// task leaves the call (a signal): the socket stays installed and
// connecting, as a native connect interrupted by a signal leaves it, and
// the restarted call, if any, comes back here and waits on.
func (s *Supervisor) finishConnect(ctx context.Context, t *target, sock int, sa unix.Sockaddr, blocking bool, hs *hostSock, w *worker) verdict {
	errno := s.connectOnce(sock, sa, hs)
	if !blocking || errno != unix.EINPROGRESS && errno != unix.EALREADY {
		return result(errno)
	}
	if !w.startWait() {
		// Every wait is taken: as if a signal had interrupted the call.
		// (A switch takes its wait before the ADDFD, so this is a later
		// call on a switched socket.)
		return result(unix.EINTR)
	}
	deadline := s.deadline(t, sock, hs)
	for {
		info, err := unix.GetsockoptTCPInfo(sock, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil && info.State == tcpEstablished {
			// Done (at once on loopback): what connect would answer now
			// (EISCONN, taken as success), without the four calls.
			hs.mu.Lock()
			defer hs.mu.Unlock()
			if !t.valid() {
				return verdictDrop
			}
			hs.endWaitLocked(t)
			return result(0)
		}
		if err != nil || info.State != tcpSynSent && info.State != tcpSynRecv {
			break
		}
		if ctx.Err() != nil || !t.valid() {
			return verdictDrop
		}
		slice := pollSlice
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				// What the kernel answers when SO_SNDTIMEO runs out:
				// EINPROGRESS for the call that started the attempt,
				// EALREADY for a later one.
				hs.endWait(t)
				return result(errno)
			}
			slice = min(slice, left)
		}
		pfd := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLOUT}}
		_, _ = unix.Poll(pfd, int(slice/time.Millisecond)+1)
	}
	// Checked under the lock: a waiter whose task left must not take
	// the result (a failed attempt's error) from the restarted call.
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if !t.valid() {
		return verdictDrop
	}
	hs.endWaitLocked(t)
	switch errno = connectLocked(sock, sa); errno {
	case unix.EISCONN:
		return result(0) // completed; another call saw it first
	case unix.EALREADY, unix.EINPROGRESS:
		return result(unix.EINPROGRESS) // went back to connecting: a new attempt by another thread
	}
	return result(errno)
}

// connectOnce calls connect on a host socket without blocking, whatever
// its O_NONBLOCK: the flag is set for the call and put back.
func (s *Supervisor) connectOnce(sock int, sa unix.Sockaddr, hs *hostSock) unix.Errno {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return connectLocked(sock, sa)
}

func connectLocked(sock int, sa unix.Sockaddr) unix.Errno {
	fl, err := unix.FcntlInt(uintptr(sock), unix.F_GETFL, 0)
	if err != nil {
		return errnoOf(err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		if _, err := unix.FcntlInt(uintptr(sock), unix.F_SETFL, fl|unix.O_NONBLOCK); err != nil {
			return errnoOf(err)
		}
		defer unix.FcntlInt(uintptr(sock), unix.F_SETFL, fl)
	}
	return errnoOf(unix.Connect(sock, sa))
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

// hostSock is the supervisor's state about one host socket while it
// works on it: a lock over the connect calls it makes on it, and the
// deadline of each thread's blocking connect.
type hostSock struct {
	mu    sync.Mutex
	refs  int                 // under Supervisor.mu
	waits map[int]pendingWait // by tid, under mu
}

// restartGrace is how long after its deadline an interrupted wait is
// remembered for the restarted call.
const restartGrace = time.Second

// pendingWait is a blocking connect with SO_SNDTIMEO. When a signal takes
// the thread away and the call is restarted (SA_RESTART), the restarted
// call keeps the deadline, so that signals arriving faster than the
// timeout cannot make the connect wait forever.
type pendingWait struct {
	id       uint64
	deadline time.Time
}

func (s *Supervisor) acquire(cookie uint64) *hostSock {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.socks[cookie]
	if hs == nil {
		hs = &hostSock{}
		s.socks[cookie] = hs
	}
	hs.refs++
	return hs
}

func (s *Supervisor) release(cookie uint64, hs *hostSock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs.refs--
	if hs.refs > 0 {
		return
	}
	hs.mu.Lock()
	now := time.Now()
	for tid, p := range hs.waits {
		if now.After(p.deadline.Add(restartGrace)) {
			delete(hs.waits, tid)
		}
	}
	empty := len(hs.waits) == 0
	hs.mu.Unlock()
	if empty {
		delete(s.socks, cookie)
	}
	s.pruneLocked(now)
}

// pruneLocked forgets, now and then, the deadlines of interrupted waits
// whose call never came back.
func (s *Supervisor) pruneLocked(now time.Time) {
	if len(s.socks) < 64 {
		return
	}
	for c, hs := range s.socks {
		if hs.refs > 0 {
			continue
		}
		hs.mu.Lock()
		for tid, p := range hs.waits {
			if now.After(p.deadline.Add(restartGrace)) {
				delete(hs.waits, tid)
			}
		}
		if len(hs.waits) == 0 {
			delete(s.socks, c)
		}
		hs.mu.Unlock()
	}
}

// deadline is when the blocking connect of t gives up: its socket's
// SO_SNDTIMEO from now, or the deadline of the same thread's call a
// signal interrupted, or none.
func (s *Supervisor) deadline(t *target, sock int, hs *hostSock) time.Time {
	tv, err := unix.GetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_SNDTIMEO)
	if err != nil || tv.Sec == 0 && tv.Usec == 0 {
		return time.Time{}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.waits == nil {
		hs.waits = map[int]pendingWait{}
	}
	// Even a deadline already past: the signal may have come just
	// before the wait would have answered, and the restarted call then
	// answers at once.
	if p, ok := hs.waits[t.tid]; ok && p.id != t.id && !t.l.valid(p.id) && time.Now().Before(p.deadline.Add(restartGrace)) {
		hs.waits[t.tid] = pendingWait{id: t.id, deadline: p.deadline}
		return p.deadline
	}
	d := time.Now().Add(time.Duration(tv.Sec)*time.Second + time.Duration(tv.Usec)*time.Microsecond)
	hs.waits[t.tid] = pendingWait{id: t.id, deadline: d}
	return d
}

func (hs *hostSock) endWait(t *target) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.endWaitLocked(t)
}

func (hs *hostSock) endWaitLocked(t *target) {
	if p, ok := hs.waits[t.tid]; ok && p.id == t.id {
		delete(hs.waits, t.tid)
	}
}
