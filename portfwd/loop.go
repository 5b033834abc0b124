package portfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The parent forwards every published port from event loops: goroutines
// that wait in epoll_wait (edge-triggered) and move the bytes with explicit
// splice(2) through 1 MiB pipes, every call but the wait a raw system call.
// The main loop serves the listeners, the child socket and UDP; TCP pairs go
// to the loop with the fewest (GOMAXPROCS loops, at most 4). A pipe is taken
// from a small pool only while a direction has bytes in flight, so an idle
// connection holds two descriptors and no pipe.
//
// Why not io.Copy between two *net.TCPConn, as RootlessKit's builtin driver
// does? The kernel's work per byte is the same (Go 1.21+ splices through a
// 1 MiB pipe too; the go1.19 rootlesskit 1.1.0 of Debian through 64 KiB
// pipes), but each wake-up goes through the netpoller and the scheduler. The
// loop cuts what is left above the kernel's own TCP work: per GB about 3 000
// context switches against 6 000-18 000, and per connection one message
// each way on a socketpair instead of a unix-socket dial with JSON. Measured
// with bench_test.go (`go test -tags portfwdbench -run TestBench -v`), each
// forwarder in its own process between iperf3 or wrk and a server on
// loopback, 2 cores busy with other builds (load 5-7, so single runs vary by
// 30%), medians of 3 runs of 2 s, CPU of the forwarding process:
//
//	                          rabbitc  rk v3 lib  io.Copy  rk 1.1 bin  r/rk-bin
//	1 stream Gbit/s             16.5     15.1      15.5      15.1      1.09
//	1 stream -R Gbit/s          17.3     14.9      17.1      16.6      1.04
//	4 streams Gbit/s            11.9     13.8      14.7      12.4      0.96
//	4 streams -R Gbit/s         12.1     11.5      12.0      10.5      1.15
//	1 stream CPU s/GB          0.109    0.133     0.124     0.111      0.98
//	1 stream -R CPU s/GB       0.093    0.113     0.117     0.140      0.66
//	4 streams CPU s/GB         0.129    0.160     0.173     0.177      0.73
//	4 streams -R CPU s/GB      0.163    0.148     0.157     0.186      0.88
//	req/s, 1 conn              17384    11416     15448     11417      1.52
//	req/s, 32 conns            34350    39223     36274     33125      1.04
//	p99 us, 32 conns            5040     3870      7300      5090      0.99
//	new conn/s, 32 clients      7035     2698      5993      2548      2.76
//	CPU us per new conn         48.9    142.7      83.4     129.5      0.38
//
// (rk v3 lib: RootlessKit v3's pkg/port/builtin/parent/tcp built with Go
// 1.26; rk 1.1 bin: the rootlesskit binary with --port-driver=builtin.) The
// forwarder's CPU is 90% system time: the second pass through TCP, which
// every two-hop forwarder pays, so the CPU bar (0.6x) is met only where the
// other side's wake-ups dominate (reverse direction), not on every run here.

const (
	maxEvents = 256
	spliceMax = 1 << 20 // bytes per splice call, and the pipe size we ask for
	// Pipes are pooled per loop while the loop is busy and closed after
	// pipeIdle without events: the kernel charges a pipe's full size to the
	// user's fs.pipe-user-pages-soft (64 MiB by default) whether it holds
	// data or not, and the container's processes run as the same user.
	maxPooledPipes = 4
	pipeIdle       = time.Second
	turnRounds     = 8    // splice rounds per direction before other sockets get a turn
	turnAccepts    = 64   // accepts or datagrams per listener before other sockets get a turn
	maxPending     = 1024 // dials in flight before accepting pauses
	backoffMin     = 5 * time.Millisecond
	backoffMax     = 500 * time.Millisecond
	udpBufSize     = 65536
	maxFlowQueue   = 16   // datagrams kept per UDP flow while its dial is in flight
	maxFlows       = 4096 // UDP flows per listener
	maxLoops       = 4    // event loops by default, at most
)

