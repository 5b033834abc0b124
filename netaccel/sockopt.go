//go:build linux

package netaccel

import (
	"fmt"

	"golang.org/x/sys/unix"
)

type optKind uint8

const (
	optInt     optKind = iota
	optBuf             // SO_SNDBUF, SO_RCVBUF: read back doubled
	optUint64          // SO_MAX_PACING_RATE
	optTimeval         // SO_SNDTIMEO, SO_RCVTIMEO
	optLinger          // SO_LINGER
	optString          // TCP_CONGESTION
)

type sockOpt struct {
	level, name int
	kind        optKind
	v6          bool // IPPROTO_IPV6 options, for AF_INET6 sockets only
	label       string
}

// copiedOpts are the options a switched socket takes from the socket it
// replaces when the application gave them a value other than a fresh
// socket's. They are the ones that shape a client connection; those
// about receiving datagrams, multicast or listening do not matter to an
// unconnected TCP client.
var copiedOpts = []sockOpt{
	{unix.SOL_SOCKET, unix.SO_REUSEADDR, optInt, false, "SO_REUSEADDR"},
	{unix.SOL_SOCKET, unix.SO_REUSEPORT, optInt, false, "SO_REUSEPORT"},
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE, optInt, false, "SO_KEEPALIVE"},
	{unix.SOL_SOCKET, unix.SO_OOBINLINE, optInt, false, "SO_OOBINLINE"},
	{unix.SOL_SOCKET, unix.SO_PRIORITY, optInt, false, "SO_PRIORITY"},
	{unix.SOL_SOCKET, unix.SO_RCVLOWAT, optInt, false, "SO_RCVLOWAT"},
	{unix.SOL_SOCKET, unix.SO_DONTROUTE, optInt, false, "SO_DONTROUTE"},
	{unix.SOL_SOCKET, unix.SO_ZEROCOPY, optInt, false, "SO_ZEROCOPY"},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMP, optInt, false, "SO_TIMESTAMP"},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, optInt, false, "SO_TIMESTAMPNS"},
	{unix.SOL_SOCKET, unix.SO_SNDBUF, optBuf, false, "SO_SNDBUF"},
	{unix.SOL_SOCKET, unix.SO_RCVBUF, optBuf, false, "SO_RCVBUF"},
	{unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE, optUint64, false, "SO_MAX_PACING_RATE"},
	{unix.SOL_SOCKET, unix.SO_SNDTIMEO, optTimeval, false, "SO_SNDTIMEO"},
	{unix.SOL_SOCKET, unix.SO_RCVTIMEO, optTimeval, false, "SO_RCVTIMEO"},
	{unix.SOL_SOCKET, unix.SO_LINGER, optLinger, false, "SO_LINGER"},
	{unix.IPPROTO_TCP, unix.TCP_NODELAY, optInt, false, "TCP_NODELAY"},
	{unix.IPPROTO_TCP, unix.TCP_CORK, optInt, false, "TCP_CORK"},
	{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, optInt, false, "TCP_KEEPIDLE"},
	{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, optInt, false, "TCP_KEEPINTVL"},
	{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, optInt, false, "TCP_KEEPCNT"},
	{unix.IPPROTO_TCP, unix.TCP_MAXSEG, optInt, false, "TCP_MAXSEG"},
	{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, optInt, false, "TCP_USER_TIMEOUT"},
	{unix.IPPROTO_TCP, unix.TCP_SYNCNT, optInt, false, "TCP_SYNCNT"},
	{unix.IPPROTO_TCP, unix.TCP_LINGER2, optInt, false, "TCP_LINGER2"},
	{unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, optInt, false, "TCP_WINDOW_CLAMP"},
	{unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, optInt, false, "TCP_NOTSENT_LOWAT"},
	{unix.IPPROTO_TCP, unix.TCP_QUICKACK, optInt, false, "TCP_QUICKACK"},
	{unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS, optInt, false, "TCP_THIN_LINEAR_TIMEOUTS"},
	{unix.IPPROTO_TCP, unix.TCP_INQ, optInt, false, "TCP_INQ"},
	{unix.IPPROTO_TCP, unix.TCP_CONGESTION, optString, false, "TCP_CONGESTION"},
	{unix.IPPROTO_IP, unix.IP_TOS, optInt, false, "IP_TOS"},
	{unix.IPPROTO_IP, unix.IP_TTL, optInt, false, "IP_TTL"},
	{unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, optInt, false, "IP_MTU_DISCOVER"},
	{unix.IPPROTO_IP, unix.IP_RECVERR, optInt, false, "IP_RECVERR"},
	{unix.IPPROTO_IP, unix.IP_FREEBIND, optInt, false, "IP_FREEBIND"},
	{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, optInt, true, "IPV6_V6ONLY"},
	{unix.IPPROTO_IPV6, unix.IPV6_TCLASS, optInt, true, "IPV6_TCLASS"},
	{unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, optInt, true, "IPV6_UNICAST_HOPS"},
	{unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, optInt, true, "IPV6_MTU_DISCOVER"},
	{unix.IPPROTO_IPV6, unix.IPV6_RECVERR, optInt, true, "IPV6_RECVERR"},
	{unix.IPPROTO_IPV6, unix.IPV6_AUTOFLOWLABEL, optInt, true, "IPV6_AUTOFLOWLABEL"},
	{unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, optInt, true, "IPV6_DONTFRAG"},
}

