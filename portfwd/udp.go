package portfwd

import (
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// flow is one UDP client address of a listener and its own connected socket
// in the container, so that the container's replies go back to that client.
type flow struct {
	ln     *listener
	client netip.AddrPort
	sa     unix.Sockaddr // client, for sendto
	fd     int           // -1 while the dial is in flight
	slot   int32
	queue  [][]byte // datagrams that came while the dial was in flight
	last   time.Time
	closed bool
	// On a listener bound to 0.0.0.0 or ::, the address the client sent
	// to and the control message that makes the replies come from it:
	// without it the kernel picks the routed source (127.0.0.1 for a client
	// of 127.0.0.2, say), and a connected client drops the reply.
	local netip.Addr
	oob   []byte
}

// readDatagrams forwards the datagrams waiting on a UDP listener, each to
// the flow of its client address; a new address starts a flow.
func (lp *loop) readDatagrams(ln *listener) {
	for range turnAccepts {
		var n int
		var from unix.Sockaddr
		var local netip.Addr
		var err error
		if ln.pktinfo {
			var oobn int
			n, oobn, _, from, err = unix.Recvmsg(ln.fd, lp.buf, lp.pktOOB, unix.MSG_DONTWAIT)
			if err == nil {
				local = pktinfoDest(lp.pktOOB[:oobn])
			}
		} else {
			n, from, err = unix.Recvfrom(ln.fd, lp.buf, unix.MSG_DONTWAIT)
		}
		switch err {
		case nil:
		case unix.EAGAIN:
			ln.ready = false
			ln.backoff = 0
			return
		case unix.EINTR:
			continue
		default:
			lp.pause(ln, err)
			return
		}
		key, ok := addrPortOf(from)
		if !ok {
			continue
		}
		f := ln.flows[key]
		if f == nil {
			if len(ln.flows) >= maxFlows {
				continue // dropped, as a full queue would
			}
			f = &flow{ln: ln, client: key, sa: from, fd: -1, slot: -1}
			ln.flows[key] = f
			if lp.flows == 0 {
				lp.nextSweep = lp.now.Add(lp.sweepEvery())
			}
			lp.flows++
			lp.l.stats.flows.Add(1)
			lp.dial(ln, pendingDial{ln: ln, fl: f})
		}
		f.last = lp.now
		if local.IsValid() && local != f.local {
			f.local, f.oob = local, pktinfoSource(local)
		}
		if f.fd < 0 {
			if len(f.queue) < maxFlowQueue {
				f.queue = append(f.queue, append([]byte(nil), lp.buf[:n]...))
			}
			continue
		}
		sendDatagram(f.fd, lp.buf[:n])
	}
	lp.requeue(ln.slot) // used up its turn: more may wait, with no new edge to tell
}

func addrPortOf(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// sendDatagram writes b to a connected UDP socket. Like the network, it drops
// what it cannot send; a refusal reported for an earlier datagram (nobody
// listened in the container then) does not stop this one.
func sendDatagram(fd int, b []byte) {
	for range 2 {
		_, err := unix.Write(fd, b)
		if err != unix.ECONNREFUSED && err != unix.EINTR {
			return
		}
	}
}

// startFlow takes the socket the child dialed for f.
func (lp *loop) startFlow(f *flow, fd int) {
	if f.closed {
		unix.Close(fd)
		return
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err == nil && typ != unix.SOCK_DGRAM {
		err = fmt.Errorf("socket type %d, want a datagram socket", typ)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		lp.report(fmt.Errorf("portfwd: socket from the child: %w", err))
		lp.closeFlow(f)
		return
	}
	f.fd = fd
	f.slot = lp.add(handle{kind: hFlow, fl: f})
	if err := lp.register(fd, f.slot, unix.EPOLLIN|unix.EPOLLET); err != nil {
		lp.report(err)
		lp.closeFlow(f)
		return
	}
	for _, b := range f.queue {
		sendDatagram(fd, b)
	}
	f.queue = nil
}

// flowReadable sends the container's datagrams back to the flow's client.
func (lp *loop) flowReadable(f *flow) {
	for range turnAccepts {
		n, err := unix.Read(f.fd, lp.buf)
		switch err {
		case nil:
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNREFUSED:
			continue
		default:
			lp.closeFlow(f)
			return
		}
		f.last = lp.now
		if f.oob != nil {
			unix.SendmsgN(f.ln.fd, lp.buf[:n], f.oob, f.sa, unix.MSG_DONTWAIT)
		} else {
			unix.Sendto(f.ln.fd, lp.buf[:n], unix.MSG_DONTWAIT, f.sa)
		}
	}
	lp.requeue(f.slot)
}

func (lp *loop) closeFlow(f *flow) {
	if f.closed {
		return
	}
	f.closed = true
	f.queue = nil
	if f.ln.flows[f.client] == f {
		delete(f.ln.flows, f.client)
	}
	if f.fd >= 0 {
		lp.drop(f.slot)
		unix.Close(f.fd)
		f.fd = -1
	}
	lp.flows--
	lp.l.stats.flows.Add(-1)
}

func (lp *loop) sweepEvery() time.Duration {
	return max(lp.idle/4, 10*time.Millisecond)
}

// sweep closes the flows idle for longer than the idle timeout.
func (lp *loop) sweep() {
	if lp.flows == 0 || lp.now.Before(lp.nextSweep) {
		return
	}
	for _, ln := range lp.l.lns {
		for _, f := range ln.flows {
			if lp.now.Sub(f.last) >= lp.idle {
				lp.closeFlow(f)
			}
		}
	}
	lp.nextSweep = lp.now.Add(lp.sweepEvery())
}

// pktinfoDest returns the destination address of a datagram from its
// IP_PKTINFO or IPV6_PKTINFO control message.
func pktinfoDest(oob []byte) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&m.Data[0]))
			return netip.AddrFrom4(info.Addr)
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			info := (*unix.Inet6Pktinfo)(unsafe.Pointer(&m.Data[0]))
			return netip.AddrFrom16(info.Addr)
		}
	}
	return netip.Addr{}
}

// pktinfoSource is the control message that sends a datagram from addr.
func pktinfoSource(addr netip.Addr) []byte {
	level, typ, size := unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo
	if !addr.Is4() {
		level, typ, size = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo
	}
	b := make([]byte, unix.CmsgSpace(size))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(size))
	data := unsafe.Pointer(&b[unix.CmsgLen(0)])
	if addr.Is4() {
		(*unix.Inet4Pktinfo)(data).Spec_dst = addr.As4()
	} else {
		(*unix.Inet6Pktinfo)(data).Addr = addr.As16()
	}
	return b
}
