package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/nsenter"
	"github.com/rabbitc/rabbitc/security"
	"github.com/rabbitc/rabbitc/userns"
)

// The exec stage's plan. A second Go runtime's start in the exec stage was
// most of an exec's time (~9 ms of 28 on the bench's machine, where a page
// fault costs ~20 us; crun's whole exec takes 22). So rabbitc exec, whose
// runtime runs already, computes what execMain would do, and the stage's
// child makes the same system calls from nsenter's entry point, before any
// runtime starts (nsenter.Plan), in execMain's order:
//
//	workdir     chdir /, or openat2 (in the root, no magic links) and fchdir
//	session     setsid
//	PrepareCaps keyring and seccomp without no_new_privs, bounding set,
//	            ambient set, keep-caps, capset (security.PlanExecCaps)
//	credential  setgroups, setresgid, setresuid
//	guards      non-dumpable, parent-death signal, close_range CLOEXEC
//	ExecReady   a pidfd of itself on the channel, as execMain sends it
//	rlimits     prlimit64
//	Finalize    keyring, keep-caps off, capset, ambient, no_new_privs, seccomp
//	execvp      execve along $PATH
//
// What a plan cannot do runs the Go way (planFor says when): a pty (-t),
// a user or group named, or a numeric user without $HOME (both read the
// container's /etc files), and a process that is not joining a user
// namespace (the capability sets after setns are known only then).

// execPlan is a plan and, for each of its steps, the error its failure
// means.
type execPlan struct {
	p     nsenter.Plan
	fails map[nsenter.Step]func(syscall.Errno) error
	// isDir tells, for an error message, whether path is a directory in
	// the container (execve says EACCES of one, findProgram said which).
	isDir func(path string) bool
}

func (x *execPlan) call(what func(syscall.Errno) error, nr uintptr, args ...nsenter.Arg) nsenter.Step {
	s := x.p.Syscall(nr, args...)
	x.fails[s] = what
	return s
}

// failed says what a failed step means.
func failed(format string, a ...any) func(syscall.Errno) error {
	return func(e syscall.Errno) error { return fmt.Errorf(format+": %w", append(a, e)...) }
}

// planFor is the plan that runs s in the container whose namespaces flags
// names, or nil with the reason it takes the Go way. filter holds the
// container's compiled seccomp program (filterFile) when s.FilterFD; it is
// read at an offset, for the Go way still reads it from the start.
func planFor(s *execSpec, flags uintptr, filter *os.File) (*execPlan, string) {
	switch {
	case flags&unix.CLONE_NEWUSER == 0:
		return nil, "not joining a user namespace"
	case s.Tty:
		return nil, "a pty"
	case len(s.Args) == 0:
		return nil, "no command"
	}
	cred, ok := planCredential(s)
	if !ok {
		return nil, "the user needs the container's /etc/passwd"
	}
	sec := s.Security
	if s.FilterFD {
		b, err := readFilterAt(filter)
		if err != nil {
			return nil, err.Error()
		}
		sec.FilterFlags, sec.Filter = uintptr(binary.LittleEndian.Uint64(b)), b[8:]
	}
	caps, err := security.PlanExecCaps(sec)
	if err != nil {
		return nil, err.Error()
	}
	x := &execPlan{fails: map[nsenter.Step]func(syscall.Errno) error{}}
	x.workdir(s.Cwd)
	x.call(failed("setsid"), unix.SYS_SETSID)
	ready := x.readyMessage()
	x.prepareCaps(sec, caps)
	x.credential(cred)
	x.guards()
	x.call(failed("send ExecReady"), unix.SYS_SENDMSG, nsenter.Val(userns.SyncFD), ready, nsenter.Val(unix.MSG_NOSIGNAL))
	if err := x.rlimits(s.Rlimits); err != nil {
		return nil, err.Error()
	}
	x.finalize(sec, caps)
	env := s.Env
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+cred.home)
	}
	x.execvp(s.Args, env)
	return x, ""
}

