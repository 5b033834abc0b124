package portfwd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	return &child{sock: fd, wakefd: wakefd, cc: unpacedChoice()}, nil
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
		return c.replyError(req, os.NewSyscallError("socket", err))
	}
	if typ == unix.SOCK_STREAM {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if c.cc != "" {
			unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, c.cc)
		}
	}
	err = unix.Connect(fd, sa)
	if err == unix.EINPROGRESS {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(fds, 0); n == 0 {
			c.slow.Add(1)
			go c.dialSlow(req, fd)
			return nil
		}
		err = connectResult(fd)
	}
	if err != nil {
		unix.Close(fd)
		return c.replyError(req, err)
	}
	defer unix.Close(fd)
	return c.reply(reply{id: req.id}, fd)
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
	c.reply(reply{id: req.id}, fd)
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
