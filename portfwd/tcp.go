package portfwd

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pconn is one end of a forwarded TCP connection.
type pconn struct {
	fd       int
	slot     int32
	readable bool // since the last EAGAIN on read
	writable bool // since the last EAGAIN on write
	muted    bool // EPOLLIN taken out of the interest set
	// readToEnd: the peer has shut down its side (or sent urgent data), so
	// a short read does not prove the socket drained; read until EAGAIN.
	readToEnd bool
	pr        *pair
}

// pair is a forwarded TCP connection: a, the client on the host, and b, the
// socket the child dialed in the container.
type pair struct {
	a, b   pconn
	ab, ba dir
	ln     *listener // that accepted a
	closed bool
}

// dir is one direction of a pair.
type dir struct {
	src, dst *pconn
	pipe     pipe
	n        int  // bytes in pipe
	eof      bool // src has reached EOF
	done     bool // EOF passed on to dst with shutdown(SHUT_WR)
}

// TCP keepalive on both hops (set on each listener, which its accepted
// sockets inherit, and on each socket the child dials), so that a connection
// whose peer is gone without a word (a laptop that left, a NAT that forgot
// it) is reset and its descriptors freed: probes start after keepIdle
// seconds without traffic, come every keepInterval, and keepCount unanswered
// ones end it, two minutes after the peer went quiet. The kernel's defaults
// (7200 s, 75 s, 9) would hold it for over two hours; off, for ever.
const (
	keepIdle     = 60
	keepInterval = 10
	keepCount    = 6
)

// setKeepalive turns keepalive on for the TCP socket fd.
func setKeepalive(fd int) error {
	for _, o := range [...][3]int{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepIdle},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepInterval},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepCount},
	} {
		if err := unix.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			return err
		}
	}
	return nil
}

// accept takes the waiting connections of a TCP listener and asks the child
// to dial the container for each.
func (lp *loop) accept(ln *listener) {
	if len(lp.spares) < spareFDs {
		lp.refill(0) // descriptors ran out before: the reserve comes first
	}
	for range turnAccepts {
		if len(lp.pending) >= maxPending {
			lp.pause(ln, nil)
			return
		}
		fd, err := accept4(ln.fd)
		if err == unix.EMFILE || err == unix.ENFILE {
			fd, err = lp.acceptSpare(ln, err)
		}
		switch err {
		case nil:
		case unix.EAGAIN:
			ln.ready = false
			ln.backoff = 0
			return
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default: // no spare left, ENOBUFS, ENOMEM: wait for descriptors to come back
			lp.pause(ln, err)
			return
		}
		lent := false
		if lp.short() {
			var served bool
			if lent, served = lp.roomFor(ln, fd); !served {
				continue
			}
		}
		ln.backoff = 0
		ln.refusing = ln.refusing && lent // served as any: descriptors are back
		ln.conns.Add(1)
		lp.l.stats.accepted.Add(1) // TCP_NODELAY and keepalive are inherited from the listener
		if ln.localCC != "" && loopbackConn(fd) {
			unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, ln.localCC)
		}
		lp.dial(ln, pendingDial{ln: ln, fd: fd, lent: lent})
	}
	lp.requeue(ln.slot) // used up its turn: more may wait, with no new edge to tell
}

// Out of descriptors, the kernel keeps a new connection in the listener's
// backlog, where its client would wait for as long as the descriptors stay
// taken (by idle clients, say); and a connection accepted with the last one
// has none for the container's socket, whose reply then comes truncated
// (MSG_CTRUNC) after a dial into the container for nothing. So the main
// loop holds spare descriptors. When accept fails for want of one, a spare
// is closed to accept with; and for tightFor after any sign that descriptors
// ran short, each connection accepted is served only if the process has one
// more free for the container's socket, or if its port holds less than its
// share of the connections, with a spare freed for it (lent until the child
// answers). Any other is reset at once: a flooded port refuses its new
// clients, the other ports keep serving.
const tightFor = time.Second

