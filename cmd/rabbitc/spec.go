package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/portfwd"
	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/security"
)

// spec is everything the stages need, built from the flags by newSpec. It
// travels to the sandbox and to init over the sync channel as JSON; code
// below the CLI never sees a flag.
type spec struct {
	ID       string
	StateDir string
	Args     []string // the payload's argv; Args[0] is resolved inside the rootfs
	Env      []string
	Cwd      string
	User     string // UID[:GID] or NAME[:GROUP], resolved inside the rootfs
	Hostname string
	Tty      bool
	Rootfs   rootfs.Config
	Net      netns.Config
	Publish  []portfwd.Spec
	Security security.Config
	Init     bool `json:",omitempty"` // --init: a reaper as PID 1, the payload its child
	// Rlimits are the --ulimit limits, in the runtime-spec's form (the spec
	// moves to it) and already checked against rabbitc's own hard limits.
	Rlimits []specs.POSIXRlimit `json:",omitempty"`
}

// startSpec is what init gets with Start: what it needs only for its last
// steps, made by the parent while init sets up the root.
type startSpec struct {
	Filter      []byte  `json:",omitempty"` // the compiled seccomp program (security.Config.Filter)
	FilterFlags uintptr `json:",omitempty"`
}

// runOptions are the flags of `rabbitc run` (and of the bare seed form).
type runOptions struct {
	rootfs      string
	cmd         string
	env         []string
	workdir     string
	hostname    string
	user        string
	volumes     []string
	readOnly    bool
	tty         bool
	interactive bool
	net         string
	publish     []string
	mtu         int
	hostLoop    bool
	stopTimeout int
	capAdd      []string
	capDrop     []string
	securityOpt []string
	rm          int // --rm: 1 given, -1 --rm=false, 0 not given (rmFlag)
	detach      bool
	name        string
	id          string // the detached monitor's: the ID its rabbitc run -d chose
	tmpfs       []string
	envFiles    []string
	addHosts    []string
	init        bool
	ulimits     []string
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// newSpec validates every flag and builds the spec. args are the positional
// arguments (after `--`). stdinTTY says whether rabbitc's stdin is a terminal.
func newSpec(o *runOptions, args []string, stdinTTY bool) (*spec, error) {
	if o.rm < 0 && !o.detach {
		return nil, errors.New("--rm=false: a foreground container is always removed when it exits (run it with -d to keep it until rabbitc rm)")
	}
	if o.name != "" {
		if err := checkName(o.name); err != nil {
			return nil, err
		}
	}
	if o.detach && (o.tty || o.interactive) {
		return nil, errors.New("-d with -t or -i: a detached container has no terminal to attach to (run it with -d alone, then rabbitc exec -it ID sh)")
	}
	s := &spec{}
	if o.rootfs == "" {
		return nil, errors.New("--rootfs is required (a directory holding the container's root filesystem)")
	}
	root, err := filepath.Abs(o.rootfs)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", o.rootfs, err)
	}
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("rootfs %s: no such directory (pass --rootfs a directory holding the container's root filesystem)", o.rootfs)
	case err != nil:
		return nil, fmt.Errorf("rootfs %s: %w", o.rootfs, err)
	case !st.IsDir():
		return nil, fmt.Errorf("rootfs %s: not a directory (pass --rootfs a directory holding the container's root filesystem)", o.rootfs)
	}
	s.Rootfs.Rootfs = root
	s.Rootfs.ReadOnly = o.readOnly

	s.Args = payloadArgs(o.cmd, args)

	if s.Net.Mode, err = netns.ParseMode(o.net); err != nil {
		return nil, err
	}
	if o.mtu < 0 || (o.mtu != 0 && o.mtu < 576) || o.mtu > 65521 {
		return nil, fmt.Errorf("--mtu %d: out of range (576..65521)", o.mtu)
	}
	s.Net.MTU = o.mtu
	s.Net.AllowHostLoopback = o.hostLoop
	secOpts, err := slirpSecurityOpts(o.securityOpt, &s.Net)
	if err != nil {
		return nil, err
	}
	if err := s.Net.Validate(); err != nil {
		return nil, err
	}
	for _, h := range o.addHosts {
		e, err := netns.ParseHostEntry(h, s.Net)
		if err != nil {
			return nil, err
		}
		s.Net.ExtraHosts = append(s.Net.ExtraHosts, e)
	}
	s.Rootfs.HostNetwork = s.Net.Mode == netns.ModeHost

	for _, p := range o.publish {
		ps, err := portfwd.ParseSpec(p)
		if err != nil {
			return nil, err
		}
		s.Publish = append(s.Publish, ps...)
	}
	if len(s.Publish) > 0 && s.Net.Mode != netns.ModeSlirp {
		return nil, fmt.Errorf("--publish needs --net slirp4netns (with --net %s the container's ports are %s)", s.Net.Mode,
			map[string]string{netns.ModeHost: "already the host's", netns.ModeNone: "unreachable"}[s.Net.Mode])
	}
	if err := portfwd.CheckConflicts(s.Publish); err != nil {
		return nil, err
	}

	cwd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("getwd: %w", err)
	}
	for _, v := range o.volumes {
		m, err := rootfs.ParseVolume(v, cwd)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(m.Source); err != nil {
			return nil, fmt.Errorf("volume %s: source %s: %w (create it first)", v, m.Source, errors.Unwrap(err))
		}
		s.Rootfs.Volumes = append(s.Rootfs.Volumes, m)
	}
	for _, v := range o.tmpfs {
		t, err := rootfs.ParseTmpfs(v)
		if err != nil {
			return nil, err
		}
		s.Rootfs.Tmpfs = append(s.Rootfs.Tmpfs, t)
	}

	if o.workdir != "" && !strings.HasPrefix(o.workdir, "/") {
		return nil, fmt.Errorf("--workdir %s: not an absolute path", o.workdir)
	}
	s.Cwd = o.workdir
	if o.user != "" {
		if err := checkUser(o.user); err != nil {
			return nil, err
		}
	}
	s.User = o.user

	s.ID = o.id
	if s.ID == "" {
		s.ID = newID()
	}
	s.Hostname = o.hostname
	if s.Hostname == "" {
		s.Hostname = s.ID[:12]
	}
	if err := checkHostname(s.Hostname); err != nil {
		return nil, err
	}
	s.Rootfs.EtcFiles = etcFiles(s)
	if s.Security, err = security.ParseConfig(o.capAdd, o.capDrop, secOpts); err != nil {
		return nil, err
	}
	if s.Rlimits, err = parseUlimits(o.ulimits); err != nil {
		return nil, err
	}
	s.Tty = o.tty
	s.Init = o.init
	flags, err := readEnvFiles(o.envFiles)
	if err != nil {
		return nil, err
	}
	env, err := buildEnv(append(flags, o.env...), s.Hostname, s.Tty)
	if err != nil {
		return nil, err
	}
	s.Env = env
	if err := checkCommand(s, o.rootfs); err != nil {
		return nil, err
	}
	return s, nil
}

