package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/userns"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...
// -X main.buildDate=..." (the Makefile's GOBUILD).
var (
	version   = "dev"
	commit    = "unknown"
	buildDate = "unknown"
)

// exitError carries an exit code through cobra without printing anything.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// codeError is an error of rabbitc's that exits with a code of its own
// instead of 125: 126 or 127 for a command that cannot run, as docker's.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func init() {
	// Keep the main goroutine on the main thread: the stages arm their
	// parent-death signal on it, and it lives as long as the process. Not
	// rabbitc exec nor its stage, which locks its thread when it needs to
	// (security.PrepareCaps): a locked goroutine costs the runtime a thread
	// more at start, and a hand-off between two threads each time it blocks.
	if len(os.Args) > 1 && os.Args[1] == "exec" || len(os.Args) > 2 && os.Args[1] == "init" && os.Args[2] == "exec" {
		return
	}
	runtime.LockOSThread()
}

// closeInherited marks every descriptor above 2 close-on-exec, first thing
// in the CLI and in every stage: a descriptor the caller leaked to rabbitc
// (an open directory, a socket) reaches no stage, helper (newuidmap,
// slirp4netns, the watchdog) or payload, where /proc/self/fd/N would lead
// out of the container (CVE-2024-21626). The stages still use what they were
// given on purpose (userns.SyncFD, userns.PortFD; the watchdog's stdin is 0),
// and pass it on only through ExtraFiles, whose dup2 clears the flag.
// Close-on-exec rather than close: whatever the Go runtime may have opened
// before main keeps working.
func closeInherited() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Linux < 5.11: one by one.
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

func cliMain(args []string) int {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-v") {
		// Not cobra's Version: its version template pulls text/template in,
		// and with it reflect's method tables, ~1.7 MB more binary that every
		// stage maps (idle RSS 0.70x -> 0.82x of RootlessKit).
		fmt.Print(versionText())
		return 0
	}
	var root *cobra.Command
	switch {
	case isOCICommandLine(args):
		return ociMain(args)
	case len(args) > 0 && slices.Contains(imageCommands, args[0]):
		err := execImageTool(args) // returns only on failure
		fmt.Fprintf(os.Stderr, "rabbitc: %s\n", err)
		return 125
	case len(args) > 0 && args[0] == "exec":
		root = newExecRoot()
	case len(args) > 0 && args[0] == "run":
		root = newRunRoot()
	default:
		root = newRootCommand()
		if len(args) > 0 && strings.HasPrefix(args[0], cobra.ShellCompRequestCmd) {
			addCompletions(root) // complete.go
		}
	}
	code, err := execute(root, args)
	if err == nil {
		return code
	}
	var se *userns.StageError
	if errors.As(err, &se) {
		fmt.Fprintf(os.Stderr, "rabbitc: %s\n", se.Error())
		if se.Code != 0 {
			return se.Code
		}
		return 125
	}
	fmt.Fprintf(os.Stderr, "rabbitc: %s\n", err)
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return 125
}

// execute runs a command tree: the exit code, and the error still to
// report (nil for success, or an exitError's code, which says nothing).
func execute(root *cobra.Command, args []string) (int, error) {
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0, nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, nil
	}
	return 1, err
}

func newRootCommand() *cobra.Command {
	o := &runOptions{}
	root := &cobra.Command{
		Use:   "rabbitc [--rootfs DIR] [--cmd PROG] [-- ARGS...]",
		Short: "rabbitc runs a rootless container from a rootfs directory",
		Long: "rabbitc runs a process in its own user, mount, PID, UTS, IPC, cgroup and network namespaces\n" +
			"as an ordinary user, with outbound networking through slirp4netns and published ports.\n\n" +
			"Without a subcommand, rabbitc --rootfs=DIR [--cmd=PROG] is the same as rabbitc run.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.rootfs == "" && len(args) == 0 {
				return cmd.Help()
			}
			if len(args) > 0 && !cmd.Flags().Changed("rootfs") {
				return fmt.Errorf("unknown command %q for \"rabbitc\" (see rabbitc --help)", args[0])
			}
			o.noImage = true // the seed's form: rabbitc --rootfs DIR [-- CMD]
			return runContainer(o, args)
		},
	}
	root.Flags().SetInterspersed(false)
	addRunFlags(root.Flags(), o)
	root.SetFlagErrorFunc(flagError)

	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprint(cmd.OutOrStdout(), versionText())
		},
	}
	root.AddCommand(newRunCommand(), newExecCommand(), newPsCommand(), newStopCommand(), newKillCommand(), newRmCommand(), newWaitCommand(), newInspectCommand(), newLogsCommand(), ver)
	root.AddCommand(newDoctorCommand(), newInfoCommand())
	root.AddCommand(newImageForwarders()...)
	return root
}

