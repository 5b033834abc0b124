package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/portfwd"
	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/security"
	"github.com/rabbitc/rabbitc/storage"
)

// spec is the container: an OCI runtime spec (what `run` makes of its
// flags, and what the OCI verbs read from a bundle's config.json) and the
// few things only rabbitc's own run adds to it (a monitor's network, ports,
// the --init reaper, the generated /etc files). It travels to the sandbox
// and to init over the sync channel as JSON, and is the state's
// config.json; code below the CLI never sees a flag. The stages take their
// rootfs and security settings from the OCI part alone (rootfsConfig,
// securityConfig): one path for both faces.
type spec struct {
	ID       string
	StateDir string
	OCI      *specs.Spec

	// User is -u as given (UID[:GID] or NAME[:GROUP]), resolved inside the
	// rootfs: the runtime spec has numeric ids only. "" takes
	// OCI.Process.User.
	User     string         `json:",omitempty"`
	Net      netns.Config   // the network the monitor makes (slirp4netns, host, none)
	Publish  []portfwd.Spec `json:",omitempty"`
	Init     bool           `json:",omitempty"` // --init: a reaper as PID 1, the payload its child
	EtcFiles []rootfs.File  `json:",omitempty"` // /etc/hosts, /etc/hostname, /etc/resolv.conf (etcFiles)
	// SeccompDefault asks for rabbitc's default profile (docker's for the
	// container's bounding set, and rabbitc's hardening rules), which the
	// parent resolves and compiles off the start-up's path
	// (security.Config.Default). OCI.Linux.Seccomp is then nil: the profile
	// is never encoded for init (decoding docker's default costs 0.4 ms).
	SeccompDefault bool `json:",omitempty"`
	// Filter is the compiled seccomp program when it was compiled before
	// init got the spec (a --security-opt seccomp=FILE profile).
	Filter      []byte  `json:",omitempty"`
	FilterFlags uintptr `json:",omitempty"`

	// OCIMode is a container of the OCI verbs (create): init waits on
	// exec.fifo for start, runs the hooks, and passes ExtraFDs descriptors
	// (--preserve-fds, LISTEN_FDS) on to the process as 3, 4, ...
	OCIMode   bool   `json:",omitempty"`
	ExtraFDs  int    `json:",omitempty"`
	HookState []byte `json:",omitempty"` // the state hooks read on their stdin
	MountNSFD int    `json:",omitempty"` // a mount namespace to join (by path in the config), inherited here

	// A container of an image: the overlay init mounts as its root, and
	// the directory of its writes (upper, work, merged; or with the vfs
	// storage driver, rootfs: the copy) in the image store.
	Overlay       *rootfs.Overlay `json:",omitempty"`
	ContainerDir  string          `json:",omitempty"`
	StorageDriver string          `json:",omitempty"` // overlay, fuse-overlayfs or vfs (storage.go)
	Image         string          `json:",omitempty"` // the image's digest
	ImageRef      string          `json:",omitempty"`
	StopSignal    string          `json:",omitempty"` // the image's StopSignal, for stop

	imageEnv  []string       // the image's Env, under -e
	storage   *storageChoice // how the image's layers become the root
	copyLower []string       // vfs: the layers to copy into Root.Path at create
	exposed   int            // -P: the first Publish entries, on ports the kernel chooses
}

// rootfsConfig is what rootfs.Setup needs, from the OCI spec.
func (s *spec) rootfsConfig() rootfs.Config {
	o, l := s.OCI, s.linux()
	return rootfs.Config{
		Rootfs:          o.Root.Path,
		ReadOnly:        o.Root.Readonly,
		Mounts:          o.Mounts,
		MaskedPaths:     l.MaskedPaths,
		ReadonlyPaths:   l.ReadonlyPaths,
		Devices:         l.Devices,
		RootPropagation: l.RootfsPropagation,
		Sysctl:          l.Sysctl,
		EtcFiles:        s.EtcFiles,
		Overlay:         s.Overlay,
		HostNetwork:     !s.hasNamespace(specs.NetworkNamespace),
	}
}

