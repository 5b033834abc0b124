package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The outbound phase measures rabbitc once more with CAP_NET_ADMIN in the
// host's user namespace, and the forwarding phase rabbitc's
// --publish-mode=direct so, on a machine whose security module lets a
// socket filter be attached only with it (netaccel's pin needs one). The
// bench user cannot raise a capability, and the bench must not run as
// root. So run.sh, as root, starts this helper as the bench user with
// CAP_NET_ADMIN in its ambient set; the helper starts the bench (run.sh's user stage) with every
// capability dropped, as its child, and hands it one end of a socket pair.
// Over it the bench asks the helper to start `rabbitc run ...`, which
// inherits the ambient capability: nothing else the bench runs has it, and
// the helper starts no other program. It lives as long as the bench.

// capLauncherArg makes rabbitbench that helper:
// rabbitbench cap-launcher RABBITC -- CMD [ARGS...]
const capLauncherArg = "cap-launcher"

// launcherFDEnv names the descriptor of the bench's end of the socket pair.
const launcherFDEnv = "RABBITBENCH_CAP_LAUNCHER_FD"

// launchRequest is one request; it comes with four descriptors: stdin,
// stdout and stderr of the process, and a stream socket for the replies.
type launchRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

// launchReply is sent twice on the reply socket: once with the pid (or an
// error), once more when the process has exited.
type launchReply struct {
	Pid    int    `json:"pid,omitempty"`
	Error  string `json:"error,omitempty"`
	Exited bool   `json:"exited,omitempty"`
}

func capLauncher(args []string) int {
	if len(args) < 3 || args[1] != "--" {
		fmt.Fprintln(os.Stderr, "usage: rabbitbench cap-launcher RABBITC -- CMD [ARGS...]")
		return 2
	}
	rabbitc, argv := args[0], args[2:]
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "rabbitbench cap-launcher:", err)
		return 1
	}
	// Orphans of the rabbitc it starts come here, not to PID 1.
	if err := becomeSubreaper(); err != nil {
		return fail(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "launcher")
	child := exec.Command(argv[0], argv[1:]...)
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	child.ExtraFiles = []*os.File{theirs}
	child.Env = append(os.Environ(), launcherFDEnv+"=3")
	if err := child.Start(); err != nil {
		return fail(err)
	}
	theirs.Close()
	waited.Store(child.Process.Pid, true)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			child.Process.Signal(s)
		}
	}()
	var mu sync.Mutex
	running := map[int]bool{}
	go serveLaunches(fds[0], rabbitc, &mu, running)
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var werr error
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case <-tick.C:
			reapOrphans()
		}
	}
	// The bench stops what it started; whatever is left goes now.
	mu.Lock()
	for pid := range running {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	reapOrphans()
	if ee, ok := werr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if werr != nil {
		return fail(werr)
	}
	return 0
}

// serveLaunches reads requests until the bench closes its end.
func serveLaunches(fd int, rabbitc string, mu *sync.Mutex, running map[int]bool) {
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		var files []*os.File
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if rights, err := unix.ParseUnixRights(&m); err == nil {
					for _, r := range rights {
						files = append(files, os.NewFile(uintptr(r), "fd"))
					}
				}
			}
		}
		if len(files) != 4 {
			for _, f := range files {
				f.Close()
			}
			continue
		}
		var req launchRequest
		if err := json.Unmarshal(buf[:n], &req); err != nil {
			replyTo(files[3], launchReply{Error: "bad request: " + err.Error()})
			closeAll(files)
			continue
		}
		go launch(rabbitc, req, files, mu, running)
	}
}

func launch(rabbitc string, req launchRequest, files []*os.File, mu *sync.Mutex, running map[int]bool) {
	defer closeAll(files)
	reply := files[3]
	// rabbitc run, nothing else.
	if len(req.Args) == 0 || req.Args[0] != "run" {
		replyTo(reply, launchReply{Error: fmt.Sprintf("refused: only %s run ... is started with CAP_NET_ADMIN", rabbitc)})
		return
	}
	cmd := exec.Command(rabbitc, req.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	cmd.Env = req.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		replyTo(reply, launchReply{Error: err.Error()})
		return
	}
	pid := cmd.Process.Pid
	waited.Store(pid, true)
	mu.Lock()
	running[pid] = true
	mu.Unlock()
	files[0].Close()
	files[1].Close()
	files[2].Close()
	replyTo(reply, launchReply{Pid: pid})
	err := cmd.Wait()
	waited.Delete(pid)
	mu.Lock()
	delete(running, pid)
	mu.Unlock()
	r := launchReply{Exited: true}
	if err != nil {
		r.Error = err.Error()
	}
	replyTo(reply, r)
}

