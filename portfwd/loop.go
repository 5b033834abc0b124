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
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The parent forwards every published port from event loops: goroutines
// that wait for edge-triggered epoll events and move the bytes with explicit
// splice(2) through 1 MiB pipes, every call but the wait a raw system call.
// There is one loop per four Ps (GOMAXPROCS), at least one and at most 4;
// the main loop serves the listeners, the child socket and UDP, and each
// TCP pair goes to the loop with the fewest. A pipe is taken from a small pool only
// while a direction has bytes in flight, so an idle connection holds two
// descriptors and no pipe.
//
// How a loop waits matters as much as how it moves bytes. A goroutine
// blocked in epoll_wait holds its P in the syscall state; when no other P is
// idle, the runtime's monitor takes that P away after 20 µs, starts a
// spinning thread for it, and goes on waking every 20 µs since it keeps
// finding Ps to take. With one loop per P (the old default: two loops on two
// cores) that churn was 10% of the forwarder's CPU in perf (runtime.sysmon,
// nanosleep, futex: per GB 3 300 nanosleeps and 4 500-7 000 context
// switches, against 600 and 1 100-1 700 with one loop), and it doubled the
// p99 of 32 keep-alive connections. So a loop blocks in epoll_wait only
// when there are more Ps than loops; otherwise (GOMAXPROCS=1, or Loops set
// that high) its epoll set goes into the runtime's poller like a socket and
// an idle loop parks. Parking costs two more epoll calls and a pass through
// the scheduler per wake-up (requests/s over 1 connection 0.99x RootlessKit
// against 1.08x blocking), so it is the fallback, not the default.
//
// The p99 over 32 connections has a second cause, outside the forwarder:
// the payload runs in a session of its own (setsid, CVE-2017-5226), and with
// kernel.sched_autogroup_enabled=1 each session is a scheduling group that
// gets its fair share of the CPUs as a whole. In the bench, wrk and the
// forwarder share one group and the container's server is alone in another;
// RootlessKit's payload stays in rootlesskit's session, with wrk. The same
// RootlessKit with its server under setsid ("rk, setsid" below) has 3-5x the
// p99 of the usual one; rabbitc without the payload's setsid (a build for
// this measurement only) is at parity. p99 of wrk -t2 -c32, ms, median of 8
// rounds of 3 s, wrk and the forwarders in one session as in the bench,
// ratio to RootlessKit paired by round, two runs:
//
//	                                 run 1          run 2
//	RootlessKit 1.1 builtin        3.83            4.84
//	RootlessKit, setsid           14.0   4.06x    13.1   2.79x
//	rabbitc before                33.7   8.95x    26.8   5.24x
//	rabbitc now                   10.8   2.91x     8.8   1.57x
//	before, no setsid              4.06  1.10x     4.58  0.99x
//	now, no setsid                 3.88  0.99x     4.73  0.92x
//
// ("now" parked its loop in the poller in run 1 and blocked in epoll_wait in
// run 2; in another run of 6 rounds blocking had 2.6x and parking 2.0x,
// within the spread between runs.) The bench now runs every peer's server in
// a session of its own, as a container runtime does (bench/README.md,
// "Sessions"): its full run at d1db971 gave 0.81x RootlessKit's p99 over 32
// connections and 1.41x its request rate, against 4.16x in the full run
// before, when only rabbitc's server had a session of its own.
//
// Why not io.Copy between two *net.TCPConn, as RootlessKit's builtin driver
// does? The kernel's work per byte is the same, but every 64 KiB pipe (Go
// 1.19, Debian's rootlesskit 1.1.0) is one splice in and one out: 31 600
// splices per GB against 3 300 here, which costs RootlessKit as much as
// everything else (the same loop with 64 KiB pipes: 1.01x RootlessKit's
// CPU per GB, 256 KiB: 0.78x, 1 MiB: 0.63x, 4 streams, 4 rounds). Per
// connection it is one message each way on a socketpair instead of a
// unix-socket dial with JSON. With the real rabbitc and rootlesskit
// binaries, their servers in the container, wrk and iperf3 in the bench's
// arrangement, median of 6 rounds, ratio to RootlessKit paired by round
// (CPU: user+system of the forwarding process, per GB moved):
//
//	                           RootlessKit  before        now
//	req/s, 32 conns               35676     1.02x        1.06x
//	p99, 32 conns                 3.45 ms   9.10x        4.50x (see above)
//	req/s, 1 conn                 11613     1.13x        1.16x
//	p99, 1 conn                   0.52 ms   0.30x        0.33x
//	new conn/s, 32 clients         5470     1.43x        1.47x
//	Gbit/s, 1 stream               19.2     1.06x        1.16x
//	Gbit/s, 1 stream -R            19.3     1.00x        0.97x
//	Gbit/s, 4 streams              18.1     1.08x        1.07x
//	Gbit/s, 4 streams -R           15.4     0.98x        1.11x
//	CPU s/GB, 1 stream             0.25     0.55x        0.51x
//	CPU s/GB, 1 stream -R          0.22     0.59x        0.60x
//	CPU s/GB, 4 streams            0.23     0.88x        0.68x
//	CPU s/GB, 4 streams -R         0.22     0.83x        0.73x
//
// What is left is the kernel's: 90% of the forwarder's CPU is in splice,
// mostly the second pass through TCP that every two-hop forwarder pays
// (sending, and the receive side of loopback run in the sender's softirq).
// With 4 streams a 1 MiB read fills the pipe (900 of 1 100 reads per GB),
// and 1 MiB is fs.pipe-max-size for unprivileged users; single runs of the
// same binary vary by 30% with where the softirqs happen to run. Where the
// host's default congestion control is BBR (this machine's), every send
// also armed pacing timers (tcp_pace_kick, 7% of the profile with 4
// streams): the forwarder's loopback hops now use cubic or reno instead
// (unpaced in tcp.go), which took CPU per GB with 4 streams into the
// container from 0.67-0.77x RootlessKit's over six full bench runs to
// 0.54-0.60x.

