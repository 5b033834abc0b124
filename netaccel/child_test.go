package netaccel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel tests re-exec the test binary into its own user and network
// namespaces (a single-id mapping: no privileges needed). The child brings
// its loopback up, sets no_new_privs, installs the filter, passes the
// listener to the test over the socketpair at fd 3, waits for the
// supervisor to run, and then plays one scenario, printing what each call
// returned as JSON. Its network namespace has no route out: a connect to
// 10.0.2.2 only reaches the test's servers on the host's 127.0.0.1 when
// the supervisor switches it.

const childEnv = "_RABBITC_NETACCEL_TEST_CHILD"

// childTask is what the re-exec'd test binary does.
type childTask struct {
	Scenario   string
	HostPort   int    // a server on the host's 127.0.0.1 answering "ping" with "pong"
	OtherPort  int    // a server on the host's 127.0.0.1 nobody may reach
	FullPort   int    // a listener on the host's 127.0.0.1 whose queue is full: SYNs go unanswered
	ClosedPort int    // a port of the host's 127.0.0.1 nothing listens on
	Helper     string // the i386 helper (testdata/compat386)
	PubPort    int    // the host port of the published socket (handover)
	Count      int    // connects of the "connects" scenario
}

const syncFD = 3

// stuckConnects is how many threads of the flood scenario hang in connect.
const stuckConnects = 2

func childMain(task string) int {
	var t childTask
	if err := json.Unmarshal([]byte(task), &t); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := loopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, "loopback up:", err)
		return 3
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "no_new_privs:", err)
		return 3
	}
	lfd, err := Install()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if err := unix.Sendmsg(syncFD, []byte{'L'}, unix.UnixRights(lfd), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "send the listener:", err)
		return 3
	}
	unix.Close(lfd)
	if _, err := unix.Read(syncFD, make([]byte, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "wait for the supervisor:", err)
		return 3
	}
	f, ok := scenarios[t.Scenario]
	if !ok {
		fmt.Fprintln(os.Stderr, "no scenario", t.Scenario)
		return 2
	}
	res := results{}
	f(t, res)
	b, _ := json.Marshal(res)
	os.Stdout.Write(b)
	return 0
}

type results map[string]string

func (r results) set(k string, v any) {
	switch v := v.(type) {
	case error:
		r[k] = errnoName(v)
	case nil:
		r[k] = "ok"
	default:
		r[k] = fmt.Sprint(v)
	}
}

func errnoName(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case 0:
			return "ok"
		case unix.EOPNOTSUPP:
			return "EOPNOTSUPP" // ErrnoName says ENOTSUP, the same number
		}
		return unix.ErrnoName(e)
	}
	return err.Error()
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

var hostAlias = netip.MustParseAddr("10.0.2.2")

func alias(port int) netip.AddrPort { return netip.AddrPortFrom(hostAlias, uint16(port)) }

func tcpSocket(extra int) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|extra, 0)
	if err != nil {
		panic(err)
	}
	return fd
}

// exchange sends "ping" and reads the answer.
func exchange(fd int) string {
	tv := unix.Timeval{Sec: 5}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if _, err := unix.Write(fd, []byte("ping")); err != nil {
		return "write: " + errnoName(err)
	}
	buf := make([]byte, 4)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return "read: " + errnoName(err)
	}
	return string(buf[:n])
}

func waitWritable(fd int, ms int) string {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(pfd, ms)
	if err != nil {
		return errnoName(err)
	}
	if n == 0 {
		return "timeout"
	}
	return "ready"
}

func soError(fd int) string {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return errnoName(err)
	}
	return errnoName(syscall.Errno(v))
}

func tcpState(fd int) string {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return errnoName(err)
	}
	return strconv.Itoa(int(info.State))
}

func rawBind(fd int, b []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return errno
	}
	return nil
}

var scenarios = map[string]func(childTask, results){
	"blocking":    scenarioBlocking,
	"nonblocking": scenarioNonblocking,
	"inner":       scenarioInner,
	"rewrite":     scenarioRewrite,
	"unspec":      scenarioUnspec,
	"epoll":       scenarioEpoll,
	"nested":      scenarioNested,
	"flood":       scenarioFlood,
	"sndtimeo":    scenarioSndtimeo,
	"signals":     scenarioSignals,
	"eintr":       scenarioEINTR,
	"unix":        scenarioUnix,
	"fastopen":    scenarioFastopen,
	"refused":     scenarioRefused,
	"options":     scenarioOptions,
	"ipv6":        scenarioIPv6,
	"compat":      scenarioCompat,
}

