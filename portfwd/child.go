package portfwd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ServeChild answers dial requests from Serve until sock reaches EOF (the
// parent is gone) or ctx is done. It is called by the sandbox, which lives in
// the container's network namespace, so every socket it dials is a socket of
// that namespace. A connected socket goes back with SCM_RIGHTS; a failed dial
// as an error reply, so the parent closes its client connection.
//
// ServeChild uses a duplicate of sock; the caller may close sock afterwards.
// It returns nil on EOF or cancellation, after its dials have finished.
//
// Dials to the container's own address complete within connect(2) (the
// handshake runs in the kernel as the SYN is sent), so they are answered
// inline with plain system calls, one request after another, with no
// goroutine or netpoller round trip per connection; only a dial still in
// progress after connect waits on a goroutine of its own.
func ServeChild(ctx context.Context, sock *os.File) error {
	c, err := newChild(sock)
	if err != nil {
		return err
	}
	defer c.close()
	stop := context.AfterFunc(ctx, c.wake)
	defer stop()
	err = c.serve()
	c.wake() // dials still in progress give up
	c.slow.Wait()
	if err == errStopped {
		return nil
	}
	return err
}

// errStopped ends serve when ctx is done or the parent is gone.
var errStopped = errors.New("stopped")

type child struct {
	sock   int
	wakefd int    // eventfd: ctx is done
	cc     string // for the TCP sockets it dials, loopback hops (unpaced); "" for the default
	slow   sync.WaitGroup

	mu sync.Mutex
	// listened holds the TCP targets a dial has reached: from then on a
	// refused dial is answered as refused at once.
	listened map[netip.AddrPort]bool
	// waiting holds, for a TCP target that refused every dial so far, the
	// requests waiting for its first listen (see awaitListen).
	waiting map[netip.AddrPort][]waitingDial
}

type waitingDial struct {
	req      request
	deadline time.Time
}

func newChild(sock *os.File) (*child, error) {
	fd, err := dupSocket(sock)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("portfwd child: %w", os.NewSyscallError("eventfd", err))
	}
	return &child{sock: fd, wakefd: wakefd, cc: unpacedChoice(),
		listened: map[netip.AddrPort]bool{}, waiting: map[netip.AddrPort][]waitingDial{}}, nil
}

func (c *child) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(c.wakefd, one[:])
}

func (c *child) close() {
	unix.Close(c.sock)
	unix.Close(c.wakefd)
}

// serve reads requests until EOF or wake.
func (c *child) serve() error {
	buf := make([]byte, requestSize+1)
	for {
		n, _, flags, _, err := unix.Recvmsg(c.sock, buf, nil, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if !c.waitFor(c.sock, unix.POLLIN, -1) {
				return errStopped
			}
			continue
		case err == unix.ECONNRESET:
			return nil // the parent closed its end with replies unread
		case err != nil:
			return fmt.Errorf("portfwd child: read request: %w", err)
		case n == 0:
			return nil // the parent closed its end
		case flags&unix.MSG_TRUNC != 0:
			return fmt.Errorf("portfwd child: read request: message longer than %d bytes", requestSize)
		}
		req, err := unmarshalRequest(buf[:n])
		if err != nil {
			return fmt.Errorf("portfwd child: %w", err)
		}
		if err := c.dial(req); err != nil {
			return err
		}
	}
}

// waitFor polls fd for events and the wake eventfd; it reports false when
// woken (ctx is done). timeout is in milliseconds, -1 for none; a timeout
// reports true.
func (c *child) waitFor(fd int, events int16, timeout int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(c.wakefd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		return fds[1].Revents == 0
	}
}

// dial connects a socket to the request's address and answers. An error is
// returned only when the reply cannot be written.
func (c *child) dial(req request) error {
	fd, err := c.connect(req)
	return c.finish(req, fd, err, time.Time{})
}

