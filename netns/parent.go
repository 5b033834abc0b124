package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The descriptors slirp4netns inherits (ExtraFiles start at 3).
const (
	slirpReadyFD = 3
	slirpExitFD  = 4
)

// stopTimeout bounds how long Stop waits for slirp4netns to leave after its
// exit-fd was closed before it kills it.
const stopTimeout = 2 * time.Second

// tunPath is the device slirp4netns opens inside the container's namespaces.
var tunPath = "/dev/net/tun"

// Features is what Check found out about the host's slirp4netns.
type Features struct {
	EnableSandbox       bool   // --enable-sandbox is supported
	EnableSeccomp       bool   // --enable-seccomp is supported
	NoSeccompFilter     bool   // the kernel has no seccomp filters, which --enable-seccomp needs
	DisableHostLoopback bool   // --disable-host-loopback is supported
	Path                string // the slirp4netns binary found in $PATH
	Version             string // its version, asked for only when something is missing; "" if unknown
	// Warning is set by Check when slirp4netns will run without its sandbox
	// or its seccomp filter, as the Config allows: one line for the user.
	Warning string
}

// minVersion is the first slirp4netns release with every option rabbitc
// passes (--netns-type, --enable-sandbox and --enable-seccomp came with it).
const minVersion = "0.4.0"

// Check runs in the parent before anything is started. For ModeSlirp it finds
// slirp4netns in $PATH, asks it for its options (one exec of --help, about
// 1.5 ms), decides how it is confined (confine) and checks that this user can
// open /dev/net/tun read-write. For the other modes it only validates cfg and
// returns empty Features.
func Check(cfg Config) (*Features, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.mode() != ModeSlirp {
		return &Features{}, nil
	}
	feat, err := CheckSlirp(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkTun(); err != nil {
		return nil, err
	}
	return feat, nil
}

// CheckSlirp is Check's part about slirp4netns itself: found in $PATH,
// and with the options cfg needs (confine). rabbitc doctor reports it.
func CheckSlirp(cfg Config) (*Features, error) {
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		return nil, errors.New("slirp4netns not found in $PATH (install slirp4netns >= 0.4, as root: apt-get install slirp4netns)")
	}
	feat, err := detectFeatures(path)
	if err != nil {
		return nil, err
	}
	if _, feat.Warning, err = confine(cfg, feat); err != nil {
		return nil, err
	}
	return feat, nil
}

// detectFeatures finds out which options the slirp4netns at path has, from
// its --help text. Running "slirp4netns --help" costs an exec, about 1.5 ms
// of a start-up whose floor is a few milliseconds, so the text is first
// looked for in the binary itself (its help text is a string constant there;
// about 0.05 ms). A binary that does not hold it, such as a wrapper script, is
// asked with --help.
//
// rootlesskit's slirp4netns.DetectFeatures does the --help part, but it costs
// the exec every time and importing it adds logrus to go.mod.
func detectFeatures(path string) (*Features, error) {
	help, ok := helpInBinary(path)
	if !ok {
		out, err := runSlirp(path, "--help")
		if err != nil {
			return nil, fmt.Errorf("run %s --help: %w (install slirp4netns >= %s)", path, err, minVersion)
		}
		help = out
	}
	feat, err := parseFeatures(help)
	if err != nil {
		old := &Features{Path: path, Version: slirpVersion(path)}
		return nil, fmt.Errorf("%s %w (install slirp4netns >= %s)", old.name(), err, minVersion)
	}
	feat.Path = path
	feat.NoSeccompFilter = !kernelHasSeccompFilter()
	if !feat.EnableSandbox || !feat.EnableSeccomp || feat.NoSeccompFilter || !feat.DisableHostLoopback {
		feat.Version = slirpVersion(path) // for the message; one more exec, only here
	}
	return feat, nil
}

// runSlirp runs slirp4netns with one option that prints and exits, with an
// empty environment, and returns its output; a binary that hangs is killed.
func runSlirp(path, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, arg)
	cmd.Env = []string{}
	out, err := cmd.Output()
	return string(out), err
}

// Version is the version of the slirp4netns at path, as its --version
// says; "" if unknown. One exec.
func Version(path string) string { return slirpVersion(path) }

