package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/portfwd"
	"github.com/rabbitc/rabbitc/security"
	"github.com/rabbitc/rabbitc/userns"
)

// Internal environment of the sandbox.
const (
	envStateDir = "_RABBITC_STATE_DIR"
	envPpid     = "_RABBITC_PPID"
	envNetMode  = "_RABBITC_NET" // init without a sandbox: the --net mode (netns.PrepareNamespace)
)

// forwarded are the signals rabbitc passes on to the payload.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

func runContainer(o *runOptions, args []string) error {
	tr := newTracer(time.Now())
	mon := monitorOf(o) // rabbitc run -d's monitor, or nil
	image := o.rootfs == "" && len(args) > 0 && !o.noImage
	if o.detach && mon == nil && !image {
		return startDetached(o, args)
	}
	if image {
		// An image: pulled and unpacked by rabbitc-image before anything
		// starts, with its progress on the terminal (the CLI of run -d),
		// quietly and only from the store in the detached monitor.
		o.image, args = args[0], args[1:]
		if mon != nil {
			o.pull = "never"
		}
		r, err := resolveImage(o, mon != nil)
		if err != nil {
			return mon.failed(err)
		}
		o.resolved = r
	}
	if o.detach && mon == nil {
		return startDetached(o, append([]string{o.image}, args...))
	}
	if !o.detach && term.IsTerminal(0) && !o.tty && !o.interactive {
		o.tty, o.interactive = true, true // the seed's shell: behave as -it
	}
	s, err := newSpec(o, args, term.IsTerminal(0))
	if err != nil {
		return mon.failed(err)
	}
	if mon != nil {
		// Every path is absolute now: the monitor, which lives as long as
		// the container, keeps no directory of the caller's busy.
		os.Chdir("/")
	}
	tr.mark("spec")
	r := &runner{spec: s, opts: o, trace: tr, mon: mon, detached: mon != nil}
	code, err := r.run()
	if err != nil {
		err = mon.failed(err)
	}
	tr.mark("torn-down")
	tr.cpu("parent", syscall.RUSAGE_SELF)
	tr.cpu("children", syscall.RUSAGE_CHILDREN)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
}

// runner is the parent: it owns the order of the steps and their undo.
type runner struct {
	spec  *spec
	opts  *runOptions
	trace *tracer

	sigc       chan os.Signal
	pending    []os.Signal     // harmless signals that came during start-up, for the payload
	killedBy   atomic.Int32    // a signal that aborted the start-up
	child      *userns.Process // the sandbox, or init itself when noSandbox
	noSandbox  bool            // nothing published: rabbitc starts init directly
	watchdog   *watchdogStart  // without a sandbox: started while init sets up
	state      *state          // what state.json says, once written
	detached   bool            // the monitor of rabbitc run -d (detach.go)
	mon        *monitor        // its report to rabbitc run -d
	undo       []func()        // delete's steps, pushed as create goes
	ch         *userns.Channel // the sync channel to the sandbox and init
	portParent *os.File        // the forwarder's end of its socketpair, with --publish
	fuse       *fuseReport     // the sandbox's report on its fuse-overlayfs, for a root it serves
	notified   chan struct{}   // closed once signal.Notify is in place
	setupDone  chan struct{}   // hands the signals over from abortOnSignal to wait
	startMsg   *startSpec      // what init gets with Start
	dirMade    bool            // the state directory was made before the start (a name, a log)
	logPath    string          // a detached container's log
	exitCode   int             // how the container ended, for endState
	initPid    int
	init       *userns.Pidfd // init, PID 1 of the container: killing it ends the whole PID namespace
	config     []byte        // the spec as JSON: init's, and the state's config.json
	slirp      *netns.Slirp
	listeners  *portfwd.Listeners
	console    *console
	outputs    sync.WaitGroup // copies of the payload's output through pipes
	accel      accel          // network acceleration (netaccel.go)
}