// newExecRoot is the command tree of `rabbitc exec` alone. Exec is on the
// critical path of every command run in a container, and building the whole
// tree (newRootCommand: run's flags twice) cost it 1.3 ms of its 26 on the
// bench machine, where a page fault costs 20 µs.
// newRunCommand is rabbitc run.
func newRunCommand() *cobra.Command {
	o := &runOptions{}
	run := &cobra.Command{
		Use:   "run --rootfs DIR [flags] [-- CMD [ARGS...]]",
		Short: "Run a command in a new container",
		Example: "  rabbitc run --rootfs ./rootfs\n" +
			"  rabbitc run --rootfs ./rootfs -- sh -c 'echo hi; exit 7'\n" +
			"  rabbitc run --rootfs ./rootfs --publish 8080:80 --cmd /bin/server",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// `run [flags] -- CMD` is a command for --rootfs, never an image:
			// the image comes before any "--".
			o.noImage = cmd.ArgsLenAtDash() == 0
			return runContainer(o, args)
		},
	}
	run.Flags().SetInterspersed(false)
	addRunFlags(run.Flags(), o)
	run.SetFlagErrorFunc(flagError)
	return run
}

// newRunRoot is the command tree of `rabbitc run` alone, as newExecRoot is
// exec's: run is on the critical path of every container start (twice for
// run -d: the command and its monitor), and the whole tree costs one more
// set of run's flags and every other command.
func newRunRoot() *cobra.Command {
	root := &cobra.Command{Use: "rabbitc", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newRunCommand())
	return root
}

func newExecRoot() *cobra.Command {
	root := &cobra.Command{Use: "rabbitc", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newExecCommand())
	return root
}

func flagError(cmd *cobra.Command, err error) error {
	return fmt.Errorf("%w (see %s --help)", err, cmd.CommandPath())
}