// securityConfig is what the security package needs, from the OCI spec.
func (s *spec) securityConfig() security.Config {
	p := s.OCI.Process
	return security.Config{
		Capabilities: p.Capabilities,
		NoNewPrivs:   p.NoNewPrivileges,
		Seccomp:      s.linux().Seccomp,
		Default:      s.SeccompDefault,
		Filter:       s.Filter,
		FilterFlags:  s.FilterFlags,
	}
}

func (s *spec) linux() *specs.Linux {
	if s.OCI.Linux == nil {
		return &specs.Linux{}
	}
	return s.OCI.Linux
}

// hasNamespace tells whether the container has a namespace of kind t.
func (s *spec) hasNamespace(t specs.LinuxNamespaceType) bool {
	for _, ns := range s.linux().Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// forInit is the spec as init gets it: without the seccomp profile, which
// init never reads (the parent compiles it; init loads the program it gets
// with Start, or Filter).
func (s *spec) forInit() *spec {
	if s.OCI.Linux == nil || s.OCI.Linux.Seccomp == nil {
		return s
	}
	c, o, l := *s, *s.OCI, *s.OCI.Linux
	l.Seccomp = nil
	o.Linux = &l
	c.OCI = &o
	return &c
}

// newOCISpec is the runtime spec of `rabbitc run` before its flags: runc's
// `runc spec` defaults (mounts, masked and read-only paths), every
// namespace new, and no_new_privs as docker's default.
func newOCISpec() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Cwd: "/", NoNewPrivileges: true},
		Root:    &specs.Root{},
		Mounts:  rootfs.DefaultMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.UserNamespace}, {Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}, {Type: specs.CgroupNamespace},
				{Type: specs.NetworkNamespace},
			},
			MaskedPaths:   rootfs.DefaultMaskedPaths,
			ReadonlyPaths: rootfs.DefaultReadonlyPaths,
		},
	}
}

