package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/nsenter"
	"github.com/rabbitc/rabbitc/security"
	"github.com/rabbitc/rabbitc/userns"
)

// `rabbitc exec` runs a command in a running container, in two processes:
//
//	rabbitc exec  the container's state, a pidfd of its init, which namespaces to
//	              join; starts the stage, sends it the spec, forwards signals, waits
//	exec stage    `rabbitc init exec FLAGS`: before the Go runtime starts, the nsenter
//	              entry point joins the namespaces and forks; its child (execMain)
//	              sets the command up as init does the payload, and execs it
//
// The stage's parent, outside the container's PID namespace, waits for the
// command and exits with its status, which rabbitc exec returns.

// execOptions are the flags of `rabbitc exec`.
type execOptions struct {
	interactive bool
	tty         bool
	detach      bool
	env         []string
	envFiles    []string
	workdir     string
	user        string

	// The OCI exec's (ociexec.go).
	consoleSocket string // the pty master goes there
	pidFile       string
	keepStdio     bool // -d keeps rabbitc's stdio (the engine's) for the command
}

// execSpec is what the exec stage gets: the command, and the settings of
// the container (its config.json) that it runs under.
type execSpec struct {
	Args     []string
	Env      []string
	Cwd      string
	User     string
	Groups   []uint32 `json:",omitempty"` // the runtime spec's additionalGids
	Tty      bool
	Security security.Config     // with the seccomp program compiled, or
	FilterFD bool                // the program comes on filterFD instead
	Rlimits  []specs.POSIXRlimit `json:",omitempty"`
}

// filterFD is where the exec stage inherits the container's compiled
// seccomp program (filterFile), which it reads as it is: rabbitc exec
// neither reads it nor sends it as 7.7 kB of base64 in the spec.
const filterFD = nsenter.PidFD + 1

