package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialTimeout bounds each dial the child makes inside the container's
// network namespace. A dial to a port nobody listens on fails at once
// (connection refused); the timeout only matters for a container that drops
// packets.
var DialTimeout = 3 * time.Second

// ServeChild answers dial requests from Serve until sock reaches EOF (the
// parent is gone) or ctx is done. It is called by the sandbox, which lives in
// the container's network namespace, so every socket it dials is a socket of
// that namespace. Each request is dialed on its own goroutine; a connected
// socket goes back with SCM_RIGHTS, a failed dial as an error reply, so the
// parent closes its client connection.
//
// ServeChild takes a duplicate of sock; the caller may close sock afterwards.
// It returns nil on EOF or cancellation, and waits for its dials to finish.
func ServeChild(ctx context.Context, sock *os.File) error {
	fc, err := net.FileConn(sock)
	if err != nil {
		return fmt.Errorf("portfwd child: use socket %s: %w", sock.Name(), err)
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		fc.Close()
		return fmt.Errorf("portfwd child: socket %s is a %T, not a unix socket", sock.Name(), fc)
	}
	defer uc.Close()

	// quit ends the read loop: ctx is done, or a reply could not be written
	// because the parent is gone.
	var quitting atomic.Bool
	quit := func() {
		quitting.Store(true)
		uc.SetReadDeadline(time.Unix(1, 0))
	}
	stop := context.AfterFunc(ctx, quit)
	defer stop()

	dialCtx, cancelDials := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancelDials()
		wg.Wait()
	}()

	buf := make([]byte, requestSize+1)
	for {
		n, _, flags, _, err := uc.ReadMsgUnix(buf, nil)
		switch {
		case err != nil && quitting.Load():
			return nil
		case errors.Is(err, io.EOF) || (err == nil && n == 0):
			return nil
		case err != nil:
			return fmt.Errorf("portfwd child: read request: %w", err)
		case flags&unix.MSG_TRUNC != 0:
			return fmt.Errorf("portfwd child: read request: message longer than %d bytes", requestSize)
		}
		req, err := unmarshalRequest(buf[:n])
		if err != nil {
			return fmt.Errorf("portfwd child: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := answer(dialCtx, uc, req); err != nil {
				quit()
			}
		}()
	}
}

// answer dials req and writes the reply, with the socket on success.
func answer(ctx context.Context, uc *net.UnixConn, req request) error {
	network := "tcp"
	if req.proto == 'u' {
		network = "udp"
	}
	d := net.Dialer{Timeout: DialTimeout}
	conn, err := d.DialContext(ctx, network, netip.AddrPortFrom(req.addr, req.port).String())
	if err != nil {
		_, _, err := uc.WriteMsgUnix(reply{id: req.id, errno: errnoOf(err), msg: err.Error()}.marshal(), nil, nil)
		return err
	}
	defer conn.Close()
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = raw.Control(func(fd uintptr) {
		_, _, werr = uc.WriteMsgUnix(reply{id: req.id}.marshal(), unix.UnixRights(int(fd)), nil)
	})
	if err != nil {
		return err
	}
	return werr
}
