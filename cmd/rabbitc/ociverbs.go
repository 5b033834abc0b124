package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/cgroups"
	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/security"
)

func newOCIStart(g *ociGlobals) *cobra.Command {
	return &cobra.Command{
		Use:   "start ID",
		Short: "Start the process of a created container",
		Args:  ociArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.load(args[0])
			if err != nil {
				return err
			}
			return st.start()
		},
	}
}

// start opens exec.fifo for reading, which lets init run the process, and
// runs the poststart hooks.
func (st *ociState) start() error {
	switch st.Status {
	case specs.StateStopped:
		return errors.New("cannot start a container that has stopped")
	case specs.StateRunning:
		return errors.New("cannot start an already running container")
	}
	p := filepath.Join(st.dir, execFifo)
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	if err := awaitFifo(f, st); err != nil {
		return err
	}
	os.Remove(p)
	st.Status = specs.StateRunning
	cfg, err := st.config()
	if err != nil {
		return err
	}
	if h := cfg.OCI.Hooks; h != nil {
		if err := runHooks("poststart", h.Poststart, st.hookState()); err != nil {
			return err
		}
	}
	return nil
}

// awaitFifo waits for init's byte on the fifo: init is blocked in its open
// for writing, which ours completes. It gives up when init dies.
func awaitFifo(f *os.File, st *ociState) error {
	buf := make([]byte, 1)
	for i := 0; i < 6000; i++ { // 60 s at most
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 10)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("poll exec.fifo: %w", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			if m, _ := unix.Read(int(f.Fd()), buf); m == 1 {
				return nil
			}
		}
		if !procAlive(st.Pid, st.InitTime) {
			return errors.New("cannot start a container that has stopped (its init exited)")
		}
	}
	return errors.New("init did not take the start within 60 s")
}

// config reads the container's spec, as create recorded it.
func (st *ociState) config() (*spec, error) {
	b, err := os.ReadFile(filepath.Join(st.dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's config: %w", err)
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read the container's config: %w", err)
	}
	return &s, nil
}

func (st *ociState) hookState() []byte {
	b, _ := json.Marshal(st.public())
	return b
}

func newOCIState(g *ociGlobals) *cobra.Command {
	return &cobra.Command{
		Use:   "state ID",
		Short: "Print the state of a container as JSON",
		Args:  ociArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.load(args[0])
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(st.public(), "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		},
	}
}

func newOCIKill(g *ociGlobals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill [--all] ID [SIGNAL]",
		Short: "Send a signal (default TERM) to a container's init, or with --all to each of its processes",
		Args:  ociArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := syscall.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = parseSignal(args[1]); err != nil {
					return fmt.Errorf("signal %q: not a signal (a number, KILL or SIGKILL)", args[1])
				}
			}
			st, err := g.load(args[0])
			if err != nil {
				return err
			}
			if st.Status == specs.StateStopped {
				return errors.New("container not running")
			}
			if all {
				return st.signalAll(sig)
			}
			return st.signal(sig)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "signal every process of the container")
	return cmd
}

func newOCIDelete(g *ociGlobals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete [--force] ID",
		Short: "Delete a container: its state, and with --force its processes",
		Args:  ociArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.load(args[0])
			if err != nil {
				if force && strings.Contains(err.Error(), "does not exist") {
					return nil
				}
				return err
			}
			return st.delete(force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

// delete kills a created container (or, with force, a running one), waits
// for its init, removes its state and runs the poststop hooks.
func (st *ociState) delete(force bool) error {
	if st.Status == specs.StateRunning && !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: running (kill it first, or delete --force)", st.ID)
	}
	if st.Status != specs.StateStopped {
		if p, err := openChecked(st.Pid, st.InitTime); err == nil && p != nil {
			p.Kill(5 * time.Second)
			p.Close()
		}
		if st.NoPidNS {
			st.signalAll(unix.SIGKILL)
		}
	}
	if st.Cgroup != "" {
		if err := (&cgroups.Manager{Path: st.Cgroup}).Destroy(); err != nil {
			fmt.Fprintf(os.Stderr, "rabbitc: warning: remove the cgroup of %s: %v\n", st.ID, err)
		}
	}
	cfg, cfgErr := st.config()
	if err := os.RemoveAll(st.dir); err != nil {
		return fmt.Errorf("remove the state of %s: %w", st.ID, err)
	}
	if cfgErr == nil && cfg.OCI.Hooks != nil {
		st.Status = specs.StateStopped
		// A poststop hook that fails is a warning: the container is gone.
		if err := runHooks("poststop", cfg.OCI.Hooks.Poststop, st.hookState()); err != nil {
			fmt.Fprintf(os.Stderr, "rabbitc: warning: %v\n", err)
		}
	}
	return nil
}

func newOCIList(g *ociGlobals) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "list [--format table|json] [-q]",
		Short: "List the OCI containers",
		Args:  ociArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := g.stateRoot()
			if err != nil {
				return err
			}
			gcOCI(root)
			ents, _ := os.ReadDir(root)
			var sts []*ociState
			for _, e := range ents {
				if st, err := g.load(e.Name()); err == nil {
					sts = append(sts, st)
				}
			}
			return printOCIList(cmd.OutOrStdout(), sts, format, quiet)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the IDs only")
	return cmd
}