const (
	maxEvents = 256
	spliceMax = 1 << 20 // bytes per splice call, and the pipe size we ask for
	// Pipes are pooled per loop while the loop is busy and closed after
	// pipeIdle without events: the kernel charges a pipe's full size to the
	// user's fs.pipe-user-pages-soft (64 MiB by default) whether it holds
	// data or not, and the container's processes run as the same user.
	maxPooledPipes = 4
	turnRounds     = 8    // splice rounds per direction before other sockets get a turn
	turnAccepts    = 64   // accepts or datagrams per listener before other sockets get a turn
	maxPending     = 1024 // dials in flight before accepting pauses
	backoffMin     = 5 * time.Millisecond
	backoffMax     = 500 * time.Millisecond
	udpBufSize     = 65536
	maxFlowQueue   = 16   // datagrams kept per UDP flow while its dial is in flight
	maxFlows       = 4096 // UDP flows per listener
	maxLoops       = 4    // event loops by default, at most
	cpusPerLoop    = 4    // GOMAXPROCS per event loop by default
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
	ln       *listener
	fd       int       // TCP: the accepted client socket
	fl       *flow     // UDP: the flow waiting for its socket
	deadline time.Time // no answer by then: the child is hung (see expirePending)
	lent     bool      // a spare descriptor was freed for the container's socket
}

// pipeIdle: pipes are closed after this long without events (see
// maxPooledPipes; a variable for the tests).
var pipeIdle = time.Second

// answerGrace is how long after its own dial timeout the child may take to
// answer before the parent gives the dial up (a variable for the tests).
var answerGrace = 2 * time.Second

type pipe struct {
	r, w  int
	slots int // capacity in pages: a read of fewer bytes cannot have filled it
	has   bool
}

