package main

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/portfwd"
	"github.com/rabbitc/rabbitc/userns"
)

// initMain runs a stage: "sandbox" (stage 1, in the new user and network
// namespaces) or "container" (stage 2, init, which becomes the payload).
// Stages print nothing: they send Error and the parent prints it.
func initMain(stage string) int {
	ch := userns.NewChannel(os.NewFile(userns.SyncFD, "sync"))
	switch stage {
	case "sandbox":
		code := sandboxMain(ch)
		// The container is over, whichever way: its state goes, also when
		// rabbitc died and so could not remove it (the parent removing it
		// again is harmless).
		if d := os.Getenv(envStateDir); d != "" {
			os.RemoveAll(d)
		}
		return code
	case "container":
		return containerMain(ch)
	}
	os.Stderr.WriteString("rabbitc: init is internal to rabbitc\n")
	return 125
}

// sandbox is stage 1. Its first half exec'd while its uid was unmapped and
// has no capabilities: it waits for the maps and re-execs itself. The second
// half creates the remaining namespaces by starting init, serves the port
// forwarder from inside the network namespace, and exits with init's
// status. It lives outside the container's PID namespace.
type sandbox struct {
	ch       *userns.Channel
	stateDir string
	ppid     int
	trace    *tracer
	init     atomic.Pointer[userns.Process]
	dying    atomic.Bool
}

func sandboxMain(ch *userns.Channel) int {
	sb := &sandbox{ch: ch, stateDir: os.Getenv(envStateDir), trace: stageTracer()}
	sb.ppid, _ = strconv.Atoi(os.Getenv(envPpid))
	// The parent's death arrives as SIGTERM (Pdeathsig), in either half.
	// Other signals are the parent's to forward, not ours.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, forwarded...)
	go func() {
		for sig := range sigc {
			if sig == syscall.SIGTERM {
				sb.parentGone()
			}
		}
	}()
	hasCaps, err := userns.HasCaps()
	if err != nil {
		ch.SendError("sandbox", err, 0)
		return 125
	}
	if !hasCaps {
		return sb.firstHalf()
	}
	return sb.secondHalf()
}

// parentGone takes the container down and removes its state, which the
// parent can no longer do.
func (sb *sandbox) parentGone() {
	sb.dying.Store(true)
	if p := sb.init.Load(); p != nil {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
	if sb.stateDir != "" {
		os.RemoveAll(sb.stateDir)
	}
	os.Exit(137)
}

func (sb *sandbox) firstHalf() int {
	sb.trace.mark("sandbox:hello")
	if err := sb.ch.SendChildHello(); err != nil {
		return 125
	}
	if err := sb.ch.WaitMapsWritten(); err != nil {
		return 125 // the parent is gone or failed; it reports
	}
	// A SIGTERM still pending at exec would kill the new image before its
	// handler exists: disarm the parent-death signal for the re-exec (the
	// second half re-arms it) and look at the parent.
	if err := userns.SetPdeathsig(0, sb.ppid); err != nil {
		sb.parentGone()
	}
	sb.ch.SendError("sandbox", userns.GainCaps(), 0)
	return 125
}

func (sb *sandbox) secondHalf() int {
	userns.ReexecDone()
	sb.trace.mark("sandbox:caps")
	if err := userns.SetPdeathsig(syscall.SIGTERM, sb.ppid); err != nil {
		sb.parentGone()
	}
	var s spec
	if err := sb.ch.WaitSpec(&s); err != nil {
		return 125
	}
	if s.Net.Mode != netns.ModeHost {
		if err := netns.SetupLoopback(); err != nil {
			sb.ch.SendError("sandbox", err, 0)
			return 125
		}
	}
	p, err := sb.startInit()
	if err != nil {
		sb.ch.SendError("sandbox", err, 0)
		return 125
	}
	if err := sb.ch.SendInitStarted(p.Pid()); err != nil {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		return 125
	}
	sb.ch.Close() // from here on init alone holds the child end
	if len(s.Publish) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go portfwd.ServeChild(ctx, os.NewFile(userns.PortFD, "portfwd"))
	}
	<-p.Done()
	if sb.dying.Load() {
		select {} // parentGone is cleaning up and exits
	}
	return p.ExitCode()
}

// startInit starts stage 2 from the protected binary in new mount, PID,
// UTS, IPC and (where the kernel has it) cgroup namespaces.
func (sb *sandbox) startInit() (*userns.Process, error) {
	exe, err := userns.ProtectExe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "init", "container")
	cmd.ExtraFiles = []*os.File{sb.ch.File()}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = []string{} // init takes everything from the spec
	if sb.trace.on {
		cmd.Env = []string{envTrace + "=" + os.Getenv(envTrace)}
	}
	sb.trace.mark("sandbox:init-fork")
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if _, err := os.Stat("/proc/self/ns/cgroup"); err == nil {
		flags |= syscall.CLONE_NEWCGROUP
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	p, err := userns.Start(cmd, syscall.SIGKILL)
	if err != nil {
		return nil, userns.CloneError(err)
	}
	sb.init.Store(p)
	return p, nil
}
