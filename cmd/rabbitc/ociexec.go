package main

import (
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

// ociExecOptions are the flags of the OCI exec.
type ociExecOptions struct {
	process string
	cwd     string
	env     []string
	user    string
	tty     bool
}

func newOCIExec(g *ociGlobals) *cobra.Command {
	o, eo := &ociExecOptions{}, &execOptions{keepStdio: true, interactive: true}
	cmd := &cobra.Command{
		Use:   "exec [--process F | flags] ID [CMD [ARGS...]]",
		Short: "Run a process in a running container (process.json as the runtime spec's process)",
		Args:  ociArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.load(args[0])
			if err != nil {
				return err
			}
			if st.Status != specs.StateRunning && st.Status != specs.StateCreated {
				return fmt.Errorf("cannot exec in a stopped container")
			}
			p, err := o.processFor(st, args[1:])
			if err != nil {
				return err
			}
			eo.tty = p.Terminal
			t, err := ociTarget(st)
			if err != nil {
				return err
			}
			return execIn(eo, t, func(hasFilter bool) (*execSpec, error) {
				return ociExecSpec(st.dir, p, hasFilter)
			})
		},
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false)
	fs.StringVarP(&o.process, "process", "p", "", "a JSON file holding the process (the runtime spec's process)")
	fs.StringVar(&eo.consoleSocket, "console-socket", "", "a unix socket that gets the pty master")
	fs.StringVar(&eo.pidFile, "pid-file", "", "write the process's pid to this file")
	fs.BoolVarP(&eo.detach, "detach", "d", false, "return once the process runs")
	fs.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-terminal")
	fs.StringVar(&o.cwd, "cwd", "", "working directory")
	fs.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable")
	fs.StringVarP(&o.user, "user", "u", "", "UID[:GID]")
	return cmd
}

// processFor is the process to run: --process's file, or the container's
// process with the arguments and flags applied.
func (o *ociExecOptions) processFor(st *ociState, args []string) (*specs.Process, error) {
	if o.process != "" {
		b, err := os.ReadFile(o.process)
		if err != nil {
			return nil, fmt.Errorf("read --process: %w", err)
		}
		p := &specs.Process{}
		if err := json.Unmarshal(b, p); err != nil {
			return nil, fmt.Errorf("--process %s: %w", o.process, err)
		}
		if len(p.Args) == 0 {
			return nil, fmt.Errorf("--process %s: args must not be empty", o.process)
		}
		return p, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("exec needs --process or a command")
	}
	s, err := readConfig(st.dir)
	if err != nil {
		return nil, err
	}
	p := *s.OCI.Process
	p.Args, p.Terminal = args, o.tty
	if o.cwd != "" {
		p.Cwd = o.cwd
	}
	env, err := applyEnvFlags(append([]string(nil), p.Env...), o.env)
	if err != nil {
		return nil, err
	}
	p.Env = env
	if o.user != "" {
		var uid, gid uint32
		if n, _ := fmt.Sscanf(o.user, "%d:%d", &uid, &gid); n == 0 {
			return nil, fmt.Errorf("--user %q: expected UID[:GID]", o.user)
		}
		p.User = specs.User{UID: uid, GID: gid}
	}
	return &p, nil
}

// ociTarget is init of an OCI container to join.
func ociTarget(st *ociState) (execTarget, error) {
	init, err := openChecked(st.Pid, st.InitTime)
	if err != nil {
		return execTarget{}, err
	}
	if init == nil {
		return execTarget{}, fmt.Errorf("container not running")
	}
	flags, err := joinFlags(st.Pid)
	if err == nil && init.Exited() {
		err = fmt.Errorf("container not running")
	}
	if err != nil {
		init.Close()
		return execTarget{}, err
	}
	return execTarget{dir: st.dir, init: init, flags: flags}, nil
}

// ociExecSpec is the exec stage's spec for process p: its own settings,
// and the container's seccomp program.
func ociExecSpec(dir string, p *specs.Process, hasFilter bool) (*execSpec, error) {
	s := &spec{OCI: &specs.Spec{Process: p}}
	sec := s.securityConfig()
	es := &execSpec{Args: p.Args, Env: p.Env, Cwd: p.Cwd, User: s.userSpec(), Groups: p.User.AdditionalGids,
		Tty: p.Terminal, Security: sec, Rlimits: p.Rlimits}
	es.FilterFD = hasFilter
	return es, nil
}
