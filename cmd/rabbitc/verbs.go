package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newKillCommand() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [-s SIGNAL] CONTAINER...",
		Short: "Send a signal (default KILL) to the payload of running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := parseSignal(sig)
			if err != nil {
				return err
			}
			return forEach(cmd, args, func(st state) error { return signalPayload(st, s) })
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "the signal: a name (TERM, SIGTERM) or a number")
	return cmd
}

// parseSignal reads a signal as docker and kill(1) take it.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("--signal %q: not a signal (a name such as TERM or SIGKILL, or a number)", s)
}

// signalPayload signals a running container's payload through a pidfd
// checked against the start time its state recorded.
func signalPayload(st state, sig syscall.Signal) error {
	if status, _ := st.current(); status != statusRunning {
		return notRunning(st)
	}
	p, err := openChecked(st.InitPid, st.InitTime)
	if err != nil {
		return fmt.Errorf("kill %s: %w", refOf(st), err)
	}
	if p == nil {
		return notRunning(st)
	}
	defer p.Close()
	if err := p.Signal(sig); err != nil {
		return fmt.Errorf("kill %s: %w", refOf(st), err)
	}
	return nil
}

func newRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [-f] CONTAINER...",
		Short: "Remove containers and their logs (running ones only with -f, which kills them)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEach(cmd, args, func(st state) error { return removeContainer(st, force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first")
	return cmd
}

func removeContainer(st state, force bool) error {
	if status, _ := st.current(); status == statusRunning {
		if !force {
			return fmt.Errorf("container %s is running: stop it first, or remove it with rm -f", refOf(st))
		}
		if err := stopContainer(st, 0); err != nil {
			return err
		}
	}
	if unlock, err := lockDir(st.dir); err == nil {
		defer unlock() // no state written while it goes
	}
	removeContainerDir(st.ContainerDir)
	removeState(st.dir)
	return nil
}

func newWaitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Wait until containers exit, and print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, ref := range args {
				code, err := waitContainer(ref)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), code)
			}
			return nil
		},
	}
}

// waitContainer waits for the container's rabbitc to exit (on a pidfd
// checked against the recorded start time) and returns the exit code that
// its state then records.
func waitContainer(ref string) (int, error) {
	st, err := findState(ref)
	if err != nil {
		return 0, err
	}
	if p, _ := openChecked(st.ParentPid, st.ParentTime); p != nil {
		for !p.Wait(time.Hour) {
		}
		p.Close()
	}
	b, err := os.ReadFile(filepath.Join(st.dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("container %s was removed when it exited (it ran with --rm or in the foreground): its exit code is gone", ref)
	}
	var now state
	if err == nil {
		err = json.Unmarshal(b, &now)
	}
	if err != nil {
		return 0, fmt.Errorf("read the state of %s: %w", ref, err)
	}
	_, code := now.current()
	return code, nil
}

func newInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect CONTAINER...",
		Short: "Print what rabbitc knows of containers, as JSON: state, pid, ports, log, config",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out []inspectEntry
			for _, ref := range args {
				e, err := inspectContainer(ref)
				if err != nil {
					return err
				}
				out = append(out, e)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		},
	}
}

// inspectEntry is one container in rabbitc inspect, in docker's shape where
// docker has the same thing.
type inspectEntry struct {
	ID      string          `json:"Id"`
	Name    string          `json:"Name"`
	Created time.Time       `json:"Created"`
	Path    string          `json:"Path"`
	Args    []string        `json:"Args"`
	State   inspectState    `json:"State"`
	Rootfs  string          `json:"Rootfs"`
	Ports   []string        `json:"Ports"`
	LogPath string          `json:"LogPath"`
	Config  json.RawMessage `json:"Config"` // the spec the container runs with
}

type inspectState struct {
	Status     string    `json:"Status"`
	Running    bool      `json:"Running"`
	Pid        int       `json:"Pid"`
	MonitorPid int       `json:"MonitorPid"`
	ExitCode   int       `json:"ExitCode"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
}

func inspectContainer(ref string) (inspectEntry, error) {
	st, err := findState(ref)
	if err != nil {
		return inspectEntry{}, err
	}
	config, err := os.ReadFile(filepath.Join(st.dir, "config.json"))
	if err != nil || !json.Valid(config) {
		config = []byte("null")
	}
	status, code := st.current()
	e := inspectEntry{ID: st.ID, Name: st.Name, Created: st.Created, Args: st.Args, Rootfs: st.Rootfs,
		Ports: st.Ports, LogPath: st.Log, Config: config,
		State: inspectState{Status: status, Running: status == statusRunning, ExitCode: code,
			StartedAt: st.Created, FinishedAt: st.Finished}}
	if len(st.Args) > 0 {
		e.Path = st.Args[0]
	}
	if e.State.Running {
		e.State.Pid, e.State.MonitorPid = st.InitPid, st.ParentPid
	}
	return e, nil
}

// refOf names a container in messages: its name, or its short ID.
func refOf(st state) string {
	if st.Name != "" {
		return st.Name
	}
	return st.ID[:12]
}
