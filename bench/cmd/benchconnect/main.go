// Command benchconnect measures the latency of TCP connects for the
// benchmark's connect phase (issue 16: the added latency of a connect that
// rabbitc switches to a host socket). A static binary: the bench runs it in
// every container and on the host.
//
// With -listen ADDR it accepts connections and closes each at once, until
// SIGTERM or SIGINT. With -connect ADDR it makes up to -n sequential
// connects (and no more after -max-seconds), each a blocking socket() and
// connect() timed until the connection is established; then it waits for
// the server's close and closes (the server closes first, so the client's
// ports never pile up in TIME_WAIT). It prints one JSON line: the number of
// connects, their median and 90th percentile in µs, and how many of them
// had a local address outside -container-net (sockets of the host, which is
// what netaccel's switched sockets are). It is not part of rabbitc.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "", "accept and close connections on this address")
	connect := flag.String("connect", "", "connect to this IPv4 address:port")
	n := flag.Int("n", 2000, "connects to make")
	maxSecs := flag.Float64("max-seconds", 5, "stop making connects after this long")
	cnet := flag.String("container-net", "10.0.2.0/24", "local addresses in this prefix count as not switched")
	flag.Parse()
	var err error
	switch {
	case *listen != "":
		err = serve(*listen)
	case *connect != "":
		err = measure(*connect, *n, time.Duration(*maxSecs*float64(time.Second)), *cnet)
	default:
		err = errors.New("one of -listen and -connect is required")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchconnect:", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // a plain TCP socket, as the clients'
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(time.Millisecond) // EMFILE and the like
			continue
		}
		c.Close()
	}
}

type result struct {
	N        int     `json:"n"`
	MedianUs float64 `json:"median_us"`
	P90Us    float64 `json:"p90_us"`
	Switched int     `json:"switched"`
}

func measure(addr string, n int, max time.Duration, cnet string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("-connect %q: want an IPv4 address:port", addr)
	}
	pfx, err := netip.ParsePrefix(cnet)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	var us []float64
	switched := 0
	start := time.Now()
	for i := 0; i < n && (i == 0 || time.Since(start) < max); i++ {
		t0 := time.Now()
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		err = connectBlocking(fd, sa)
		d := time.Since(t0)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("connect %s (connect %d): %w", addr, i+1, err)
		}
		us = append(us, float64(d.Nanoseconds())/1e3)
		if local, err := unix.Getsockname(fd); err == nil {
			if l, ok := local.(*unix.SockaddrInet4); ok && !pfx.Contains(netip.AddrFrom4(l.Addr)) {
				switched++
			}
		}
		// Wait for the server's close (it closes at once), then close.
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
		var b [16]byte
		for {
			if _, err := unix.Read(fd, b[:]); err != unix.EINTR {
				break
			}
		}
		unix.Close(fd)
	}
	sort.Float64s(us)
	r := result{N: len(us), MedianUs: quantile(us, 0.5), P90Us: quantile(us, 0.9), Switched: switched}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// connectBlocking is a blocking connect; interrupted by a signal, it waits
// for the connect to finish as the kernel goes on with it.
func connectBlocking(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR {
		return err
	}
	for {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(p, 5000); err == unix.EINTR {
			continue
		} else if err != nil {
			return err
		}
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if v != 0 {
			return unix.Errno(v)
		}
		return nil
	}
}

// quantile of sorted values, interpolated as the bench's stats do.
func quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	pos := q * float64(len(s)-1)
	lo := int(pos)
	hi := lo
	if float64(lo) < pos {
		hi = lo + 1
	}
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}