// short reports whether descriptors are short: until tight, and after it
// until there is room again for a container socket beyond the reserve. The
// clock alone does not end it: nothing may have freed a descriptor since the
// last sign (idle clients stay), and a connection accepted with the last
// free one, when no accept failed first, would lose its container socket.
// One check (two system calls, ~5 us here) when the period ends, none while
// descriptors are plenty.
func (lp *loop) short() bool {
	switch {
	case lp.tight.IsZero():
		return false
	case lp.now.Before(lp.tight):
		return true
	case lp.refill(1) != nil:
		lp.tight = lp.now.Add(tightFor)
		return true
	}
	lp.tight = time.Time{}
	return false
}

// acceptSpare accepts with a spare descriptor, once accept failed with
// cause (EMFILE or ENFILE); it returns cause when no spare is left.
func (lp *loop) acceptSpare(ln *listener, cause error) (int, error) {
	lp.tight = lp.now.Add(tightFor)
	if len(lp.spares) == 0 {
		return -1, cause
	}
	lp.release(1)
	fd, err := accept4(ln.fd)
	if err != nil {
		lp.refill(0)
	}
	return fd, err
}

// roomFor tells, while descriptors are short, whether the connection ln
// accepted as fd is served (lent: with a spare freed for its container
// socket), or was reset.
func (lp *loop) roomFor(ln *listener, fd int) (lent, served bool) {
	err := lp.refill(1) // one more free, or a spare freed (see refill)
	if err == nil {
		return false, true
	}
	lp.tight = lp.now.Add(tightFor)
	if len(lp.spares) > 0 && lp.belowShare(ln) { // one stays, to accept with
		return true, true
	}
	resetClose(fd)
	lp.refill(0)
	lp.l.stats.refused.Add(1)
	if !ln.refusing { // once until the port serves again
		ln.refusing = true
		lp.report(fmt.Errorf("publish %s: accept: %w (resetting new connections until descriptors are free)", ln.spec.published(), err))
	}
	return false, false
}

// belowShare reports whether ln holds fewer client connections than an even
// share of those of every TCP port: a port flooded with idle clients until
// the descriptors ran out is not, the other ports are.
func (lp *loop) belowShare(ln *listener) bool {
	var total, ports int64
	for _, o := range lp.l.lns {
		if o.spec.Proto == "tcp" {
			total += o.conns.Load()
			ports++
		}
	}
	return ln.conns.Load()*ports < total
}

// accept4 accepts without asking for the peer address.
func accept4(fd int) (int, error) {
	nfd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

// loopbackConn reports whether the connected socket fd was reached at a
// loopback address, so that its client is on this machine.
func loopbackConn(fd int) bool {
	switch sa, _ := unix.Getsockname(fd); sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Addr[0] == 127
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).IsLoopback()
	}
	return false
}

// startPair starts forwarding between the client socket and the socket the
// child dialed.
func (lp *loop) startPair(ln *listener, client, ctr int) {
	// The child made ctr non-blocking; make sure, as a blocking socket
	// would stall the loop (one fcntl: a socket has no other F_SETFL flags
	// worth keeping).
	if _, err := unix.FcntlInt(uintptr(ctr), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		unix.Close(ctr)
		resetClose(client)
		ln.conns.Add(-1)
		lp.live.Add(-1)
		lp.report(fmt.Errorf("portfwd: socket from the child: %w", err))
		return
	}
	p := &pair{a: pconn{fd: client}, b: pconn{fd: ctr}, ln: ln}
	p.a.pr, p.b.pr = p, p
	p.ab = dir{src: &p.a, dst: &p.b}
	p.ba = dir{src: &p.b, dst: &p.a}
	p.a.slot = lp.add(handle{kind: hConn, pc: &p.a})
	p.b.slot = lp.add(handle{kind: hConn, pc: &p.b})
	lp.l.stats.conns.Add(1)
	// Edge-triggered: the first event reports what is ready already.
	if err := lp.register(client, p.a.slot, connEvents); err != nil {
		lp.report(err)
		lp.closePair(p, true)
		return
	}
	if err := lp.register(ctr, p.b.slot, connEvents); err != nil {
		lp.report(err)
		lp.closePair(p, true)
	}
}

