package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/security"
	"github.com/rabbitc/rabbitc/userns"
)

// containerMain is stage 2, init: PID 1 of the new PID namespace, in fresh
// mount, UTS, IPC and cgroup namespaces. It sets up the root, waits for
// Start and execs the payload, which takes over PID 1. Strictly sequential,
// no goroutines of its own.
func containerMain(ch *userns.Channel) int {
	fail := func(err error, code int) int {
		ch.SendError("init", err, code)
		if code == 0 {
			return 125
		}
		return code
	}
	tr := stageTracer()
	tr.mark("init:start")
	var s spec
	if err := ch.WaitSpec(&s); err != nil {
		return 125
	}
	tr.mark("init:spec")
	proc, rcfg := s.OCI.Process, s.rootfsConfig()
	if err := s.ociPrepare(); err != nil {
		return fail(err, 0)
	}
	if s.OCI.Hostname != "" || s.hasNamespace(specs.UTSNamespace) {
		if err := unix.Sethostname([]byte(s.OCI.Hostname)); err != nil {
			return fail(fmt.Errorf("sethostname %s: %w", s.OCI.Hostname, err), 0)
		}
	}
	if err := rootfs.Setup(rcfg); err != nil {
		if errors.Is(err, rootfs.ErrOverlay) {
			err = aboutHost(err)
		}
		return fail(err, 0)
	}
	if err := s.runHooks("createContainer"); err != nil {
		return fail(err, 0)
	}
	if err := rootfs.PivotRoot(rcfg.Rootfs); err != nil {
		return fail(err, 0)
	}
	tr.mark("init:rootfs")
	var reaper *os.File
	if s.Init {
		var err error
		if reaper, err = userns.SealedCopy(); err != nil {
			return fail(err, 0)
		}
	}
	cred, err := s.credential()
	if err != nil {
		return fail(err, 0)
	}
	env := proc.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+cred.home)
	}
	if err := enterWorkdir(proc.Cwd, cred, true); err != nil {
		return fail(err, 0)
	}
	// After the working directory, which may have to be made (an image's
	// WorkingDir) before "/" goes read-only.
	if err := rootfs.Finish(rcfg); err != nil {
		return fail(err, 0)
	}
	path, code, err := findProgram(proc.Args[0], envValue(env, "PATH"))
	if err != nil {
		return fail(err, code)
	}
	master, err := setupStdio(proc.Terminal, cred, true)
	if err != nil {
		return fail(err, 0)
	}
	// Nothing but 0-2 reaches the payload (CVE-2024-21626): everything else,
	// the sync channel included, closes on exec. Before PrepareCaps, which
	// loads the seccomp filter without no_new_privs: a profile need not
	// allow close_range (runtime-tools' predates it).
	if err := cloexecFrom(3); err != nil {
		return fail(err, 0)
	}
	sec := s.securityConfig()
	if err := security.PrepareCaps(sec); err != nil {
		return fail(err, 0)
	}
	if err := cred.apply(); err != nil {
		return fail(err, 0)
	}
	// setuid cleared the parent-death signal; without it a killed sandbox
	// would leave the payload running. Not for an OCI container, which
	// outlives rabbitc create: its engine waits for it.
	if !s.OCIMode {
		if err := userns.SetPdeathsig(syscall.SIGKILL, 0); err != nil {
			return fail(err, 0)
		}
	}
	tr.mark("init:ready")
	if err := ch.SendInitReady(master); err != nil {
		return 125
	}
	if master != nil {
		master.Close()
	}
	var start startSpec
	if err := ch.WaitStart(&start); err != nil {
		return fail(err, 0)
	}
	if start.Filter != nil {
		sec.Filter, sec.FilterFlags = start.Filter, start.FilterFlags
	}
	if s.OCIMode {
		// create returns here; start opens the fifo. Errors from now on
		// have nobody on the channel: they go to the process's stderr.
		ch.Close()
		fail = func(err error, code int) int {
			fmt.Fprintf(os.Stderr, "rabbitc: init: %v\n", err)
			return max(code, 1)
		}
		if err := waitExecFifo(); err != nil {
			return fail(err, 0)
		}
		if err := s.runHooks("startContainer"); err != nil {
			return fail(err, 0)
		}
	}
	if s.Net.Mode == netns.ModeSlirp {
		if err := netns.CheckTap(); err != nil {
			return fail(err, 0)
		}
	}
	// After every descriptor init opens (a low nofile would refuse them), and
	// before seccomp (a profile may deny prlimit64).
	if err := applyRlimits(proc.Rlimits); err != nil {
		return fail(err, 0)
	}
	tr.mark("init:started")
	// Last: keyring, capabilities, no_new_privs, seccomp.
	if err := security.Finalize(sec); err != nil {
		return fail(err, 0)
	}
	if start.NetFilter != nil && !s.OCIMode {
		if err := sendNetFilter(ch, start.NetFilter); err != nil {
			return 125
		}
	}
	tr.mark("init:exec")
	if err := passExtraFDs(s.ExtraFDs); err != nil {
		return fail(err, 0)
	}
	if reaper != nil {
		err = userns.ExecFile(reaper, append([]string{"rabbitc-init", "init", "reaper", path}, proc.Args...), env)
		return fail(fmt.Errorf("exec the init (--init): %w", err), 0)
	}
	err = unix.Exec(path, proc.Args, env)
	code = 126
	if errors.Is(err, unix.ENOENT) {
		code = 127
	}
	return fail(fmt.Errorf("exec %s: %w", proc.Args[0], err), code)
}