// run is the container's life as an engine drives a runtime: create
// (everything up to init waiting in front of the payload: namespaces, maps,
// network, root), start (the payload runs, its state is recorded), wait
// (signals forwarded until it exits), delete (the undo stack, run in
// reverse, which leaves nothing of the container behind).
func (r *runner) run() (code int, err error) {
	defer r.delete()
	if err := r.create(); err != nil {
		return 0, r.setupErr(err)
	}
	if err := r.start(); err != nil {
		return 0, r.setupErr(err)
	}
	code, err = r.wait()
	if msg := r.fuse.read(); msg != "" && err == nil {
		err = fmt.Errorf("%s: the container was stopped", msg)
	}
	r.exitCode = code
	if err != nil {
		r.exitCode = 125
	}
	return code, err
}

// onDelete pushes an undo step; delete runs them last first.
func (r *runner) onDelete(f func()) { r.undo = append(r.undo, f) }

func (r *runner) delete() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
}

// create makes the container: every step up to init waiting for Start.
func (r *runner) create() error {
	r.notifySignals()
	r.onDelete(func() {
		if r.listeners != nil {
			r.listeners.Close()
		}
	})
	// Only what the child's exec needs comes before it: the state
	// directory's path (the sandbox removes the directory if rabbitc dies),
	// and with a name or -d the directory itself.
	if err := planState(r.spec); err != nil {
		return aboutHost(err)
	}
	r.onDelete(r.endState) // after the container is gone
	if err := r.makeStateDir(); err != nil {
		return err
	}
	if dir := r.spec.ContainerDir; dir != "" {
		if err := makeContainerDir(dir, r.spec.copyLower != nil); err != nil {
			return err
		}
		r.onDelete(func() {
			if r.autoRemove() {
				removeContainerDir(dir)
			}
		})
		if err := r.copyImage(); err != nil {
			return err
		}
	}
	if err := r.spawn(); err != nil {
		return err
	}
	// Until Start, a terminating signal aborts the start-up.
	r.setupDone = make(chan struct{})
	r.onDelete(func() { close(r.setupDone) })
	go r.abortOnSignal(r.setupDone)
	feat, err := r.mapAndPrepare()
	if err != nil {
		return err
	}
	if err := r.startNetwork(feat); err != nil {
		return err
	}
	if err := r.sendInit(); err != nil {
		return err
	}
	return r.waitInitReady()
}

// copyImage makes the container's root a copy of the image's layers, with
// the vfs storage driver (once, here: it takes time and space), saying so
// unless the user asked for it.
func (r *runner) copyImage() error {
	s := r.spec
	if s.copyLower == nil {
		return nil
	}
	if s.storage.warning != "" {
		fmt.Fprintf(os.Stderr, "rabbitc: warning: %s\n", s.storage.warning)
	}
	if err := copyImage(s.OCI.Root.Path, s.copyLower); err != nil {
		return fmt.Errorf("copy the image %s into the container (storage driver vfs): %w", s.ImageRef, err)
	}
	r.trace.mark("image-copied")
	return nil
}

// notifySignals starts catching the signals rabbitc forwards.
// signal.Notify takes 0.3-0.4 ms here (a round trip with the runtime's
// signal thread for each signal), so it runs beside the start-up and is
// waited for only before Start. A signal that comes before it is in place
// has its default effect, as one before main would: rabbitc dies, and what
// it started is cleaned up as after a kill -9 (the sandbox or the watchdog
// end the container). No signal.Stop at the end: it would cost the same
// again, and rabbitc exits right after run returns.
func (r *runner) notifySignals() {
	r.sigc = make(chan os.Signal, 32)
	r.notified = make(chan struct{})
	go func() {
		signal.Notify(r.sigc, forwarded...)
		close(r.notified)
	}()
}