var errChildGone = errors.New("portfwd: the sandbox closed the forwarding socket")

type handleKind uint8

const (
	hFree handleKind = iota
	hWake
	hChild
	hListener
	hConn
	hFlow
)

// handle is what an epoll event points at: the event carries the handle's
// slot and generation, so an event for a socket closed earlier in the same
// batch (whose slot may be reused) is recognized and dropped.
type handle struct {
	gen    int32
	kind   handleKind
	queued bool // on lp.ready
	ln     *listener
	pc     *pconn
	fl     *flow
}

type slotRef struct{ slot, gen int32 }

type pendingDial struct {
	ln *listener
	fd int   // TCP: the accepted client socket
	fl *flow // UDP: the flow waiting for its socket
}

type pipe struct {
	r, w  int
	slots int // capacity in pages: a read of fewer bytes cannot have filled it
	has   bool
}

type loop struct {
	l      *Listeners
	epfd   int
	wakefd int
	sock   int // duplicate of the parent end of the socketpair
	idle   time.Duration
	dialTO time.Duration

	handles []handle
	free    []int32
	ready   []slotRef // handles that used up their turn
	retry   []*listener

	pending map[uint32]pendingDial
	nextID  uint32
	sendq   [][]byte

	pipes []pipe
	flows int

	now       time.Time
	busy      time.Time // last events
	nextSweep time.Time
	fatal     error
	events    []unix.EpollEvent
	buf       []byte
	oob       []byte
	req       [requestSize]byte

	workers []*loop      // of the main loop
	live    atomic.Int64 // pairs placed on this loop

	// A worker loop forwards only the TCP pairs the main loop hands it.
	worker  bool
	stop    atomic.Bool
	inboxMu sync.Mutex
	inbox   [][2]int // client and container sockets handed over
	done    chan error
}

func newLoop(l *Listeners, sock *os.File, containerIP string) (lp *loop, err error) {
	target, err := netip.ParseAddr(containerIP)
	if err != nil {
		return nil, fmt.Errorf("portfwd: container ip %q: %w", containerIP, err)
	}
	lp = &loop{
		l: l, epfd: -1, wakefd: -1, sock: -1,
		idle:    l.UDPIdleTimeout,
		pending: make(map[uint32]pendingDial),
		events:  make([]unix.EpollEvent, maxEvents),
		buf:     make([]byte, udpBufSize),
		oob:     make([]byte, unix.CmsgSpace(4*4)),
	}
	if lp.idle <= 0 {
		lp.idle = DefaultUDPIdleTimeout
	}
	lp.dialTO = l.DialTimeout
	if lp.dialTO <= 0 {
		lp.dialTO = DefaultDialTimeout
	}
	defer func() {
		if err != nil {
			lp.closeFDs()
			closeFD(lp.wakefd)
			for _, w := range lp.workers {
				w.closeFDs()
				closeFD(w.wakefd)
			}
		}
	}()
	if lp.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_create1", err))
	}
	if lp.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("portfwd: %w", os.NewSyscallError("eventfd", err))
	}
	if lp.sock, err = dupSocket(sock); err != nil {
		return nil, err
	}
	if err := lp.register(lp.wakefd, lp.add(handle{kind: hWake}), unix.EPOLLIN); err != nil {
		return nil, err
	}
	if err := lp.register(lp.sock, lp.add(handle{kind: hChild}), unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLET); err != nil {
		return nil, err
	}
	loops := l.Loops
	if loops <= 0 {
		loops = min(runtime.GOMAXPROCS(0), maxLoops)
	}
	for range loops - 1 {
		w, err := newWorker(l)
		if err != nil {
			return nil, err
		}
		lp.workers = append(lp.workers, w)
	}
	for _, ln := range l.lns {
		ln.target = netip.AddrPortFrom(target, uint16(ln.spec.ContainerPort))
		if ln.spec.Proto == "udp" {
			ln.flows = make(map[netip.AddrPort]*flow)
		}
		ln.slot = lp.add(handle{kind: hListener, ln: ln})
		if err := lp.register(ln.fd, ln.slot, unix.EPOLLIN|unix.EPOLLET); err != nil {
			return nil, err
		}
	}
	return lp, nil
}