// enterMountNS joins the mount namespace open on fd, from the main thread
// (init's work and its exec happen there): setns(CLONE_NEWNS) refuses a
// thread that shares its fs_struct, which Go's threads do, so the thread
// gets one of its own first.
func enterMountNS(fd int) error {
	if unix.Gettid() != unix.Getpid() {
		return errors.New("join the mount namespace: not on the main thread")
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("join the mount namespace: unshare CLONE_FS: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the mount namespace: %w", err)
	}
	return unix.Close(fd)
}

// cloexecFrom marks every descriptor from fd on close-on-exec:
// close_range, or one by one where an outer seccomp filter or an old kernel
// refuses it.
func cloexecFrom(fd int) error {
	if unix.CloseRange(uint(fd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n < fd {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(n), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return fmt.Errorf("mark descriptor %d close-on-exec: %w", n, err)
		}
	}
	return nil
}

// ociPrepare is what an OCI container's init does before the root: its
// oom_score_adj and, since the namespaces are all the clone's
// (ociInitMain), the loopback of a new network namespace, brought up as
// runc and crun do.
func (s *spec) ociPrepare() error {
	if !s.OCIMode {
		return nil
	}
	if s.MountNSFD > 0 {
		if err := enterMountNS(s.MountNSFD); err != nil {
			return err
		}
	}
	for _, ns := range s.linux().Namespaces {
		if ns.Type == specs.UserNamespace && ns.Path == "" {
			// Become root of the new user namespace, as runc's nsexec does:
			// init still has its creator's ids, which the config's maps need
			// not map (0 -> 1000 leaves the caller's uid out), and an
			// unmapped fsuid can create no file (EOVERFLOW).
			if err := syscall.Setresgid(0, 0, 0); err != nil {
				return fmt.Errorf("setgid 0 in the new user namespace: %w (is gid 0 in linux.gidMappings?)", err)
			}
			if err := syscall.Setresuid(0, 0, 0); err != nil {
				return fmt.Errorf("setuid 0 in the new user namespace: %w (is uid 0 in linux.uidMappings?)", err)
			}
		}
	}
	if adj := s.OCI.Process.OOMScoreAdj; adj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*adj)), 0); err != nil {
			return fmt.Errorf("set process.oomScoreAdj %d: %w (lowering it needs CAP_SYS_RESOURCE)", *adj, err)
		}
	}
	for _, ns := range s.linux().Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path == "" {
			return netns.SetupLoopback()
		}
	}
	return nil
}

// runHooks runs the OCI config's hooks of one kind in init (createContainer
// before pivot_root, startContainer after).
func (s *spec) runHooks(kind string) error {
	h := s.OCI.Hooks
	if !s.OCIMode || h == nil {
		return nil
	}
	hooks := h.CreateContainer
	if kind == "startContainer" {
		hooks = h.StartContainer
	}
	return runHooks(kind, hooks, s.HookState)
}

// waitExecFifo blocks until rabbitc start opens exec.fifo for reading
// (inherited on fifoFD), and tells it init goes on.
func waitExecFifo() error {
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fifoFD), os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec.fifo: %w", err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{0}); err != nil {
		return fmt.Errorf("write exec.fifo: %w", err)
	}
	return nil
}