// spawn starts the stage below rabbitc (startChild) with the sync channel
// and, with --publish, the forwarder's socketpair.
func (r *runner) spawn() error {
	ch, syncChild, err := userns.NewChannelPair()
	if err != nil {
		return err
	}
	r.ch = ch
	r.onDelete(func() { ch.Close() })
	var portChild *os.File
	if len(r.spec.Publish) > 0 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			syncChild.Close()
			return fmt.Errorf("socketpair: %w", err)
		}
		r.portParent, portChild = os.NewFile(uintptr(fds[0]), "portfwd"), os.NewFile(uintptr(fds[1]), "portfwd-child")
		r.onDelete(func() { r.portParent.Close() })
	}
	err = r.startChild(syncChild, portChild)
	syncChild.Close()
	if portChild != nil {
		portChild.Close()
	}
	if err != nil {
		return err
	}
	r.onDelete(r.stopChild)
	r.trace.mark("child-started")
	return nil
}

// mapAndPrepare writes the uid/gid maps while the child starts and rabbitc
// checks and prepares the rest. The maps are the longest step of the
// start-up, and the child needs none for its own work (it has its
// capabilities as ambient ones): they are written while it starts (and the
// sandbox starts init). A check that fails still ends the start-up before
// the payload exists, with nothing left behind: the child is killed and
// newuidmap waited for. Init gets its spec, and touches files, only once
// the maps are in place.
func (r *runner) mapAndPrepare() (*netns.Features, error) {
	type mapsResult struct {
		maps userns.Maps
		err  error
	}
	mapsc := make(chan mapsResult, 1)
	go func() {
		m, err := userns.WriteMaps(r.child.Pid(), userns.CurrentConfig())
		mapsc <- mapsResult{m, err}
	}()
	feat, err := r.prepareBesideMaps()
	if err != nil {
		r.child.Signal(syscall.SIGKILL)
		<-mapsc
		return nil, err
	}
	mr := <-mapsc
	if mr.err != nil {
		return nil, aboutHost(mr.err)
	}
	if mr.maps.Warning != "" {
		fmt.Fprintf(os.Stderr, "rabbitc: warning: %s%s\n", mr.maps.Warning, doctorHint)
	}
	r.trace.mark("maps-written")
	return feat, nil
}

// prepareBesideMaps is what runs while the maps are written: the sandbox's
// spec, the parent's checks, init's spec encoded, and the child's hello.
func (r *runner) prepareBesideMaps() (*netns.Features, error) {
	s := r.spec
	if !r.noSandbox {
		if err := r.ch.SendSpec(sandboxSpec{NetMode: s.Net.Mode, Publish: len(s.Publish) > 0, Fuse: s.fuseSpec()}); err != nil {
			return nil, err
		}
	}
	feat, err := r.prepare()
	if err != nil {
		return nil, err
	}
	if r.config, err = json.Marshal(s.forInit()); err != nil { // now, while nothing waits for it
		return nil, err
	}
	r.trace.mark("prepared")
	return feat, r.ch.WaitChildHello()
}

// startNetwork starts slirp4netns, which comes up while the sandbox and
// init prepare.
func (r *runner) startNetwork(feat *netns.Features) error {
	if r.spec.Net.Mode != netns.ModeSlirp {
		return nil
	}
	if feat.Warning != "" {
		fmt.Fprintf(os.Stderr, "rabbitc: warning: %s\n", feat.Warning)
	}
	var err error
	if r.slirp, err = netns.StartSlirp(r.child.Pid(), r.spec.Net, feat); err != nil {
		return err
	}
	r.onDelete(func() { r.slirp.Stop() })
	return nil
}