// newWorker creates a loop that forwards the pairs handed to it.
func newWorker(l *Listeners) (*loop, error) {
	w := &loop{l: l, epfd: -1, wakefd: -1, sock: -1, worker: true, done: make(chan error, 1),
		events: make([]unix.EpollEvent, maxEvents)}
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_create1", err))
	}
	if w.wakefd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("portfwd: %w", os.NewSyscallError("eventfd", err))
	}
	if err := w.register(w.wakefd, w.add(handle{kind: hWake}), unix.EPOLLIN); err != nil {
		w.closeFDs()
		return nil, err
	}
	return w, nil
}

// start runs the workers; the main loop runs on the caller's goroutine.
func (lp *loop) start() {
	for _, w := range lp.workers {
		go func() { w.done <- w.run() }()
	}
}

// placePair gives a new pair to the loop with the fewest pairs.
func (lp *loop) placePair(client, ctr int) {
	target := lp
	best := lp.live.Load()
	for _, w := range lp.workers {
		if n := w.live.Load(); n < best {
			target, best = w, n
		}
	}
	target.live.Add(1)
	if target == lp {
		lp.startPair(client, ctr)
		return
	}
	target.inboxMu.Lock()
	wake := len(target.inbox) == 0
	target.inbox = append(target.inbox, [2]int{client, ctr})
	target.inboxMu.Unlock()
	if wake {
		signal(target.wakefd)
	}
}

// takeInbox starts the pairs handed to a worker.
func (lp *loop) takeInbox() {
	lp.inboxMu.Lock()
	inbox := lp.inbox
	lp.inbox = nil
	lp.inboxMu.Unlock()
	for _, p := range inbox {
		lp.startPair(p[0], p[1])
	}
}

func signal(eventfd int) {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(eventfd, one[:])
}

func (lp *loop) stopping() bool {
	if lp.worker {
		return lp.stop.Load()
	}
	return lp.l.stopped.Load()
}

// dupSocket duplicates the descriptor of sock without touching its blocking
// mode (os.File.Fd would make it blocking); the loop uses MSG_DONTWAIT.
func dupSocket(sock *os.File) (int, error) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("portfwd: use socket %s: %w", sock.Name(), err)
	}
	nfd, derr := -1, error(nil)
	err = raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return -1, fmt.Errorf("portfwd: duplicate socket %s: %w", sock.Name(), err)
	}
	typ, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_SEQPACKET {
		unix.Close(nfd)
		return -1, fmt.Errorf("portfwd: socket %s is not a SOCK_SEQPACKET unix socket (create it with NewSocketpair)", sock.Name())
	}
	return nfd, nil
}

func (lp *loop) add(h handle) int32 {
	var slot int32
	if n := len(lp.free); n > 0 {
		slot = lp.free[n-1]
		lp.free = lp.free[:n-1]
	} else {
		lp.handles = append(lp.handles, handle{})
		slot = int32(len(lp.handles) - 1)
	}
	h.gen = lp.handles[slot].gen + 1
	lp.handles[slot] = h
	return slot
}

// drop frees a slot; events still queued for it no longer match its
// generation. Sockets are closed without EPOLL_CTL_DEL: closing removes them
// from the epoll set, except in the short moment when the child still holds
// its duplicate of a socket it dialed, and then the stale events that may
// still come are dropped for their generation.
func (lp *loop) drop(slot int32) {
	h := &lp.handles[slot]
	*h = handle{gen: h.gen + 1}
	lp.free = append(lp.free, slot)
}

func (lp *loop) register(fd int, slot int32, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: slot, Pad: lp.handles[slot].gen}
	if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// requeue gives slot another turn after the pending events.