// slirpVersion returns the version slirp4netns --version reports on its
// first line, "slirp4netns version 1.2.0" since 0.2.0; "" if it says
// nothing of the kind.
func slirpVersion(path string) string {
	out, err := runSlirp(path, "--version")
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(out, "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "slirp4netns version ")
	if !ok || strings.ContainsAny(v, " \t") || len(v) > 40 {
		return ""
	}
	return v
}

// name names the binary in messages, with its version when it is known:
// "slirp4netns 0.3.0 (/usr/bin/slirp4netns)".
func (f *Features) name() string {
	if f.Version == "" {
		return "slirp4netns of unknown version (" + f.Path + ")"
	}
	return "slirp4netns " + f.Version + " (" + f.Path + ")"
}

// helpMarker is a line of slirp4netns' --help text since 0.4.0.
const helpMarker = "--netns-type=TYPE"

// helpInBinary returns the contents of an ELF binary of at most 4 MiB that
// holds slirp4netns' help text.
func helpInBinary(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > 4<<20 {
		return "", false
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return "", false
	}
	s := string(b)
	if !strings.Contains(s, helpMarker) {
		return "", false
	}
	return s, true
}

// errTooOld is parseFeatures' error for a --help text without the options
// of 0.4.0.
var errTooOld = errors.New("is older than " + minVersion)

// parseFeatures reads the options in slirp4netns' --help text.
func parseFeatures(help string) (*Features, error) {
	// --netns-type came with v0.4.0, as did --ready-fd working with --configure.
	if !strings.Contains(help, "--netns-type") || !strings.Contains(help, "--ready-fd") || !strings.Contains(help, "--exit-fd") {
		return nil, errTooOld
	}
	return &Features{
		EnableSandbox:       strings.Contains(help, "--enable-sandbox"),
		EnableSeccomp:       strings.Contains(help, "--enable-seccomp"),
		DisableHostLoopback: strings.Contains(help, "--disable-host-loopback"),
	}, nil
}

// kernelHasSeccompFilter reports whether the kernel has seccomp filters:
// PR_SET_SECCOMP with a nil filter fails with EFAULT (or EACCES) where filters
// exist and with EINVAL where they do not; nothing is installed either way.
func kernelHasSeccompFilter() bool {
	if err := unix.Prctl(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err == unix.EINVAL {
		return false
	}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, 0, 0, 0) != unix.EINVAL
}

// checkTun opens /dev/net/tun read-write as slirp4netns will, and names the
// fix when that fails.
func checkTun() error {
	f, err := os.OpenFile(tunPath, os.O_RDWR, 0)
	if err == nil {
		return f.Close()
	}
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("%w (slirp4netns needs it; load the tun module, as root: modprobe tun)", err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (slirp4netns needs it; as root: chmod 0666 %s)", err, tunPath)
	}
	return fmt.Errorf("%w (slirp4netns needs it)", err)
}

// slirpArgs builds slirp4netns' arguments for the namespaces of pid.
func slirpArgs(pid int, cfg Config, feat *Features) ([]string, error) {
	confined, _, err := confine(cfg, feat)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--configure",
		"--mtu=" + strconv.Itoa(cfg.mtu()),
		"--ready-fd=" + strconv.Itoa(slirpReadyFD),
		"--exit-fd=" + strconv.Itoa(slirpExitFD),
	}
	args = append(args, confined...)
	return append(args, strconv.Itoa(pid), TapName), nil
}

// The --security-opt keys that let slirp4netns run without its sandbox or
// its seccomp filter (KEY=false; cmd/rabbitc parses them into Config). They
// are security options, beside seccomp=unconfined and
// no-new-privileges=false, because they weaken the isolation and that is
// where a user looks for such switches; --net takes a mode and nothing else.
// The names are slirp4netns' own (--enable-sandbox, --enable-seccomp) in
// docker's KEY=BOOL form; podman's spelling,
// --network slirp4netns:enable_sandbox=false, hides a security switch in a
// network mode string.
const (
	SecurityOptSandbox = "slirp4netns-sandbox"
	SecurityOptSeccomp = "slirp4netns-seccomp"
)

