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
	ino    uint64
	handed bool // installed in the container once: later binds run there
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
		h.socks = append(h.socks, pubSock{Published: p, family: fam, ino: st.Ino})
	}
	return h, nil
}

func (h *handover) close() {
	for _, p := range h.socks {
		unix.Close(p.Fd)
	}
}

// find is the published socket for a bind to dst, or nil: the container
// port, the family, and the wildcard or the container's address.
func (h *handover) find(dst inetAddr) *pubSock {
	a := dst.ap.Addr()
	if !a.IsUnspecified() && a != h.target {
		return nil
	}
	for i := range h.socks {
		if p := &h.socks[i]; p.Port == dst.ap.Port() && p.family == dst.family {
			return p
		}
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
	p := s.pub.find(dst)
	if p == nil || p.handed {
		s.missed(dst, p)
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
		return s.handOver(t, fd, sock, p)
	}
	return verdictContinue
}

// handOver installs p at fd when the container's socket is one p can
// stand for; it answers 0 then (the socket is bound, and listens).
func (s *Supervisor) handOver(t *target, fd, sock int, p *pubSock) verdict {
	nonblock, cloexec, why := s.eligible(t, fd, sock, p.family)
	if why == "" {
		why = s.matchOptions(sock, p)
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

// matchOptions copies the options of the container's socket that matter
// to a listener and to the connections it accepts onto the host socket,
// and names one it cannot match: SO_REUSEPORT (workers sharing the port
// would each need the one host socket), IPV6_V6ONLY other than the host
// socket's (fixed at its bind), or any the host refuses. SO_REUSEADDR is
// left set.
func (s *Supervisor) matchOptions(sock int, p *pubSock) string {
	if v, err := unix.GetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_REUSEPORT); err != nil || v != 0 {
		return "SO_REUSEPORT"
	}
	if p.family == unix.AF_INET6 {
		a, err1 := unix.GetsockoptInt(sock, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		b, err2 := unix.GetsockoptInt(p.Fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err1 != nil || err2 != nil || a != b {
			return "IPV6_V6ONLY differs from the published socket's"
		}
	}
	if err := copyOptions(sock, p.Fd, p.family, s.defs[p.family]); err != nil {
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

// missed tells Config.Trace about a bind of a published port that gets
// no host socket (p is the one already handed over, if any).
func (s *Supervisor) missed(dst inetAddr, p *pubSock) {
	if s.cfg.Trace == nil {
		return
	}
	for _, q := range s.pub.socks {
		if q.Port == dst.ap.Port() {
			why := "not the wildcard or the container's address, or another family"
			if p != nil {
				why = "the host socket was handed over already"
			}
			s.trace("bind to %s not handed over: %s", dst.ap, why)
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
