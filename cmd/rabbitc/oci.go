package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The OCI runtime command line is runc's: what podman, containerd (and so
// Kubernetes) and CRI-O call. It shares verbs with the docker-like one
// (run, exec, kill, ps), so the two are told apart by their shape
// (isOCICommandLine):
//
//   - a runc global flag before the verb (--root, --log, --log-format,
//     --debug, --systemd-cgroup, --rootless, --criu): every engine passes
//     at least --root, so an engine always gets the OCI verbs;
//   - a verb only the OCI side has: create, start, state, delete, list,
//     features, spec;
//   - run with --bundle/-b; exec with --process/-p, --pid-file,
//     --console-socket or --cwd (flags docker's exec lacks); kill with --all/-a or
//     a second argument (`kill ID SIGNAL`; docker's form is `kill -s SIG
//     ID...`); ps with an argument (`ps ID`; docker's lists containers).
//
// Everything else is the docker-like command line.

// ociGlobalFlags are runc's global flags; those that take a value.
var ociGlobalFlags = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--rootless": true,
	"--debug": false, "--systemd-cgroup": false, "--criu": true,
}

var ociOnlyVerbs = []string{"create", "start", "state", "delete", "list", "features", "spec"}

// isOCICommandLine tells, by its shape, whether args is an OCI runtime
// command line (see above).
func isOCICommandLine(args []string) bool {
	if len(args) == 0 {
		return false
	}
	if name, _, _ := strings.Cut(args[0], "="); strings.HasPrefix(args[0], "--") {
		_, ok := ociGlobalFlags[name]
		return ok
	}
	verb, rest := args[0], args[1:]
	if slices.Contains(ociOnlyVerbs, verb) {
		return true
	}
	has := func(flags ...string) bool {
		for _, a := range rest {
			if a == "--" {
				return false
			}
			name, _, _ := strings.Cut(a, "=")
			if slices.Contains(flags, name) {
				return true
			}
		}
		return false
	}
	switch verb {
	case "run":
		return has("--bundle", "-b")
	case "exec":
		return has("--process", "-p", "--pid-file", "--console-socket", "--cwd")
	case "kill":
		return has("--all", "-a") || positionals(rest, "-s", "--signal") == 2
	case "ps":
		return positionals(rest, "--format") >= 1
	}
	return false
}

// positionals counts the arguments that are no flag nor a flag's value;
// valued names the flags that take a separate value.
func positionals(args []string, valued ...string) int {
	n := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return n + len(args) - i - 1
		case slices.Contains(valued, a):
			i++
		case strings.HasPrefix(a, "-") && a != "-":
		default:
			n++
		}
	}
	return n
}

// ociGlobals are runc's global flags.
type ociGlobals struct {
	root          string
	log           string
	logFormat     string
	debug         bool
	systemdCgroup bool
	rootless      string
	criu          string
}

// newOCIRoot is the OCI runtime command line.
func newOCIRoot() (*cobra.Command, *ociGlobals) {
	g := &ociGlobals{}
	root := &cobra.Command{
		Use:   "rabbitc [global flags] VERB",
		Short: "rabbitc's OCI runtime command line (as runc's), for engines",
		Long: "The OCI runtime command line, as podman, containerd and CRI-O call runc.\n" +
			"It is chosen by its shape: a runc global flag before the verb, a verb only it has\n" +
			"(create, start, state, delete, list, features, spec), run --bundle, exec --process,\n" +
			"kill ID SIGNAL or kill --all, ps ID.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.root, "root", "", "directory for the containers' state (default $XDG_RUNTIME_DIR/rabbitc-oci, /run/rabbitc as root)")
	pf.StringVar(&g.log, "log", "", "file to write errors to (default stderr)")
	pf.StringVar(&g.logFormat, "log-format", "text", "format of the log: text or json")
	pf.BoolVar(&g.debug, "debug", false, "accepted for runc's command line; rabbitc logs errors only")
	pf.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "accepted for runc's command line: cgroups are managed as cgroupfs paths")
	pf.StringVar(&g.rootless, "rootless", "auto", "accepted for runc's command line: rabbitc finds out (true, false, auto)")
	pf.StringVar(&g.criu, "criu", "", "accepted and ignored: rabbitc does not checkpoint")
	root.AddCommand(newOCICreate(g), newOCIStart(g), newOCIState(g), newOCIKill(g), newOCIDelete(g),
		newOCIRun(g), newOCIExec(g), newOCIList(g), newOCIPs(g), newOCIFeatures(), newOCISpecCommand())
	root.SetFlagErrorFunc(flagError)
	return root, g
}

// versionText is what rabbitc --version and rabbitc version print, in
// runc's shape: OCI engines read the first line.
func versionText() string {
	return fmt.Sprintf("rabbitc version %s\ncommit: %s\nbuilt: %s\nspec: %s\ngo: %s %s/%s\n",
		version, commit, buildDate, ociVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// ociError reports err as the --log and --log-format flags ask: runc's
// callers read the last error from the log file, one JSON object a line
// with --log-format json.
func (g *ociGlobals) report(err error) {
	msg := err.Error()
	if g.log == "" {
		fmt.Fprintf(os.Stderr, "rabbitc: %s\n", msg)
		return
	}
	f, ferr := os.OpenFile(g.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if ferr != nil {
		fmt.Fprintf(os.Stderr, "rabbitc: %s\n", msg)
		return
	}
	defer f.Close()
	writeLogLine(f, g.logFormat, msg)
	// Engines show the log; a person at a terminal reads stderr.
	fmt.Fprintf(os.Stderr, "rabbitc: %s\n", msg)
}

func writeLogLine(w io.Writer, format, msg string) {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if format == "json" {
		b, _ := json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{"error", msg, now})
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "time=%q level=error msg=%q\n", now, msg)
}

// ociMain runs the OCI command line. Errors exit 1, as runc's; run exits
// with the process's status.
func ociMain(args []string) int {
	root, g := newOCIRoot()
	code, err := execute(root, args)
	if err != nil {
		g.report(err)
	}
	return code
}