func newExecCommand() *cobra.Command {
	o := &execOptions{}
	cmd := &cobra.Command{
		Use:   "exec [flags] CONTAINER CMD [ARGS...]",
		Short: "Run a command in a running container",
		Example: "  rabbitc exec -it 3f2a1c sh\n" +
			"  rabbitc exec -u 1000 -w /tmp 3f2a1c ls -l",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return errors.New("exec needs a container and a command (see rabbitc exec --help)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return execContainer(o, args[0], args[1:]) },
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false) // the command's own flags are its own
	fs.BoolVarP(&o.interactive, "interactive", "i", false, "keep stdin attached")
	fs.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-terminal")
	fs.BoolVarP(&o.detach, "detach", "d", false, "run the command in the background: return once it runs")
	fs.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone copies the host's)")
	fs.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a file of KEY=VALUE lines (before --env)")
	fs.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container (default: the container's)")
	fs.StringVarP(&o.user, "user", "u", "", "UID[:GID] or NAME[:GROUP] to run as (default: the container's user)")
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}

// check validates the flags that need nothing but themselves.
func (o *execOptions) check() error {
	if o.detach && (o.tty || o.interactive) {
		return errors.New("exec: -d runs the command in the background, without a terminal or stdin (drop -t and -i)")
	}
	if o.workdir != "" && !strings.HasPrefix(o.workdir, "/") {
		return fmt.Errorf("--workdir %s: not an absolute path", o.workdir)
	}
	if o.user != "" {
		if err := checkUser(o.user); err != nil {
			return err
		}
	}
	_, err := applyEnvFlags(nil, o.env)
	return err
}

// execer is rabbitc exec: it owns the stage and the order of the steps.
type execer struct {
	opts    *execOptions
	trace   *tracer
	ch      *userns.Channel
	stage   *exec.Cmd
	done    chan struct{} // closed once the stage has been waited for
	cmd     *userns.Pidfd // the command, once the stage is about to exec it
	console *console
	outputs sync.WaitGroup // copies of the command's output through pipes
	plan    *execPlan      // what the stage's child runs, nil the Go way
}

func execContainer(o *execOptions, id string, args []string) error {
	if err := o.check(); err != nil {
		return err
	}
	st, init, flags, err := findTarget(id)
	if err != nil {
		return err
	}
	return execIn(o, execTarget{dir: st.dir, init: init, flags: flags}, func(hasFilter bool) (*execSpec, error) {
		return newExecSpec(st.dir, o, args, hasFilter)
	})
}

// execTarget is the container an exec joins: its state directory (the
// seccomp program), a pidfd of its init and the namespaces to join.
type execTarget struct {
	dir   string
	init  *userns.Pidfd
	flags uintptr
}

// execIn runs a command in the target container; makeSpec makes the
// stage's spec (hasFilter: the stage gets the container's seccomp program
// on filterFD).
func execIn(o *execOptions, t execTarget, makeSpec func(hasFilter bool) (*execSpec, error)) error {
	defer t.init.Close()
	x := &execer{opts: o, trace: newTracer(time.Now())}
	if !nsenter.Linked() {
		return fmt.Errorf("exec: this rabbitc was built without its entry point (build it with make build, or go build -ldflags '%s')", nsenter.BuildFlag)
	}
	x.trace.mark("exec:found")
	filter, err := openFilter(t.dir)
	if err != nil {
		return err
	}
	if filter != nil {
		defer filter.Close()
	}
	if err := x.start(t.init, t.flags, filter); err != nil {
		return err
	}
	defer x.ch.Close()
	var sigc chan os.Signal
	if !o.detach {
		// signal.Notify takes 0.3-0.4 ms: beside the stage's start, as in
		// run. Until it is in place a signal has its default effect on
		// rabbitc exec, and the stage then fails to reach it.
		sigc = make(chan os.Signal, 32)
		go signal.Notify(sigc, forwarded...)
	}
	// The spec is made while the stage's runtime starts.
	s, err := makeSpec(filter != nil)
	if err != nil {
		return x.abort(err)
	}
	if err := x.send(s, t, filter); err != nil {
		return x.abort(err)
	}
	return x.attach(sigc)
}

// send gives the stage's child its plan (execplan.go) or, for what a plan
// cannot express, the Go marker and the spec, for execMain.
func (x *execer) send(s *execSpec, t execTarget, filter *os.File) error {
	fd := int(x.ch.File().Fd())
	plan, why := planFor(s, t.flags, filter)
	if plan != nil {
		plan.isDir = inRootIsDir(t.init.File())
		b, err := plan.p.Encode()
		if err == nil {
			if _, err := unix.Write(fd, b); err != nil {
				return fmt.Errorf("send the exec plan: %w", err)
			}
			x.plan = plan
			x.trace.mark("exec:plan-sent")
			return nil
		}
		why = err.Error()
	}
	if x.trace.on {
		fmt.Fprintf(os.Stderr, "rabbitc-trace: the exec stage runs Go: %s\n", why)
	}
	if _, err := unix.Write(fd, nsenter.GoMarker()); err != nil {
		return fmt.Errorf("send the exec spec: %w", err)
	}
	if err := x.ch.SendSpec(s); err != nil {
		return err
	}
	x.trace.mark("exec:spec-sent")
	return nil
}

// planFailure takes a failure record off the channel, if the next packet
// is one, and returns its error; nil otherwise, for the channel's reader.
func (x *execer) planFailure() error {
	if x.plan == nil {
		return nil
	}
	fd := int(x.ch.File().Fd())
	b := make([]byte, 16)
	for {
		n, _, _, _, err := unix.Recvmsg(fd, b, nil, unix.MSG_PEEK)
		if err == unix.EINTR {
			continue
		}
		if err != nil || !nsenter.IsFailure(b[:n]) {
			return nil
		}
		break
	}
	n, _, _, _, err := unix.Recvmsg(fd, b, nil, 0)
	step, errno, ok := nsenter.ParseFailure(b[:n])
	if err != nil || !ok {
		return fmt.Errorf("receive the exec stage's failure: %v", err)
	}
	return x.plan.failure(step, errno)
}

// findTarget finds a running container by its ID (or a prefix), a pidfd
// of its init and the namespaces to join (joinFlags).
func findTarget(id string) (state, *userns.Pidfd, uintptr, error) {
	st, err := findState(id)
	if err != nil {
		return st, nil, 0, err
	}
	init, err := openChecked(st.InitPid, st.InitTime)
	if err != nil {
		return st, nil, 0, fmt.Errorf("exec %s: %w", st.ID[:12], err)
	}
	if init == nil {
		return st, nil, 0, notRunning(st)
	}
	flags, err := joinFlags(st.InitPid)
	// Checked after the namespaces were read: they are init's, not those of
	// a process that reused its pid.
	if init.Exited() {
		err = notRunning(st)
	}
	if err != nil {
		init.Close()
		return st, nil, 0, err
	}
	return st, init, flags, nil
}

// attach waits for the stage to have set the command up, takes its pty
// with -t, and waits for it to exec; then, unless detached, forwards
// signals and returns the command's exit status.
func (x *execer) attach(sigc <-chan os.Signal) error {
	if err := x.planFailure(); err != nil {
		return x.abort(err)
	}
	cmd, master, err := x.ch.WaitExecReady()
	if err != nil {
		return x.abort(err)
	}
	x.cmd = cmd
	defer cmd.Close()
	if master != nil && x.opts.consoleSocket != "" {
		err := sendConsole(x.opts.consoleSocket, master)
		master.Close()
		if err != nil {
			return x.abort(err)
		}
	} else if master != nil {
		if x.console, err = startConsole(master, x.opts.interactive); err != nil {
			master.Close()
			return x.abort(err)
		}
		defer x.console.Close()
	}
	if err := x.planFailure(); err != nil {
		return x.abort(err)
	}
	if err := x.ch.WaitExec(); err != nil {
		return x.abort(err)
	}
	x.trace.mark("exec:started")
	if x.opts.pidFile != "" {
		// The stage's pid: it is what the engine's subreaper gets once
		// rabbitc exec returns, and it exits with the command's status.
		if err := writePidFile(x.opts.pidFile, x.stage.Process.Pid); err != nil {
			return err
		}
	}
	if x.opts.detach {
		return nil // the stage goes on waiting for the command, in its own session
	}
	if code := x.wait(sigc); code != 0 {
		return &exitError{code}
	}
	return nil
}

func notRunning(st state) error {
	return fmt.Errorf("container %s is not running (its payload has exited; see rabbitc ps -a)", refOf(st))
}

// joinFlags names the namespaces of process pid (CLONE_NEW*) that rabbitc
// is not in already: setns refuses to join one's own user namespace, and a
// namespace the container shares with the host (--net host) is owned by the
// host's user namespace, which the stage has left by the time it joins it.
func joinFlags(pid int) (uintptr, error) {
	flags := uintptr(0)
	for _, ns := range []struct {
		name string
		flag uintptr
	}{
		{"user", unix.CLONE_NEWUSER}, {"mnt", unix.CLONE_NEWNS}, {"pid", unix.CLONE_NEWPID},
		{"uts", unix.CLONE_NEWUTS}, {"ipc", unix.CLONE_NEWIPC}, {"net", unix.CLONE_NEWNET},
		{"cgroup", unix.CLONE_NEWCGROUP},
	} {
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.name))
		if errors.Is(err, os.ErrNotExist) && ns.name == "cgroup" {
			continue // a kernel without cgroup namespaces
		}
		if err != nil {
			return 0, fmt.Errorf("read the container's namespaces: %w", err)
		}
		if ours, _ := os.Readlink("/proc/self/ns/" + ns.name); ours != theirs {
			flags |= ns.flag
		}
	}
	return flags, nil
}

