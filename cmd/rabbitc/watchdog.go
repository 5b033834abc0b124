package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/nsenter"
	"github.com/rabbitc/rabbitc/userns"
)

// A watchdog ends the container and removes its state directory when
// rabbitc dies without doing it, for containers that have no sandbox
// (nothing published: the sandbox, which does this otherwise, is not
// started). rabbitc holds the write end of a pipe whose read end is the
// watchdog's stdin: when rabbitc dies, however it dies, the watchdog reads
// EOF, kills init through the pidfd it inherited as fd 3 (and with init the
// kernel kills the whole PID namespace), waits until it is gone, removes the
// directory and exits.
//
// Not init's parent-death signal: the payload is init after its exec, and
// it clears that signal by changing its uid (su-exec, gosu, any setuid
// entrypoint) or with prctl(PR_SET_PDEATHSIG, 0). The watchdog lives
// outside every namespace of the container, where the payload cannot
// reach it; rabbitc does not start the payload before the watchdog exists,
// and ends the container if the watchdog is killed (runner.wait).
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
// Its wait, the kill and the wait for init run in the binary's entry point
// (package nsenter), before any Go runtime starts: the watchdog costs the
// start-up one execve, and its Go code runs only once rabbitc is gone, to
// remove the state. It used to start its Go runtime at once, at the lowest
// priority there is (SCHED_IDLE) so as to take only CPU the container's
// start left (5% of `run --net none /bin/true`); but then a machine whose
// CPUs are busy starved it, and a container outlived a killed rabbitc by
// seconds. A binary built without the entry point still does that.
type watchdog struct {
	cmd  *exec.Cmd
	pw   *os.File
	done chan struct{} // closed once the watchdog has been waited for
}

// startWatchdog starts the watchdog of a state directory and of the
// container whose init is init; start it before the directory exists and
// before the payload runs.
func startWatchdog(stateDir string, init *userns.Pidfd) (*watchdog, error) {
	if init == nil {
		return nil, errors.New("start watchdog: no pidfd of init (pidfds need Linux 5.3)")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command("/proc/self/exe", "init", "watchdog")
	cmd.Stdin = pr
	cmd.ExtraFiles = []*os.File{init.File()} // fd 3
	cmd.Env = []string{"GOMAXPROCS=1", envStateDir + "=" + stateDir}
	// Its own process group keeps the terminal's ^C away from it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	// A binary built without the entry point starts its Go runtime at once
	// to wait: make that idle, and every thread its runtime starts after
	// this (they inherit the policy of the thread that creates them). Not
	// from the fork: the parent's thread waits (vfork) until the child
	// execs, which an idle child does only when nothing else wants the CPU.
	if !nsenter.Linked() {
		unix.SchedSetAttr(cmd.Process.Pid, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
	}
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

func startWatchdogAsync(stateDir string, init *userns.Pidfd) *watchdogStart {
	ws := &watchdogStart{done: make(chan struct{})}
	go func() {
		ws.w, ws.err = startWatchdog(stateDir, init)
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

// watchdogMain is the watchdog: when stdin ends (rabbitc died), it kills
// the container and removes the state directory.
func watchdogMain() int {
	if !nsenter.Watched() { // the entry point waited and killed; a binary built without it
		var b [1]byte
		for {
			if n, err := os.Stdin.Read(b[:]); n == 0 && err != nil {
				break
			}
		}
		userns.NewPidfd(os.NewFile(3, "init")).Kill(10 * time.Second)
	}
	if d := os.Getenv(envStateDir); d != "" {
		removeState(d)
	}
	return 0
}
