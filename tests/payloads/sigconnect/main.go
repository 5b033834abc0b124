//go:build amd64 || arm64

// Command sigconnect makes a blocking connect(2) while signals arrive at the
// thread that makes it, for the network acceleration tests
// (tests/netaccel_compat_test.go).
//
//	sigconnect [-restart] [-every 100ms] [-count 10] IP:PORT
//
// It gives SIGUSR1 a handler that does nothing, with SA_RESTART or
// without (the Go runtime's own handlers always have it, so the handler is
// installed with rt_sigaction directly: handler_*.s), then connects a
// blocking IPv4 socket on a locked thread while another goroutine sends
// that thread SIGUSR1 (tgkill) every interval, count times at most. It
// prints
//
//	connect: ok|ERRNO            what connect answered
//	after: DURATION              when (rounded to 100 ms)
//	signals: N                   signals sent before connect answered
//	local: IP:PORT               the socket's local address, when connected
//	again: ok|ERRNO              after EINTR: what a second, non-blocking connect answers
//
// A handler without SA_RESTART makes connect answer EINTR at the first
// signal, and the attempt goes on (a second connect answers EALREADY);
// with SA_RESTART the call is restarted and answers when the connection is
// made.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// handler returns at once; restorer calls rt_sigreturn. Both are ABI0
// functions of handler_*.s, whose addresses handlerPCs gives.
func handler()
func restorer()
func handlerPCs() (h, r uintptr)

// sigaction is the kernel's struct sigaction (amd64, arm64).
type sigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const (
	saOnstack  = 0x08000000 // Go's threads have signal stacks
	saRestart  = 0x10000000
	saRestorer = 0x04000000
)

func main() {
	restart := flag.Bool("restart", false, "SA_RESTART")
	every := flag.Duration("every", 100*time.Millisecond, "between signals")
	count := flag.Int("count", 10, "signals at most")
	flag.Parse()
	ap, err := netip.ParseAddrPort(flag.Arg(0))
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "usage: sigconnect [-restart] [-every D] [-count N] IP:PORT")
		os.Exit(2)
	}
	h, r := handlerPCs()
	sa := sigaction{handler: h, flags: saOnstack | saRestorer, restorer: r}
	if *restart {
		sa.flags |= saRestart
	}
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGUSR1), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0); e != 0 {
		fmt.Println("sigaction:", errName(e))
		os.Exit(1)
	}

	runtime.LockOSThread()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println("socket:", errName(err))
		os.Exit(1)
	}
	pid, tid := unix.Getpid(), unix.Gettid()
	var done atomic.Bool
	var sent atomic.Int64
	go func() {
		for i := 0; i < *count; i++ {
			time.Sleep(*every)
			if done.Load() {
				return
			}
			// Counted first: the thread may be back from connect before
			// tgkill returns here.
			sent.Add(1)
			if unix.Tgkill(pid, tid, unix.SIGUSR1) != nil {
				sent.Add(-1)
			}
		}
	}()
	sa4 := &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	t0 := time.Now()
	err = unix.Connect(fd, sa4)
	done.Store(true)
	fmt.Println("connect:", errName(err))
	fmt.Println("after:", time.Since(t0).Round(100*time.Millisecond))
	fmt.Println("signals:", sent.Load())
	if err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			in4 := sa.(*unix.SockaddrInet4)
			fmt.Println("local:", netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)))
		}
	}
	if errors.Is(err, unix.EINTR) { // non-blocking: a blocking one would wait again
		unix.SetNonblock(fd, true)
		fmt.Println("again:", errName(unix.Connect(fd, sa4)))
	}
}

// errName is "ok" or the errno's name.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}