// pumpPair moves what it can in both directions and closes the pair when
// both have ended, or at once on an error (a reset).
func (lp *loop) pumpPair(p *pair) {
	if p.closed {
		return
	}
	for _, d := range []*dir{&p.ab, &p.ba} {
		if d.done {
			continue
		}
		again, err := lp.pump(d)
		if err != nil {
			lp.closePair(p, true)
			return
		}
		if again {
			lp.requeue(p.a.slot)
		}
	}
	if p.ab.done && p.ba.done {
		lp.closePair(p, false)
	}
}

// pump moves bytes from d.src to d.dst through a pipe: splice from the
// socket into the pipe, then from the pipe into the other socket, until one
// of them would block. It reports whether it stopped only because the turn
// was used up.
func (lp *loop) pump(d *dir) (again bool, err error) {
	for range turnRounds {
		if d.n > 0 {
			if !d.dst.writable {
				lp.mute(d.src)
				return false, nil
			}
			n, err := splice(d.pipe.r, d.dst.fd, d.n)
			if err == unix.EAGAIN {
				d.dst.writable = false
				lp.mute(d.src)
				return false, nil
			}
			if err != nil {
				return false, err
			}
			d.n -= n
			if d.n == 0 && d.src.muted {
				lp.unmute(d.src)
			}
			continue
		}
		if d.eof {
			lp.putPipe(&d.pipe, true)
			if err := unix.Shutdown(d.dst.fd, unix.SHUT_WR); err != nil && err != unix.ENOTCONN {
				return false, err
			}
			d.done = true
			return false, nil
		}
		if !d.src.readable {
			lp.putPipe(&d.pipe, true)
			return false, nil
		}
		if !d.pipe.has {
			if d.pipe, err = lp.getPipe(); err != nil {
				return lp.copyPeek(d) // out of descriptors: no pipe for now
			}
		}
		n, err := splice(d.src.fd, d.pipe.w, spliceMax)
		if err == unix.EAGAIN {
			d.src.readable = false
			lp.putPipe(&d.pipe, true)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			d.eof = true
			continue
		}
		d.n += n
		if n < d.pipe.slots && !d.src.readToEnd {
			// Fewer bytes than the pipe has slots: the pipe did not fill
			// up, so this read took all the socket had, and whatever comes
			// later raises an edge-triggered event. This saves the read that
			// would only return EAGAIN, a third of the system calls of a
			// small request.
			d.src.readable = false
		}
	}
	return true, nil
}

// copyPeek moves bytes from d.src to d.dst without a pipe, for when none
// can be made (the process is out of descriptors): it peeks at what src
// holds, sends it, and takes off src only what dst took, so that nothing
// stays in the loop's buffer between calls and a connection needs no
// descriptor to go on. Two copies instead of splice's none, it runs only
// until a pipe can be made again. It reports as pump does.
func (lp *loop) copyPeek(d *dir) (again bool, err error) {
	if lp.buf == nil {
		lp.buf = make([]byte, udpBufSize)
	}
	for range turnRounds {
		if !d.dst.writable {
			lp.mute(d.src)
			return false, nil
		}
		n, err := recvFlags(d.src.fd, lp.buf, unix.MSG_PEEK)
		switch {
		case err == unix.EAGAIN:
			d.src.readable = false
			return false, nil
		case err != nil:
			return false, err
		case n == 0:
			d.eof = true
			return lp.pump(d) // which passes the EOF on: the pipe is empty

		}
		m, err := unix.SendmsgN(d.dst.fd, lp.buf[:n], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err == unix.EAGAIN {
			d.dst.writable = false
			continue
		}
		if err != nil {
			return false, err
		}
		if m == 0 {
			continue
		}
		if _, err := recvFlags(d.src.fd, lp.buf[:m], unix.MSG_TRUNC); err != nil { // TCP: dropped, not copied
			return false, err
		}
		if d.src.muted {
			lp.unmute(d.src)
		}
	}
	return true, nil
}

// recvFlags receives into b without blocking, with flags (raw, as splice).
func recvFlags(fd int, b []byte, flags int) (int, error) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags|unix.MSG_DONTWAIT), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// Interest in EPOLLIN of a socket whose bytes wait in a pipe for the other
// socket to take them is switched off: the sender goes on filling the
// socket's receive buffer, and every segment would wake the loop for
// nothing (measured: twice as many epoll_wait calls as splices when the
// host's client reads slower than the container writes).
const (
	connEvents  = unix.EPOLLIN | unix.EPOLLPRI | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	mutedEvents = unix.EPOLLOUT | unix.EPOLLET
)

