package main

import (
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

// ps and stop read the per-container state directories: the start of the
// commands that detached containers will use (ps, stop, and later exec,
// rm and the OCI command line). A container counts as running while the
// rabbitc that runs it lives (its pid and start time in state.json).

func newPsCommand() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List the running containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sts, err := liveStates()
			if err != nil {
				return err
			}
			return printStates(cmd.OutOrStdout(), sts, quiet, time.Now())
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the container IDs only")
	return cmd
}

func newStopCommand() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [-t SECONDS] CONTAINER...",
		Short: "Stop running containers: SIGTERM to the payload, SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, id := range args {
				st, err := findState(id)
				if err != nil {
					return err
				}
				if err := stopContainer(st, time.Duration(timeout)*time.Second); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), st.ID[:12])
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait for the payload to end before killing it")
	return cmd
}

// liveStates returns the states of the containers whose rabbitc runs,
// oldest first.
func liveStates() ([]state, error) {
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
		if e.parsed && e.st.alive() {
			out = append(out, e.st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// findState finds a running container by its ID or an unambiguous prefix.
func findState(id string) (state, error) {
	sts, err := liveStates()
	if err != nil {
		return state{}, err
	}
	var found []state
	for _, st := range sts {
		if id != "" && strings.HasPrefix(st.ID, id) {
			found = append(found, st)
		}
	}
	switch len(found) {
	case 0:
		return state{}, fmt.Errorf("no such container: %s (see rabbitc ps)", id)
	case 1:
		return found[0], nil
	}
	return state{}, fmt.Errorf("container %s: ambiguous, %d containers start with it (give more of the ID)", id, len(found))
}

// stopContainer asks the container's rabbitc to end it (SIGTERM, which it
// forwards to the payload) and, if the payload is still there after
// timeout, kills the payload; it returns once rabbitc has exited. Both are
// reached through pidfds opened from the state and checked against the
// start times it recorded, so a pid that a stranger reused since is never
// signalled.
func stopContainer(st state, timeout time.Duration) error {
	parent, err := openChecked(st.ParentPid, st.ParentTime)
	if err != nil {
		return fmt.Errorf("stop %s: %w", st.ID[:12], err)
	}
	if parent == nil {
		return nil // gone already
	}
	defer parent.Close()
	if err := parent.Signal(syscall.SIGTERM); err != nil {
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
	fmt.Fprintln(tw, "CONTAINER ID\tPID\tCREATED\tCOMMAND\tROOTFS")
	for _, st := range sts {
		cmd := strconv.Quote(strings.Join(st.Args, " "))
		if len(cmd) > 40 {
			cmd = cmd[:37] + "...\""
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", st.ID[:12], st.InitPid, ago(now.Sub(st.Created)), cmd, st.Rootfs)
	}
	return tw.Flush()
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
