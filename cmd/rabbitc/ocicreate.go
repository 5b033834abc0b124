package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/cgroups"
	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/security"
	"github.com/rabbitc/rabbitc/userns"
)

// ociCreateOptions are the flags of create and run.
type ociCreateOptions struct {
	bundle        string
	pidFile       string
	consoleSocket string
	preserveFds   int
	noPivot       bool
	noNewKeyring  bool
	detach        bool // run -d
}

func addCreateFlags(cmd *cobra.Command, o *ociCreateOptions) {
	fs := cmd.Flags()
	fs.StringVarP(&o.bundle, "bundle", "b", "", "the bundle: the directory holding config.json (default: the current directory)")
	fs.StringVar(&o.pidFile, "pid-file", "", "write init's pid to this file")
	fs.StringVar(&o.consoleSocket, "console-socket", "", "a unix socket that gets the pty master (process.terminal)")
	fs.IntVar(&o.preserveFds, "preserve-fds", 0, "pass this many descriptors after 0-2 (3, 4, ...) on to the process")
	fs.BoolVar(&o.noPivot, "no-pivot", false, "accepted: rabbitc always uses pivot_root")
	fs.BoolVar(&o.noNewKeyring, "no-new-keyring", false, "accepted: the process always gets a new session keyring")
}

func newOCICreate(g *ociGlobals) *cobra.Command {
	o := &ociCreateOptions{}
	cmd := &cobra.Command{
		Use:   "create [flags] ID",
		Short: "Create a container from a bundle: everything but the process, which waits for start",
		Args:  ociArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := createOCI(g, o, args[0])
			if err != nil {
				return err
			}
			c.release()
			return nil
		},
	}
	addCreateFlags(cmd, o)
	return cmd
}

func newOCIRun(g *ociGlobals) *cobra.Command {
	o := &ociCreateOptions{}
	cmd := &cobra.Command{
		Use:   "run [flags] ID",
		Short: "Create and start a container from a bundle, and wait for it (unless -d)",
		Args:  ociArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runOCI(g, o, args[0])
		},
	}
	addCreateFlags(cmd, o)
	cmd.Flags().BoolVarP(&o.detach, "detach", "d", false, "return once the process runs")
	return cmd
}

// ociArgs checks the number of arguments, with runc's wording.
func ociArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return fmt.Errorf("%q requires %s argument(s) (see %s --help)", cmd.Name(), map[bool]string{true: strconv.Itoa(min), false: fmt.Sprintf("%d to %d", min, max)}[min == max], cmd.CommandPath())
		}
		return nil
	}
}

// ociContainer is a container being created by create or run.
type ociContainer struct {
	cgroup *cgroups.Manager // nil: the config asks for no cgroup
	g      *ociGlobals
	o      *ociCreateOptions
	spec   *spec
	state  *ociState
	init   *userns.Process
	ch     *userns.Channel
	undo   []func()
}