func (lp *loop) mute(c *pconn) {
	if !c.muted {
		c.muted = true
		lp.modify(c, mutedEvents)
	}
}

// unmute restores EPOLLIN. Segments that came while muted raised no event,
// so the socket counts as readable until a read says otherwise.
func (lp *loop) unmute(c *pconn) {
	c.muted = false
	c.readable = true
	lp.modify(c, connEvents)
}

func (lp *loop) modify(c *pconn, events uint32) {
	ev := unix.EpollEvent{Events: events, Fd: c.slot, Pad: lp.handles[c.slot].gen}
	unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

// splice moves up to n bytes between a socket and a pipe without blocking.
// Every descriptor here is non-blocking, so it uses RawSyscall: entering the
// scheduler's syscall state for a call that never blocks only invites sysmon
// to hand the P to another thread (measured: futex and nanosleep calls of
// the runtime outnumbered the splices).
func splice(in, out, n int) (int, error) {
	for {
		m, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(m), nil
	}
}

// closePair closes both sockets of p; with reset, the surviving peer gets a
// reset instead of a FIN.
func (lp *loop) closePair(p *pair, reset bool) {
	p.closed = true
	lp.putPipe(&p.ab.pipe, p.ab.n == 0)
	lp.putPipe(&p.ba.pipe, p.ba.n == 0)
	for _, c := range []*pconn{&p.a, &p.b} {
		lp.drop(c.slot)
		if reset {
			resetClose(c.fd)
		} else {
			unix.Close(c.fd)
		}
	}
	p.ln.conns.Add(-1)
	lp.l.stats.conns.Add(-1)
	lp.live.Add(-1)
	if reset {
		lp.l.stats.resets.Add(1)
	}
}

// unpaced gives the TCP socket fd a congestion control that does not pace
// when its own is one that does (BBR), and returns its name; it returns ""
// and leaves fd alone otherwise. It is for hops whose two ends are on this
// machine: with no link to share and nothing lost, pacing only spends the
// sender's CPU on timers. A host whose default is BBR passes it on to every
// new network namespace; on this machine (bbr) iperf3 host->container with 4
// streams cost the forwarder 135 ms of CPU per GB with bbr on every socket,
// 83-98 with cubic (and moved 11.3-12.5 instead of 14.5-15.4 GB in 4 s).
//
// cubic, or reno where cubic is not allowed: an unprivileged process may
// only pick those in net.ipv4.tcp_allowed_congestion_control (reno and the
// default, as shipped), while the sandbox, holding CAP_NET_ADMIN in the
// container's user namespace, may pick any built in.
func unpaced(fd int) string {
	cur, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	if err != nil || !strings.HasPrefix(cur, "bbr") {
		return ""
	}
	for _, cc := range []string{"cubic", "reno"} {
		if unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc) == nil {
			return cc
		}
	}
	return ""
}

// unpacedChoice returns the congestion control unpaced gives a new TCP socket
// of this network namespace, or "" when it leaves it alone.
func unpacedChoice() string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	return unpaced(fd)
}
