package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// A watchdog removes the container's state directory when rabbitc dies
// without doing it, for containers that have no sandbox (nothing
// published: the sandbox, which does this otherwise, is not started).
// rabbitc holds the write end of a pipe whose read end is the watchdog's
// stdin: when rabbitc dies, however it dies, the watchdog reads EOF,
// removes the directory and exits. Init and the payload die with rabbitc
// through their Pdeathsig.
//
// rabbitc also ends a normal run by closing the pipe (release).
//
// EOF rather than a parent-death signal: the pipe needs no handler in
// place before rabbitc dies, so rabbitc neither waits for the watchdog to
// be ready nor races it; a watchdog that is still starting reads the EOF
// as soon as it runs. It lives beside the container, outside all of its
// namespaces, and costs the start-up no waiting (its own Go runtime start
// runs on the CPU the parent leaves idle).
type watchdog struct {
	cmd  *exec.Cmd
	pw   *os.File
	done chan struct{} // closed once the watchdog has been waited for
}

// startWatchdog starts the watchdog of a state directory; start it before
// the directory exists.
//
// It runs at the lowest priority there is (SCHED_IDLE, inherited from the
// thread that forks it), in rabbitc's session and scheduling group, so that
// its Go runtime start takes only CPU time that init, newuidmap and
// rabbitc leave over: at normal priority it made the start-up of
// `run --net none /bin/true` 1.2 ms slower on 2 CPUs; idle, 0.2 ms. Its
// own process group keeps the terminal's ^C away from it.
func startWatchdog(stateDir string) (*watchdog, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command("/proc/self/exe", "init", "watchdog")
	cmd.Stdin = pr
	cmd.Env = []string{"GOMAXPROCS=1", envStateDir + "=" + stateDir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w := &watchdog{pw: pw, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The scheduling policy is the thread's: this thread's goroutine
		// never unlocks it, so the thread ends with the goroutine.
		runtime.LockOSThread()
		unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
		err := cmd.Start()
		started <- err
		if err == nil {
			cmd.Wait()
		}
		close(w.done)
	}()
	if err := <-started; err != nil {
		pw.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	w.cmd = cmd
	return w, nil
}

// release hands the state's removal to the watchdog: it removes the
// directory and exits. At the end of a run this is rabbitc's last word on
// the state, and the removal (0.2-0.3 ms here) and the watchdog's exit run
// beside rabbitc's own teardown, where killing the watchdog after removing
// the directory itself took 0.5 ms more of every start-to-exit. Should
// rabbitc die before, the EOF does the same.
func (w *watchdog) release() {
	if w.pw != nil {
		w.pw.Close()
		w.pw = nil
	}
}

// wait releases the watchdog, if that is not done yet, and waits for it.
func (w *watchdog) wait() {
	w.release()
	<-w.done
}

// watchdogMain is the watchdog: when stdin ends (rabbitc closed it, or
// died), it removes the state directory.
func watchdogMain() int {
	var b [1]byte
	for {
		if n, err := os.Stdin.Read(b[:]); n == 0 && err != nil {
			break
		}
	}
	if d := os.Getenv(envStateDir); d != "" {
		removeState(d)
	}
	return 0
}