// passExtraFDs moves the n preserved descriptors, inherited after the
// fifo, to 3, 4, ... for the process, as runc passes them; nothing else
// above 2 reaches it (everything is close-on-exec already).
func passExtraFDs(n int) error {
	for i := 0; i < n; i++ {
		if err := unix.Dup3(fifoFD+1+i, 3+i, 0); err != nil {
			return fmt.Errorf("pass descriptor %d: %w", 3+i, err)
		}
	}
	return nil
}

// ociInitMain is init of an OCI container: the clone made every new
// namespace; it is init as usual, with the OCI steps (spec.OCIMode).
func ociInitMain(ch *userns.Channel) int {
	return containerMain(ch)
}

// directMain is init when rabbitc started it without a sandbox, in new user
// and PID namespaces only. It does what the sandbox would have done before
// starting it, while the parent writes the maps: make the other namespaces
// and bring up lo. Then it is init as usual.
func directMain(ch *userns.Channel) int {
	err := userns.CheckCaps("init")
	mode := os.Getenv(envNetMode)
	if err == nil {
		err = userns.UnshareContainer(mode != netns.ModeHost)
	}
	if err == nil {
		err = netns.PrepareNamespace(mode)
	}
	if err != nil {
		ch.SendError("init", err, 0)
		return 125
	}
	if err := ch.SendChildHello(); err != nil {
		return 125
	}
	return containerMain(ch)
}

// setupStdio gives the payload a session of its own (it can never inject
// into the user's terminal, CVE-2017-5226) and, with a tty, a pty from the
// container's /dev/pts as its controlling terminal, bound on /dev/console
// too for the payload (console), not for exec's commands. It returns the
// master for the parent.
func setupStdio(tty bool, cred *credential, console bool) (*os.File, error) {
	if !tty {
		if _, err := unix.Setsid(); err != nil {
			return nil, fmt.Errorf("setsid: %w", err)
		}
		return nil, nil
	}
	master, slave, err := rootfs.OpenPTY()
	if err != nil {
		return nil, err
	}
	defer slave.Close()
	if console {
		if err := rootfs.BindConsole(slave); err != nil {
			master.Close()
			return nil, err
		}
	}
	if err := unix.Fchown(int(slave.Fd()), cred.uid, cred.gid); err != nil {
		master.Close()
		return nil, fmt.Errorf("chown %s: %w", slave.Name(), err)
	}
	if _, err := unix.Setsid(); err != nil {
		master.Close()
		return nil, fmt.Errorf("setsid: %w", err)
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		master.Close()
		return nil, fmt.Errorf("set controlling terminal %s: %w", slave.Name(), err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			master.Close()
			return nil, fmt.Errorf("dup %s: %w", slave.Name(), err)
		}
	}
	return master, nil
}

// credential is who the payload runs as.
type credential struct {
	uid, gid int
	groups   []int
	home     string
}

// apply changes the calling thread's groups and ids with the raw system
// calls. Go's syscall.Setuid and friends change every thread of the process
// through a signal to each (1-2 ms here under load); init runs on its
// locked main thread and execs from it, and exec keeps only that thread, so
// the other threads' credentials never reach the payload.
func (c *credential) apply() error {
	if len(c.groups) == 0 {
		// Drop the user's supplementary groups (they would still count on
		// the host's files); EPERM: setgroups is denied with a single-id map.
		if err := unix.Setgroups(nil); err != nil && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setgroups: %w", err)
		}
	} else if err := unix.Setgroups(c.groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if c.gid != 0 {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.gid), uintptr(c.gid), uintptr(c.gid)); e != 0 {
			return fmt.Errorf("setgid %d: %w (is gid %d mapped? see /etc/subgid)", c.gid, e, c.gid)
		}
	}
	if c.uid != 0 {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.uid), uintptr(c.uid), uintptr(c.uid)); e != 0 {
			return fmt.Errorf("setuid %d: %w (is uid %d mapped? see /etc/subuid)", c.uid, e, c.uid)
		}
	}
	return nil
}

// userSpec is who the process runs as, in -u's form: run's -u as given,
// or the runtime spec's numeric ids.
func (s *spec) userSpec() string {
	if s.User != "" {
		return s.User
	}
	u := s.OCI.Process.User
	if u.UID == 0 && u.GID == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(u.UID), 10) + ":" + strconv.FormatUint(uint64(u.GID), 10)
}

