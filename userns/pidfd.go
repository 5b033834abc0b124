package userns

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Pidfd is a handle on one process (pidfd_open(2)): a signal sent through
// it reaches that process or nobody, never one that reused its pid, and it
// can be waited on by a process that is not the parent. A container's init
// is held this way by whoever must end the container when rabbitc goes: the
// watchdog, the sandbox's parent, `rabbitc stop`. Killing init, PID 1 of the
// container's PID namespace, makes the kernel kill every process in that
// namespace, whatever they did to their own parent-death signals.
type Pidfd struct{ f *os.File }

// NewPidfd wraps a pidfd received or inherited as f.
func NewPidfd(f *os.File) *Pidfd { return &Pidfd{f} }

// OpenPidfd opens a pidfd for pid. The caller still has to check that the
// process is the one it meant (a start time read after the open): the pid
// may have been reused before it.
func OpenPidfd(pid int) (*Pidfd, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	unix.CloseOnExec(fd)
	return &Pidfd{os.NewFile(uintptr(fd), "pidfd")}, nil
}

// File is the descriptor, to pass to another process.
func (p *Pidfd) File() *os.File { return p.f }

// Close closes the handle.
func (p *Pidfd) Close() error { return p.f.Close() }

// Signal sends sig; a process that has exited already is not an error.
func (p *Pidfd) Signal(sig unix.Signal) error {
	err := unix.PidfdSendSignal(int(p.f.Fd()), sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// Exited tells whether the process has exited (it may still be a zombie).
func (p *Pidfd) Exited() bool { return p.wait(0) }

// Wait waits up to d for the process to exit and tells whether it did.
func (p *Pidfd) Wait(d time.Duration) bool { return p.wait(int(d / time.Millisecond)) }

func (p *Pidfd) wait(ms int) bool {
	deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
	for {
		fds := []unix.PollFd{{Fd: int32(p.f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			if ms = int(time.Until(deadline) / time.Millisecond); ms < 0 {
				ms = 0
			}
			continue
		}
		return err == nil && n > 0
	}
}

// Kill sends SIGKILL and waits up to d for the process to exit. For a
// container's init that is the whole container: the kernel kills the rest
// of the PID namespace before init's exit shows on the pidfd.
func (p *Pidfd) Kill(d time.Duration) bool {
	if err := p.Signal(unix.SIGKILL); err != nil {
		return false
	}
	return p.Wait(d)
}

// Reap collects the exit status of a process that was reparented to this
// one (a child subreaper), so that it leaves no zombie. Never use it on a
// child that exec.Cmd.Wait reaps: that Wait would then fail.
func (p *Pidfd) Reap() {
	var info unix.Siginfo
	for unix.Waitid(unix.P_PIDFD, int(p.f.Fd()), &info, unix.WEXITED|unix.WNOHANG, nil) == unix.EINTR {
	}
}