// startSpec is what init gets with Start: what it needs only for its last
// steps, made by the parent while init sets up the root.
type startSpec struct {
	Filter      []byte  `json:",omitempty"` // the compiled seccomp program (security.Config.Filter)
	FilterFlags uintptr `json:",omitempty"`
	// NetFilter is network acceleration's seccomp program (netaccel.Filter,
	// as bytes): init installs it last before exec and sends its listener
	// (netaccel.go).
	NetFilter []byte `json:",omitempty"`
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
	entrypoint  string // --entrypoint, for an image
	pull        string // --pull missing|always|never
	platform    string // --platform, for an image
	quiet       bool   // -q: no pull progress
	netAccel    string // --net-accel on|off
	publishMode string // --publish-mode forward|direct
	debug       bool   // --debug

	image         string         // the image, when no --rootfs was given (the first argument)
	resolved      *resolvedImage // the image, pulled and unpacked (imagecmd.go)
	entrypointSet bool           // --entrypoint was given ("" clears the image's)
	noImage       bool           // the arguments are a command (they followed "--"), not IMAGE [CMD]
	publishAll    bool           // -P: the image's exposed ports, each on a free host port
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
	if err := checkPublishMode(o.publishMode); err != nil {
		return nil, err
	}
	if err := checkNetAccel(o.netAccel); err != nil {
		return nil, err
	}
	if o.detach && (o.tty || o.interactive) {
		return nil, errors.New("-d with -t or -i: a detached container has no terminal to attach to (run it with -d alone, then rabbitc exec -it ID sh)")
	}
	s := &spec{OCI: newOCISpec()}
	proc := s.OCI.Process
	s.ID = o.id
	if s.ID == "" {
		s.ID = newID()
	}
	var err error
	if o.resolved != nil {
		if err := s.fromImage(o, args); err != nil {
			return nil, err
		}
	} else if err := s.fromRootfs(o, args); err != nil {
		return nil, err
	}

	secOpts, err := s.parseNetwork(o)
	if err != nil {
		return nil, err
	}
	if err := s.parseMounts(o); err != nil {
		return nil, err
	}

	if o.workdir != "" && !strings.HasPrefix(o.workdir, "/") {
		return nil, fmt.Errorf("--workdir %s: not an absolute path", o.workdir)
	}
	if o.workdir != "" {
		proc.Cwd = o.workdir
	}
	if o.user != "" {
		if err := checkUser(o.user); err != nil {
			return nil, err
		}
		s.User = o.user
	}

	s.OCI.Hostname = o.hostname
	if s.OCI.Hostname == "" {
		s.OCI.Hostname = s.ID[:12]
	}
	if err := checkHostname(s.OCI.Hostname); err != nil {
		return nil, err
	}
	s.EtcFiles = etcFiles(s)
	if err := s.parseSecurity(o, secOpts); err != nil {
		return nil, err
	}
	if proc.Rlimits, err = parseUlimits(o.ulimits); err != nil {
		return nil, err
	}
	proc.Terminal = o.tty
	s.Init = o.init
	flags, err := readEnvFiles(o.envFiles)
	if err != nil {
		return nil, err
	}
	if proc.Env, err = buildEnv(s.imageEnv, append(flags, o.env...), s.OCI.Hostname, o.tty); err != nil {
		return nil, err
	}
	if s.ContainerDir == "" { // an image's root is not on disk before create
		if err := checkCommand(s, o.rootfs); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// fromRootfs takes --rootfs and the payload's argv.
func (s *spec) fromRootfs(o *runOptions, args []string) error {
	if o.publishAll {
		return errors.New("-P publishes an image's exposed ports: a --rootfs has none (use -p HOST:CONTAINER)")
	}
	if o.rootfs == "" {
		return errors.New("--rootfs is required (a directory holding the container's root filesystem), or an image before the command: run IMAGE [CMD...]")
	}
	root, err := filepath.Abs(o.rootfs)
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", o.rootfs, err)
	}
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("rootfs %s: no such directory (pass --rootfs a directory holding the container's root filesystem)", o.rootfs)
	case err != nil:
		return fmt.Errorf("rootfs %s: %w", o.rootfs, err)
	case !st.IsDir():
		return fmt.Errorf("rootfs %s: not a directory (pass --rootfs a directory holding the container's root filesystem)", o.rootfs)
	}
	s.OCI.Root.Path, s.OCI.Root.Readonly = root, o.readOnly
	s.OCI.Process.Args = payloadArgs(o.cmd, args)
	return nil
}

// fromImage takes the resolved image: its layers under an overlay whose
// writable half is the container's own (containerDir), and its config as
// docker applies it; flags win.
func (s *spec) fromImage(o *runOptions, args []string) error {
	im := o.resolved
	ic := im.Config
	argv, err := imageArgs(ic, o, o.entrypointSet, args)
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Ref, err)
	}
	dir := containerDir(im.Store, s.ID)
	st, err := chooseStorage(im.Store)
	if err != nil {
		return err
	}
	s.StorageDriver, s.storage = string(st.driver), st
	s.OCI.Root.Readonly = o.readOnly
	if st.driver == storage.VFS {
		s.OCI.Root.Path, s.copyLower = filepath.Join(dir, "rootfs"), im.Lower
	} else {
		s.OCI.Root.Path = filepath.Join(dir, "merged")
		s.Overlay = &rootfs.Overlay{Lower: im.Lower, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work")}
		if st.driver == storage.FuseOverlayfs {
			s.Overlay.Fuse = &rootfs.FuseMount{Dev: fuseDevFD, Mounted: fuseMountedFD}
		}
	}
	s.ContainerDir, s.Image, s.ImageRef, s.StopSignal = dir, im.Digest, im.Ref, ic.StopSignal
	p := s.OCI.Process
	p.Args = argv
	if ic.WorkingDir != "" {
		p.Cwd = ic.WorkingDir
	}
	if o.user == "" && ic.User != "" {
		if err := checkUser(ic.User); err != nil {
			return fmt.Errorf("image %s: User %q: %w", im.Ref, ic.User, err)
		}
		s.User = ic.User
	}
	s.imageEnv = ic.Env
	if o.publishAll {
		// -P: every exposed port on a port the kernel chooses, as docker.
		for _, e := range ic.ExposedPorts {
			port, proto, _ := strings.Cut(e, "/")
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("image %s: exposed port %q: not a port number", im.Ref, e)
			}
			if proto == "" {
				proto = "tcp"
			}
			s.Publish = append(s.Publish, portfwd.Spec{Proto: proto, HostIP: "0.0.0.0", ContainerPort: n})
			s.exposed++
		}
	}
	return nil
}

