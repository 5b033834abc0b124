package security

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Config is what the payload may do, from --cap-add, --cap-drop and
// --security-opt. It travels from the parent to init in the spec.
type Config struct {
	// CapAdd and CapDrop are as given on the command line: "NET_ADMIN",
	// "CAP_NET_ADMIN", "net_admin" or "ALL".
	CapAdd, CapDrop []string
	// Seccomp is "" for the default profile, "unconfined", or the host
	// path of a docker-format JSON profile.
	Seccomp string
	// SeccompJSON is the profile file's content, read by ParseConfig in
	// the parent (init cannot see host files).
	SeccompJSON []byte
	// NoNewPrivs sets no_new_privs for the payload (the default).
	NoNewPrivs bool
	// Filter is the compiled seccomp program (struct sock_filter array in
	// host byte order) and FilterFlags its SECCOMP_FILTER_FLAG_*, made by
	// ParseConfig; empty for unconfined, or when ParseConfig was not used.
	Filter      []byte
	FilterFlags uintptr
}

// maxProfileSize bounds a seccomp profile file; docker's default is 20 KiB.
const maxProfileSize = 1 << 20

const securityOptForms = "use seccomp=unconfined, seccomp=FILE.json, no-new-privileges or no-new-privileges=true|false"

// ParseConfig validates --cap-add, --cap-drop and --security-opt values and
// reads and compiles the seccomp profile file, if one is given. It runs in
// the parent, before anything starts; Compile follows for the default
// profile.
func ParseConfig(capAdd, capDrop, securityOpts []string) (Config, error) {
	c := Config{
		CapAdd:     append([]string(nil), capAdd...),
		CapDrop:    append([]string(nil), capDrop...),
		NoNewPrivs: true,
	}
	for _, opt := range securityOpts {
		if err := c.applySecurityOpt(opt); err != nil {
			return Config{}, err
		}
	}
	if _, err := c.Capabilities(); err != nil {
		return Config{}, err
	}
	var err error
	if c.Seccomp != "" && c.Seccomp != SeccompUnconfined {
		if c.SeccompJSON, err = readProfile(c.Seccomp); err != nil {
			return Config{}, err
		}
		// A profile file of the user's is compiled at once, so that a bad
		// one fails before anything starts.
		if err := c.Compile(); err != nil {
			return Config{}, err
		}
	}
	return c, nil
}

// Compile builds the seccomp program into c.Filter. The parent calls it
// while the sandbox starts: init only installs the program (on this machine
// the compile took 0.3-1 ms of init's critical path under load, and it
// stays off the path to the sandbox's clone too). A bad profile file fails
// here with one line rather than in init.
func (c *Config) Compile() error {
	if c.Filter != nil {
		return nil
	}
	caps, err := c.Capabilities()
	if err != nil {
		return err
	}
	f, err := buildFilter(*c, caps)
	if err != nil {
		return err
	}
	if f != nil {
		c.Filter, c.FilterFlags = f.bytes(), f.flags
	}
	return nil
}

// applySecurityOpt applies one --security-opt value. As in docker, the
// legacy "key:value" form is accepted too, and the last seccomp= wins.
func (c *Config) applySecurityOpt(opt string) error {
	key, val, ok := strings.Cut(opt, "=")
	if !ok && key != "no-new-privileges" {
		key, val, ok = strings.Cut(opt, ":")
	}
	switch {
	case key == "seccomp" && ok && val != "":
		c.Seccomp = val
		c.SeccompJSON = nil
		return nil
	case key == "no-new-privileges" && !ok:
		c.NoNewPrivs = true
		return nil
	case key == "no-new-privileges":
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("security-opt %q: invalid boolean %q (%s)", opt, val, securityOptForms)
		}
		c.NoNewPrivs = b
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