// connect makes a non-blocking socket for req's address and connects it. It
// returns -1 and the error when there is no socket, else the socket and
// connect's result.
func (c *child) connect(req request) (int, error) {
	family, sa := unix.AF_INET, unix.Sockaddr(nil)
	if req.addr.Is4() {
		sa = &unix.SockaddrInet4{Port: int(req.port), Addr: req.addr.As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(req.port), Addr: req.addr.As16()}
	}
	typ := unix.SOCK_STREAM
	if req.proto == 'u' {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if typ == unix.SOCK_STREAM {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		setKeepalive(fd)
		if c.cc != "" {
			unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, c.cc)
		}
	}
	return fd, unix.Connect(fd, sa)
}

// finish answers req once connect has returned err for fd: with the socket,
// with the error, or later, from the slow path (a connect in progress) or
// from awaitListen (refused by a target that has not listened yet, until
// deadline, or the request's timeout from now when deadline is zero).
func (c *child) finish(req request, fd int, err error, deadline time.Time) error {
	if fd < 0 {
		return c.replyError(req, err)
	}
	switch err = settle(fd, err); err {
	case nil:
		defer unix.Close(fd)
		return c.connected(req, fd)
	case unix.EINPROGRESS:
		c.slow.Add(1)
		go c.dialSlow(req, fd)
		return nil
	}
	unix.Close(fd)
	if err == unix.ECONNREFUSED && req.proto == 't' && c.wait(req, deadline) {
		return nil
	}
	return c.replyError(req, err)
}