// createOCI creates the container: init is left blocked on exec.fifo, with
// the root set up, until start. Any failure leaves nothing behind.
func createOCI(g *ociGlobals, o *ociCreateOptions, id string) (*ociContainer, error) {
	c := &ociContainer{g: g, o: o}
	err := c.prepare(id)
	if err == nil {
		err = c.spawn()
	}
	if err == nil {
		err = c.setUp()
	}
	if err == nil {
		err = c.record()
	}
	if err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

// abort undoes what create did, last first: init is killed and the state
// directory goes.
func (c *ociContainer) abort() {
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
}

// release lets init go on alone: create exits, and init is reparented to
// the engine's subreaper (conmon, the shim), which waits for it.
func (c *ociContainer) release() {
	c.ch.Close()
}

// prepare reads the bundle, checks it and makes the state directory.
func (c *ociContainer) prepare(id string) error {
	if err := checkOCIID(id); err != nil {
		return err
	}
	if c.o.preserveFds < 0 {
		return fmt.Errorf("--preserve-fds %d: negative", c.o.preserveFds)
	}
	cfg, bundle, err := loadBundle(c.o.bundle)
	if err != nil {
		return err
	}
	root, err := c.g.stateRoot()
	if err != nil {
		return err
	}
	gcOCI(root)
	dir := filepath.Join(root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("container with id exists: %s", id)
		}
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	c.undo = append(c.undo, func() { os.RemoveAll(dir) })
	// Should create be killed before it writes the state, the next create
	// or list removes the directory (gcOCI): the creator is gone.
	me := fmt.Sprintf("%d %d", os.Getpid(), procStartTime(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, creatorFile), []byte(me), 0o600); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	c.spec = &spec{ID: id, StateDir: dir, OCI: cfg, OCIMode: true, Net: netns.Config{Mode: netns.ModeNone}}
	c.state = &ociState{State: specs.State{Version: ociVersion, ID: id, Status: specs.StateCreating, Bundle: bundle,
		Annotations: cfg.Annotations}, Rootfs: cfg.Root.Path, Created: time.Now().UTC(), Owner: currentOwner(), dir: dir,
		NoPidNS: !c.spec.hasNamespace(specs.PIDNamespace)}
	sec := c.spec.securityConfig()
	if err := sec.Check(); err != nil {
		return err
	}
	if err := checkRlimits(cfg.Process.Rlimits); err != nil {
		return err
	}
	for k := range c.spec.linux().Sysctl {
		s := c.spec
		if err := rootfs.CheckSysctl(k, s.hasNamespace(specs.IPCNamespace), s.hasNamespace(specs.UTSNamespace), s.hasNamespace(specs.NetworkNamespace)); err != nil {
			return err
		}
	}
	if l := cfg.Linux; cgroups.Needed(l.CgroupsPath, l.Resources) {
		if c.cgroup, err = cgroups.New(l.CgroupsPath, id, l.Resources); err != nil {
			return err
		}
	}
	return checkCommand(c.spec, cfg.Root.Path)
}

// loadBundle reads the bundle's config.json, with root.path made absolute
// against the bundle.
func loadBundle(bundle string) (*specs.Spec, string, error) {
	if bundle == "" {
		bundle = "."
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, "", fmt.Errorf("read the bundle's config: %w (is --bundle a directory holding config.json?)", err)
	}
	cfg := &specs.Spec{}
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, "", fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	switch {
	case cfg.Process == nil:
		return nil, "", errors.New("config.json: no process (rabbitc runs a process)")
	case len(cfg.Process.Args) == 0:
		return nil, "", errors.New("config.json: process.args must not be empty")
	case cfg.Root == nil || cfg.Root.Path == "":
		return nil, "", errors.New("config.json: no root.path")
	case cfg.Process.Cwd == "" || !filepath.IsAbs(cfg.Process.Cwd):
		return nil, "", fmt.Errorf("config.json: process.cwd %q: not an absolute path", cfg.Process.Cwd)
	}
	if !filepath.IsAbs(cfg.Root.Path) {
		cfg.Root.Path = filepath.Join(bundle, cfg.Root.Path)
	}
	if st, err := os.Stat(cfg.Root.Path); err != nil || !st.IsDir() {
		return nil, "", fmt.Errorf("root.path %s: not a directory (the bundle's rootfs)", cfg.Root.Path)
	}
	if cfg.Linux == nil {
		cfg.Linux = &specs.Linux{}
	}
	return cfg, bundle, nil
}

// cloneFlags are the namespaces the config asks to be new; joins are those
// it names by path, which rabbitc enters before the clone.
func cloneFlags(l *specs.Linux) (flags uintptr, joins []specs.LinuxNamespace, err error) {
	kinds := map[specs.LinuxNamespaceType]uintptr{
		specs.UserNamespace: unix.CLONE_NEWUSER, specs.PIDNamespace: unix.CLONE_NEWPID,
		specs.MountNamespace: unix.CLONE_NEWNS, specs.UTSNamespace: unix.CLONE_NEWUTS,
		specs.IPCNamespace: unix.CLONE_NEWIPC, specs.NetworkNamespace: unix.CLONE_NEWNET,
		specs.CgroupNamespace: unix.CLONE_NEWCGROUP, specs.TimeNamespace: unix.CLONE_NEWTIME,
	}
	for _, ns := range l.Namespaces {
		f, ok := kinds[ns.Type]
		if !ok {
			return 0, nil, fmt.Errorf("config.json: unknown namespace %q", ns.Type)
		}
		if ns.Path == "" {
			flags |= f
			continue
		}
		if ns.Type == specs.UserNamespace {
			// setns into a user namespace needs a single-threaded process.
			return 0, nil, fmt.Errorf("config.json: joining a user namespace by path (%s) is not supported by rabbitc yet", ns.Path)
		}
		joins = append(joins, ns)
	}
	hasMount := flags&unix.CLONE_NEWNS != 0
	for _, ns := range joins {
		hasMount = hasMount || ns.Type == specs.MountNamespace
	}
	if !hasMount {
		// init mounts and pivots in its mount namespace: never the caller's.
		return 0, nil, errors.New("config.json: rabbitc needs a mount namespace of the container's (add {\"type\": \"mount\"} to linux.namespaces)")
	}
	return flags, joins, nil
}

// joinNamespaces enters the namespaces named by path, on the calling
// thread (the main one, locked: main.go), which the clone of init then
// inherits. rabbitc create exits soon after, so nothing is restored.
func joinNamespaces(joins []specs.LinuxNamespace) error {
	kinds := map[specs.LinuxNamespaceType]int{
		specs.PIDNamespace: unix.CLONE_NEWPID, specs.UTSNamespace: unix.CLONE_NEWUTS,
		specs.IPCNamespace: unix.CLONE_NEWIPC, specs.NetworkNamespace: unix.CLONE_NEWNET,
		specs.CgroupNamespace: unix.CLONE_NEWCGROUP, specs.TimeNamespace: unix.CLONE_NEWTIME,
	}
	runtime.LockOSThread() // already locked on the main thread; this makes it a must
	for _, ns := range joins {
		if ns.Type == specs.MountNamespace {
			continue // init joins it (mountNSFile)
		}
		fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("join the %s namespace %s: %w", ns.Type, ns.Path, err)
		}
		err = unix.Setns(fd, kinds[ns.Type])
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join the %s namespace %s: %w", ns.Type, ns.Path, err)
		}
	}
	return nil
}

