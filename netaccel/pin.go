//go:build linux

package netaccel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Classic BPF socket filter offsets (linux/filter.h): negative loads read
// ancillary data or the network header instead of the packet, which starts
// at the TCP header when a TCP socket's filter runs.
const (
	skfAdOff       = -0x1000
	skfAdProtocol  = 0
	skfNetOff      = -0x100000
	ethPIP         = 0x0800
	ethPIPv6       = 0x86dd
	pinAccept      = 0xffffffff
	pinDrop        = 0
	ipv4SrcOff     = 12
	ipv6SrcOff     = 8
	tcpSrcPortOff  = 0
	maxPinFilterSz = 16
)

func negOff(off int) uint32 { return uint32(int32(off)) }

// pinFilter is the socket filter every switched socket carries, locked
// (SO_LOCK_FILTER) so that the container can neither remove nor replace
// it: the socket receives packets from peer alone. The kernel gives no way
// to keep a TCP socket from being disconnected (connect with AF_UNSPEC)
// and connected again, and the seccomp filter cannot see every such
// connect (the address length of an AF_UNSPEC or AF_INET connect can be
// anything from 2 or 16 up; a descriptor number can be swapped with dup2
// between the supervisor's check and the kernel's). With the pin, a
// switched socket aimed anywhere else never completes a handshake: the
// SYN-ACK or RST is dropped, and nobody can connect to it if it listens.
func pinFilter(peer netip.AddrPort) []unix.SockFilter {
	var a asm
	a.ld(negOff(skfAdOff + skfAdProtocol))
	a4 := peer.Addr().Unmap()
	if a4.Is4() {
		a.jeq(ethPIP, "", "drop")
		b := a4.As4()
		a.ld(negOff(skfNetOff + ipv4SrcOff))
		a.jeq(binary.BigEndian.Uint32(b[:]), "", "drop")
	} else {
		a.jeq(ethPIPv6, "", "drop")
		b := a4.As16()
		for i := 0; i < 4; i++ {
			a.ld(negOff(skfNetOff + ipv6SrcOff + 4*i))
			a.jeq(binary.BigEndian.Uint32(b[4*i:]), "", "drop")
		}
	}
	a.ldh(tcpSrcPortOff)
	a.jeq(uint32(peer.Port()), "", "drop")
	a.ret(pinAccept)
	a.label("drop")
	a.ret(pinDrop)
	prog, err := a.assemble()
	if err != nil {
		panic("netaccel: pin filter: " + err.Error())
	}
	return prog
}

// pinnedPeer reads back the peer of a program made by pinFilter.
func pinnedPeer(prog []unix.SockFilter) (netip.AddrPort, bool) {
	var words []uint32
	var port uint32
	for i, in := range prog {
		if in.Code != unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K || i == 0 || i+1 >= len(prog) {
			continue
		}
		prev := prog[i-1]
		switch {
		case i == 1:
			// the protocol check
		case prev.Code == unix.BPF_LD|unix.BPF_H|unix.BPF_ABS && prev.K == tcpSrcPortOff:
			port = in.K
		case prev.Code == unix.BPF_LD|unix.BPF_W|unix.BPF_ABS:
			words = append(words, in.K)
		}
	}
	if len(prog) < 2 || port == 0 || port > 0xffff {
		return netip.AddrPort{}, false
	}
	var addr netip.Addr
	switch {
	case prog[1].K == ethPIP && len(words) == 1:
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], words[0])
		addr = netip.AddrFrom4(b)
	case prog[1].K == ethPIPv6 && len(words) == 4:
		var b [16]byte
		for i, w := range words {
			binary.BigEndian.PutUint32(b[4*i:], w)
		}
		addr = netip.AddrFrom16(b)
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}

// pin attaches and locks pinFilter(peer) on the socket fd.
func pin(fd int, peer netip.AddrPort) error {
	prog := pinFilter(peer)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return err
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_LOCK_FILTER, 1)
}

// socketFilter reads the classic filter attached to fd (SO_GET_FILTER,
// whose length is counted in instructions): none is an empty program;
// an eBPF program, which has no classic form, is EACCES.
func socketFilter(fd int) ([]unix.SockFilter, error) {
	var buf [maxPinFilterSz]unix.SockFilter
	n := uint32(0) // first the length alone
	if err := getsockoptRaw(fd, unix.SOL_SOCKET, unix.SO_GET_FILTER, nil, &n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if n > maxPinFilterSz {
		return make([]unix.SockFilter, n), nil // not ours; its content does not matter
	}
	if err := getsockoptRaw(fd, unix.SOL_SOCKET, unix.SO_GET_FILTER, unsafe.Pointer(&buf[0]), &n); err != nil {
		return nil, err
	}
	return append([]unix.SockFilter(nil), buf[:n]...), nil
}

func getsockoptRaw(fd, level, name int, p unsafe.Pointer, n *uint32) error {
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(p), uintptr(unsafe.Pointer(n)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// tcpFlagsOff is the offset of the TCP flags byte; SYN and ACK its bits.
const (
	tcpFlagsOff = 13
	tcpSynAck   = 0x12
)

// listenerPin drops every segment with both SYN and ACK set and accepts
// the rest. A listening socket handed to the container and the
// connections it accepts (they inherit it) never need one: a passive open
// receives SYN, then ACK. But the container can disconnect any of them
// (connect with AF_UNSPEC and a length the filter does not trap; a
// listener goes to CLOSE) and connect it again from the host's network
// namespace; that active open completes only on a SYN-ACK, which this
// drops, so it reaches nobody (TestListenerPin).
func listenerPin() []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: tcpFlagsOff},
		{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: tcpSynAck},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: tcpSynAck, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: pinDrop},
		{Code: unix.BPF_RET | unix.BPF_K, K: pinAccept},
	}
}

// PinListener attaches, and locks, the filter of a listening host socket
// to hand over (Published): call it after bind and before listen, so that
// every connection it accepts inherits it. It fails where [Supported]
// does.
func PinListener(fd int) error {
	prog := listenerPin()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return fmt.Errorf("attach a socket filter: %w", err)
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_LOCK_FILTER, 1)
}
