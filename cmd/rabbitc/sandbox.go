package main

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/rabbitc/rabbitc/hostcheck"
	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/portfwd"
	"github.com/rabbitc/rabbitc/userns"
)

// initMain runs a stage: "sandbox" (stage 1, in the new user and network
// namespaces), "container" (stage 2, init, which becomes the payload),
// "direct" (init started by rabbitc itself, see runner.startChild),
// "watchdog", "reaper", "exec" (exec.go), "probe" (doctor.go), or one of
// the user namespace stages of an image's storage, "storage-probe" and
// "storage-copy" (storage.go), and "rmtree".
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
			removeState(d)
		}
		return code
	case "container":
		return containerMain(ch)
	case "direct":
		return directMain(ch)
	case "oci":
		return ociInitMain(ch)
	case "rmtree":
		return userns.ServeRmtree(ch)
	case "storage-probe":
		return storageProbeMain(ch)
	case "storage-copy":
		return storageCopyMain(ch)
	case "watchdog":
		return watchdogMain()
	case "reaper":
		return reaperMain(os.Args[3:])
	case "exec":
		return execMain(ch)
	case "probe": // rabbitc doctor's children in new namespaces
		return hostcheck.ProbeMain(os.Args[3:])
	}
	os.Stderr.WriteString("rabbitc: init is internal to rabbitc\n")
	return 125
}

// sandbox is stage 1. It kept its capabilities through its exec as ambient
// ones (userns.AmbientCaps), so it needs no mapped uid for its own work: it
// creates the remaining namespaces by starting init while the parent is
// still writing the maps (init waits for its spec, which the parent sends
// only once they are written), serves the port forwarder from inside the
// network namespace, and exits with init's status. It lives outside the
// container's PID namespace.
type sandbox struct {
	ch       *userns.Channel
	stateDir string
	ppid     int
	trace    *tracer
	init     atomic.Pointer[userns.Process]
	dying    atomic.Bool
}

// sandboxSpec is the part of the spec the sandbox acts on. Init gets the
// whole spec; decoding it here too cost the sandbox 0.3 ms of CPU.
type sandboxSpec struct {
	NetMode string
	Publish bool
	Fuse    *fuseSpec `json:",omitempty"` // a root that fuse-overlayfs serves (fuse.go)
}

func sandboxMain(ch *userns.Channel) int {
	sb := &sandbox{ch: ch, stateDir: os.Getenv(envStateDir), trace: stageTracer()}
	sb.ppid, _ = strconv.Atoi(os.Getenv(envPpid))
	// The parent's death arrives as SIGTERM (Pdeathsig). Other signals are
	// the parent's to forward, not ours. signal.Notify takes 0.3-0.4 ms
	// (round trips with the runtime's signal thread), so it runs beside
	// init's start; until it is in place a SIGTERM ends the sandbox at once,
	// which is all parentGone does while no state exists (rabbitc writes it
	// once the payload runs, long after).
	notified := make(chan struct{})
	go func() {
		sigc := make(chan os.Signal, 8)
		signal.Notify(sigc, forwarded...)
		close(notified)
		for sig := range sigc {
			if sig == syscall.SIGTERM {
				sb.parentGone()
			}
		}
	}()
	sb.trace.mark("sandbox:hello")
	if err := userns.CheckCaps("sandbox"); err != nil {
		ch.SendError("sandbox", err, 0)
		return 125
	}
	// Init first: its Go runtime start is the longest step ahead, and it
	// needs nothing of the rest. The spec is waiting already (the parent
	// sends it right after the clone); after it the sandbox only sends on
	// the channel, so init can read it.
	var s sandboxSpec
	if err := sb.ch.WaitSpec(&s); err != nil {
		return 125
	}
	var fuse *fuseDaemon
	if s.Fuse != nil {
		var err error
		if fuse, err = openFuse(s.Fuse); err != nil {
			sb.ch.SendError("sandbox", err, 0)
			return 125
		}
		defer fuse.close()
	}
	p, err := sb.startInit(fuse)
	if err != nil {
		sb.ch.SendError("sandbox", err, 0)
		return 125
	}
	fail := func(err error) int {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		if err != nil {
			sb.ch.SendError("sandbox", err, 0)
		}
		return 125
	}
	if err := netns.PrepareNamespace(s.NetMode); err != nil {
		return fail(err)
	}
	// Re-armed now that the handler exists, and the parent looked at: one
	// that died before this point is caught here.
	<-notified
	if err := userns.SetPdeathsig(syscall.SIGTERM, sb.ppid); err != nil {
		sb.parentGone()
	}
	if err := sb.ch.SendChildHello(); err != nil {
		return fail(nil)
	}
	var pidfd *os.File
	if p.Pidfd() != nil {
		pidfd = p.Pidfd().File()
	}
	if err := sb.ch.SendInitStarted(p.Pid(), pidfd); err != nil {
		return fail(nil)
	}
	sb.ch.Close() // from here on init alone holds the child end
	if s.Publish {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go portfwd.ServeChild(ctx, os.NewFile(userns.PortFD, "portfwd"))
	}
	if fuse != nil {
		sb.serveFuse(p, fuse, os.NewFile(fuseReportFD, "fuse-report"))
	}
	<-p.Done()
	sb.trace.mark("sandbox:init-exited")
	sb.trace.cpu("sandbox", syscall.RUSAGE_SELF)
	sb.trace.cpu("init+payload", syscall.RUSAGE_CHILDREN)
	if sb.dying.Load() {
		select {} // parentGone is cleaning up and exits
	}
	return p.ExitCode()
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
		removeState(sb.stateDir)
	}
	os.Exit(137)
}

// startInit starts stage 2 from the protected binary in new mount, PID,
// UTS, IPC and (where the kernel has it) cgroup namespaces; with fuse,
// init gets the device to mount and the pipe to say it did.
func (sb *sandbox) startInit(fuse *fuseDaemon) (*userns.Process, error) {
	exe, err := userns.ProtectExe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "init", "container")
	cmd.ExtraFiles = []*os.File{sb.ch.File()}
	if fuse != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, fuse.initFiles()...) // fuseDevFD, fuseMountedFD
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Init takes everything from the spec; its environment is only for its
	// own runtime, never the payload's.
	cmd.Env = []string{"GOMAXPROCS=1"} // init is strictly sequential
	if sb.trace.on {
		cmd.Env = append(cmd.Env, envTrace+"="+os.Getenv(envTrace))
	}
	sb.trace.mark("sandbox:init-fork")
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC)
	if _, err := os.Stat("/proc/self/ns/cgroup"); err == nil {
		flags |= syscall.CLONE_NEWCGROUP
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	// From the main goroutine, locked to the main thread (main.go).
	p, err := userns.Start(cmd, syscall.SIGKILL)
	if err != nil {
		return nil, aboutHost(userns.CloneError(err))
	}
	sb.init.Store(p)
	return p, nil
}

// stageGOMAXPROCS fixes a stage's GOMAXPROCS in its environment. Without it
// every Go runtime start reads the cgroup's CPU limit (/proc/self/cgroup,
// mountinfo, cpu.max): 0.1 ms of CPU per stage on this machine, for a value
// the parent already knows.
func stageGOMAXPROCS() string {
	return "GOMAXPROCS=" + strconv.Itoa(runtime.GOMAXPROCS(0))
}
