package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/ctrlog"
)

// logName is the log of a detached container in its state directory
// (ctrlog owns its format; ctr.log.1 beside it is the rotated half).
const logName = "ctr.log"

func newLogsCommand() *cobra.Command {
	var follow, timestamps bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N|all] [-t] CONTAINER",
		Short: "Print the output of a detached container: its stdout to stdout, its stderr to stderr",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("logs takes one container, %d given (see rabbitc ps)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseTail(tail)
			if err != nil {
				return err
			}
			st, err := findState(args[0])
			if err != nil {
				return err
			}
			path, err := logPath(st)
			if err != nil {
				return err
			}
			o := ctrlog.ReadOptions{Tail: n, Timestamps: timestamps, Follow: follow,
				Done: func() bool { return !st.alive() }}
			return ctrlog.Read(cmd.OutOrStdout(), cmd.ErrOrStderr(), path, o)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container ends")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "print only the last N lines (of both streams together), or all")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with the time it was logged (RFC 3339, UTC)")
	return cmd
}

// parseTail reads --tail: a number of lines, or all (-1 too, as docker).
func parseTail(s string) (int, error) {
	if s == "all" || s == "-1" {
		return -1, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--tail %q: not a number of lines (give N >= 0, or all)", s)
	}
	return n, nil
}

// logPath is the container's log, if it keeps one: a container run in the
// foreground writes to the terminal, not to a log.
func logPath(st state) (string, error) {
	path := filepath.Join(st.dir, logName)
	for _, p := range []string{path, path + ".1"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return path, nil
		}
	}
	return "", fmt.Errorf("container %s has no log: only detached containers (run -d) keep one", st.ID[:12])
}