// optValue is one option's value, of whichever kind.
type optValue struct {
	i  int
	u  uint64
	tv unix.Timeval
	l  unix.Linger
	s  string
}

func getOpt(fd int, o sockOpt) (optValue, error) {
	var v optValue
	var err error
	switch o.kind {
	case optInt, optBuf:
		v.i, err = unix.GetsockoptInt(fd, o.level, o.name)
	case optUint64:
		v.u, err = unix.GetsockoptUint64(fd, o.level, o.name)
	case optTimeval:
		var tv *unix.Timeval
		if tv, err = unix.GetsockoptTimeval(fd, o.level, o.name); err == nil {
			v.tv = *tv
		}
	case optLinger:
		var l *unix.Linger
		if l, err = unix.GetsockoptLinger(fd, o.level, o.name); err == nil {
			v.l = *l
		}
	case optString:
		v.s, err = unix.GetsockoptString(fd, o.level, o.name)
	}
	return v, err
}

func setOpt(fd int, o sockOpt, v optValue) error {
	switch o.kind {
	case optInt:
		return unix.SetsockoptInt(fd, o.level, o.name, v.i)
	case optBuf:
		return unix.SetsockoptInt(fd, o.level, o.name, v.i/2) // the kernel doubles it
	case optUint64:
		return unix.SetsockoptUint64(fd, o.level, o.name, v.u)
	case optTimeval:
		return unix.SetsockoptTimeval(fd, o.level, o.name, &v.tv)
	case optLinger:
		return unix.SetsockoptLinger(fd, o.level, o.name, &v.l)
	case optString:
		return unix.SetsockoptString(fd, o.level, o.name, v.s)
	}
	return nil
}

// hostDefaults are the options of a fresh host socket of one family, read
// once: the reference an application's changes are found against.
type hostDefaults map[int]optValue // by index in copiedOpts

func readHostDefaults(family int) (hostDefaults, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	d := hostDefaults{}
	for i, o := range copiedOpts {
		if o.v6 && family != unix.AF_INET6 {
			continue
		}
		if v, err := getOpt(fd, o); err == nil {
			d[i] = v
		}
	}
	return d, nil
}

// copyOptions sets on the host socket to every option of the application's
// socket from whose value differs from def, the defaults of a fresh socket
// of from's family. An option the host socket refuses (one that needs a
// capability in the host's network namespace, such as SO_PRIORITY above
// 6) is an error: the socket is then not switched.
//
// For a handover, to is a bound listener, possibly of the other family
// (handover.go; listener true): IPv6 options are set only when both
// sockets are IPv6, IPV6_V6ONLY never (fixed at bind; the handover
// matched it), and an option the listener already has is not set again.
func copyOptions(from, to, fromFamily, toFamily int, def hostDefaults, listener bool) error {
	for i, o := range copiedOpts {
		if o.v6 && (fromFamily != unix.AF_INET6 || toFamily != unix.AF_INET6) {
			continue
		}
		v, err := getOpt(from, o)
		if err != nil {
			continue // not an option of this kernel or socket
		}
		if d, ok := def[i]; ok && d == v {
			continue
		}
		if listener && (o.label == "IPV6_V6ONLY" || sameOpt(to, o, v)) {
			continue
		}
		if err := setOpt(to, o, v); err != nil {
			return fmt.Errorf("set %s: %w", o.label, err)
		}
	}
	return nil
}

func sameOpt(fd int, o sockOpt, v optValue) bool {
	cur, err := getOpt(fd, o)
	return err == nil && cur == v
}

// unswitchable names a setting of the application's socket that a host
// socket cannot have, or that would mean something else in the host's
// network namespace; "" when there is none.
func unswitchable(fd, family int) string {
	for _, c := range []struct {
		level, name int
		label       string
	}{
		{unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, "bound to an interface"},
		{unix.SOL_SOCKET, unix.SO_MARK, "SO_MARK"},
		{unix.IPPROTO_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"},
		{unix.IPPROTO_TCP, unix.TCP_REPAIR, "TCP_REPAIR"},
	} {
		if v, err := unix.GetsockoptInt(fd, c.level, c.name); err == nil && v != 0 {
			return c.label
		}
	}
	if family == unix.AF_INET6 {
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT); err == nil && v != 0 {
			return "IPV6_TRANSPARENT"
		}
	}
	// An MPTCP socket names its own protocol as its ULP; eligible lets
	// only a listener's bind through with one.
	if s, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_ULP); err == nil && s != "" && s != "mptcp" {
		return "TCP_ULP " + s
	}
	if s, err := unix.GetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS); err == nil && s != "" {
		return "IP_OPTIONS"
	}
	// A socket filter of the application's own: the pin replaces it.
	if prog, err := socketFilter(fd); err != nil || len(prog) > 0 {
		return "a socket filter"
	}
	return ""
}