// settle turns connect's EINPROGRESS into the connect's outcome when it has
// one already: a connect to the container's own address completes, or is
// refused, within connect(2) itself.
func settle(fd int, err error) error {
	if err != unix.EINPROGRESS {
		return err
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, _ := unix.Poll(fds, 0); n == 0 {
		return err
	}
	return connectResult(fd)
}

// connected answers req with the connected socket fd, and notes that its
// target listens.
func (c *child) connected(req request, fd int) error {
	if req.proto == 't' {
		t := netip.AddrPortFrom(req.addr, req.port)
		c.mu.Lock()
		c.listened[t] = true
		c.mu.Unlock()
	}
	return c.reply(reply{id: req.id}, fd)
}

// maxWaiting bounds the dials waiting for one target's first listen; more
// are refused at once. Waiting dials count against the parent's maxPending,
// which pauses accepting on every port: a flood of connections to a port
// whose server never comes would otherwise hold the others up for the
// dial's timeout.
const maxWaiting = 64

// wait queues a TCP dial the container refused, when its target has never
// listened, and reports whether it did: a connection that arrives while the
// container starts, before its server listens, waits for the server instead
// of being reset, up to the dial's timeout (the bound the parent gives every
// dial). Once a dial has reached the target, refused means refused and the
// client is reset at once, as docker's proxy does.
//
// Clients that connect as soon as the port is published, as a developer's
// `rabbitc run -p 8080:80 ... & curl localhost:8080` does, are served when the
// server comes up rather than reset; and there is no retrying client whose
// connections, accepted and refused over and over, compete with the server's
// start for the CPUs (first byte through the published port, the client
// polling every 0.5 ms: 0.96x paired, 60 rounds).
func (c *child) wait(req request, deadline time.Time) bool {
	t := netip.AddrPortFrom(req.addr, req.port)
	if deadline.IsZero() {
		timeout := req.timeout
		if timeout <= 0 {
			timeout = DefaultDialTimeout
		}
		deadline = time.Now().Add(timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.listened[t] {
		return false
	}
	list, busy := c.waiting[t]
	if len(list) >= maxWaiting {
		return false
	}
	c.waiting[t] = append(list, waitingDial{req: req, deadline: deadline})
	if !busy {
		c.slow.Add(1)
		go c.awaitListen(t)
	}
	return true
}

// awaitListen connects to target t for the first request waiting on it
// until the connect is not refused, which answers that request, and then
// dials for the others; a request whose deadline passes first is answered
// as refused. One goroutine per target, however many clients wait. The
// tries come every 250 µs at first and less often as the wait goes on (a
// tenth of it, up to 5 ms): a refused connect costs the container's stack
// about 10 µs.
func (c *child) awaitListen(t netip.AddrPort) {
	defer c.slow.Done()
	start := time.Now()
	for {
		pause := min(max(time.Since(start)/10, 250*time.Microsecond), 5*time.Millisecond)
		if !c.sleep(pause) {
			c.endWaits(t, time.Time{}, unix.ECANCELED)
			return
		}
		c.mu.Lock()
		first := c.waiting[t][0].req // the list is never empty while this runs
		c.mu.Unlock()
		fd, err := c.connect(first)
		if fd >= 0 {
			err = settle(fd, err)
		}
		if err == unix.ECONNREFUSED {
			unix.Close(fd)
			if c.endWaits(t, time.Now(), err) == nil {
				return // every request expired
			}
			continue
		}
		// Only this goroutine takes requests off the list: first is still
		// at its head. A request refused again (the server already gone)
		// waits again until its own deadline.
		for i, w := range c.endWaits(t, time.Time{}, nil) {
			if i > 0 {
				fd, err = c.connect(w.req)
			}
			if c.finish(w.req, fd, err, w.deadline) != nil {
				return // the parent is gone
			}
		}
		return
	}
}

// endWaits ends the waits on t. With a zero now it takes every request off
// the list and answers each with err, or, for a nil err, returns them to be
// dialed; otherwise only those whose deadline has passed are answered with
// err. It returns the requests still waiting, or taken; nil when the list
// is gone.
func (c *child) endWaits(t netip.AddrPort, now time.Time, err error) []waitingDial {
	c.mu.Lock()
	list := c.waiting[t]
	var ended, kept []waitingDial
	for _, w := range list {
		if now.IsZero() || !now.Before(w.deadline) {
			ended = append(ended, w)
		} else {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		delete(c.waiting, t)
	} else {
		c.waiting[t] = kept
	}
	c.mu.Unlock()
	if err == nil {
		return ended
	}
	for _, w := range ended {
		c.replyError(w.req, err)
	}
	return kept
}

// sleep waits d, or until woken (ctx is done), which it reports as false.
func (c *child) sleep(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(c.wakefd), Events: unix.POLLIN}}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		_, err := unix.Ppoll(fds, &ts, nil)
		if err == unix.EINTR {
			continue
		}
		return fds[0].Revents == 0
	}
}

// dialSlow waits up to the request's timeout for a connect in progress.
func (c *child) dialSlow(req request, fd int) {
	defer c.slow.Done()
	defer unix.Close(fd)
	var err error = unix.ETIMEDOUT
	timeout := req.timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	if c.waitFor(fd, unix.POLLOUT, int(timeout/time.Millisecond)) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(fds, 0); n > 0 {
			err = connectResult(fd)
		}
	} else {
		err = unix.ECANCELED
	}
	if err != nil {
		c.replyError(req, err)
		return
	}
	c.connected(req, fd)
}

// connectResult returns the outcome of a finished non-blocking connect.
func connectResult(fd int) error {
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

func (c *child) replyError(req request, err error) error {
	return c.reply(reply{id: req.id, errno: errnoOf(err), msg: err.Error()}, -1)
}

// reply writes one reply, with fd attached unless it is -1.
func (c *child) reply(r reply, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	b := r.marshal()
	for {
		err := unix.Sendmsg(c.sock, b, oob, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if c.waitFor(c.sock, unix.POLLOUT, -1) {
				continue
			}
			return errStopped
		case unix.EPIPE, unix.ECONNRESET:
			return errStopped // the parent is gone
		}
		return fmt.Errorf("portfwd child: write reply: %w", err)
	}
}