func (lp *loop) requeue(slot int32) {
	if h := &lp.handles[slot]; !h.queued {
		h.queued = true
		lp.ready = append(lp.ready, slotRef{slot, h.gen})
	}
}

func (lp *loop) run() (err error) {
	defer func() {
		lp.shutdown()
		if err == nil && !lp.worker {
			err = lp.l.failure()
		}
	}()
	for !lp.stopping() {
		n, err := unix.EpollWait(lp.epfd, lp.events, lp.timeout())
		if err != nil && err != unix.EINTR {
			lp.fail(fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_wait", err)))
			continue
		}
		lp.now = time.Now()
		if n > 0 {
			lp.busy = lp.now
		} else if len(lp.pipes) > 0 && lp.now.Sub(lp.busy) >= pipeIdle {
			lp.dropPipes()
		}
		for _, ev := range lp.events[:max(n, 0)] {
			lp.dispatch(ev.Fd, ev.Pad, ev.Events)
		}
		lp.runReady()
		lp.runRetry()
		lp.sweep()
		if lp.fatal != nil {
			if lp.worker {
				lp.l.fail(lp.fatal)
			}
			return lp.fatal
		}
	}
	return nil
}

// timeout is the epoll_wait timeout in milliseconds: 0 while something waits
// for its next turn, otherwise until the next paused listener or UDP sweep.
func (lp *loop) timeout() int {
	if len(lp.ready) > 0 {
		return 0
	}
	var next time.Time
	for _, ln := range lp.retry {
		if ln.paused.After(lp.now) && (next.IsZero() || ln.paused.Before(next)) {
			next = ln.paused
		}
	}
	if lp.flows > 0 && (next.IsZero() || lp.nextSweep.Before(next)) {
		next = lp.nextSweep
	}
	if len(lp.pipes) > 0 && (next.IsZero() || lp.busy.Add(pipeIdle).Before(next)) {
		next = lp.busy.Add(pipeIdle)
	}
	if next.IsZero() {
		return -1
	}
	return max(int(time.Until(next)/time.Millisecond)+1, 0)
}

func (lp *loop) dispatch(slot, gen int32, events uint32) {
	if slot < 0 || int(slot) >= len(lp.handles) || lp.handles[slot].gen != gen {
		return
	}
	h := &lp.handles[slot]
	switch h.kind {
	case hWake:
		var b [8]byte
		unix.Read(lp.wakefd, b[:])
		if lp.worker {
			lp.takeInbox()
		}
	case hChild:
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			lp.flush()
		}
		if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			lp.readReplies()
		}
	case hListener:
		h.ln.ready = true
		lp.serveListener(h.ln)
	case hConn:
		c := h.pc
		if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLPRI) != 0 {
			c.readable = true
		}
		if events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLPRI) != 0 {
			c.readToEnd = true
		}
		if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			c.writable = true
		}
		lp.pumpPair(c.pr)
	case hFlow:
		lp.flowReadable(h.fl)
	}
}

// runReady gives the slots that used up their turn another one.
func (lp *loop) runReady() {
	ready := lp.ready
	lp.ready = nil
	for _, r := range ready {
		if h := &lp.handles[r.slot]; h.gen == r.gen {
			h.queued = false
			lp.dispatch(r.slot, r.gen, 0)
		}
	}
}

func (lp *loop) serveListener(ln *listener) {
	if !ln.ready || ln.fd < 0 || ln.paused.After(lp.now) {
		return
	}
	if ln.spec.Proto == "udp" {
		lp.readDatagrams(ln)
	} else {
		lp.accept(ln)
	}
}

// runRetry serves the listeners that paused (descriptors exhausted, too many
// dials in flight) once their pause is over.
func (lp *loop) runRetry() {
	if len(lp.retry) == 0 {
		return
	}
	retry := lp.retry
	lp.retry = nil
	for _, ln := range retry {
		if ln.paused.After(lp.now) {
			lp.retry = append(lp.retry, ln)
			continue
		}
		ln.paused = time.Time{}
		lp.serveListener(ln)
	}
}