// parseNetwork takes --net, --mtu, --allow-host-loopback, the slirp4netns
// --security-opt values, --add-host and --publish, and returns the other
// --security-opt values. With --net host the container has no network
// namespace of its own.
func (s *spec) parseNetwork(o *runOptions) ([]string, error) {
	var err error
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
	if s.Net.Mode == netns.ModeHost {
		l := s.OCI.Linux
		l.Namespaces = slices.DeleteFunc(l.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace })
	} else {
		// As docker (since 20.10): in a network namespace of its own, any
		// user of the container may bind ports below 1024 (a server
		// running as www-data on port 80); they are the namespace's, not
		// the host's. docker's ping_group_range is not copied: its range
		// goes beyond the gids a rootless user namespace maps, and the
		// kernel refuses it.
		s.OCI.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	}

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
	return secOpts, portfwd.CheckConflicts(s.Publish)
}

// parseMounts adds -v and --tmpfs to the default mounts, in that order.
func (s *spec) parseMounts(o *runOptions) error {
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("getwd: %w", err)
	}
	for _, v := range o.volumes {
		m, err := rootfs.ParseVolume(v, cwd)
		if err != nil {
			return err
		}
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("volume %s: source %s: %w (create it first)", v, m.Source, errors.Unwrap(err))
		}
		s.OCI.Mounts = append(s.OCI.Mounts, m)
	}
	for _, v := range o.tmpfs {
		m, err := rootfs.ParseTmpfs(v)
		if err != nil {
			return err
		}
		s.OCI.Mounts = append(s.OCI.Mounts, m)
	}
	return nil
}

// parseSecurity takes --cap-add, --cap-drop and --security-opt into the
// process's capabilities and no_new_privs and the seccomp profile. A
// profile file is compiled at once (a bad one fails before anything
// starts); the default one later, off the start-up's path.
func (s *spec) parseSecurity(o *runOptions, secOpts []string) error {
	sec, err := security.ParseFlags(o.capAdd, o.capDrop, secOpts)
	if err != nil {
		return err
	}
	s.OCI.Process.Capabilities, s.OCI.Process.NoNewPrivileges = sec.Capabilities, sec.NoNewPrivs
	s.OCI.Linux.Seccomp, s.SeccompDefault = sec.Seccomp, sec.Default
	s.Filter, s.FilterFlags = sec.Filter, sec.FilterFlags
	return nil
}

// checkCommand refuses, before any process starts or anything is created in
// the rootfs, a command that the rootfs on disk shows cannot run
// (rootfs.CheckCommand), with docker's 127 or 126.
func checkCommand(s *spec, rootfsFlag string) error {
	pathEnv := envValue(s.OCI.Process.Env, "PATH")
	if pathEnv == "" {
		pathEnv = defaultPath // as findProgram
	}
	p := s.OCI.Process
	code, err := rootfs.CheckCommand(s.rootfsConfig(), p.Args[0], p.Cwd, pathEnv)
	if err == nil {
		return nil
	}
	hint := ""
	if code == 127 && !s.OCIMode {
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

// buildEnv returns the payload's environment: defaults, then an image's
// Env, then -e in order (applyEnvFlags).
func buildEnv(image, flags []string, hostname string, tty bool) ([]string, error) {
	env := []string{"PATH=" + defaultPath, "HOSTNAME=" + hostname}
	if tty {
		env = append(env, "TERM="+hostTerm())
	}
	env, err := imageEnv(imageConfig{Env: image}, env)
	if err != nil {
		return nil, err
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