type loop struct {
	l      *Listeners
	epfd   int
	epf    *os.File        // epfd in the runtime's poller, nil if it would not take it
	epc    syscall.RawConn // of epf
	polled func(uintptr) bool
	nready int       // events polled by polled
	perr   error     // error of the poll
	dl     time.Time // read deadline set on epf
	wakefd int
	sock   int // duplicate of the parent end of the socketpair
	idle   time.Duration
	dialTO time.Duration

	handles []handle
	free    []int32
	ready   []slotRef // handles that used up their turn
	spare   []slotRef // the other buffer for ready (runReady)
	retry   []*listener

	pending map[uint32]pendingDial
	// nextExpiry is the earliest deadline of the pending dials (zero:
	// none), when expirePending looks at them.
	nextExpiry time.Time
	nextID     uint32
	sendq      [][]byte

	pipes []pipe
	flows int

	// spares are held for when the process runs out of descriptors (see
	// tightFor); lent more were freed for the sockets of dials in flight,
	// and are not taken back before those dials end. While short (see
	// loop.short), each connection accepted must find room for its
	// container socket.
	spares []int
	lent   int
	tight  time.Time

	now       time.Time
	busy      time.Time // last events
	nextSweep time.Time
	fatal     error
	events    []unix.EpollEvent
	buf       []byte // UDP datagrams, and copyPeek
	oob       []byte
	pktOOB    []byte // a UDP datagram's destination (IP_PKTINFO)
	req       [requestSize]byte

	workers []*loop      // of the main loop
	live    atomic.Int64 // pairs placed on this loop

	// A worker loop forwards only the TCP pairs the main loop hands it.
	worker  bool
	stop    atomic.Bool
	inboxMu sync.Mutex
	inbox   []handoff // pairs handed over
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
		pktOOB:  make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo)),
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
	loops := l.Loops
	if loops <= 0 {
		loops = min(max(runtime.GOMAXPROCS(0)/cpusPerLoop, 1), maxLoops)
	}
	// A loop blocks its thread in epoll_wait only while another P is
	// free: see the design comment.
	park := loops >= runtime.GOMAXPROCS(0)
	if err = lp.newEpoll(park); err != nil {
		return nil, err
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
	for range loops - 1 {
		w, err := newWorker(l, park)
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
		if ln.spec.Proto == "tcp" && lp.spares == nil {
			lp.refill(0)
		}
	}
	return lp, nil
}