// pause makes ln wait before its next accept; cause is reported once per pause.
func (lp *loop) pause(ln *listener, cause error) {
	if cause != nil {
		ln.backoff = min(max(2*ln.backoff, backoffMin), backoffMax)
		ln.paused = lp.now.Add(ln.backoff)
		lp.report(fmt.Errorf("publish %s: accept: %w (retrying in %v)", ln.spec.published(), cause, ln.backoff))
	}
	for _, r := range lp.retry {
		if r == ln {
			return
		}
	}
	lp.retry = append(lp.retry, ln)
}

func (lp *loop) report(err error) {
	if lp.l.OnError != nil {
		lp.l.OnError(err)
	}
}

// dial asks the child for a socket connected to ln's target.
func (lp *loop) dial(ln *listener, pd pendingDial) {
	lp.nextID++
	proto := byte('t')
	if ln.spec.Proto == "udp" {
		proto = 'u'
	}
	req := request{proto: proto, port: ln.target.Port(), id: lp.nextID, addr: ln.target.Addr(), timeout: lp.dialTO}
	lp.pending[req.id] = pd
	lp.l.stats.pending.Add(1)
	lp.send(req.marshal(lp.req[:]))
}

func (lp *loop) send(b []byte) {
	if len(lp.sendq) == 0 {
		err := unix.Sendmsg(lp.sock, b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err == nil {
			return
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			lp.fail(fmt.Errorf("portfwd: send dial request: %w", err))
			return
		}
	}
	lp.sendq = append(lp.sendq, append([]byte(nil), b...))
}

// flush sends the requests that did not fit into the socket earlier.
func (lp *loop) flush() {
	for len(lp.sendq) > 0 {
		err := unix.Sendmsg(lp.sock, lp.sendq[0], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err != nil:
			lp.fail(fmt.Errorf("portfwd: send dial request: %w", err))
			return
		}
		lp.sendq[0] = nil
		lp.sendq = lp.sendq[1:]
	}
	lp.sendq = nil
}

func (lp *loop) fail(err error) {
	if lp.fatal == nil {
		lp.fatal = err
	}
}

// readReplies takes every reply the child has sent and completes its dial.
func (lp *loop) readReplies() {
	var b [maxReplySize]byte
	for lp.fatal == nil {
		n, oobn, flags, _, err := unix.Recvmsg(lp.sock, b[:], lp.oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err != nil:
			lp.fail(fmt.Errorf("portfwd: read dial reply: %w", err))
			return
		case n == 0:
			lp.fail(errChildGone)
			return
		}
		fd := receivedFD(lp.oob[:oobn])
		rep, err := unmarshalReply(b[:n])
		if err != nil {
			closeFD(fd)
			lp.fail(fmt.Errorf("portfwd: %w", err))
			return
		}
		pd, ok := lp.pending[rep.id]
		if !ok {
			closeFD(fd)
			continue
		}
		delete(lp.pending, rep.id)
		lp.l.stats.pending.Add(-1)
		var derr error
		switch {
		case rep.msg != "":
			derr = &childError{msg: rep.msg, errno: rep.errno}
		case fd < 0 && flags&unix.MSG_CTRUNC != 0:
			// The kernel could not install the descriptor.
			derr = fmt.Errorf("receive the socket: %w", unix.EMFILE)
		case fd < 0:
			derr = errors.New("the reply carried no socket")
		}
		if derr != nil {
			closeFD(fd)
			lp.dialFailed(pd, derr)
			continue
		}
		if pd.fl != nil {
			lp.startFlow(pd.fl, fd)
		} else {
			lp.placePair(pd.fd, fd)
		}
	}
}

// childError is a dial error as the child reported it.
type childError struct {
	msg   string
	errno unix.Errno
}

func (e *childError) Error() string { return e.msg }

// Unwrap returns the errno, so that errors.Is(err, syscall.ECONNREFUSED) works.
func (e *childError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// receivedFD returns the first descriptor in an SCM_RIGHTS message and closes
// any others, or -1.
func receivedFD(oob []byte) int {
	if len(oob) == 0 {
		return -1
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1
	}
	fd := -1
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, f := range fds {
			if fd < 0 {
				fd = f
			} else {
				unix.Close(f)
			}
		}
	}
	return fd
}

func (lp *loop) dialFailed(pd pendingDial, err error) {
	lp.l.stats.dialErrors.Add(1)
	lp.report(fmt.Errorf("publish %s: dial %s in the container: %w", pd.ln.spec.published(), pd.ln.target, err))
	if pd.fl != nil {
		lp.closeFlow(pd.fl)
		return
	}
	resetClose(pd.fd)
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// resetClose closes a TCP socket with a reset instead of a FIN, so that the
// peer sees the failure.
func resetClose(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

func (lp *loop) getPipe() (pipe, error) {
	if n := len(lp.pipes); n > 0 {
		p := lp.pipes[n-1]
		lp.pipes = lp.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return pipe{}, os.NewSyscallError("pipe2", err)
	}
	// Without the size (fs.pipe-max-size, or fs.pipe-user-pages-soft used
	// up) the default 64 KiB pipe works too, with more splice calls.
	size, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, spliceMax)
	if err != nil {
		size, err = unix.FcntlInt(uintptr(fds[0]), unix.F_GETPIPE_SZ, 0)
	}
	if err != nil {
		size = 0 // slots unknown: always read until EAGAIN
	}
	lp.l.stats.pipes.Add(1)
	return pipe{r: fds[0], w: fds[1], slots: size / os.Getpagesize(), has: true}, nil
}

// putPipe returns an empty pipe to the pool, or closes it.
func (lp *loop) putPipe(p *pipe, empty bool) {
	if !p.has {
		return
	}
	if empty && len(lp.pipes) < maxPooledPipes {
		lp.pipes = append(lp.pipes, *p)
	} else {
		unix.Close(p.r)
		unix.Close(p.w)
		lp.l.stats.pipes.Add(-1)
	}
	*p = pipe{}
}

// dropPipes closes the pooled pipes.
func (lp *loop) dropPipes() {
	for _, p := range lp.pipes {
		unix.Close(p.r)
		unix.Close(p.w)
		lp.l.stats.pipes.Add(-1)
	}
	lp.pipes = nil
}

// shutdown closes everything the loop holds; the listeners too.
func (lp *loop) shutdown() {
	for slot := range lp.handles {
		h := &lp.handles[slot]
		switch h.kind {
		case hConn:
			if !h.pc.pr.closed {
				lp.closePair(h.pc.pr, false)
			}
		case hFlow:
			lp.closeFlow(h.fl)
		}
	}
	for id, pd := range lp.pending {
		if pd.fl != nil {
			lp.closeFlow(pd.fl)
		} else {
			unix.Close(pd.fd)
		}
		delete(lp.pending, id)
		lp.l.stats.pending.Add(-1)
	}
	lp.dropPipes()
	for _, w := range lp.workers {
		w.stop.Store(true)
		signal(w.wakefd)
		if err := <-w.done; err != nil && lp.fatal == nil {
			lp.fatal = err
		}
	}
	if lp.worker {
		for _, p := range lp.inbox {
			resetClose(p[0])
			unix.Close(p[1])
		}
		lp.inbox = nil
		lp.closeFDs()
		unix.Close(lp.wakefd)
		return
	}
	lp.l.closeListeners()
	lp.closeFDs()
}

// closeFDs closes the loop's own descriptors; the wake eventfd belongs to
// Listeners, which closes it after the loop has exited.
func (lp *loop) closeFDs() {
	for _, fd := range []*int{&lp.epfd, &lp.sock} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
