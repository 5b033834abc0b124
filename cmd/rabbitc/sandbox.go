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

// sandboxMain is stage 1. Its first run exec'd while its uid was unmapped
// and has no capabilities: it waits for the maps and re-execs itself. The
// second run creates the remaining namespaces by starting init, serves the
// port forwarder from inside the network namespace, and exits with init's
// status. It lives outside the container's PID namespace.
func sandboxMain(ch *userns.Channel) int {
	// The parent's death arrives as SIGTERM (Pdeathsig), in either half:
	// take the container down and remove its state, which the parent can no
	// longer do. Other signals are the parent's to forward, not ours.
	stateDir := os.Getenv(envStateDir)
	tr := stageTracer()
	var initProc atomic.Pointer[userns.Process]
	var dying atomic.Bool
	parentGone := func() {
		dying.Store(true)
		if p := initProc.Load(); p != nil {
			p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
		if stateDir != "" {
			os.RemoveAll(stateDir)
		}
		os.Exit(137)
	}
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, forwarded...)
	go func() {
		for sig := range sigc {
			if sig == syscall.SIGTERM {
				parentGone()
			}
		}
	}()

	hasCaps, err := userns.HasCaps()
	if err != nil {
		ch.SendError("sandbox", err, 0)
		return 125
	}
	if !hasCaps {
		tr.mark("sandbox:hello")
		if err := ch.SendChildHello(); err != nil {
			return 125
		}
		if err := ch.WaitMapsWritten(); err != nil {
			return 125 // the parent is gone or failed; it reports
		}
		// A SIGTERM still pending at exec would kill the new image before
		// its handler exists: disarm the parent-death signal for the
		// re-exec (the second half re-arms it) and look at the parent.
		ppid, _ := strconv.Atoi(os.Getenv(envPpid))
		if err := userns.SetPdeathsig(0, ppid); err != nil {
			parentGone()
		}
		ch.SendError("sandbox", userns.GainCaps(), 0)
		return 125
	}
	userns.ReexecDone()
	tr.mark("sandbox:caps")
	ppid, _ := strconv.Atoi(os.Getenv(envPpid))
	if err := userns.SetPdeathsig(syscall.SIGTERM, ppid); err != nil {
		parentGone()
	}

	var s spec
	if err := ch.WaitSpec(&s); err != nil {
		return 125
	}
	if s.Net.Mode != netns.ModeHost {
		if err := netns.SetupLoopback(); err != nil {
			ch.SendError("sandbox", err, 0)
			return 125
		}
	}
	exe, err := userns.ProtectExe()
	if err != nil {
		ch.SendError("sandbox", err, 0)
		return 125
	}
	cmd := exec.Command(exe, "init", "container")
	cmd.ExtraFiles = []*os.File{ch.File()}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = []string{} // init takes everything from the spec
	if tr.on {
		cmd.Env = []string{envTrace + "=" + os.Getenv(envTrace)}
	}
	tr.mark("sandbox:init-fork")
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if _, err := os.Stat("/proc/self/ns/cgroup"); err == nil {
		flags |= syscall.CLONE_NEWCGROUP
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	p, err := userns.Start(cmd, syscall.SIGKILL)
	if err != nil {
		ch.SendError("sandbox", userns.CloneError(err), 0)
		return 125
	}
	initProc.Store(p)
	if err := ch.SendInitStarted(p.Pid()); err != nil {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		return 125
	}
	ch.Close() // from here on init alone holds the child end

	if len(s.Publish) > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go portfwd.ServeChild(ctx, os.NewFile(userns.PortFD, "portfwd"))
	}
	<-p.Done()
	if dying.Load() {
		select {} // parentGone is cleaning up and exits
	}
	return p.ExitCode()
}