// spawn starts init in its new namespaces with the container's stdio, the
// sync channel, the fifo and the preserved descriptors, and writes its
// maps.
func (c *ociContainer) spawn() error {
	l := c.spec.linux()
	flags, joins, err := cloneFlags(l)
	if err != nil {
		return err
	}
	if err := joinNamespaces(joins); err != nil {
		return err
	}
	fifo, err := makeFifo(c.spec.StateDir)
	if err != nil {
		return err
	}
	defer fifo.Close()
	ch, child, err := userns.NewChannelPair()
	if err != nil {
		return err
	}
	c.ch = ch
	defer child.Close()
	cmd := exec.Command("/proc/self/exe", "init", "oci")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{child, nil, fifo} // userns.SyncFD, (PortFD), fifoFD
	extra := c.o.preserveFds
	if n, err := strconv.Atoi(os.Getenv("LISTEN_FDS")); err == nil && n > 0 {
		extra += n
	}
	for i := 0; i < extra; i++ {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+i), "preserved"))
	}
	if n := os.Getenv("LISTEN_FDS"); n != "" {
		// Socket activation goes through, as with runc: the descriptors are
		// among the preserved ones, and the process is PID 1.
		p := c.spec.OCI.Process
		p.Env = append(p.Env, "LISTEN_FDS="+n, "LISTEN_PID=1")
	}
	c.spec.ExtraFDs = extra
	for _, ns := range joins {
		if ns.Type != specs.MountNamespace {
			continue
		}
		// Go's threads share one fs_struct, which setns(CLONE_NEWNS)
		// refuses: init joins it from its main thread after unsharing that
		// (enterMountNS), on the descriptor opened here.
		f, err := os.Open(ns.Path)
		if err != nil {
			return fmt.Errorf("join the mount namespace %s: %w", ns.Path, err)
		}
		defer f.Close()
		c.spec.MountNSFD = 3 + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	cmd.Env = []string{"GOMAXPROCS=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	if flags&unix.CLONE_NEWUSER != 0 {
		cmd.SysProcAttr.AmbientCaps = userns.AmbientCaps()
	}
	p, err := userns.Start(cmd, 0)
	if err != nil {
		return userns.CloneError(err)
	}
	c.init = p
	c.undo = append(c.undo, func() {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	})
	c.state.Pid = p.Pid()
	if c.cgroup != nil {
		// Before init runs anything of the container's: it waits for its spec.
		if err := c.cgroup.Apply(p.Pid(), l.Resources); err != nil {
			return err
		}
		c.state.Cgroup = c.cgroup.Path
		c.undo = append(c.undo, func() { c.cgroup.Destroy() })
	}
	if flags&unix.CLONE_NEWUSER != 0 {
		if err := userns.WriteGivenMaps(p.Pid(), idMaps(l.UIDMappings), idMaps(l.GIDMappings)); err != nil {
			return err
		}
	}
	return nil
}

func idMaps(m []specs.LinuxIDMapping) []userns.IDMap {
	out := make([]userns.IDMap, len(m))
	for i, l := range m {
		out[i] = userns.IDMap{ContainerID: l.ContainerID, HostID: l.HostID, Size: l.Size}
	}
	return out
}

// fifoFD is where init inherits exec.fifo (O_PATH): it opens it for
// writing through /proc/self/fd, which blocks until start opens it for
// reading. The fifo is 0622 in a 0700 directory: no other host user can
// reach it by name, and init, which may be an id the directory's owner
// is not (a user namespace that maps root elsewhere), can through its
// descriptor.
const fifoFD = userns.PortFD + 1

func makeFifo(dir string) (*os.File, error) {
	p := filepath.Join(dir, execFifo)
	if err := unix.Mkfifo(p, 0o622); err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	if err := os.Chmod(p, 0o622); err != nil { // past the umask
		return nil, err
	}
	return os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
}