// checkCommand refuses, before any process starts or anything is created in
// the rootfs, a command that the rootfs on disk shows cannot run
// (rootfs.CheckCommand), with docker's 127 or 126.
func checkCommand(s *spec, rootfsFlag string) error {
	pathEnv := envValue(s.Env, "PATH")
	if pathEnv == "" {
		pathEnv = defaultPath // as findProgram
	}
	code, err := rootfs.CheckCommand(s.Rootfs, s.Args[0], s.Cwd, pathEnv)
	if err == nil {
		return nil
	}
	hint := ""
	if code == 127 {
		hint = " (is --rootfs a container's root filesystem?)"
	}
	return &codeError{code: code, err: fmt.Errorf("%w in rootfs %s%s", err, rootfsFlag, hint)}
}

// payloadArgs applies the --cmd rule: with --cmd, the positional arguments
// are its arguments; without it they are the command itself; with neither,
// a shell.
func payloadArgs(cmd string, args []string) []string {
	if cmd != "" {
		return append([]string{cmd}, args...)
	}
	if len(args) > 0 {
		return args
	}
	return []string{"/bin/sh"}
}

// slirpSecurityOpts takes the --security-opt values about slirp4netns
// (netns.SecurityOptSandbox and netns.SecurityOptSeccomp, =BOOL; the last
// one wins) into cfg and returns the others for security.ParseConfig, which
// knows nothing of slirp4netns.
func slirpSecurityOpts(opts []string, cfg *netns.Config) ([]string, error) {
	var rest []string
	for _, opt := range opts {
		key, val, _ := strings.Cut(opt, "=")
		var off *bool
		switch {
		case key == netns.SecurityOptSandbox:
			off = &cfg.NoSlirpSandbox
		case key == netns.SecurityOptSeccomp:
			off = &cfg.NoSlirpSeccomp
		case strings.HasPrefix(opt, "slirp4netns"):
			return nil, fmt.Errorf("security-opt %q: unknown option (use %s=false or %s=false)", opt, netns.SecurityOptSandbox, netns.SecurityOptSeccomp)
		default:
			rest = append(rest, opt)
			continue
		}
		on, err := strconv.ParseBool(val)
		if err != nil {
			return nil, fmt.Errorf("security-opt %q: invalid boolean %q (use %s=true|false)", opt, val, key)
		}
		*off = !on
	}
	return rest, nil
}