// sendInit sends init its spec, once the maps are written, and prepares
// what comes meanwhile: the watchdog, the seccomp program for Start.
func (r *runner) sendInit() error {
	var err error
	if r.noSandbox {
		r.initPid, r.init = r.child.Pid(), r.child.Pidfd()
	} else if r.initPid, r.init, err = r.ch.WaitInitStarted(); err != nil {
		return err
	}
	if err := r.ch.SendSpec(json.RawMessage(r.config)); err != nil {
		return err
	}
	r.trace.mark("init-started")
	// The watchdog starts while init sets up the root, on the CPU rabbitc
	// leaves idle meanwhile; it must be there before the payload.
	if r.noSandbox {
		r.watchdog = startWatchdogAsync(r.guardedState(), r.init)
	}
	if r.filterAtStart() {
		// Compiled while init sets up the root: init needs the program only
		// after Start, and here it costs nothing in front of the maps.
		sec := r.spec.securityConfig()
		if err := sec.Compile(); err != nil {
			return err
		}
		r.startMsg = &startSpec{Filter: sec.Filter, FilterFlags: sec.FilterFlags}
	}
	r.compileNetFilter() // as the profile, while init sets up
	return nil
}

// waitInitReady waits until init has set up the root, then starts what
// serves the running container: slirp4netns ready, the listeners, the
// console.
func (r *runner) waitInitReady() error {
	master, err := r.ch.WaitInitReady()
	if err != nil {
		return err
	}
	r.trace.mark("init-ready")
	r.readNetns()
	if r.slirp != nil {
		if err := r.slirp.WaitReady(context.Background()); err != nil {
			if master != nil {
				master.Close()
			}
			return aboutHost(err)
		}
		r.trace.mark("slirp-ready")
	}
	if r.listeners != nil {
		r.listeners.Serve(context.Background(), r.portParent, netns.ContainerIP)
	}
	if master != nil {
		if r.console, err = startConsole(master, r.opts.interactive); err != nil {
			return err
		}
		r.onDelete(func() { r.console.Close() })
	}
	return nil
}

// start lets init exec the payload and records the running container.
func (r *runner) start() error {
	// From Start on, signals wait in r.sigc until wait forwards them to the
	// payload: one that arrives while init is still execing is delivered
	// right after, instead of aborting a container that is already running.
	<-r.notified
	// No payload before its guard: without a sandbox, the watchdog is what
	// ends the container should rabbitc be killed (the payload may clear
	// the parent-death signal init had). Its fork is long done by now.
	if r.watchdog != nil {
		if _, err := r.watchdog.get(); err != nil {
			return err
		}
	}
	r.setupDone <- struct{}{}
	if r.killedBy.Load() != 0 {
		return errors.New("killed")
	}
	r.addNetFilter()
	if err := r.ch.SendStart(r.startMsg); err != nil {
		return err
	}
	if err := r.startNetAccel(); err != nil {
		return err
	}
	if err := r.ch.WaitExec(); err != nil {
		return err
	}
	r.trace.mark("payload-started")
	if err := r.recordState(); err != nil {
		return err
	}
	r.mon.started()
	return nil
}

// recordState writes the state of the running container (without a
// sandbox, the watchdog is there to end the container and remove it should
// rabbitc die). For a foreground container it is best effort: a full disk
// must not stop a running container, so a failure is a warning. A detached
// one cannot do without: its state is all there is of it. The state comes
// only now: a foreground start-up that fails or is killed has nothing on
// disk to clean up, and writes nothing on the host.
func (r *runner) recordState() error {
	st := &state{Name: r.opts.name, Detached: r.detached, AutoRemove: r.autoRemove(), Ports: r.publishedPorts(),
		Log: r.logPath, InitPid: r.initPid, Image: r.spec.Image, ImageRef: r.spec.ImageRef, ContainerDir: r.spec.ContainerDir,
		StopSignal: r.spec.StopSignal}
	if !r.detached {
		select {
		case <-r.child.Done():
			return nil // the container is over already
		default:
		}
	}
	// Read while init's pidfd says it lives, so the pid is not a reused one.
	st.InitTime = procStartTime(r.initPid)
	if r.init != nil && r.init.Exited() {
		if !r.detached {
			return nil
		}
		st.InitTime = 0
	}
	config := r.config
	if r.spec.forInit() != r.spec { // init's lacks the seccomp profile, the state's has it
		var err error
		if config, err = json.Marshal(r.spec); err != nil {
			return err
		}
	}
	if err := createState(r.spec, config, r.filter(), st); err != nil {
		if r.detached {
			return err
		}
		fmt.Fprintf(os.Stderr, "rabbitc: warning: container %s runs without a state: %v\n", r.spec.ID, err)
		return nil
	}
	r.state = st
	r.trace.mark("state-created")
	return nil
}