// credential resolves the process's user (userSpec) inside the pivoted
// root, with the runtime spec's additional groups, and sets its umask.
func (s *spec) credential() (*credential, error) {
	c, err := resolveUser(s.userSpec())
	if err != nil {
		return nil, err
	}
	u := s.OCI.Process.User
	for _, g := range u.AdditionalGids {
		c.groups = append(c.groups, int(g))
	}
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	}
	return c, nil
}

// resolveUser turns -u into ids, reading the container's /etc/passwd and
// /etc/group for names (the root is already pivoted).
func resolveUser(u string) (*credential, error) {
	c := &credential{home: "/root"}
	if u == "" {
		return c, nil
	}
	name, group, hasGroup := strings.Cut(u, ":")
	if id, err := strconv.Atoi(name); err == nil {
		c.uid, c.gid, c.home = id, id, "/"
		if e, ok := lookupPasswd(func(f []string) bool { return f[2] == name }); ok {
			c.gid, _ = strconv.Atoi(e[3])
			c.home = e[5]
		}
	} else {
		e, ok := lookupPasswd(func(f []string) bool { return f[0] == name })
		if !ok {
			return nil, fmt.Errorf("user %s: not found in the container's /etc/passwd", name)
		}
		c.uid, _ = strconv.Atoi(e[2])
		c.gid, _ = strconv.Atoi(e[3])
		c.home = e[5]
	}
	if hasGroup {
		if id, err := strconv.Atoi(group); err == nil {
			c.gid = id
		} else {
			e, ok := lookupEntry("/etc/group", 3, func(f []string) bool { return f[0] == group })
			if !ok {
				return nil, fmt.Errorf("group %s: not found in the container's /etc/group", group)
			}
			c.gid, _ = strconv.Atoi(e[2])
		}
	}
	if c.uid == 0 {
		c.home = "/root"
	}
	if c.home == "" {
		c.home = "/"
	}
	return c, nil
}

func lookupPasswd(match func([]string) bool) ([]string, bool) {
	return lookupEntry("/etc/passwd", 7, match)
}

func lookupEntry(file string, fields int, match func([]string) bool) ([]string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) >= fields && match(p) {
			return p, true
		}
	}
	return nil, false
}

// enterWorkdir changes into the working directory, resolved and, if
// missing and create is set (run, as docker run; not exec, as docker exec),
// created inside the new root (rootfs.Workdir), and checks that it lies
// inside it.
func enterWorkdir(dir string, cred *credential, create bool) error {
	if dir == "" || dir == "/" {
		if err := unix.Chdir("/"); err != nil { // where PivotRoot left init already
			return fmt.Errorf("chdir /: %w", err)
		}
		return nil
	}
	h, err := rootfs.Workdir(dir, cred.uid, cred.gid, create)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := unix.Fchdir(int(h.Fd())); err != nil {
		return fmt.Errorf("chdir %s: %w", dir, err)
	}
	wd, err := unix.Getwd()
	if err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("workdir %s: outside the container's root", dir)
	}
	return nil
}

// findProgram resolves argv[0] inside the container as execvp would, and
// says which exit code a failure deserves: 127 not found, 126 not runnable.
func findProgram(name, pathEnv string) (string, int, error) {
	if name == "" {
		return "", 127, errors.New("exec: empty command")
	}
	if strings.Contains(name, "/") {
		code, err := checkExecutable(name)
		if err != nil {
			return "", code, fmt.Errorf("exec %s: %w", name, err)
		}
		return name, 0, nil
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	denied := ""
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		code, err := checkExecutable(p)
		if err == nil {
			return p, 0, nil
		}
		if code == 126 && denied == "" {
			denied = p
		}
	}
	if denied != "" {
		return "", 126, fmt.Errorf("exec %s: permission denied", denied)
	}
	return "", 127, fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func checkExecutable(p string) (int, error) {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 127, errors.New("no such file or directory")
		}
		return 126, errors.Unwrap(err)
	}
	if st.IsDir() {
		return 126, errors.New("is a directory")
	}
	if st.Mode()&0o111 == 0 {
		return 126, errors.New("permission denied")
	}
	return 0, nil
}

func envValue(env []string, k string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, k+"="); ok {
			return v
		}
	}
	return ""
}