// readEnvFiles reads --env-file files as docker does: one K=V (or a bare K,
// which copies the host's value) per line, blank lines and lines starting
// with # skipped, the value taken as written (no quotes removed). The
// entries go before -e's, which override them.
func readEnvFiles(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", p, errors.Unwrap(err))
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if t := strings.TrimLeft(line, " \t"); t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			k, _, _ := strings.Cut(line, "=")
			if k == "" || strings.ContainsAny(k, " \t\x00") || strings.ContainsRune(line, 0) {
				return nil, fmt.Errorf("--env-file %s: line %d: expected KEY=VALUE, got %q", p, i+1, line)
			}
			out = append(out, line)
		}
	}
	return out, nil
}

// buildEnv returns the payload's environment: defaults, then -e in order
// (applyEnvFlags).
func buildEnv(flags []string, hostname string, tty bool) ([]string, error) {
	env := []string{"PATH=" + defaultPath, "HOSTNAME=" + hostname}
	if tty {
		env = append(env, "TERM="+hostTerm())
	}
	return applyEnvFlags(env, flags)
}

// hostTerm is the TERM a pty gets: the user's, or xterm.
func hostTerm() string {
	if term := os.Getenv("TERM"); term != "" {
		return term
	}
	return "xterm"
}

// applyEnvFlags applies --env-file lines and -e values to env, in order:
// K=V sets, a bare K copies the host's value if set, as docker does.
func applyEnvFlags(env, flags []string) ([]string, error) {
	for _, e := range flags {
		k, v, hasValue := strings.Cut(e, "=")
		if k == "" || strings.ContainsAny(k, "\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("--env %q: expected KEY=VALUE", e)
		}
		if !hasValue {
			hv, ok := os.LookupEnv(k)
			if !ok {
				continue
			}
			v = hv
		}
		env = setEnv(env, k, v)
	}
	return env, nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

func hasEnv(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

// checkUser validates -u syntax: UID[:GID] or NAME[:GROUP]; names are
// resolved inside the rootfs.
func checkUser(u string) error {
	name, group, _ := strings.Cut(u, ":")
	for _, p := range []string{name, group} {
		if strings.ContainsAny(p, "\x00/ \n") {
			return fmt.Errorf("--user %q: expected UID[:GID] or NAME[:GROUP]", u)
		}
		if n, err := strconv.Atoi(p); err == nil && (n < 0 || n > 1<<31) {
			return fmt.Errorf("--user %q: id out of range", u)
		}
	}
	if name == "" {
		return fmt.Errorf("--user %q: expected UID[:GID] or NAME[:GROUP]", u)
	}
	return nil
}

func checkHostname(h string) error {
	if len(h) > 64 {
		return fmt.Errorf("--hostname %q: longer than 64 characters", h)
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return fmt.Errorf("--hostname %q: only letters, digits, '-', '.' and '_' are allowed", h)
		}
	}
	return nil
}

// newID returns 16 random bytes in hex, from getrandom(2) as crypto/rand
// would: not through crypto/rand, which brought 15 packages (its FIPS
// module: hashes, AES, a DRBG) whose initialisation every start of the
// binary paid, the stages' and exec's included (package inits 2.4-2.7 ms
// before, 2.2 ms after on the bench machine, GODEBUG=inittrace=1).
func newID() string {
	b := make([]byte, 16)
	for n := 0; n < len(b); {
		m, err := unix.Getrandom(b[n:], 0)
		if err != nil && err != unix.EINTR {
			panic(fmt.Sprintf("getrandom: %v", err)) // Linux 3.17+, never fails on a full buffer
		}
		n += max(m, 0)
	}
	return hex.EncodeToString(b)
}