// confine decides the options that confine slirp4netns, from cfg and from
// what the installed one has (feat), so that nothing is dropped silently:
// it returns the options to pass, and a warning when slirp4netns is to run
// without its sandbox or seccomp filter (only cfg can allow that). It fails,
// naming the version found and the fix, when slirp4netns cannot use an
// option that cfg does not let go. Without --disable-host-loopback the
// container would reach every service on the host's 127.0.0.1, so that one
// is let go only by AllowHostLoopback, which allows exactly that.
func confine(cfg Config, feat *Features) (args []string, warning string, err error) {
	if !cfg.AllowHostLoopback {
		if !feat.DisableHostLoopback {
			return nil, "", fmt.Errorf("%s lacks --disable-host-loopback, so the container would reach every service on the host's 127.0.0.1 (install slirp4netns >= %s, or pass --allow-host-loopback to allow that)",
				feat.name(), minVersion)
		}
		args = append(args, "--disable-host-loopback")
	}
	if feat.EnableSeccomp && feat.NoSeccompFilter && !cfg.NoSlirpSeccomp {
		return nil, "", fmt.Errorf("slirp4netns --enable-seccomp needs seccomp filters, which this kernel lacks (build it with CONFIG_SECCOMP_FILTER, or pass --security-opt %s=false to run without it)", SecurityOptSeccomp)
	}
	var without, offs, lacks, fixes, missing []string
	for _, o := range []struct {
		flag, key string
		off, have bool
	}{
		{"--enable-sandbox", SecurityOptSandbox, cfg.NoSlirpSandbox, feat.EnableSandbox},
		{"--enable-seccomp", SecurityOptSeccomp, cfg.NoSlirpSeccomp, feat.EnableSeccomp},
	} {
		switch {
		case o.off:
			without, offs = append(without, o.flag), append(offs, o.key+"=false")
			if !o.have {
				missing = append(missing, o.flag)
			}
		case o.have:
			args = append(args, o.flag)
		default:
			lacks, fixes = append(lacks, o.flag), append(fixes, "--security-opt "+o.key+"=false")
		}
	}
	if len(lacks) > 0 {
		return nil, "", fmt.Errorf("%s lacks %s (install slirp4netns >= %s, or pass %s to run without %s)",
			feat.name(), strings.Join(lacks, " and "), minVersion, strings.Join(fixes, " "), itThem(lacks))
	}
	if len(without) > 0 {
		warning = fmt.Sprintf("slirp4netns runs without %s (--security-opt %s)", strings.Join(without, " and "), strings.Join(offs, ", "))
		if len(missing) > 0 {
			warning += fmt.Sprintf(": %s lacks %s (install slirp4netns >= %s to have %s)",
				feat.name(), strings.Join(missing, " and "), minVersion, itThem(missing))
		}
	}
	return args, warning, nil
}

func itThem(s []string) string {
	if len(s) == 1 {
		return "it"
	}
	return "them"
}

// Slirp is a running slirp4netns.
type Slirp struct {
	pid    int
	proc   *os.Process
	exitW  *os.File      // closing it tells slirp4netns to exit
	ready  chan struct{} // closed when the ready-fd was read
	readyE error         // set before ready is closed; nil when slirp4netns signalled ready
	done   chan struct{} // closed when slirp4netns has exited and been reaped
	err    error         // set before done is closed
	stderr *tailBuffer

	stopOnce sync.Once
	stopErr  error
	mu       sync.Mutex
	stopping bool // the exit-fd was closed by Stop
}

// StartSlirp starts slirp4netns against the network namespace of pid (the
// sandbox, whose uid and gid maps are written) and returns without waiting
// for it to be ready, so the caller can prepare the rootfs meanwhile.
//
// slirp4netns gets its own process group, so a ^C on the terminal reaches the
// container and not slirp4netns, and Pdeathsig SIGKILL from a locked thread
// that lives as long as it does; its exit-fd, which only this process holds,
// also stops it when this process dies. Its stdout is discarded and the tail
// of its stderr kept for error messages.
func StartSlirp(pid int, cfg Config, feat *Features) (*Slirp, error) {
	if feat == nil || feat.Path == "" {
		return nil, errors.New("start slirp4netns: no features (call netns.Check first)")
	}
	args, err := slirpArgs(pid, cfg, feat)
	if err != nil {
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start slirp4netns: ready pipe: %w", err)
	}
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, fmt.Errorf("start slirp4netns: exit pipe: %w", err)
	}
	s := &Slirp{
		exitW:  exitW,
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
		stderr: newTailBuffer(4096),
	}
	cmd := exec.Command(feat.Path, args...)
	cmd.Env = []string{}
	cmd.Stderr = s.stderr
	cmd.ExtraFiles = []*os.File{readyW, exitR} // slirpReadyFD, slirpExitFD
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.WaitDelay = stopTimeout // should a child of it keep stderr open

	started := make(chan error, 1)
	go s.run(cmd, started)
	err = <-started
	// Only slirp4netns keeps these ends, so its exit shows as EOF on readyR.
	readyW.Close()
	exitR.Close()
	if err != nil {
		readyR.Close()
		exitW.Close()
		return nil, fmt.Errorf("start %s: %w", feat.Path, err)
	}
	s.pid = cmd.Process.Pid
	s.proc = cmd.Process
	go s.readReady(readyR)
	return s, nil
}

