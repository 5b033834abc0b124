package security

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Config is what the payload may do, in the runtime spec's terms:
// process.capabilities, process.noNewPrivileges and linux.seccomp. An OCI
// bundle's config.json gives them as they are; ParseFlags makes them from
// docker's flags. It travels from the parent to init in the spec.
type Config struct {
	// Capabilities are the runtime spec's five sets, names as "CAP_X".
	// nil: no capabilities at all.
	Capabilities *specs.LinuxCapabilities
	// NoNewPrivs sets no_new_privs for the payload.
	NoNewPrivs bool
	// Seccomp is the profile as given: an OCI config's linux.seccomp, or a
	// --security-opt seccomp=FILE profile with docker's includes and
	// excludes resolved (seccomp.LoadProfile). nil with Default false:
	// unconfined.
	Seccomp *specs.LinuxSeccomp
	// Default asks for rabbitc's default profile: docker's, resolved
	// against the bounding set, plus hardeningRules. Compile resolves it
	// into Seccomp. The hardening rules come only with Default: an OCI
	// config gets exactly the profile it names.
	Default bool
	// Filter is the compiled seccomp program (struct sock_filter array in
	// host byte order) and FilterFlags its SECCOMP_FILTER_FLAG_*, made by
	// Compile; empty for unconfined, or before Compile.
	Filter      []byte
	FilterFlags uintptr
}

// maxProfileSize bounds a seccomp profile file; docker's default is 20 KiB.
const maxProfileSize = 1 << 20

const securityOptForms = "use seccomp=unconfined, seccomp=FILE.json, no-new-privileges or no-new-privileges=true|false"

// ParseFlags turns docker's --cap-add, --cap-drop and --security-opt values
// into a Config. The capability set goes into the bounding, effective and
// permitted sets; the inheritable and ambient sets stay empty, as in
// docker, so a payload that is not root has no capabilities after execve.
// A profile file is read, decoded and compiled here, in the parent, before
// anything starts: init cannot see host files, and a bad one fails with one
// line. The default profile is left to Compile.
func ParseFlags(capAdd, capDrop, securityOpts []string) (Config, error) {
	opts := flagOpts{noNewPrivs: true}
	for _, opt := range securityOpts {
		if err := opts.apply(opt); err != nil {
			return Config{}, err
		}
	}
	set, err := dockerCaps(capAdd, capDrop)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		Capabilities: &specs.LinuxCapabilities{
			Bounding:  capNamesOf(set),
			Effective: capNamesOf(set),
			Permitted: capNamesOf(set),
		},
		NoNewPrivs: opts.noNewPrivs,
		Default:    opts.seccomp == "",
	}
	if opts.seccomp == "" || opts.seccomp == SeccompUnconfined {
		return c, nil
	}
	b, err := readProfile(opts.seccomp)
	if err != nil {
		return Config{}, err
	}
	c.Seccomp, err = loadProfile(b, c.Capabilities)
	var f *filter
	if err == nil {
		f, err = compileProfile(c.Seccomp, false)
	}
	if err != nil {
		return Config{}, fmt.Errorf("seccomp profile %s: %w", opts.seccomp, err)
	}
	c.Filter, c.FilterFlags = f.bytes(), f.flags
	return c, nil
}

// Compile resolves Default into Seccomp and builds the program into
// c.Filter; it does nothing once Filter is set. The parent calls it while
// init sets up: init only installs the program (on this machine the compile
// took 0.3-1 ms of init's critical path under load, and it stays off the
// path to the sandbox's clone too).
func (c *Config) Compile() error {
	if c.Filter != nil {
		return nil
	}
	if c.Default && c.Seccomp == nil {
		prof, err := defaultProfile(c.Capabilities)
		if err != nil {
			return fmt.Errorf("%s: %w", c.profileName(), err)
		}
		c.Seccomp = prof
	}
	f, err := buildFilter(*c)
	if err != nil {
		return err
	}
	if f != nil {
		c.Filter, c.FilterFlags = f.bytes(), f.flags
	}
	return nil
}

// Check validates a config before anything starts, so that a bad
// config.json fails with one line rather than in init: every capability
// name must be known (those the running kernel lacks are skipped later, as
// runc skips them), and a given seccomp profile must compile. The default
// profile is not compiled here: it is rabbitc's own, and compiling it
// belongs off the start-up path (Compile).
func (c Config) Check() error {
	if _, err := resolveCaps(c.Capabilities, lastCap()); err != nil {
		return err
	}
	if c.Filter != nil || c.Seccomp == nil {
		return nil
	}
	_, err := buildFilter(c)
	return err
}

// flagOpts are the --security-opt values ParseFlags understands.
type flagOpts struct {
	seccomp    string // "" for the default profile, SeccompUnconfined or a profile file's host path
	noNewPrivs bool
}

// apply applies one --security-opt value. As in docker, the legacy
// "key:value" form is accepted too, and the last seccomp= wins.
func (o *flagOpts) apply(opt string) error {
	key, val, ok := strings.Cut(opt, "=")
	if !ok && key != "no-new-privileges" {
		key, val, ok = strings.Cut(opt, ":")
	}
	switch {
	case key == "seccomp" && ok && val != "":
		o.seccomp = val
		return nil
	case key == "no-new-privileges" && !ok:
		o.noNewPrivs = true
		return nil
	case key == "no-new-privileges":
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("security-opt %q: invalid boolean %q (%s)", opt, val, securityOptForms)
		}
		o.noNewPrivs = b
		return nil
	}
	return fmt.Errorf("security-opt %q: unknown option (%s)", opt, securityOptForms)
}

// readProfile reads a seccomp profile file: a regular file of at most
// maxProfileSize bytes (no FIFO that would block the start).
func readProfile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read seccomp profile %s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxProfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile: %w", err)
	}
	if len(b) > maxProfileSize {
		return nil, fmt.Errorf("read seccomp profile %s: %w", path, errTooLarge)
	}
	return b, nil
}

var errTooLarge = errors.New("larger than 1 MiB")
