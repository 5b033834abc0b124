package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/rabbitc/rabbitc/hostcheck"
	"github.com/rabbitc/rabbitc/netaccel"
	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/userns"
)

// doctorHint ends every error of run that is about the host's setup,
// which rabbitc doctor checks in full.
const doctorHint = "; run `rabbitc doctor`"

// hostError is an error about the host's setup: its message gets
// doctorHint.
type hostError struct{ err error }

func (e *hostError) Error() string { return e.err.Error() + doctorHint }
func (e *hostError) Unwrap() error { return e.err }

// aboutHost marks err (if any) as being about the host's setup.
func aboutHost(err error) error {
	if err == nil {
		return nil
	}
	return &hostError{err}
}

func newDoctorCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "doctor [--format json]",
		Short: "Check what rabbitc needs from this host, and say how to fix what is missing",
		Long: "rabbitc doctor checks, in order, what rabbitc needs from the host and prints one line per check:\n" +
			"ok, warning or error, what it found, and the exact command or file edit that fixes a failure.\n" +
			"It exits 0 when rabbitc can run (no errors), 1 otherwise.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			checks := hostcheck.Run(doctorHost())
			if err := printChecks(cmd.OutOrStdout(), checks, format); err != nil {
				return err
			}
			if hostcheck.Failed(checks) {
				return &exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text (one line per check) or json (an array of the checks)")
	return cmd
}

func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return fmt.Errorf("invalid --format %q (use text or json)", format)
	}
	return nil
}

func printChecks(w io.Writer, checks []hostcheck.Check, format string) error {
	if format == "json" {
		return writeJSON(w, checks)
	}
	for _, c := range checks {
		fmt.Fprintln(w, c)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// doctorHost is what the checks need from rabbitc: the user, the binary,
// the probe's command (`rabbitc init probe`, which runs
// hostcheck.ProbeMain), the directories, and netns's verdict on
// slirp4netns.
func doctorHost() hostcheck.Host {
	u := userns.CurrentConfig()
	exe, _ := os.Executable()
	store, _ := imageStoreRoot()
	return hostcheck.Host{
		User: u.Username, UID: u.UID, GID: u.GID, Exe: exe,
		Probe:    []string{"/proc/self/exe", "init", "probe"},
		StateDir: stateRootPath(), StoreDir: store,
		Slirp:    slirpReport(),
		NetAccel: netaccel.Supported(),
	}
}

// slirpReport asks netns about slirp4netns as run would (its default
// network settings) and adds the version.
func slirpReport() hostcheck.Slirp {
	feat, err := netns.CheckSlirp(netns.Config{})
	if err != nil {
		path, _ := exec.LookPath("slirp4netns")
		return hostcheck.Slirp{Path: path, Err: err}
	}
	s := hostcheck.Slirp{Path: feat.Path, Version: netns.Version(feat.Path)}
	for _, o := range []struct {
		have bool
		flag string
	}{{feat.DisableHostLoopback, "--disable-host-loopback"}, {feat.EnableSandbox, "--enable-sandbox"}, {feat.EnableSeccomp, "--enable-seccomp"}} {
		if o.have {
			s.Options = append(s.Options, o.flag)
		}
	}
	return s
}