func addRunFlags(fs *pflag.FlagSet, o *runOptions) {
	fs.StringVar(&o.rootfs, "rootfs", "", "directory holding the container's root filesystem (required)")
	fs.StringVar(&o.cmd, "cmd", "", "program to run; arguments after -- are its arguments (default /bin/sh)")
	fs.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable KEY=VALUE (KEY alone copies the host's)")
	fs.StringArrayVar(&o.envFiles, "env-file", nil, "read environment variables from a file of KEY=VALUE lines (before --env)")
	fs.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringVar(&o.hostname, "hostname", "", "container host name (default: a short random id)")
	fs.StringVarP(&o.user, "user", "u", "", "UID[:GID] or NAME[:GROUP] to run as inside the container")
	fs.StringArrayVarP(&o.volumes, "volume", "v", nil, "bind-mount SRC:DST[:ro|rw] into the container")
	fs.BoolVar(&o.readOnly, "read-only", false, "mount the root filesystem read-only")
	fs.StringArrayVar(&o.tmpfs, "tmpfs", nil, "mount a tmpfs: DST[:OPTIONS] (rw, ro, exec, noexec, suid, nosuid, dev, nodev, size=, mode=; default rw,noexec,nosuid,nodev)")
	fs.BoolVarP(&o.tty, "tty", "t", false, "allocate a pseudo-terminal")
	fs.BoolVarP(&o.interactive, "interactive", "i", false, "keep stdin attached")
	fs.BoolVar(&o.init, "init", false, "run an init as PID 1 that forwards signals to the payload and reaps orphans (as docker run --init)")
	fs.StringVar(&o.net, "net", "slirp4netns", "network: slirp4netns, none or host (--network too, as in docker)")
	fs.StringArrayVarP(&o.publish, "publish", "p", nil, "publish [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]")
	fs.IntVar(&o.mtu, "mtu", 0, "MTU of the slirp4netns tap device (default 65520)")
	fs.StringArrayVar(&o.addHosts, "add-host", nil, "add NAME:IP to /etc/hosts (IP host-gateway: the host, 10.0.2.2 with slirp4netns)")
	fs.BoolVar(&o.hostLoop, "allow-host-loopback", false, "let the container reach the host's 127.0.0.1 at 10.0.2.2 (exposes every service on it)")
	fs.StringVar(&o.netAccel, "net-accel", netAccelOn, "on: outbound TCP through host sockets where the host allows it (README, Networking); off: all through slirp4netns")
	fs.StringVar(&o.publishMode, "publish-mode", publishForward, "forward: published ports through rabbitc's forwarder; direct: the container's server gets the host's listening TCP socket and sees clients' addresses (needs network acceleration; README, Networking)")
	fs.BoolVar(&o.debug, "debug", false, "print why network acceleration is off, and what it did at exit")
	fs.StringArrayVar(&o.capAdd, "cap-add", nil, "add a capability to the default set (NET_ADMIN, ALL, ...)")
	fs.StringArrayVar(&o.capDrop, "cap-drop", nil, "drop a capability from the default set (NET_RAW, ALL, ...)")
	fs.StringArrayVar(&o.securityOpt, "security-opt", nil, "seccomp=unconfined, seccomp=FILE.json, no-new-privileges=false, slirp4netns-sandbox=false, slirp4netns-seccomp=false")
	fs.StringArrayVar(&o.ulimits, "ulimit", nil, "set a resource limit NAME=SOFT[:HARD] as in docker (nofile, nproc, core, memlock, ...; -1 or unlimited)")
	fs.IntVar(&o.stopTimeout, "stop-timeout", 10, "seconds to wait after forwarding SIGTERM/SIGINT before killing the container")
	fs.VarPF(rmFlag{&o.rm}, "rm", "", "remove the container when it exits (a foreground one always is; with -d, without --rm it is kept until rabbitc rm)").NoOptDefVal = "true"
	fs.BoolVarP(&o.detach, "detach", "d", false, "run in the background: print the container ID and return once the payload runs (output in rabbitc logs)")
	fs.StringVar(&o.name, "name", "", "a name for the container, unique, accepted wherever an ID is")
	fs.StringVar(&o.pull, "pull", "", "for an image: missing (the default), always or never")
	fs.BoolVarP(&o.publishAll, "publish-all", "P", false, "for an image: publish each of its exposed ports on a free host port")
	fs.VarPF(entrypointFlag{o}, "entrypoint", "", "for an image: run this instead of its Entrypoint, without its Cmd (\"\" clears it)")
	fs.StringVar(&o.platform, "platform", "", "for an image: OS/ARCH[/VARIANT] (default: this machine's)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "for an image: no pull progress")
	// docker's spelling of --net.
	fs.SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "network" {
			name = "net"
		}
		return pflag.NormalizedName(name)
	})
}

// entrypointFlag is --entrypoint, which tells "" (clear the image's) from
// not given.
type entrypointFlag struct{ o *runOptions }

func (f entrypointFlag) String() string { return f.o.entrypoint }
func (f entrypointFlag) Type() string   { return "string" }
func (f entrypointFlag) Set(s string) error {
	f.o.entrypoint, f.o.entrypointSet = s, true
	return nil
}

// rmFlag is --rm: 1 given, -1 given as --rm=false, 0 not given. A
// foreground container is always removed when it exits, so there --rm is
// accepted (docker users type it out of habit) and --rm=false refused
// (newSpec says why); a detached one is kept unless --rm is given.
type rmFlag struct{ v *int }

func (f rmFlag) String() string { return strconv.FormatBool(*f.v > 0) }
func (f rmFlag) Type() string   { return "bool" }
func (f rmFlag) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*f.v = -1
	if v {
		*f.v = 1
	}
	return nil
}