// start starts the exec stage: /proc/self/exe with the arguments that make
// the entry point join the namespaces of init, whose pidfd it inherits, and
// the container's seccomp program, if there is one (filter).
func (x *execer) start(init *userns.Pidfd, flags uintptr, filter *os.File) error {
	ch, child, err := userns.NewChannelPair()
	if err != nil {
		return err
	}
	x.ch = ch
	defer child.Close()
	// The child waits for its plan, or for the Go marker (send).
	cmd := exec.Command("/proc/self/exe", nsenter.PlanArgs(flags)...)
	cmd.ExtraFiles = []*os.File{child, init.File()} // userns.SyncFD, nsenter.PidFD
	if filter != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, filter) // filterFD
	}
	// Its environment is its runtime's only, never the command's.
	cmd.Env = []string{"GOMAXPROCS=1"}
	if x.trace.on {
		cmd.Env = append(cmd.Env, envTrace+"="+fmt.Sprint(x.trace.start.UnixNano()))
	}
	// Nothing rabbitc exec inherited beyond 0-2 reaches the stage, which
	// keeps what it gets until it execs (a host directory would be a way
	// out of the container).
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	var ends []*os.File
	if x.opts.detach {
		// Stdio /dev/null (an engine's own with the OCI exec); a session of
		// its own, which outlives rabbitc exec.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if x.opts.keepStdio {
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		}
	} else {
		// Its own process group: a ^C on the terminal reaches rabbitc, which
		// forwards it to the command, and not the waiting parent.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if ends, err = wireStdio(cmd, x.opts.tty, x.opts.interactive, &x.outputs); err != nil {
			return err
		}
	}
	err = cmd.Start()
	for _, f := range ends {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("start the exec stage: %w", err)
	}
	x.stage, x.done = cmd, make(chan struct{})
	go func() {
		if x.opts.detach {
			// Never reaped here: a detached stage that ends before rabbitc
			// exec returns must stay a zombie for whoever inherits it (an
			// engine's subreaper waits for the pid file's pid and reads the
			// command's status from it).
			var info unix.Siginfo
			for unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
			}
		} else {
			cmd.Wait()
		}
		close(x.done)
	}()
	x.trace.mark("exec:stage-started")
	return nil
}

