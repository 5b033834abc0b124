package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/userns"
)

// The commands on containers (ps, stop, kill, rm, wait, inspect; logs and
// exec have files of their own) read the per-container state directories.
// A container is running while the rabbitc that runs it lives (its pid and
// start time in state.json); one whose rabbitc is gone has exited, and is
// never signalled (state.current).

func newPsCommand() *cobra.Command {
	var quiet, all bool
	var format string
	cmd := &cobra.Command{
		Use:   "ps [-a] [-q] [--format table|json]",
		Short: "List the containers: running ones, and with -a exited ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: expected table or json", format)
			}
			sts, err := listStates()
			if err != nil {
				return err
			}
			if !all {
				sts = running(sts)
			}
			if format == "json" {
				return printJSON(cmd.OutOrStdout(), sts, time.Now())
			}
			return printStates(cmd.OutOrStdout(), sts, quiet, time.Now())
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the container IDs only")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also list exited containers")
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	return cmd
}

func newStopCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [-t SECONDS] CONTAINER...",
		Short: "Stop running containers: SIGTERM to the payload, SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEach(cmd, args, func(st state) error {
				return stopContainer(st, time.Duration(timeout)*time.Second)
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait for the payload to end before killing it")
	return cmd
}

// forEach runs do on each named container and prints the name as given
// once done, as docker does; it stops at the first error.
func forEach(cmd *cobra.Command, refs []string, do func(state) error) error {
	for _, ref := range refs {
		st, err := findState(ref)
		if err == nil {
			err = do(st)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), ref)
	}
	return nil
}