// planCredential is resolveUser's answer where it needs no file of the
// container's: root, or numeric ids with $HOME set.
// readFilterAt reads filterFile's content from f, as readFilter does,
// without moving its offset.
func readFilterAt(f *os.File) ([]byte, error) {
	if f == nil {
		return nil, fmt.Errorf("no seccomp program")
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	n, err := f.ReadAt(b, 0)
	if n != len(b) || len(b) <= 8 || (len(b)-8)%8 != 0 {
		return nil, fmt.Errorf("read the container's seccomp program: %v (%d bytes)", err, n)
	}
	return b, nil
}

func planCredential(s *execSpec) (*credential, bool) {
	c := &credential{home: "/root"}
	for _, g := range s.Groups {
		c.groups = append(c.groups, int(g))
	}
	if s.User == "" {
		return c, true
	}
	name, group, hasGroup := strings.Cut(s.User, ":")
	uid, err1 := strconv.Atoi(name)
	gid, err2 := strconv.Atoi(group)
	if err1 != nil || !hasGroup || err2 != nil || !hasEnv(s.Env, "HOME") {
		return nil, false
	}
	c.uid, c.gid = uid, gid
	return c, true
}

// workdir enters the working directory as enterWorkdir does for exec (not
// created): resolved inside the root, through no magic link (the stage's
// root and working directory are the container's root, setns made them so).
func (x *execPlan) workdir(dir string) {
	if dir == "" || dir == "/" {
		x.call(failed("chdir /"), unix.SYS_CHDIR, x.p.String("/"))
		return
	}
	fdcwd := unix.AT_FDCWD
	how := make([]byte, unix.SizeofOpenHow)
	binary.LittleEndian.PutUint64(how[0:], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	binary.LittleEndian.PutUint64(how[16:], unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS)
	open := x.call(func(e syscall.Errno) error {
		if e == unix.ELOOP {
			return fmt.Errorf("workdir %s: %w (a symlink loop, or a link through /proc such as /proc/self/fd/N, which leads out of the container's root)", dir, e)
		}
		return fmt.Errorf("workdir %s: %w", dir, e)
	}, unix.SYS_OPENAT2, nsenter.Val(uintptr(fdcwd)), x.p.String(dir), x.p.Data(how), nsenter.Val(unix.SizeofOpenHow))
	chdir := x.call(failed("chdir %s", dir), unix.SYS_FCHDIR, nsenter.Val(0))
	x.p.ResultToArg(open, chdir, 0)
}

// readyMessage is ExecReady as userns.Channel sends it, with a pidfd of
// the stage's child: a getpid and a pidfd_open whose result goes into the
// message's SCM_RIGHTS (the pidfd closes at exec: close_range comes after).
func (x *execPlan) readyMessage() nsenter.Arg {
	p := &x.p
	body := p.String(`{"type":"ExecReady"}`)
	iov := p.Zero(16)
	p.SetPointer(iov, body)
	p.SetWord(iov.Add(8), uint64(len(`{"type":"ExecReady"}`)))
	rights := unix.UnixRights(0)
	control := p.Data(rights)
	msg := p.Zero(unix.SizeofMsghdr)
	p.SetPointer(msg.Add(16), iov) // msg_iov
	p.SetWord(msg.Add(24), 1)      // msg_iovlen
	p.SetPointer(msg.Add(32), control)
	p.SetWord(msg.Add(40), uint64(len(rights)))
	pid := x.call(failed("getpid"), unix.SYS_GETPID)
	pidfd := x.call(failed("pidfd_open"), unix.SYS_PIDFD_OPEN, nsenter.Val(0), nsenter.Val(0))
	p.ResultToArg(pid, pidfd, 0)
	p.StoreResult(pidfd, control.Add(unix.CmsgLen(0)))
	return msg
}

// prepareCaps is security.PrepareCaps's calls.
func (x *execPlan) prepareCaps(c security.Config, caps security.ExecCaps) {
	if !c.NoNewPrivs {
		x.keyring()
		x.seccomp(c)
	}
	for _, n := range caps.Drop {
		x.call(failed("drop capability %d from the bounding set", n), unix.SYS_PRCTL, nsenter.Val(unix.PR_CAPBSET_DROP), nsenter.Val(uintptr(n)))
	}
	s := x.call(failed("clear ambient capabilities"), unix.SYS_PRCTL, nsenter.Val(unix.PR_CAP_AMBIENT), nsenter.Val(unix.PR_CAP_AMBIENT_CLEAR_ALL))
	x.p.OK(s, unix.EINVAL) // kernel < 4.3, no ambient set
	x.call(failed("set keep-caps"), unix.SYS_PRCTL, nsenter.Val(unix.PR_SET_KEEPCAPS), nsenter.Val(1))
	x.capset(caps.Prepared)
}

// finalize is security.Finalize's calls.
func (x *execPlan) finalize(c security.Config, caps security.ExecCaps) {
	if c.NoNewPrivs {
		x.keyring()
	}
	x.call(failed("clear keep-caps"), unix.SYS_PRCTL, nsenter.Val(unix.PR_SET_KEEPCAPS), nsenter.Val(0))
	x.capset(caps.Final)
	for _, n := range caps.Ambient {
		x.call(failed("raise ambient capability %d (an ambient capability must be in the permitted and inheritable sets too)", n),
			unix.SYS_PRCTL, nsenter.Val(unix.PR_CAP_AMBIENT), nsenter.Val(unix.PR_CAP_AMBIENT_RAISE), nsenter.Val(uintptr(n)))
	}
	if c.NoNewPrivs {
		x.call(failed("set no_new_privs"), unix.SYS_PRCTL, nsenter.Val(unix.PR_SET_NO_NEW_PRIVS), nsenter.Val(1))
		x.seccomp(c)
	}
}

// keyring joins a new session keyring; EPERM (an outer filter denies
// keyctl) and ENOSYS (no keys) are not errors, as in security.
func (x *execPlan) keyring() {
	s := x.call(func(e syscall.Errno) error {
		if e == unix.EDQUOT {
			return fmt.Errorf("join a new session keyring: %w (this user has too many keys: raise the sysctls kernel.keys.maxkeys and kernel.keys.maxbytes)", e)
		}
		return fmt.Errorf("join a new session keyring: %w", e)
	}, unix.SYS_KEYCTL, nsenter.Val(unix.KEYCTL_JOIN_SESSION_KEYRING), nsenter.Val(0))
	x.p.OK(s, unix.ENOSYS, unix.EPERM)
}

// seccomp loads c's compiled program, if it has one.
func (x *execPlan) seccomp(c security.Config) {
	if len(c.Filter) == 0 {
		return
	}
	prog := x.p.Data(c.Filter)
	fprog := x.p.Zero(16)
	x.p.SetWord(fprog, uint64(len(c.Filter)/8)) // sock_fprog.len, 8 bytes an instruction
	x.p.SetPointer(fprog.Add(8), prog)
	x.call(func(e syscall.Errno) error {
		if e == unix.ENOSYS {
			return fmt.Errorf("load seccomp filter: %w (the kernel lacks seccomp: use --security-opt seccomp=unconfined)", e)
		}
		return fmt.Errorf("load seccomp filter: %w", e)
	}, unix.SYS_SECCOMP, nsenter.Val(unix.SECCOMP_SET_MODE_FILTER), nsenter.Val(c.FilterFlags), fprog)
}

func (x *execPlan) capset(s security.CapSets) {
	hdr := x.p.Zero(8)
	x.p.SetWord(hdr, unix.LINUX_CAPABILITY_VERSION_3) // pid 0: this thread
	data := make([]byte, 24)
	for i := range 2 {
		shift := 32 * i
		binary.LittleEndian.PutUint32(data[12*i:], uint32(s.Effective>>shift))
		binary.LittleEndian.PutUint32(data[12*i+4:], uint32(s.Permitted>>shift))
		binary.LittleEndian.PutUint32(data[12*i+8:], uint32(s.Inheritable>>shift))
	}
	x.call(failed("capset"), unix.SYS_CAPSET, hdr, x.p.Data(data))
}

// credential is credential.apply's calls.
func (x *execPlan) credential(c *credential) {
	if len(c.groups) == 0 {
		s := x.call(failed("setgroups"), unix.SYS_SETGROUPS, nsenter.Val(0), nsenter.Val(0))
		x.p.OK(s, unix.EPERM) // denied with a single-id map
	} else {
		b := make([]byte, 4*len(c.groups))
		for i, g := range c.groups {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(g))
		}
		x.call(failed("setgroups"), unix.SYS_SETGROUPS, nsenter.Val(uintptr(len(c.groups))), x.p.Data(b))
	}
	if c.gid != 0 {
		g := nsenter.Val(uintptr(c.gid))
		x.call(failed("setgid %d (is gid %d mapped? see /etc/subgid)", c.gid, c.gid), unix.SYS_SETRESGID, g, g, g)
	}
	if c.uid != 0 {
		u := nsenter.Val(uintptr(c.uid))
		x.call(failed("setuid %d (is uid %d mapped? see /etc/subuid)", c.uid, c.uid), unix.SYS_SETRESUID, u, u, u)
	}
}

// guards is execGuards's calls.
func (x *execPlan) guards() {
	x.call(failed("prctl PR_SET_DUMPABLE"), unix.SYS_PRCTL, nsenter.Val(unix.PR_SET_DUMPABLE), nsenter.Val(0))
	x.call(failed("prctl PR_SET_PDEATHSIG"), unix.SYS_PRCTL, nsenter.Val(unix.PR_SET_PDEATHSIG), nsenter.Val(uintptr(unix.SIGKILL)))
	x.call(failed("close_range"), unix.SYS_CLOSE_RANGE, nsenter.Val(3), nsenter.Val(^uintptr(0)>>32), nsenter.Val(unix.CLOSE_RANGE_CLOEXEC))
}

// rlimits is applyRlimits's calls.
func (x *execPlan) rlimits(ls []specs.POSIXRlimit) error {
	for _, l := range ls {
		res := -1
		for _, r := range rlimitNames {
			if rlimitType(r.name) == l.Type {
				res = r.resource
			}
		}
		if res < 0 {
			return fmt.Errorf("ulimit %s: unknown limit", l.Type)
		}
		b := binary.LittleEndian.AppendUint64(nil, l.Soft)
		b = binary.LittleEndian.AppendUint64(b, l.Hard)
		x.call(failed("set %s to %s:%s", l.Type, rlimitString(l.Soft), rlimitString(l.Hard)),
			unix.SYS_PRLIMIT64, nsenter.Val(0), nsenter.Val(uintptr(res)), x.p.Data(b), nsenter.Val(0))
	}
	return nil
}

// execvp is findProgram and the execve after it, as execve attempts along
// $PATH, in the way of execvp(3): a candidate that is missing, or that the
// user may not run, is passed over (findProgram took the first whose mode
// has an x bit, and failed at its exec).
func (x *execPlan) execvp(args, env []string) {
	name := args[0]
	argv, envp := x.p.Strings(args), x.p.Strings(env)
	var paths []string
	switch {
	case strings.Contains(name, "/"):
		paths = []string{name}
	case name != "":
		pathEnv := envValue(env, "PATH")
		if pathEnv == "" {
			pathEnv = defaultPath
		}
		for _, dir := range filepath.SplitList(pathEnv) {
			if dir == "" {
				dir = "."
			}
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	first, last := x.p.Execvp(paths, argv, envp)
	for i, p := range paths {
		x.fails[first+nsenter.Step(i)] = func(e syscall.Errno) error {
			code, why := 126, e.Error()
			if e == unix.ENOENT {
				code = 127
			} else if e == unix.EACCES && x.isDir != nil && x.isDir(p) {
				why = "is a directory"
			}
			return &userns.StageError{Stage: "exec", Msg: fmt.Sprintf("exec %s: %s", p, why), Code: code}
		}
	}
	x.fails[last] = func(e syscall.Errno) error {
		msg := fmt.Sprintf("exec: %q: executable file not found in $PATH", name)
		if strings.Contains(name, "/") {
			msg = fmt.Sprintf("exec %s: %v", name, e)
		} else if name == "" {
			msg = "exec: empty command"
		}
		return &userns.StageError{Stage: "exec", Msg: msg, Code: 127}
	}
}

// failure is the error of a failure record the stage's child sent, as
// execMain would have sent it.
func (x *execPlan) failure(s nsenter.Step, errno syscall.Errno) error {
	err := fmt.Errorf("exec stage: step %d: %w", s, errno)
	if s == nsenter.StepTransport {
		err = nsenter.ErrTransport(errno)
	} else if f, ok := x.fails[s]; ok {
		err = f(errno)
	}
	if se, ok := err.(*userns.StageError); ok {
		return se
	}
	return &userns.StageError{Stage: "exec", Msg: err.Error()}
}

// inRootIsDir tells whether path, resolved inside the root of the process
// that pidfd holds, is a directory: a best guess for an error message only
// (the container may change its files meanwhile), false when unknown.
func inRootIsDir(pidfd *os.File) func(string) bool {
	return func(path string) bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", pidfd.Fd()))
		if err != nil {
			return false
		}
		pid := 0
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Pid:"); ok {
				pid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if pid <= 0 {
			return false
		}
		p, err := securejoin.SecureJoin(fmt.Sprintf("/proc/%d/root", pid), path)
		if err != nil {
			return false
		}
		st, err := os.Stat(p)
		return err == nil && st.IsDir()
	}
}
