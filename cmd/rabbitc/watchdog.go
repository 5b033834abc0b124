package main

import (
	"fmt"
	"os"
	"os/exec"
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
// EOF rather than a parent-death signal: the pipe needs no handler in
// place before rabbitc dies, so rabbitc neither waits for the watchdog to
// be ready nor races it; a watchdog that is still starting reads the EOF
// as soon as it runs. It lives beside the container, outside all of its
// namespaces. rabbitc starts it while init sets up the root, writes the
// state once the payload runs (runner.recordState), and kills the watchdog
// once it has removed the state itself: a watchdog that has nothing left to
// guard needs no chance to run.
//
// It runs at the lowest priority there is (SCHED_IDLE), so that its Go
// runtime start (1-2 ms of CPU) takes only CPU time init and the payload
// leave: `run --net none /bin/true` was
// 5% faster than with the watchdog at normal priority (paired median of 80
// rounds).
type watchdog struct {
	cmd  *exec.Cmd
	pw   *os.File
	done chan struct{} // closed once the watchdog has been waited for
}

// startWatchdog starts the watchdog of a state directory; start it before
// the directory exists.
func startWatchdog(stateDir string) (*watchdog, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command("/proc/self/exe", "init", "watchdog")
	cmd.Stdin = pr
	cmd.Env = []string{"GOMAXPROCS=1", envStateDir + "=" + stateDir}
	// Its own process group keeps the terminal's ^C away from it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	// Idle from now on, and every thread its runtime starts after this
	// (they inherit the policy of the thread that creates them). Not from
	// the fork: the parent's thread waits (vfork) until the child execs,
	// which an idle child does only when nothing else wants the CPU.
	unix.SchedSetAttr(cmd.Process.Pid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
	w := &watchdog{cmd: cmd, pw: pw, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// watchdogStart is a watchdog being started in the background.
type watchdogStart struct {
	done chan struct{}
	w    *watchdog
	err  error
}

func startWatchdogAsync(stateDir string) *watchdogStart {
	ws := &watchdogStart{done: make(chan struct{})}
	go func() {
		ws.w, ws.err = startWatchdog(stateDir)
		close(ws.done)
	}()
	return ws
}

// get waits until the watchdog has started, or failed to.
func (ws *watchdogStart) get() (*watchdog, error) {
	<-ws.done
	return ws.w, ws.err
}

// stop ends the watchdog once rabbitc has removed the state itself.
func (w *watchdog) stop() {
	w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.done
	w.pw.Close()
}

// watchdogMain is the watchdog: when stdin ends (rabbitc died), it removes
// the state directory.
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