// listStates returns the state of every container, running or exited,
// oldest first.
func listStates() ([]state, error) {
	root, err := stateRoot()
	if err != nil {
		return nil, err
	}
	ents, err := readStates(root)
	if err != nil {
		return nil, fmt.Errorf("read state directory %s: %w", root, err)
	}
	var out []state
	for _, e := range ents {
		if e.parsed && (e.st.Detached || e.st.alive()) {
			out = append(out, e.st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// running keeps the running containers of sts.
func running(sts []state) []state {
	var out []state
	for _, st := range sts {
		if status, _ := st.current(); status == statusRunning {
			out = append(out, st)
		}
	}
	return out
}

// findState finds a container, running or exited, by its name, its ID or
// an unambiguous prefix of its ID.
func findState(ref string) (state, error) {
	sts, err := listStates()
	if err != nil {
		return state{}, err
	}
	var found []state
	for _, st := range sts {
		if ref != "" && st.Name == ref {
			return st, nil
		}
		if ref != "" && strings.HasPrefix(st.ID, ref) {
			found = append(found, st)
		}
	}
	switch len(found) {
	case 0:
		return state{}, fmt.Errorf("no such container: %s (see rabbitc ps -a)", ref)
	case 1:
		return found[0], nil
	}
	return state{}, fmt.Errorf("container %s: ambiguous, %d containers start with it (give more of the ID)", ref, len(found))
}

// stopContainer asks the container's rabbitc to end it (SIGTERM, which it
// forwards to the payload) and, if the payload is still there after
// timeout, kills the payload; it returns once rabbitc has exited. Both are
// reached through pidfds opened from the state and checked against the
// start times it recorded, so a pid that a stranger reused since is never
// signalled.
func stopContainer(st state, timeout time.Duration) error {
	if status, _ := st.current(); status != statusRunning {
		return nil
	}
	parent, err := openChecked(st.ParentPid, st.ParentTime)
	if err != nil {
		return fmt.Errorf("stop %s: %w", st.ID[:12], err)
	}
	if parent == nil {
		return nil // gone already
	}
	defer parent.Close()
	if sig, err := parseSignal(st.StopSignal); st.StopSignal != "" && err == nil {
		// The image's StopSignal, to the payload itself (rabbitc forwards
		// only what it receives).
		if err := signalPayload(st, sig); err != nil {
			return err
		}
	} else if err := parent.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: signal rabbitc %d: %w", st.ID[:12], st.ParentPid, err)
	}
	if parent.Wait(timeout) {
		return nil
	}
	if init, _ := openChecked(st.InitPid, st.InitTime); init != nil {
		init.Signal(syscall.SIGKILL)
		init.Close()
	}
	if parent.Wait(5 * time.Second) {
		return nil
	}
	return fmt.Errorf("stop %s: rabbitc %d still runs after SIGKILL to the payload %d", st.ID[:12], st.ParentPid, st.InitPid)
}

// openChecked opens a pidfd for pid and checks, once it holds it, that the
// process is the one that started at startTime: nil (and no error) when
// that process is gone, whether or not its pid was reused.
func openChecked(pid int, startTime uint64) (*userns.Pidfd, error) {
	if pid <= 0 || startTime == 0 {
		return nil, nil
	}
	p, err := userns.OpenPidfd(pid)
	if errors.Is(err, syscall.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if procStartTime(pid) != startTime {
		p.Close()
		return nil, nil
	}
	return p, nil
}

func printStates(w io.Writer, sts []state, quiet bool, now time.Time) error {
	if quiet {
		for _, st := range sts {
			fmt.Fprintln(w, st.ID[:12])
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tPID\tCREATED\tSTATUS\tCOMMAND\tPORTS\tNAMES\tROOTFS")
	for _, st := range sts {
		cmd := strconv.Quote(strings.Join(st.Args, " "))
		if len(cmd) > 40 {
			cmd = cmd[:37] + "...\""
		}
		pid := strconv.Itoa(st.InitPid)
		if status, _ := st.current(); status != statusRunning {
			pid = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.ID[:12], pid, ago(now.Sub(st.Created)), statusLine(st, now),
			cmd, strings.Join(st.Ports, ", "), st.Name, st.Rootfs)
	}
	return tw.Flush()
}

// statusLine is docker's STATUS column: "Up 3 seconds", "Exited (7) 3
// seconds ago".
func statusLine(st state, now time.Time) string {
	status, code := st.current()
	if status == statusRunning {
		return "Up " + strings.TrimSuffix(ago(now.Sub(st.Created)), " ago")
	}
	if st.Finished.IsZero() {
		return fmt.Sprintf("Exited (%d)", code) // its rabbitc was killed: when is not known
	}
	return fmt.Sprintf("Exited (%d) %s", code, ago(now.Sub(st.Finished)))
}

// psEntry is one container in ps --format json.
type psEntry struct {
	ID       string    `json:"Id"`
	Names    []string  `json:"Names"`
	Command  []string  `json:"Command"`
	Created  time.Time `json:"Created"`
	State    string    `json:"State"`
	Status   string    `json:"Status"`
	ExitCode int       `json:"ExitCode"`
	Pid      int       `json:"Pid"`
	Ports    []string  `json:"Ports"`
	Rootfs   string    `json:"Rootfs"`
}

func printJSON(w io.Writer, sts []state, now time.Time) error {
	out := []psEntry{}
	for _, st := range sts {
		status, code := st.current()
		e := psEntry{ID: st.ID, Names: []string{}, Command: st.Args, Created: st.Created, State: status,
			Status: statusLine(st, now), ExitCode: code, Ports: st.Ports, Rootfs: st.Rootfs}
		if st.Name != "" {
			e.Names = []string{st.Name}
		}
		if status == statusRunning {
			e.Pid = st.InitPid
		}
		out = append(out, e)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ago says how long ago, as docker ps does.
func ago(d time.Duration) string {
	n, unit := int(d/time.Second), "second"
	switch {
	case d >= 48*time.Hour:
		n, unit = int(d/(24*time.Hour)), "day"
	case d >= time.Hour:
		n, unit = int(d/time.Hour), "hour"
	case d >= time.Minute:
		n, unit = int(d/time.Minute), "minute"
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.Itoa(n) + " " + unit + " ago"
}