// A blocking connect to 10.0.2.2 reaches the host's server; the socket
// keeps its flags and the options set before connect.
func scenarioBlocking(t childTask, r results) {
	for _, c := range []struct {
		name  string
		extra int
	}{{"cloexec", unix.SOCK_CLOEXEC}, {"plain", 0}} {
		fd := tcpSocket(c.extra)
		r.set(c.name+".connect", unix.Connect(fd, sockaddr(alias(t.HostPort))))
		r.set(c.name+".reply", exchange(fd))
		if sa, err := unix.Getpeername(fd); err == nil {
			a := sa.(*unix.SockaddrInet4)
			r.set(c.name+".peer", netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)))
		}
		fdfl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		r.set(c.name+".cloexec", fdfl&unix.FD_CLOEXEC != 0)
		fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		r.set(c.name+".nonblock", fl&unix.O_NONBLOCK != 0)
		unix.Close(fd)
	}
}

// A non-blocking connect answers EINPROGRESS; the socket becomes
// writable, SO_ERROR is 0, connect again answers 0 then EISCONN.
func scenarioNonblocking(t childTask, r results) {
	fd := tcpSocket(unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC)
	defer unix.Close(fd)
	r.set("connect", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	r.set("poll", waitWritable(fd, 5000))
	r.set("so_error", soError(fd))
	r.set("connect2", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	r.set("connect3", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	r.set("nonblock", fl&unix.O_NONBLOCK != 0)
	unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	r.set("reply", exchange(fd))
}

// Destinations the policy keeps stay in the container's namespace.
func scenarioInner(t childTask, r results) {
	for name, dst := range map[string]netip.AddrPort{
		"loopback": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(t.HostPort)),
		"subnet":   netip.AddrPortFrom(netip.MustParseAddr("10.0.2.5"), uint16(t.HostPort)),
	} {
		fd := tcpSocket(unix.SOCK_CLOEXEC)
		r.set(name, unix.Connect(fd, sockaddr(dst)))
		unix.Close(fd)
	}
	fd, _ := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	r.set("mapped-loopback", unix.Connect(fd, &unix.SockaddrInet6{Port: t.HostPort, Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}))
	unix.Close(fd)
}

// A second thread rewrites the address between 10.0.2.2:HostPort (which
// the policy switches) and 127.0.0.1:OtherPort (which it keeps) while the
// first connects with it: whatever the supervisor read, the host's
// OtherPort must never be reached.
func scenarioRewrite(t childTask, r results) {
	var sa [16]byte
	good := rawInet4(alias(t.HostPort), 16)
	bad := rawInet4(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(t.OtherPort)), 16)
	word := (*uint64)(unsafe.Pointer(&sa[0])) // family, port and address in one store
	goodW, badW := binary.NativeEndian.Uint64(good), binary.NativeEndian.Uint64(bad)
	atomic.StoreUint64(word, goodW)
	var stop atomic.Bool
	go func() {
		runtime.LockOSThread()
		for !stop.Load() {
			for i := 0; i < 64; i++ {
				atomic.StoreUint64(word, badW)
				atomic.StoreUint64(word, goodW)
			}
			runtime.Gosched()
		}
	}()
	counts := map[string]int{}
	deadline := time.Now().Add(4 * time.Second)
	for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
		fd := tcpSocket(unix.SOCK_CLOEXEC)
		err := connectRaw(fd, sa[:])
		counts[errnoName(err)]++
		unix.Close(fd)
	}
	stop.Store(true)
	for k, v := range counts {
		r.set("count."+k, v)
	}
}