// run starts slirp4netns on a locked thread, which Pdeathsig is bound to, and
// keeps that thread until slirp4netns has exited and been reaped.
func (s *Slirp) run(cmd *exec.Cmd, started chan<- error) {
	runtime.LockOSThread()
	// Unlocked, not left to die with this goroutine: the thread may have
	// started another Pdeathsig child (the sandbox) before it was ours, and
	// a locked goroutine that exits takes its thread down.
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		started <- err
		return
	}
	started <- nil
	werr := cmd.Wait()
	s.err = s.exitError(werr)
	close(s.done)
}

// exitError turns slirp4netns' wait status into the error Err reports.
func (s *Slirp) exitError(werr error) error {
	s.mu.Lock()
	stopping := s.stopping
	s.mu.Unlock()
	if stopping && werr == nil {
		return nil
	}
	if werr == nil {
		return errors.New("slirp4netns: exited")
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("slirp4netns: killed by signal %d (%s)", ws.Signal(), ws.Signal())
		}
		if line := s.stderr.lastLine(); line != "" {
			return fmt.Errorf("slirp4netns: %w: %s", werr, line)
		}
	}
	return fmt.Errorf("slirp4netns: %w", werr)
}

var errExitedBeforeReady = errors.New("exited before ready")

// readReady waits for slirp4netns to write to its ready-fd; EOF means it
// exited first.
func (s *Slirp) readReady(r *os.File) {
	defer r.Close()
	var b [1]byte
	n, err := r.Read(b[:])
	switch {
	case n == 1:
	case err == io.EOF:
		s.readyE = errExitedBeforeReady
	default:
		s.readyE = fmt.Errorf("read ready-fd: %w", err)
	}
	close(s.ready)
}

// Pid is slirp4netns' process id.
func (s *Slirp) Pid() int { return s.pid }

// WaitReady waits until slirp4netns has configured tap0. If slirp4netns exits
// first, the error is one line ending with the last thing it said on stderr.
func (s *Slirp) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return fmt.Errorf("slirp4netns: wait for ready: %w", ctx.Err())
	}
	if s.readyE == nil {
		return nil
	}
	// It closed the ready-fd without writing: it is exiting; let the
	// stderr copy finish so the message has its last words.
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		return fmt.Errorf("slirp4netns: %w", s.readyE)
	}
	if s.readyE == errExitedBeforeReady {
		return errors.New("slirp4netns: exited before ready: " + withFix(s.exitReason()))
	}
	return fmt.Errorf("slirp4netns: %w", s.readyE)
}

// exitReason says in a few words why slirp4netns exited (after done).
func (s *Slirp) exitReason() string {
	if line := s.stderr.lastLine(); line != "" {
		return line
	}
	if s.err != nil {
		return strings.TrimPrefix(s.err.Error(), "slirp4netns: ")
	}
	return "no error message"
}

// withFix adds the host fix to the slirp4netns failures that have one.
func withFix(reason string) string {
	switch {
	case strings.Contains(reason, tunPath) && strings.Contains(reason, "Permission denied"):
		return reason + " (as root: chmod 0666 " + tunPath + ")"
	case strings.Contains(reason, tunPath):
		return reason + " (load the tun module, as root: modprobe tun)"
	}
	return reason
}

// Done is closed when slirp4netns has exited.
func (s *Slirp) Done() <-chan struct{} { return s.done }

// Err says why slirp4netns exited: nil after Done when it left because Stop
// asked it to, an error when it exited on its own or was killed. Before Done
// it is nil.
func (s *Slirp) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Stop closes the exit-fd, waits for slirp4netns to exit (at most 2s, then it
// is killed) and reaps it. It is idempotent; it returns an error only when
// slirp4netns had to be killed.
func (s *Slirp) Stop() error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		s.exitW.Close()
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		_ = s.proc.Kill() // through a pidfd: never hits a reused pid
		<-s.done
		s.stopErr = fmt.Errorf("stop slirp4netns %d: still running %v after its exit-fd was closed, killed", s.pid, stopTimeout)
	})
	return s.stopErr
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLine returns the last line of slirp4netns' stderr that says something:
// it skips its progress chatter ("sent tapfd=5 for tap0") and the generic
// "child failed(1)" that follows the real error from its child.
func (t *tailBuffer) lastLine() string {
	return lastMeaningfulLine(t.String())
}

func lastMeaningfulLine(s string) string {
	lines := strings.Split(s, "\n")
	last := ""
	for i := len(lines) - 1; i >= 0; i-- {
		l := oneLine(lines[i])
		if l == "" {
			continue
		}
		if last == "" {
			last = l
		}
		if strings.HasPrefix(l, "sent tapfd=") || strings.HasPrefix(l, "received tapfd=") ||
			strings.HasPrefix(l, "child failed(") || strings.HasPrefix(l, "WARNING:") {
			continue
		}
		return l
	}
	return last
}