// newWorker creates a loop that forwards the pairs handed to it.
func newWorker(l *Listeners, park bool) (*loop, error) {
	w := &loop{l: l, epfd: -1, wakefd: -1, sock: -1, worker: true, done: make(chan error, 1),
		events: make([]unix.EpollEvent, maxEvents)}
	var err error
	if err = w.newEpoll(park); err != nil {
		return nil, err
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

// handoff is a pair on its way to a worker: the client socket that ln
// accepted, and the container's.
type handoff struct {
	ln          *listener
	client, ctr int
}

// placePair gives a new pair to the loop with the fewest pairs.
func (lp *loop) placePair(ln *listener, client, ctr int) {
	target := lp
	best := lp.live.Load()
	for _, w := range lp.workers {
		if n := w.live.Load(); n < best {
			target, best = w, n
		}
	}
	target.live.Add(1)
	if target == lp {
		lp.startPair(ln, client, ctr)
		return
	}
	target.inboxMu.Lock()
	wake := len(target.inbox) == 0
	target.inbox = append(target.inbox, handoff{ln, client, ctr})
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
		lp.startPair(p.ln, p.client, p.ctr)
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
		n, err := lp.wait(lp.timeout())
		if err != nil && err != unix.EINTR {
			lp.fail(fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_wait", err)))
			if lp.worker {
				lp.l.fail(lp.fatal)
			}
			return lp.fatal
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
		lp.expirePending()
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
	if len(lp.pending) > 0 && !lp.nextExpiry.IsZero() && (next.IsZero() || lp.nextExpiry.Before(next)) {
		next = lp.nextExpiry
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
	// Two buffers take turns, so that a loop under load does not allocate
	// a new list every turn: dispatch may requeue onto lp.ready meanwhile.
	ready := lp.ready
	lp.ready = lp.spare[:0]
	for _, r := range ready {
		if h := &lp.handles[r.slot]; h.gen == r.gen {
			h.queued = false
			lp.dispatch(r.slot, r.gen, 0)
		}
	}
	lp.spare = ready[:0]
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

// pause makes ln wait before its next accept. With a cause (descriptors
// exhausted) it waits out a backoff and the cause is reported once per pause;
// without (too many dials in flight) until the loop runs again, which the
// replies to those dials make it do.
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

// expirePending gives up the dials the child has not answered by their
// deadline: the child dials with a timeout of its own, so only a child that
// is hung (stopped, or starved) gets here. Its clients get a reset (UDP:
// the flow closes) instead of waiting for ever, and an answer that still
// comes later finds no dial and is closed.
func (lp *loop) expirePending() {
	if lp.nextExpiry.IsZero() || lp.now.Before(lp.nextExpiry) {
		return
	}
	lp.nextExpiry = time.Time{} // recomputed below from what is left
	for id, pd := range lp.pending {
		if lp.now.Before(pd.deadline) {
			if lp.nextExpiry.IsZero() || pd.deadline.Before(lp.nextExpiry) {
				lp.nextExpiry = pd.deadline
			}
			continue
		}
		lp.endPending(id, pd)
		lp.dialFailed(pd, errNoAnswer)
	}
}

var errNoAnswer = errors.New("no answer from the container's side (is the sandbox stopped?)")

// dial asks the child for a socket connected to ln's target.
func (lp *loop) dial(ln *listener, pd pendingDial) {
	lp.nextID++
	proto := byte('t')
	if ln.spec.Proto == "udp" {
		proto = 'u'
	}
	req := request{proto: proto, port: ln.target.Port(), id: lp.nextID, addr: ln.target.Addr(), timeout: lp.dialTO}
	pd.deadline = lp.now.Add(lp.dialTO + answerGrace)
	if lp.nextExpiry.IsZero() {
		lp.nextExpiry = pd.deadline
	}
	lp.pending[req.id] = pd
	lp.l.stats.pending.Add(1)
	if pd.lent {
		lp.lent++
	}
	lp.send(req.marshal(lp.req[:]))
}

// endPending takes the dial id, pd, off the pending ones.
func (lp *loop) endPending(id uint32, pd pendingDial) {
	delete(lp.pending, id)
	lp.l.stats.pending.Add(-1)
	if pd.lent {
		lp.lent--
	}
}

// send writes a dial request, or queues it while the socket is full.
func (lp *loop) send(b []byte) {
	if len(lp.sendq) == 0 {
		err := sendmsg(lp.sock, b)
		if err != unix.EAGAIN {
			lp.childSockError("send dial request", err)
			return
		}
	}
	lp.sendq = append(lp.sendq, append([]byte(nil), b...))
}

// flush sends the requests that did not fit into the socket earlier.
func (lp *loop) flush() {
	for len(lp.sendq) > 0 {
		if err := sendmsg(lp.sock, lp.sendq[0]); err != nil {
			lp.childSockError("send dial request", err)
			return
		}
		lp.sendq[0] = nil
		lp.sendq = lp.sendq[1:]
	}
	lp.sendq = nil
}

// childSockError stops the loop for an error on the child socket. EAGAIN
// (or nil) is none: the socket raises an edge when it is ready again.
func (lp *loop) childSockError(op string, err error) {
	if err != nil && err != unix.EAGAIN {
		lp.fail(fmt.Errorf("portfwd: %s: %w", op, err))
	}
}

// sendmsg and recvmsg use the child socket without blocking; they retry
// EINTR.
func sendmsg(fd int, b []byte) error {
	for {
		if err := unix.Sendmsg(fd, b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err != unix.EINTR {
			return err
		}
	}
}

func recvmsg(fd int, b, oob []byte) (n, oobn, flags int, err error) {
	for {
		n, oobn, flags, _, err = unix.Recvmsg(fd, b, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			return n, oobn, flags, err
		}
	}
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
		n, oobn, flags, err := recvmsg(lp.sock, b[:], lp.oob)
		if err != nil {
			lp.childSockError("read dial reply", err)
			return
		}
		if n == 0 {
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
		lp.endPending(rep.id, pd)
		var derr error
		switch {
		case rep.msg != "":
			derr = &childError{msg: rep.msg, errno: rep.errno}
		case fd < 0 && flags&unix.MSG_CTRUNC != 0:
			// The kernel could not install the descriptor.
			derr = fmt.Errorf("receive the socket: %w", unix.EMFILE)
			lp.tight = lp.now.Add(tightFor)
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
			lp.placePair(pd.ln, pd.fd, fd)
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
	pd.ln.conns.Add(-1)
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

// spareFDs descriptors (eventfds) are held for when the process runs out:
// one to accept (and reset) a connection with, the others to serve the
// ports that hold less than their share of the connections, up to two a
// connection (see tightFor).
const spareFDs = 32

// refill takes spare descriptors back, up to spareFDs, and leaves free the
// ones lent to dials in flight and room more: a new descriptor takes the
// lowest free number, whichever it was lent for, so refill takes as many
// as it can, up to lent+room more than the reserve, and closes lent+room
// of them. It returns why it could not (EMFILE, ENFILE): then the reserve
// is short, or the room is made of spares.
func (lp *loop) refill(room int) error {
	var err error
	for len(lp.spares) < spareFDs+lp.lent+room {
		// An eventfd needs no path, and each is a file of its own, so
		// that one closed also frees a file when the whole system ran
		// out (ENFILE).
		var fd int
		if fd, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
			break
		}
		lp.spares = append(lp.spares, fd)
	}
	lp.release(min(lp.lent+room, len(lp.spares)))
	return err
}

// release closes n spare descriptors, so that the next n the process makes
// can be made.
func (lp *loop) release(n int) {
	for range n {
		last := len(lp.spares) - 1
		unix.Close(lp.spares[last])
		lp.spares = lp.spares[:last]
	}
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
			pd.ln.conns.Add(-1)
		}
		lp.endPending(id, pd)
	}
	lp.dropPipes()
	for _, w := range lp.workers {
		w.stop.Store(true)
		signal(w.wakefd)
		if err := <-w.done; err != nil && lp.fatal == nil {
			lp.fatal = err
		}
		// A worker that failed has stopped before the main loop noticed,
		// which may have handed it pairs since: its inbox and its eventfd
		// are closed here, once nothing hands over or signals any more.
		for _, p := range w.inbox {
			resetClose(p.client)
			unix.Close(p.ctr)
			p.ln.conns.Add(-1)
		}
		w.inbox = nil
		unix.Close(w.wakefd)
	}
	if lp.worker {
		lp.closeFDs()
		return
	}
	lp.l.closeListeners()
	lp.closeFDs()
}

// closeFDs closes the loop's own descriptors. The wake eventfd is closed by
// whoever signals it: Listeners for the main loop, after the loop has exited,
// and the main loop for a worker.
func (lp *loop) closeFDs() {
	lp.release(len(lp.spares))
	if lp.epf != nil {
		lp.epf.Close() // and with it epfd
		lp.epf, lp.epfd = nil, -1
	}
	for _, fd := range []*int{&lp.epfd, &lp.sock} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// newEpoll creates the loop's epoll set. With park, the set goes,
// non-blocking, into the runtime's poller, and an idle loop parks like any
// goroutine waiting for a socket instead of blocking its thread in
// epoll_wait.
func (lp *loop) newEpoll(park bool) error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_create1", err))
	}
	lp.epfd = fd
	lp.polled = lp.poll
	if !park || unix.SetNonblock(fd, true) != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil || f.SetReadDeadline(time.Time{}) != nil { // not in the poller
		f.Close() // and fd with it
		if lp.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			return fmt.Errorf("portfwd: %w", os.NewSyscallError("epoll_create1", err))
		}
		return nil
	}
	lp.epf, lp.epc = f, rc
	return nil
}

// wait returns the number of ready events in lp.events, waiting up to
// timeout milliseconds (-1: without limit) for the first.
func (lp *loop) wait(timeout int) (int, error) {
	if timeout == 0 {
		lp.poll(0)
		return lp.nready, lp.perr
	}
	if lp.epf == nil {
		return unix.EpollWait(lp.epfd, lp.events, timeout)
	}
	if timeout > 0 {
		// A deadline earlier than needed only costs a turn of the loop,
		// so it is moved only to an earlier time: not on every wait.
		if dl := time.Now().Add(time.Duration(timeout) * time.Millisecond); lp.dl.IsZero() || dl.Before(lp.dl) {
			lp.epf.SetReadDeadline(dl)
			lp.dl = dl
		}
	}
	if err := lp.epc.Read(lp.polled); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			lp.epf.SetReadDeadline(time.Time{})
			lp.dl = time.Time{}
			return 0, nil
		}
		return 0, err
	}
	return lp.nready, lp.perr
}

// poll takes the events ready now without blocking. It reports false when
// there are none, and the loop parks in the runtime's poller until epfd is
// readable: epfd is in the runtime's own epoll set, edge-triggered, and
// every new ready event in epfd is an edge there.
func (lp *loop) poll(uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(lp.epfd),
			uintptr(unsafe.Pointer(&lp.events[0])), uintptr(len(lp.events)), 0, 0, 0)
		switch errno {
		case 0:
			lp.nready, lp.perr = int(n), nil
			return n > 0
		case unix.EINTR:
			continue
		}
		lp.nready, lp.perr = 0, errno
		return true
	}
}