// After a switch, the socket refuses to be disconnected, to listen, to be
// bound or connected elsewhere; a disconnect the filter cannot see
// (AF_UNSPEC with length 2) works, but the host socket then reaches
// nothing but its pinned peer.
func scenarioUnspec(t childTask, r results) {
	fd := tcpSocket(unix.SOCK_CLOEXEC)
	defer unix.Close(fd)
	r.set("connect", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	r.set("unspec16", connectRaw(fd, rawUnspec(16)))
	r.set("listen", unix.Listen(fd, 8))
	r.set("bind16", rawBind(fd, rawInet4(netip.MustParseAddrPort("0.0.0.0:0"), 16)))
	r.set("other", unix.Connect(fd, sockaddr(alias(t.OtherPort))))
	r.set("unspec2", connectRaw(fd, rawUnspec(2)))
	r.set("listen-after", unix.Listen(fd, 8))
	r.set("bind16-after", rawBind(fd, rawInet4(netip.MustParseAddrPort("127.0.0.1:0"), 16)))
	r.set("bind20-after", rawBind(fd, rawInet4(netip.MustParseAddrPort("127.0.0.1:0"), 20)))
	r.set("other-after", unix.Connect(fd, sockaddr(alias(t.OtherPort))))
	tv := unix.Timeval{Usec: 300000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	// Aimed at the host's loopback with a length the filter lets through.
	r.set("loopback20", connectRaw(fd, rawInet4(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(t.OtherPort)), 20)))
}

// Sockets registered with epoll, or open twice, are not switched.
func scenarioEpoll(t childTask, r results) {
	ep, _ := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	defer unix.Close(ep)
	a := tcpSocket(unix.SOCK_CLOEXEC)
	unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, a, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(a)})
	r.set("registered", unix.Connect(a, sockaddr(alias(t.HostPort))))
	unix.Close(a)

	b := tcpSocket(unix.SOCK_CLOEXEC)
	d, _ := unix.Dup(b)
	unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, d, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(d)})
	unix.Close(d) // the registration stays, under a closed number
	r.set("registered-dup", unix.Connect(b, sockaddr(alias(t.HostPort))))
	unix.Close(b)

	c := tcpSocket(unix.SOCK_CLOEXEC)
	d, _ = unix.Dup(c)
	r.set("duplicated", unix.Connect(c, sockaddr(alias(t.HostPort))))
	unix.Close(c)
	unix.Close(d)

	e := tcpSocket(unix.SOCK_CLOEXEC)
	r.set("control", unix.Connect(e, sockaddr(alias(t.HostPort))))
	unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, e, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(e)})
	r.set("control.reply", exchange(e))
	unix.Close(e)
}

// A socket of a network namespace made inside the container is not
// switched; one of the container's own is, from whichever thread.
func scenarioNested(t childTask, r results) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		own := tcpSocket(unix.SOCK_CLOEXEC)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			r.set("unshare", err)
			return
		}
		nested := tcpSocket(unix.SOCK_CLOEXEC)
		r.set("nested", unix.Connect(nested, sockaddr(alias(t.HostPort))))
		r.set("own-from-nested-thread", unix.Connect(own, sockaddr(alias(t.HostPort))))
		r.set("own.reply", exchange(own))
		unix.Close(nested)
		unix.Close(own)
	}()
	<-done
}

// Many threads connect at once through a supervisor with few workers and
// waits, the waits taken first by blocking connects that never complete
// (no timeout; the process exits under them): every other call returns,
// switched or (overloaded) left to the container's namespace, where it
// finds no route.
func scenarioFlood(t childTask, r results) {
	const threads, each = 32, 25
	for i := 0; i < stuckConnects; i++ {
		go func() {
			runtime.LockOSThread()
			fd := tcpSocket(unix.SOCK_CLOEXEC)
			err := unix.Connect(fd, sockaddr(alias(t.FullPort)))
			panic(fmt.Sprintf("a connect to the full listener returned: %v", err))
		}()
	}
	time.Sleep(300 * time.Millisecond)
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for j := 0; j < each; j++ {
				extra := unix.SOCK_CLOEXEC
				if (i+j)%2 == 1 {
					extra |= unix.SOCK_NONBLOCK
				}
				fd := tcpSocket(extra)
				err := unix.Connect(fd, sockaddr(alias(t.HostPort)))
				k := errnoName(err)
				if errors.Is(err, unix.EINPROGRESS) {
					k = "EINPROGRESS:" + waitWritable(fd, 5000) + ":" + soError(fd)
				}
				mu.Lock()
				counts[k]++
				mu.Unlock()
				unix.Close(fd)
			}
		}(i)
	}
	wg.Wait()
	for k, v := range counts {
		r.set("count."+k, v)
	}
	r.set("seconds", time.Since(start).Seconds())
}