// newExecSpec makes the stage's spec from the container's config.json and
// the flags; the stage reads the compiled seccomp program on filterFD when
// hasFilter and config.json lacks it.
func newExecSpec(dir string, o *execOptions, args []string, hasFilter bool) (*execSpec, error) {
	s, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	p := s.OCI.Process
	env := p.Env
	if o.tty && !hasEnv(env, "TERM") {
		env = append(env, "TERM="+hostTerm())
	}
	lines, err := readEnvFiles(o.envFiles)
	if err != nil {
		return nil, err
	}
	if env, err = applyEnvFlags(env, append(lines, o.env...)); err != nil {
		return nil, err
	}
	sec := s.securityConfig()
	sec.Seccomp = nil // the program is compiled, or comes on filterFD
	es := &execSpec{Args: args, Env: env, Cwd: p.Cwd, User: s.userSpec(), Groups: p.User.AdditionalGids, Tty: o.tty,
		Security: sec, Rlimits: p.Rlimits}
	if o.workdir != "" {
		es.Cwd = o.workdir
	}
	if o.user != "" {
		es.User = o.user
	}
	if hasFilter {
		es.Security.Filter = nil
		es.FilterFD = true
		return es, nil
	}
	// Unconfined, or a state without the program: compiled here.
	es.Security.Seccomp = s.linux().Seccomp
	if err := es.Security.Compile(); err != nil {
		return nil, err
	}
	es.Security.Seccomp = nil
	return es, nil
}

// abort ends a start that failed and returns the error to print: the stage
// ends at the channel's EOF (the command, if it may run already, is
// killed), and is waited for, so nothing is left behind.
func (x *execer) abort(err error) error {
	x.ch.Close()
	if x.cmd != nil {
		x.cmd.Signal(syscall.SIGKILL)
	}
	select {
	case <-x.done:
	case <-time.After(5 * time.Second):
		x.stage.Process.Kill()
		<-x.done
	}
	if errors.Is(err, userns.ErrEOF) {
		return fmt.Errorf("the exec stage ended before the command ran (%v)", x.stage.ProcessState)
	}
	return err
}

// wait forwards signals to the command until the stage, which waits for
// it, exits with its status.
func (x *execer) wait(sigc <-chan os.Signal) int {
	for {
		select {
		case <-x.done:
			waitCopies(&x.outputs)
			return userns.ExitCode(x.stage.ProcessState)
		case sig := <-sigc:
			if sig == syscall.SIGWINCH && x.console != nil {
				x.console.resize()
				continue
			}
			x.cmd.Signal(sig.(syscall.Signal))
		}
	}
}