func replyTo(f *os.File, r launchReply) {
	b, _ := json.Marshal(r)
	f.Write(append(b, '\n'))
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// launcher is the bench's side: the helper's socket, when run.sh started
// one.
type launcher struct {
	mu sync.Mutex
	fd int
}

// openLauncher takes the helper's descriptor from the environment, so that
// no child of the bench inherits it. It returns nil when there is none.
func openLauncher() *launcher {
	v := os.Getenv(launcherFDEnv)
	os.Unsetenv(launcherFDEnv)
	fd, err := strconv.Atoi(v)
	if v == "" || err != nil {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil
	}
	unix.CloseOnExec(fd)
	return &launcher{fd: fd}
}

// capLauncher is the helper of run.sh (nil when there is none), taken
// from the environment once for the phases that use it: forward and
// outbound.
func (e *env) capLauncher() *launcher {
	e.capOnce.Do(func() { e.capL = openLauncher() })
	return e.capL
}

// start asks the helper to run rabbitc with args; stdout and stderr go to
// the given files. It returns the pid and a channel that gets the exit.
func (l *launcher) start(args, env []string, stdout, stderr *os.File) (int, chan error, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, err
	}
	ours := os.NewFile(uintptr(pair[0]), "launch-reply")
	theirs := os.NewFile(uintptr(pair[1]), "launch-reply")
	null, err := os.Open(os.DevNull)
	if err != nil {
		ours.Close()
		theirs.Close()
		return 0, nil, err
	}
	b, _ := json.Marshal(launchRequest{Args: args, Env: env})
	rights := unix.UnixRights(int(null.Fd()), int(stdout.Fd()), int(stderr.Fd()), int(theirs.Fd()))
	l.mu.Lock()
	err = unix.Sendmsg(l.fd, b, rights, nil, 0)
	l.mu.Unlock()
	null.Close()
	theirs.Close()
	if err != nil {
		ours.Close()
		return 0, nil, fmt.Errorf("send to the CAP_NET_ADMIN helper: %w", err)
	}
	rd := bufio.NewReader(ours)
	read := func() (launchReply, error) {
		var r launchReply
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return r, fmt.Errorf("read from the CAP_NET_ADMIN helper: %w", err)
		}
		return r, json.Unmarshal(line, &r)
	}
	ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	first, err := read()
	if err == nil && first.Error != "" {
		err = fmt.Errorf("CAP_NET_ADMIN helper: %s", first.Error)
	}
	if err != nil {
		ours.Close()
		return 0, nil, err
	}
	ours.SetReadDeadline(time.Time{})
	exited := make(chan error, 1)
	go func() {
		defer ours.Close()
		r, err := read()
		if err == nil && r.Error != "" {
			err = fmt.Errorf("%s", r.Error)
		}
		exited <- err
	}()
	return first.Pid, exited, nil
}

// capsOf returns the effective and ambient capability masks of pid, as
// /proc/PID/status gives them (hexadecimal).
func capsOf(pid int) (eff, amb string) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			eff = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "CapAmb:"); ok {
			amb = strings.TrimSpace(v)
		}
	}
	return eff, amb
}

// startVia starts the peer's rabbitc through the helper: p.cmd gets the
// process (not a child of the bench: stopCmd signals it through a pidfd),
// p.exited its end, p.stderr what it prints there.
func (p *fwdPeer) startVia(l *launcher, args []string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	pid, exited, err := l.start(args, p.cmd.Env, p.cmd.Stdout.(*os.File), w)
	w.Close()
	if err != nil {
		r.Close()
		return err
	}
	copied := make(chan struct{})
	go func() {
		// As exec.Cmd fills a Buffer given as Stderr.
		io.Copy(&p.stderr, r)
		r.Close()
		close(copied)
	}()
	proc, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	p.cmd.Process = proc
	go func() {
		err := <-exited
		select {
		case <-copied:
		case <-time.After(time.Second):
		}
		p.exited <- err
	}()
	return nil
}