// setUp runs the hooks of the runtime namespace, sends init its spec, and
// waits until init has set up the root; the console goes to the console
// socket; init gets its seccomp program and waits on the fifo.
func (c *ociContainer) setUp() error {
	s := c.spec
	if !s.OCI.Process.NoNewPrivileges {
		// Without no_new_privs init loads the program before it drops its
		// capabilities: it comes with the spec. Else it is compiled while
		// init sets up the root, and comes with Start.
		if err := c.compileFilter(); err != nil {
			return err
		}
	}
	// The hooks read the state as "created" (runtime-tools checks it, and
	// runc writes it so): the namespaces exist, the process does not run.
	c.state.Status = specs.StateCreated
	hs, err := json.Marshal(c.state.public())
	c.state.Status = specs.StateCreating
	if err != nil {
		return err
	}
	s.HookState = hs
	if h := s.OCI.Hooks; h != nil {
		if err := runHooks("prestart", h.Prestart, hs); err != nil {
			return err
		}
		if err := runHooks("createRuntime", h.CreateRuntime, hs); err != nil {
			return err
		}
	}
	if err := c.ch.SendSpec(s.forInit()); err != nil {
		return c.initErr(err)
	}
	start := &startSpec{}
	if s.Filter == nil {
		if err := c.compileFilter(); err != nil {
			return err
		}
		start.Filter, start.FilterFlags = s.Filter, s.FilterFlags
	}
	master, err := c.ch.WaitInitReady()
	if err != nil {
		return c.initErr(err)
	}
	if master != nil {
		err := sendConsole(c.o.consoleSocket, master)
		master.Close()
		if err != nil {
			return err
		}
	}
	return c.initErr(c.ch.SendStart(start))
}

// initErr says what became of init when the channel failed.
func (c *ociContainer) initErr(err error) error {
	if errors.Is(err, userns.ErrEOF) {
		<-c.init.Done()
		return fmt.Errorf("init exited during create (%v)", c.init.Cmd.ProcessState)
	}
	return err
}

func (c *ociContainer) compileFilter() error {
	sec := c.spec.securityConfig()
	if err := sec.Compile(); err != nil {
		return err
	}
	c.spec.Filter, c.spec.FilterFlags = sec.Filter, sec.FilterFlags
	return nil
}

// sendConsole sends the pty master to the console socket: one sendmsg with
// SCM_RIGHTS, no reply awaited, as runc.
func sendConsole(path string, master *os.File) error {
	if path == "" {
		return errors.New("process.terminal is set but --console-socket was not given (runc's callers pass one)")
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("connect to the console socket: %w", err)
	}
	defer conn.Close()
	oob := unix.UnixRights(int(master.Fd()))
	if _, _, err := conn.WriteMsgUnix([]byte(master.Name()), oob, nil); err != nil {
		return fmt.Errorf("send the console to %s: %w", path, err)
	}
	return nil
}

// record writes the state, config.json and the seccomp program (for exec)
// and the pid file: the container is created.
func (c *ociContainer) record() error {
	st := c.state
	st.InitTime = procStartTime(st.Pid)
	st.Status = specs.StateCreated
	cfg, err := json.Marshal(c.spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(st.dir, "config.json"), cfg, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := writeFilter(st.dir, &security.Config{Filter: c.spec.Filter, FilterFlags: c.spec.FilterFlags}); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := st.write(); err != nil {
		return err
	}
	if c.o.pidFile != "" {
		return writePidFile(c.o.pidFile, st.Pid)
	}
	return nil
}

// writePidFile writes pid to path through a temporary file and a rename:
// an engine polling the file never reads a part.
func writePidFile(path string, pid int) error {
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write the pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write the pid file: %w", err)
	}
	return nil
}

// runHooks runs the hooks of one kind, each with the state on its stdin
// and its timeout, as the runtime spec says; the first failure stops them.
func runHooks(kind string, hooks []specs.Hook, state []byte) error {
	for _, h := range hooks {
		cmd := exec.Command(h.Path)
		if len(h.Args) > 0 {
			cmd.Args = h.Args
		}
		cmd.Env = h.Env
		cmd.Stdin = strings.NewReader(string(state))
		// A hook never outlives the rabbitc that runs it (killed, or timed out).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("%s hook %s: %w", kind, h.Path, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var timeout <-chan time.Time
		if h.Timeout != nil && *h.Timeout > 0 {
			timeout = time.After(time.Duration(*h.Timeout) * time.Second)
		}
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("%s hook %s: %v: %s", kind, h.Path, err, strings.TrimSpace(out.String()))
			}
		case <-timeout:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("%s hook %s: timed out after %d s", kind, h.Path, *h.Timeout)
		}
	}
	return nil
}