// publishedPorts are the ports for ps and inspect: -p as given, and -P's
// with the host ports the kernel chose.
func (r *runner) publishedPorts() []string {
	ports := append([]string(nil), r.opts.publish...)
	if r.listeners != nil {
		for _, sp := range r.listeners.Specs()[:r.spec.exposed] { // -P's come first
			ports = append(ports, sp.String())
		}
	}
	return ports
}

// makeStateDir makes the state directory before the start where it is
// needed then: a name is claimed with it, and a detached container's log
// lives in it.
func (r *runner) makeStateDir() error {
	dir := r.spec.StateDir
	if r.opts.name != "" {
		if err := reserveName(filepath.Dir(dir), dir, r.opts.name); err != nil {
			return err
		}
		r.dirMade = true
	}
	if r.detached && !r.dirMade {
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("create state directory %s: %w", dir, err)
		}
		r.dirMade = true
	}
	return nil
}

// guardedState is the state directory that the sandbox or the watchdog
// removes should rabbitc die: none for a detached container that is kept,
// whose state then shows it exited.
func (r *runner) guardedState() string {
	if r.autoRemove() {
		return r.spec.StateDir
	}
	return ""
}

// autoRemove tells whether the container's state goes when it ends: always
// in the foreground, with --rm when detached.
func (r *runner) autoRemove() bool { return !r.detached || r.opts.rm > 0 }

// endState removes the state at the end, or for a detached container
// that is kept records how it ended; and ends the watchdog.
func (r *runner) endState() {
	switch {
	case r.state == nil && r.dirMade:
		removeState(r.spec.StateDir) // made for a name or a log; the start-up failed
	case r.state == nil:
	case r.autoRemove():
		removeState(r.spec.StateDir)
	default:
		r.state.Status, r.state.ExitCode, r.state.Finished = statusExited, r.exitCode, time.Now().UTC()
		if err := writeState(r.spec.StateDir, r.state); err != nil {
			fmt.Fprintf(os.Stderr, "rabbitc: warning: container %s: record its exit: %v\n", r.spec.ID, err)
		}
	}
	if r.watchdog != nil {
		if w, _ := r.watchdog.get(); w != nil {
			w.stop()
		}
	}
}

// prepare does the parent's own checks and preparation, which run while the
// child starts: slirp4netns's features, the host listeners, the seccomp
// program, and old state directories.
func (r *runner) prepare() (*netns.Features, error) {
	s := r.spec
	var feat *netns.Features
	var err error
	if s.Net.Mode == netns.ModeSlirp {
		if feat, err = netns.Check(s.Net); err != nil {
			return nil, aboutHost(err) // s.Net was validated by newSpec
		}
	}
	r.prepareNetAccel()
	if err := r.checkDirect(); err != nil {
		return nil, err
	}
	if len(s.Publish) > 0 {
		if r.listeners, err = r.listenConfig().Listen(s.Publish); err != nil {
			if errors.Is(err, syscall.EACCES) { // net.ipv4.ip_unprivileged_port_start
				err = aboutHost(err)
			}
			return nil, err
		}
	}
	if !r.filterAtStart() {
		sec := s.securityConfig()
		if err := sec.Compile(); err != nil {
			return nil, err
		}
		s.Filter, s.FilterFlags = sec.Filter, sec.FilterFlags
	}
	gcStates(filepath.Dir(s.StateDir))
	if s.ContainerDir != "" {
		gcContainerDirs(filepath.Dir(s.StateDir))
	}
	return feat, nil
}