// execMain is the exec stage. The entry point (package nsenter) has joined
// the container's namespaces, its user namespace first, and forked: this
// process is the child, in the container's PID namespace, with every
// capability in its user namespace, and its root and working directory are
// the root of the container's mount namespace (setns sets both). Its
// parent, outside, waits for it. It sets the command up as containerMain
// does the payload, with the container's settings, and execs it. Strictly
// sequential, no goroutines of its own.
func execMain(ch *userns.Channel) int {
	fail := func(err error, code int) int {
		ch.SendError("exec", err, code)
		if code == 0 {
			return 125
		}
		return code
	}
	tr := stageTracer()
	tr.mark("exec:stage")
	if err := nsenter.Joined(); err != nil {
		return fail(err, 0)
	}
	var s execSpec
	if err := ch.WaitSpec(&s); err != nil {
		return 125
	}
	if s.FilterFD {
		if err := readFilter(os.NewFile(filterFD, "seccomp.bpf"), &s.Security); err != nil {
			return fail(err, 0)
		}
	}
	tr.mark("exec:stage-spec")
	c, code, err := resolveCommand(&s)
	if err != nil {
		return fail(err, code)
	}
	self, err := userns.OpenPidfd(os.Getpid())
	if err != nil {
		return fail(err, 0)
	}
	if err := security.PrepareCaps(s.Security); err != nil {
		return fail(err, 0)
	}
	if err := c.cred.apply(); err != nil {
		return fail(err, 0)
	}
	if err := execGuards(); err != nil {
		return fail(err, 0)
	}
	tr.mark("exec:stage-ready")
	if err := ch.SendExecReady(self.File(), c.master); err != nil {
		return 125
	}
	self.Close()
	if c.master != nil {
		c.master.Close()
	}
	// Before seccomp (a profile may deny prlimit64).
	if err := applyRlimits(s.Rlimits); err != nil {
		return fail(err, 0)
	}
	if err := security.Finalize(s.Security); err != nil {
		return fail(err, 0)
	}
	tr.mark("exec:exec")
	err = unix.Exec(c.path, s.Args, c.env)
	code = 126
	if errors.Is(err, unix.ENOENT) {
		code = 127
	}
	return fail(fmt.Errorf("exec %s: %w", s.Args[0], err), code)
}

// execCommand is the command as the exec stage found it in the container.
type execCommand struct {
	path   string
	env    []string // with HOME
	cred   *credential
	master *os.File // the pty's, with -t
}

// resolveCommand does the exec stage's look-ups in the container, as init
// does the payload's: the user, HOME, the working directory (entered, not
// created, as docker exec), the program, the session and the terminal.
// code is the exit code a failure deserves: 127, 126, or 0 for 125.
func resolveCommand(s *execSpec) (*execCommand, int, error) {
	cred, err := resolveUser(s.User)
	if err != nil {
		return nil, 0, err
	}
	for _, g := range s.Groups {
		cred.groups = append(cred.groups, int(g))
	}
	env := s.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+cred.home)
	}
	if err := enterWorkdir(s.Cwd, cred, false); err != nil {
		return nil, 0, err
	}
	path, code, err := findProgram(s.Args[0], envValue(env, "PATH"))
	if err != nil {
		return nil, code, err
	}
	master, err := setupStdio(s.Tty, cred, false)
	if err != nil {
		return nil, 0, err
	}
	return &execCommand{path: path, env: env, cred: cred, master: master}, 0, nil
}

// execGuards is what the exec stage sets after its uid change: it stays
// non-dumpable until exec (the entry point made it so; a uid change sets
// fs.suid_dumpable's value, which may be 1), it dies with its parent, and
// nothing but 0-2 reaches the command (CVE-2024-21626): everything else,
// the sync channel and init's pidfd included, closes on exec.
func execGuards() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_DUMPABLE: %w", err)
	}
	// The parent lives outside the PID namespace: its pid shows as 0.
	if err := userns.SetPdeathsig(syscall.SIGKILL, 0); err != nil {
		return err
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	return nil
}