func printOCIList(w io.Writer, sts []*ociState, format string, quiet bool) error {
	switch {
	case quiet:
		for _, st := range sts {
			fmt.Fprintln(w, st.ID)
		}
		return nil
	case format == "json":
		out := make([]any, 0, len(sts))
		for _, st := range sts {
			out = append(out, st.public())
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", b)
		return nil
	case format != "table":
		return fmt.Errorf("--format %q: use table or json", format)
	}
	tw := tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", st.ID, st.Pid, st.Status, st.Bundle, st.Created.Format(time.RFC3339Nano), st.Owner)
	}
	return tw.Flush()
}

func newOCIPs(g *ociGlobals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps [--format table|json] ID [PS_ARGS...]",
		Short: "List the processes of a container",
		Args:  ociArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.load(args[0])
			if err != nil {
				return err
			}
			pids := st.pids()
			if format == "json" {
				b, _ := json.Marshal(pids)
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return nil
			}
			psArgs := args[1:]
			if len(psArgs) == 0 {
				psArgs = []string{"-f"}
			}
			if len(pids) == 0 {
				return nil
			}
			list := make([]string, len(pids))
			for i, p := range pids {
				list[i] = strconv.Itoa(p)
			}
			ps := exec.Command("ps", append(psArgs, "-p", strings.Join(list, ","))...)
			ps.Stdout, ps.Stderr = cmd.OutOrStdout(), os.Stderr
			if err := ps.Run(); err != nil {
				return fmt.Errorf("ps: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	return cmd
}

// runOCI is run: create, start and, unless -d, wait for the process (run
// stays init's parent), delete and exit with its status.
func runOCI(g *ociGlobals, o *ociCreateOptions, id string) error {
	sigc := make(chan os.Signal, 32)
	if !o.detach {
		signal.Notify(sigc, forwarded...)
	}
	c, err := createOCI(g, o, id)
	if err != nil {
		return err
	}
	c.release()
	if err := c.state.start(); err != nil {
		c.abort()
		return err
	}
	if o.detach {
		return nil
	}
	code := 0
	for waiting := true; waiting; {
		select {
		case sig := <-sigc:
			c.init.Signal(sig)
		case <-c.init.Done():
			code = c.init.ExitCode()
			waiting = false
		}
	}
	c.state.refresh()
	if err := c.state.delete(true); err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
}

func newOCIFeatures() *cobra.Command {
	return &cobra.Command{
		Use:   "features",
		Short: "Print what this runtime supports, as the runtime spec's features JSON",
		Args:  ociArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := json.MarshalIndent(features(), "", "    ")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		},
	}
}

func newOCISpecCommand() *cobra.Command {
	var bundle string
	var rootless bool
	cmd := &cobra.Command{
		Use:   "spec [--rootless] [--bundle DIR]",
		Short: "Write a config.json for a bundle whose rootfs is ./rootfs",
		Args:  ociArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := filepath.Join(bundle, "config.json")
			if fileExists(p) {
				return fmt.Errorf("file %s exists: remove it first", p)
			}
			b, err := json.MarshalIndent(exampleSpec(rootless), "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(p, append(b, '\n'), 0o666)
		},
	}
	cmd.Flags().StringVarP(&bundle, "bundle", "b", ".", "the bundle directory")
	cmd.Flags().BoolVar(&rootless, "rootless", false, "a spec for a user without privileges: a user namespace mapping them to root")
	return cmd
}

// exampleSpec is `spec`'s config.json: a shell in ./rootfs with a
// terminal, rabbitc's default mounts, masked paths and capabilities (the
// three sets docker gives), as runc's.
func exampleSpec(rootless bool) *specs.Spec {
	s := newOCISpec()
	sec, _ := security.ParseFlags(nil, nil, nil)
	s.Process = &specs.Process{Terminal: true, Args: []string{"sh"}, Cwd: "/", NoNewPrivileges: true,
		Env:          []string{"PATH=" + defaultPath, "TERM=xterm"},
		Capabilities: sec.Capabilities,
		Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}}
	s.Root = &specs.Root{Path: "rootfs", Readonly: true}
	s.Hostname = "rabbitc"
	l := s.Linux
	l.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace},
		{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	if rootless {
		l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		l.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}
		l.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}}
		// One id mapped: devpts cannot take gid=5, and /sys is the host's.
		for i, m := range s.Mounts {
			if m.Type == "devpts" {
				s.Mounts[i].Options = removeOption(m.Options, "gid=5")
			}
		}
	}
	return s
}

func removeOption(opts []string, o string) []string {
	out := opts[:0:0]
	for _, x := range opts {
		if x != o {
			out = append(out, x)
		}
	}
	return out
}

// features is the runtime spec's features document for this build.
func features() any {
	caps := []string{}
	for n := 0; n <= unix.CAP_LAST_CAP; n++ {
		caps = append(caps, security.CapName(n))
	}
	yes := true
	return map[string]any{
		"ociVersionMin": "1.0.0",
		"ociVersionMax": ociVersion,
		"hooks":         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		"mountOptions":  rootfs.MountOptionNames(),
		"linux": map[string]any{
			"namespaces":   []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"},
			"capabilities": caps,
			"cgroup":       map[string]any{"v1": false, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
			"seccomp": map[string]any{
				"enabled":   &yes,
				"actions":   security.SeccompActions(),
				"operators": security.SeccompOperators(),
				"archs":     security.SeccompArchs(),
			},
			"apparmor":        map[string]any{"enabled": false},
			"selinux":         map[string]any{"enabled": false},
			"intelRdt":        map[string]any{"enabled": false},
			"mountExtensions": map[string]any{"idmap": map[string]any{"enabled": false}},
		},
		"annotations": map[string]string{"io.github.rabbitc.version": version},
	}
}