// filterAtStart tells whether the seccomp program is compiled after init
// got its spec and travels with Start (0.3 ms of CPU taken out of the
// start-up's busiest stretch, where init, newuidmap and newgidmap share the
// CPUs with rabbitc). Only with no_new_privs: without it init loads the
// filter before it drops its capabilities, before Start. A profile file is
// compiled at once anyway, so that a bad one fails before anything starts.
func (r *runner) filterAtStart() bool {
	return r.spec.OCI.Process.NoNewPrivileges && r.spec.Filter == nil
}

// filter is the compiled seccomp program, for the state (filterFile).
func (r *runner) filter() *security.Config {
	if r.startMsg != nil && r.startMsg.Filter != nil {
		return &security.Config{Filter: r.startMsg.Filter, FilterFlags: r.startMsg.FilterFlags}
	}
	return &security.Config{Filter: r.spec.Filter, FilterFlags: r.spec.FilterFlags}
}

// startChild starts the stage below rabbitc in a new user namespace: the
// sandbox (stage 1) in new user and network namespaces, which starts init;
// or, when nothing is published, init itself.
//
// The sandbox exists for the port forwarder: it dials from inside the
// container's network namespace but outside its PID namespace. Without
// --publish it would only be a Go runtime start (2-3 ms) and an exit in
// front of init, so rabbitc clones init into new user and PID namespaces
// itself, and init makes the others (userns.UnshareContainer). What the
// sandbox also did, removing the state when rabbitc is killed, a watchdog
// does beside the container (startWatchdog). Init needs no protected binary
// here (userns.ProtectExe): it runs the binary only until it execs the
// payload, and no process of the container exists before that.
func (r *runner) startChild(syncChild, portChild *os.File) error {
	// A fuse-overlayfs root is served by the sandbox's child (fuse.go).
	r.noSandbox = len(r.spec.Publish) == 0 && (r.spec.Overlay == nil || r.spec.Overlay.Fuse == nil)
	stage, pdeathsig := "sandbox", syscall.SIGTERM // the sandbox cleans up, then exits
	// The sandbox has a mount namespace of its own only to protect the
	// binary (userns.ProtectExe); init makes the container's.
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS)
	if r.spec.Net.Mode != netns.ModeHost {
		flags |= syscall.CLONE_NEWNET
	}
	if r.noSandbox {
		stage, pdeathsig = "direct", syscall.SIGKILL
		flags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID
	}
	cmd := exec.Command("/proc/self/exe", "init", stage)
	cmd.ExtraFiles = []*os.File{syncChild, portChild} // fds 3 and 4
	// The sandbox reports on its fuse-overlayfs daemon (fuse.go).
	if r.spec.fuseSpec() != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		r.fuse = &fuseReport{pr}
		r.onDelete(func() { pr.Close() })
		defer pw.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, pw) // fuseReportFD
	}
	if r.noSandbox {
		// Init's environment is only for its own runtime, never the payload's.
		cmd.Env = []string{"GOMAXPROCS=1", envNetMode + "=" + r.spec.Net.Mode} // init is strictly sequential
	} else {
		cmd.Env = append(os.Environ(), envStateDir+"="+r.guardedState(), envPpid+"="+strconv.Itoa(os.Getpid()))
		if os.Getenv("GOMAXPROCS") == "" {
			cmd.Env = append(cmd.Env, stageGOMAXPROCS())
		}
	}
	if r.trace.on {
		cmd.Env = append(cmd.Env, envTrace+"="+strconv.FormatInt(r.trace.start.UnixNano(), 10))
	}
	// Its own process group: a ^C on the terminal reaches rabbitc, which
	// forwards it, and not every stage at once. Init makes a session of its
	// own (setupStdio), which a group leader cannot.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setpgid: !r.noSandbox, AmbientCaps: userns.AmbientCaps()}
	if !r.noSandbox {
		// Init is the sandbox's child: should the sandbox be killed, init
		// comes to rabbitc, which kills and reaps it (killInit) instead of
		// leaving a zombie to a PID 1 that may not reap.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl PR_SET_CHILD_SUBREAPER: %w", err)
		}
	}
	childEnds, err := r.stdio(cmd)
	if err != nil {
		return err
	}
	r.trace.mark("child-fork")
	// From the main goroutine, locked to the main thread (main.go).
	p, err := userns.Start(cmd, pdeathsig)
	for _, f := range childEnds {
		f.Close()
	}
	if err != nil {
		return aboutHost(userns.CloneError(err))
	}
	r.child = p
	return nil
}