// A blocking connect with SO_SNDTIMEO to a destination that never answers
// gives up after the timeout with EINPROGRESS, as the kernel does.
func scenarioSndtimeo(t childTask, r results) {
	fd := tcpSocket(unix.SOCK_CLOEXEC)
	defer unix.Close(fd)
	tv := unix.Timeval{Usec: 300000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	start := time.Now()
	r.set("connect", unix.Connect(fd, sockaddr(alias(t.FullPort))))
	r.set("ms", time.Since(start).Milliseconds())
	r.set("state", tcpState(fd))
}

// Signals with an SA_RESTART handler (Go's SIGURG) arriving every
// millisecond during a blocking connect with SO_SNDTIMEO: the restarted
// calls keep the first deadline, so the connect still gives up on time.
func scenarioSignals(t childTask, r results) {
	tidc := make(chan int)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		fd := tcpSocket(unix.SOCK_CLOEXEC)
		defer unix.Close(fd)
		tv := unix.Timeval{Usec: 500000}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		tidc <- unix.Gettid()
		start := time.Now()
		r.set("connect", unix.Connect(fd, sockaddr(alias(t.FullPort))))
		r.set("ms", time.Since(start).Milliseconds())
	}()
	tid := <-tidc
	sent := 0
	stormEnd := time.Now().Add(4 * time.Second)
	for time.Now().Before(stormEnd) {
		select {
		case <-done:
			stormEnd = time.Time{}
			continue
		default:
		}
		unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
		sent++
		time.Sleep(time.Millisecond)
	}
	<-done
	r.set("signals", sent)
}

// sigNop is a signal handler of its own, without SA_RESTART: it returns at
// once (the restorer Go installs with its own handlers does rt_sigreturn).
//
//go:noinline
func sigNop() {}

type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const (
	saOnstack  = 0x08000000
	saRestorer = 0x04000000
)

func setRawHandler(sig syscall.Signal) (restore func(), err error) {
	var old kernelSigaction
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return nil, e
	}
	if old.flags&saRestorer == 0 && runtime.GOARCH == "amd64" {
		return nil, errors.New("no restorer to borrow")
	}
	act := kernelSigaction{handler: reflect.ValueOf(sigNop).Pointer(), flags: saOnstack | old.flags&saRestorer, restorer: old.restorer}
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); e != 0 {
		return nil, e
	}
	return func() {
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	}, nil
}

// A signal whose handler has no SA_RESTART interrupts a blocking connect
// with EINTR, as natively; the descriptor is then the host socket, still
// connecting, as a native socket would be.
func scenarioEINTR(t childTask, r results) {
	restore, err := setRawHandler(unix.SIGUSR2)
	if err != nil {
		r.set("handler", err)
		return
	}
	defer restore()
	tidc := make(chan int)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		fd := tcpSocket(unix.SOCK_CLOEXEC)
		defer unix.Close(fd)
		tidc <- unix.Gettid()
		start := time.Now()
		r.set("connect", unix.Connect(fd, sockaddr(alias(t.FullPort))))
		r.set("ms", time.Since(start).Milliseconds())
		r.set("state", tcpState(fd))
		// Connecting again waits on the same attempt (as natively): give
		// it a timeout.
		tv := unix.Timeval{Usec: 200000}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		r.set("connect2", unix.Connect(fd, sockaddr(alias(t.FullPort))))
	}()
	tid := <-tidc
	time.Sleep(300 * time.Millisecond)
	unix.Tgkill(unix.Getpid(), tid, unix.SIGUSR2)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.set("connect", "hung")
	}
}

// Unix sockets whose addresses have the lengths of inet ones reach the
// supervisor, which lets them through.
func scenarioUnix(t childTask, r results) {
	name := make([]byte, 16) // family, then an abstract name of 13 bytes
	binary.NativeEndian.PutUint16(name, unix.AF_UNIX)
	copy(name[3:], []byte(fmt.Sprintf("rabbitc%06d", os.Getpid()%1000000)))
	srv, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(srv)
	r.set("bind", rawBind(srv, name))
	r.set("listen", unix.Listen(srv, 8))
	cli, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(cli)
	r.set("connect16", connectRaw(cli, name))
	if c, _, err := unix.Accept(srv); err == nil {
		unix.Write(cli, []byte("hi"))
		buf := make([]byte, 2)
		n, _ := unix.Read(c, buf)
		r.set("read", string(buf[:n]))
		unix.Close(c)
	}
	// A path name, with the usual length (sizeof(struct sockaddr_un)).
	dir, _ := os.MkdirTemp("", "netaccel")
	defer os.RemoveAll(dir)
	path := dir + "/s"
	srv2, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(srv2)
	long := make([]byte, 110)
	binary.NativeEndian.PutUint16(long, unix.AF_UNIX)
	copy(long[2:], path)
	r.set("bind110", rawBind(srv2, long))
	unix.Listen(srv2, 8)
	cli2, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(cli2)
	r.set("connect110", connectRaw(cli2, long))
}

