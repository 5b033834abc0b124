//go:build linux

package netaccel

import (
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Published is a listening host socket of a published TCP port, to hand
// to the container's server (rabbitc's --publish-mode=direct).
type Published struct {
	Port uint16 // the container's port
	Fd   int    // the host socket, bound and listening, pinned with PinListener
}

// handover is the supervisor's state about the published sockets.
type handover struct {
	mu     sync.Mutex
	socks  []pubSock
	target netip.Addr // the container's own address
}

type pubSock struct {
	Published
	family int
	v6only int // IPV6_V6ONLY of an AF_INET6 socket
	ino    uint64
	handed bool // installed in the container at least once
}

func newHandover(pubs []Published, target netip.Addr) (*handover, error) {
	h := &handover{target: target}
	for _, p := range pubs {
		fam, err := unix.GetsockoptInt(p.Fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			return nil, fmt.Errorf("published port %d: %w", p.Port, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(p.Fd, &st); err != nil {
			return nil, fmt.Errorf("published port %d: %w", p.Port, err)
		}
		v6only := 0
		if fam == unix.AF_INET6 {
			if v6only, err = unix.GetsockoptInt(p.Fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil {
				return nil, fmt.Errorf("published port %d: %w", p.Port, err)
			}
		}
		h.socks = append(h.socks, pubSock{Published: p, family: fam, v6only: v6only, ino: st.Ino})
	}
	return h, nil
}

func (h *handover) close() {
	for _, p := range h.socks {
		unix.Close(p.Fd)
	}
}

// atPort are the published sockets a bind to dst may get: those of its
// container port, when dst is the wildcard or the container's address.
func (h *handover) atPort(dst inetAddr) []*pubSock {
	a := dst.ap.Addr()
	if !a.IsUnspecified() && a != h.target {
		return nil
	}
	var ps []*pubSock
	for i := range h.socks {
		if p := &h.socks[i]; p.Port == dst.ap.Port() {
			ps = append(ps, p)
		}
	}
	return ps
}

// pick is the published socket of ps that the container's socket sock
// (family, bound to the wildcard when any) can stand for: one whose
// clients it would have accepted itself. The same family and, for IPv6,
// the same IPV6_V6ONLY first; else, for a dual-stack IPv6 socket on the
// wildcard (Go's net.Listen(":80"), Node, iperf3 -s, python's
// http.server), a published socket of either family: a host publishing
// 0.0.0.0:8080 only has IPv4 clients to give. That server then holds an
// IPv4 socket, as getsockname and accept tell it; programs that read the
// family from the address, as Go and libuv do, see no difference.
func pick(ps []*pubSock, sock, family int, wildcard bool) *pubSock {
	v6only := 0
	if family == unix.AF_INET6 {
		var err error
		if v6only, err = unix.GetsockoptInt(sock, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil {
			return nil
		}
	}
	for _, p := range ps {
		if p.family == family && (family == unix.AF_INET || p.v6only == v6only) {
			return p
		}
	}
	if family == unix.AF_INET6 && v6only == 0 && wildcard && len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// isPublished tells whether the host socket with inode ino is one handed
// over: listen on it is answered, not refused.
func (h *handover) isPublished(ino uint64) bool {
	for _, p := range h.socks {
		if p.ino == ino {
			return true
		}
	}
	return false
}

// bind hands a published host socket to a native bind(fd, addr, addrlen)
// of the container's server. Anything else is what it was before
// handovers existed: CONTINUE, or EOPNOTSUPP on a host socket.
func (s *Supervisor) bind(t *target, fd int, addr uint64, addrlen uint32) verdict {
	if s.pub == nil || len(s.pub.socks) == 0 || addrlen < unix.SizeofSockaddrInet4 || addrlen > maxSockaddr {
		return s.refuseHost(t, fd)
	}
	raw := make([]byte, addrlen)
	if err := t.read(addr, raw); err != nil {
		return s.refuseHost(t, fd) // the kernel reports EFAULT
	}
	dst, ok := parseInet(raw)
	if !ok || dst.ap.Addr().Zone() != "" {
		return s.refuseHost(t, fd)
	}
	s.pub.mu.Lock()
	defer s.pub.mu.Unlock()
	ps := s.pub.atPort(dst)
	if len(ps) == 0 {
		s.missed(dst)
		return s.refuseHost(t, fd)
	}
	sock, gone, err := t.takeSocket(fd)
	if gone {
		return verdictDrop
	}
	if err != nil {
		return verdictContinue
	}
	defer unix.Close(sock)
	switch s.classify(sock) {
	case kindHost:
		return result(unix.EOPNOTSUPP)
	case kindContainer:
		return s.handOver(t, fd, sock, dst, ps)
	}
	return verdictContinue
}

// handOver installs one of ps at fd when the container's socket is one it
// can stand for (pick); it answers 0 then (the socket is bound, and
// listens). A socket handed over before is handed again once no process
// of the container has it open any more: a server that closes its
// listener and binds a new one (iperf3 -s after every test, a server
// reloading) gets it back, with the clients that queued meanwhile.
func (s *Supervisor) handOver(t *target, fd, sock int, dst inetAddr, ps []*pubSock) verdict {
	p := pick(ps, sock, dst.family, dst.ap.Addr().IsUnspecified())
	if p == nil {
		return s.trace("bind to %s not handed over: no published socket of its family (or IPV6_V6ONLY)", dst.ap)
	}
	if p.handed {
		pid, err := holder(t, p.ino)
		if err != nil {
			return s.trace("bind to %s not handed over: %v", dst.ap, err)
		}
		if pid != 0 {
			return s.trace("bind to %s not handed over: the host socket was handed over already and process %d has it open", dst.ap, pid)
		}
	}
	nonblock, cloexec, why := s.eligible(t, fd, sock, dst.family, true)
	if why == "" {
		why = s.matchOptions(sock, dst.family, p)
	}
	if why != "" {
		return s.trace("port %d not handed over: descriptor %d: %s", p.Port, fd, why)
	}
	fl, err := unix.FcntlInt(uintptr(p.Fd), unix.F_GETFL, 0)
	if err == nil {
		fl &^= unix.O_NONBLOCK
		if nonblock {
			fl |= unix.O_NONBLOCK
		}
		_, err = unix.FcntlInt(uintptr(p.Fd), unix.F_SETFL, fl)
	}
	if err != nil {
		return s.trace("port %d not handed over: O_NONBLOCK: %v", p.Port, err)
	}
	if err := s.l.addfd(t.id, p.Fd, fd, cloexec); err != nil {
		if !t.valid() {
			return verdictDrop
		}
		return s.trace("port %d not handed over: addfd: %v", p.Port, err)
	}
	p.handed = true
	s.handed.Add(1)
	return result(0)
}

// matchOptions copies the options of the container's socket (of family)
// that matter to a listener and to the connections it accepts onto the
// host socket, and names one it cannot match: SO_REUSEPORT (workers
// sharing the port would each need the one host socket), or any the host
// refuses. SO_REUSEADDR is left set.
func (s *Supervisor) matchOptions(sock, family int, p *pubSock) string {
	if v, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || v != 0 {
		return "SO_REUSEPORT"
	}
	if err := copyOptions(sock, p.Fd, family, p.family, s.defs[family], true); err != nil {
		return err.Error()
	}
	// SO_REUSEADDR stays set whatever the server asked: the accepted
	// connections inherit it, and without it their TIME_WAIT would keep
	// the host port from being published again for a minute.
	v, err := unix.GetsockoptInt(sock, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
	if err == nil {
		err = unix.SetsockoptInt(p.Fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, v)
	}
	if err != nil {
		return fmt.Sprintf("TCP_DEFER_ACCEPT: %v", err)
	}
	return ""
}

// listen answers listen(fd, backlog): on a handed-over socket, which
// already listens, with the result of listen on it (the backlog
// adjusted); on another host socket EOPNOTSUPP; otherwise CONTINUE.
func (s *Supervisor) listen(t *target, fd int, backlog int) verdict {
	if s.pub == nil || len(s.pub.socks) == 0 {
		return s.refuseHost(t, fd)
	}
	sock, gone, err := t.takeSocket(fd)
	if gone {
		return verdictDrop
	}
	if err != nil {
		return verdictContinue
	}
	defer unix.Close(sock)
	if s.classify(sock) != kindHost {
		return verdictContinue
	}
	var st unix.Stat_t
	if err := unix.Fstat(sock, &st); err != nil || !s.pub.isPublished(st.Ino) {
		return result(unix.EOPNOTSUPP)
	}
	return result(errnoOf(unix.Listen(sock, backlog)))
}

// missed tells Config.Trace about a bind of a published port, to another
// address than the wildcard or the container's, that gets no host socket.
func (s *Supervisor) missed(dst inetAddr) {
	if s.cfg.Trace == nil {
		return
	}
	for _, q := range s.pub.socks {
		if q.Port == dst.ap.Port() {
			s.trace("bind to %s not handed over: not the wildcard or the container's address", dst.ap)
			return
		}
	}
}

// trace is CONTINUE, with why for Config.Trace.
func (s *Supervisor) trace(format string, args ...any) verdict {
	if s.cfg.Trace != nil {
		s.cfg.Trace(fmt.Sprintf(format, args...))
	}
	return verdictContinue
}
