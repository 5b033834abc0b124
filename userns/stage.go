package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Inherited descriptors of every stage.
const (
	SyncFD = 3 // the sync channel
	PortFD = 4 // the port forwarder's socketpair (sandbox only)
)

// Process is a stage started with a parent-death signal, and waited for.
type Process struct {
	Cmd   *exec.Cmd
	pidfd *Pidfd // nil where the kernel has no CLONE_PIDFD (before 5.2)
	done  chan struct{}
	err   error
}

// Start starts cmd from the calling goroutine, which must be locked to its
// OS thread for as long as the process lives (the main goroutine, which
// main locked in an init function): the Pdeathsig is tied to that thread.
// Starting from a new locked thread instead, as before, cost a thread and
// a hand-off to it in front of the first stage (0.1-0.2 ms of the start-up).
func Start(cmd *exec.Cmd, pdeathsig syscall.Signal) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = pdeathsig
	// A pidfd from the clone itself (Go's os package takes one anyway and
	// dups it for us), so no pid reuse can come between start and handle.
	pidfd := -1
	cmd.SysProcAttr.PidFD = &pidfd
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	if pidfd >= 0 {
		p.pidfd = NewPidfd(os.NewFile(uintptr(pidfd), "pidfd"))
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pidfd is a handle on the child that outlives its reaping (nil on a
// kernel without pidfds).
func (p *Process) Pidfd() *Pidfd { return p.pidfd }

// Pid is the child's pid as this process sees it.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is docker's view of how the child ended: its exit status, or
// 128+N when signal N killed it. Valid after Done.
func (p *Process) ExitCode() int {
	return ExitCode(p.Cmd.ProcessState)
}

// ExitCode maps a process state to an exit code (128+signal when killed).
func ExitCode(ps *os.ProcessState) int {
	if ps == nil {
		return 125
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Signal sends sig to the child, ignoring a child that already exited.
func (p *Process) Signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		p.Cmd.Process.Signal(sig)
	}
}

// CloneError explains a failure to create the namespaces, with the fix.
func CloneError(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = errno // not exec's "fork/exec /proc/self/exe: ..."
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("clone user namespace: %w (unprivileged user namespaces are disabled: set kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu; see README \"Requirements\")", err)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("clone user namespace: %w (user.max_user_namespaces is 0 or exhausted: raise it with sysctl)", err)
	}
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("clone namespaces: %w (the kernel lacks a namespace rabbitc needs)", err)
	}
	return fmt.Errorf("start sandbox: %w", err)
}

// CheckCaps fails unless this process, the stage named stage, has
// effective capabilities in its user namespace: a stage cloned into a new
// one must have kept them through its exec as ambient ones (AmbientCaps).
func CheckCaps(stage string) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[0].Effective == 0 {
		return fmt.Errorf("%s has no capabilities in its user namespace (the kernel dropped its ambient capabilities at exec)", stage)
	}
	return nil
}

// AmbientCaps lists every capability the kernel knows, for
// SysProcAttr.AmbientCaps of a child cloned into a new user namespace.
//
// Such a child has every capability in its namespace until it execs, and an
// exec while its uid is still unmapped (the maps are written from outside,
// after the clone) would drop them all: the kernel computes the new sets as
// for a non-root user. Ambient capabilities survive that exec, so the
// sandbox starts with its capabilities and never re-execs itself to gain
// them; that re-exec, a fourth Go runtime start on the critical path, cost
// 2-3 ms of every start-up. The capabilities are the namespace's, never the
// host's, and init clears the ambient set before the payload runs
// (security.PrepareCaps).
//
// The list is not this process's bounding set: a new user namespace starts
// with a full one, and the child raises its ambient set after the clone.
// Taken from a host bounding set without CAP_SYS_RESOURCE (as on the
// machine this was written on), init lacked it whenever it exec'd before the
// maps were written, and --cap-add ALL failed one start in six.
func AmbientCaps() []uintptr {
	last := 40 // CAP_CHECKPOINT_RESTORE, the last one of Linux 5.9 to 6.x
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n < 64 {
			last = n
		}
	}
	caps := make([]uintptr, 0, last+1)
	for c := 0; c <= last; c++ {
		caps = append(caps, uintptr(c))
	}
	return caps
}

// SetPdeathsig arms the parent-death signal of the calling thread (the
// kernel clears it on exec that gains capabilities and on setuid), then
// checks the parent is still wantPpid, closing the race with a parent that
// died before the signal was armed. wantPpid 0 skips the check (a parent in
// another PID namespace shows as 0).
func SetPdeathsig(sig syscall.Signal, wantPpid int) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_PDEATHSIG: %w", err)
	}
	if wantPpid != 0 && os.Getppid() != wantPpid {
		return errors.New("parent exited during start-up")
	}
	return nil
}

// UnshareContainer gives the calling thread the container's new mount,
// UTS, IPC and (where the kernel has it) cgroup namespaces, and a network
// namespace when net is true. It is for init when rabbitc starts it
// directly (no sandbox): the clone makes only the user and PID namespaces,
// and init makes the rest here, with the capabilities it holds as ambient
// ones, while newuidmap and newgidmap run.
//
// Why not all in the clone, as STYLE.md says: the parent can start
// newuidmap only once exec.Cmd.Start returns, after the child has exec'd,
// and the five extra namespaces made that clone 0.7 ms slower on the
// machine the bench runs on (1.3 ms against 0.6 ms, median of 60), all of
// it in front of the maps. Made here the same kernel work overlaps with
// them.
//
// Why it is safe in a Go process: unshare of these namespaces is allowed in
// a threaded process (CLONE_NEWNS gives the thread an fs_struct of its own;
// only CLONE_NEWUSER needs a single thread, and CLONE_NEWPID would apply to
// children only, so both stay in the clone) and changes the calling thread
// only. That thread must be the main thread, where main() locked the main
// goroutine for the life of the process: init does all its work on that
// goroutine and execs from it, and execve keeps only the calling thread, so
// the payload gets exactly these namespaces. The runtime starts any later
// thread from its template thread, not from a locked one, so no other
// thread inherits them; init starts no goroutines of its own.
func UnshareContainer(net bool) error {
	if unix.Gettid() != unix.Getpid() {
		return errors.New("unshare namespaces: not on the main thread")
	}
	flags := unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC
	if net {
		flags |= unix.CLONE_NEWNET
	}
	if _, err := os.Stat("/proc/self/ns/cgroup"); err == nil {
		flags |= unix.CLONE_NEWCGROUP
	}
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("unshare namespaces: %w", err)
	}
	return nil
}