// TCP Fast Open and io_uring are refused.
func scenarioFastopen(t childTask, r results) {
	fd := tcpSocket(unix.SOCK_CLOEXEC)
	defer unix.Close(fd)
	r.set("sendto", unix.Sendto(fd, []byte("x"), unix.MSG_FASTOPEN, sockaddr(alias(t.HostPort))))
	r.set("setsockopt", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1))
	_, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&[120]byte{})), 0)
	r.set("io_uring_setup", e)
}

// A refused connect reports ECONNREFUSED and may be tried again on the
// same socket, to the same destination only.
func scenarioRefused(t childTask, r results) {
	fd := tcpSocket(unix.SOCK_CLOEXEC)
	r.set("blocking", unix.Connect(fd, sockaddr(alias(t.ClosedPort))))
	r.set("blocking-again", unix.Connect(fd, sockaddr(alias(t.ClosedPort))))
	r.set("blocking-elsewhere", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	unix.Close(fd)
	fd = tcpSocket(unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK)
	r.set("nonblocking", unix.Connect(fd, sockaddr(alias(t.ClosedPort))))
	r.set("nonblocking.poll", waitWritable(fd, 5000))
	r.set("nonblocking.so_error", soError(fd))
	unix.Close(fd)
}

// Options set before connect are carried over to the host socket.
func scenarioOptions(t childTask, r results) {
	fd := tcpSocket(unix.SOCK_CLOEXEC)
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 77)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 100000)
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, 0x10)
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 5})
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 7})
	want := map[string]int{}
	for _, o := range []struct {
		name         string
		level, name2 int
	}{
		{"nodelay", unix.IPPROTO_TCP, unix.TCP_NODELAY},
		{"keepalive", unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{"keepidle", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{"rcvbuf", unix.SOL_SOCKET, unix.SO_RCVBUF},
		{"tos", unix.IPPROTO_IP, unix.IP_TOS},
	} {
		v, _ := unix.GetsockoptInt(fd, o.level, o.name2)
		want[o.name] = v
		defer func() {
			got, _ := unix.GetsockoptInt(fd, o.level, o.name2)
			r.set(o.name, fmt.Sprintf("%d->%d", want[o.name], got))
		}()
	}
	r.set("connect", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	sa, _ := unix.Getpeername(fd)
	if a, ok := sa.(*unix.SockaddrInet4); ok {
		r.set("peer", netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)))
	}
	l, _ := unix.GetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER)
	r.set("linger", fmt.Sprintf("%d/%d", l.Onoff, l.Linger))
	tv, _ := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO)
	r.set("rcvtimeo", tv.Sec)
}

// An AF_INET6 socket connecting to the IPv4-mapped alias is switched with
// an IPv6 host socket; with IPV6_V6ONLY it is not (the kernel refuses).
func scenarioIPv6(t childTask, r results) {
	mapped := netip.AddrFrom16(hostAlias.As16())
	fd, _ := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	r.set("mapped", unix.Connect(fd, &unix.SockaddrInet6{Port: t.HostPort, Addr: mapped.As16()}))
	r.set("mapped.reply", exchange(fd))
	if sa, err := unix.Getpeername(fd); err == nil {
		a := sa.(*unix.SockaddrInet6)
		r.set("mapped.peer", netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)))
	}
	unix.Close(fd)
	fd, _ = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	r.set("v6only", unix.Connect(fd, &unix.SockaddrInet6{Port: t.HostPort, Addr: mapped.As16()}))
	unix.Close(fd)
	fd, _ = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	r.set("family-mismatch", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	unix.Close(fd)
}

// An i386 program given a switched socket can neither disconnect, connect,
// listen nor bind it, through socketcall or the direct calls; its own
// sockets are never switched.
func scenarioCompat(t childTask, r results) {
	fd := tcpSocket(0) // inherited by the helper
	defer unix.Close(fd)
	r.set("connect", unix.Connect(fd, sockaddr(alias(t.HostPort))))
	cmd := exec.Command(t.Helper, strconv.Itoa(fd), strconv.Itoa(t.HostPort))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		r.set("helper", err.Error())
		return
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		r.set("helper", fmt.Sprintf("%q: %v", out, err))
		return
	}
	for k, v := range res {
		r[k] = v
	}
	r.set("after.reply", exchange(fd))
}