// stdio wires the payload's standard streams: into the log when detached
// (logStdio), else as wireStdio says.
func (r *runner) stdio(cmd *exec.Cmd) ([]*os.File, error) {
	if r.detached {
		return r.logStdio(cmd)
	}
	return wireStdio(cmd, r.spec.OCI.Process.Terminal, r.opts.interactive, &r.outputs)
}

// wireStdio wires the standard streams of a stage whose command runs in the
// container (the payload, or exec's command) and returns the pipe ends to
// close once the stage has started. Without -i stdin is /dev/null, as in
// docker. A host terminal is never handed to the container as such: with -t
// the command talks to a pty of the container's own; without -t a terminal
// stream goes through a pipe that rabbitc copies. The copy from a terminal
// is never waited for (a read on it only ends with the user's next key);
// the copies of output are, in outputs, until the last writer in the
// container is gone.
func wireStdio(cmd *exec.Cmd, tty, interactive bool, outputs *sync.WaitGroup) ([]*os.File, error) {
	if tty {
		cmd.Stderr = os.Stderr // only stage errors before the stage takes the pty
		return nil, nil
	}
	var childEnds []*os.File
	if interactive {
		cmd.Stdin = os.Stdin
		if term.IsTerminal(0) {
			pr, pw, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			cmd.Stdin, childEnds = pr, append(childEnds, pr)
			go func() {
				io.Copy(pw, os.Stdin)
				pw.Close()
			}()
		}
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	for _, out := range []struct {
		host *os.File
		dst  *io.Writer
	}{{os.Stdout, &cmd.Stdout}, {os.Stderr, &cmd.Stderr}} {
		if !term.IsTerminal(int(out.host.Fd())) {
			continue
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		*out.dst, childEnds = pw, append(childEnds, pw)
		outputs.Add(1)
		go func(host *os.File) {
			defer outputs.Done()
			io.Copy(host, pr)
			pr.Close()
		}(out.host)
	}
	return childEnds, nil
}

// abortOnSignal kills the child (and so everything below it) when a
// terminating signal arrives during start-up; the blocked step then fails.
// Other signals are kept for the payload. A value on done hands the signals
// over to wait.
func (r *runner) abortOnSignal(done chan struct{}) {
	for {
		select {
		case <-done:
			return
		case sig := <-r.sigc:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
				r.killedBy.Store(int32(sig.(syscall.Signal)))
				r.child.Signal(syscall.SIGKILL)
			default:
				r.pending = append(r.pending, sig)
			}
		}
	}
}

// setupErr turns a failed step into the error to print: when the step
// failed because a signal aborted the start-up, that is all there is to say.
func (r *runner) setupErr(err error) error {
	if sig := r.killedBy.Load(); sig != 0 {
		return &exitError{128 + int(sig)}
	}
	if msg := r.fuse.read(); msg != "" {
		return errors.New(msg) // why init ended
	}
	return err
}

// wait forwards signals to the payload until the sandbox (or init) exits,
// and returns the payload's exit code. The container never outlives its
// guards: should the sandbox or the watchdog be killed, rabbitc ends the
// container rather than leave it to a parent-death signal the payload may
// have cleared.
func (r *runner) wait() (int, error) {
	var slirpDone, watchdogDone <-chan struct{}
	accelDone := r.accel.done
	if r.slirp != nil {
		slirpDone = r.slirp.Done()
	}
	if r.watchdog != nil {
		if w, _ := r.watchdog.get(); w != nil {
			watchdogDone = w.done
		}
	}
	for _, sig := range r.pending {
		r.forward(sig)
	}
	var killTimer <-chan time.Time
	for {
		select {
		case <-r.child.Done():
			r.trace.mark("child-exited")
			if !r.noSandbox {
				r.killInit() // nothing to kill, unless the sandbox was killed
			}
			r.waitOutputs()
			if ps := r.child.Cmd.ProcessState; !r.noSandbox && ps != nil && !ps.Exited() {
				return 0, fmt.Errorf("the sandbox (pid %d) was killed (%v): the container was stopped", r.child.Pid(), ps)
			}
			return r.child.ExitCode(), nil
		case sig := <-r.sigc:
			r.forward(sig)
			if (sig == syscall.SIGTERM || sig == syscall.SIGINT) && killTimer == nil && r.opts.stopTimeout >= 0 {
				killTimer = time.After(time.Duration(r.opts.stopTimeout) * time.Second)
			}
		case <-killTimer:
			r.signalInit(syscall.SIGKILL)
		case <-slirpDone:
			r.killInit()
			<-r.child.Done()
			return 0, fmt.Errorf("slirp4netns exited under the running container: %v", r.slirp.Err())
		case <-watchdogDone:
			r.killInit()
			<-r.child.Done()
			return 0, errors.New("the watchdog was killed: the container was stopped (nothing would have ended it had rabbitc been killed)")
		case err := <-accelDone:
			accelDone = nil // nil: the container's last task has gone
			if err != nil {
				r.killInit()
				<-r.child.Done()
				return 0, fmt.Errorf("network acceleration: %w: the container was stopped (its connects would have failed; --net-accel=off runs it without)", err)
			}
		}
	}
}

// forward passes a signal to the payload; with a pty, a window change is
// the pty's to announce.
func (r *runner) forward(sig os.Signal) {
	if sig == syscall.SIGWINCH && r.console != nil {
		r.console.resize()
		return
	}
	r.signalInit(sig.(syscall.Signal))
}

// signalInit signals init, the payload, through its pidfd (so never a
// process that reused its pid), or by pid where the kernel has no pidfds.
func (r *runner) signalInit(sig syscall.Signal) {
	if r.init != nil {
		r.init.Signal(sig)
	} else if r.initPid > 0 {
		unix.Kill(r.initPid, sig)
	}
}

// killInit kills init, and with it every process of the container's PID
// namespace, and waits until they are gone. Should the sandbox have died
// first, init was reparented to rabbitc (a child subreaper with a sandbox,
// see startChild), which reaps it here.
func (r *runner) killInit() {
	if r.init == nil {
		r.signalInit(syscall.SIGKILL)
		return
	}
	r.init.Kill(5 * time.Second)
	if !r.noSandbox {
		r.init.Reap()
	}
}

// waitOutputs lets the copies of the payload's output finish (waitCopies).
func (r *runner) waitOutputs() { waitCopies(&r.outputs) }

// waitCopies lets the copies of a command's output finish, bounded in case
// something outside the container still holds the pipe.
func waitCopies(outputs *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { outputs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// stopChild makes sure nothing of the container outlives the parent's
// return: init first (through its pidfd: the payload may have cleared the
// parent-death signal that would end it with the sandbox), then the
// sandbox.
func (r *runner) stopChild() {
	select {
	case <-r.child.Done():
		if !r.noSandbox && r.init != nil && !r.init.Exited() {
			r.killInit()
		}
		return
	default:
	}
	if r.init != nil {
		r.killInit()
	}
	r.child.Signal(syscall.SIGKILL)
	<-r.child.Done()
}
