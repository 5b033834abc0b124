package main

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rlimitName is one of docker's --ulimit names, with its resource and the
// letter of the shell's ulimit option for it (for the fix-it text).
type rlimitName struct {
	name     string
	resource int
	flag     byte
}

// rlimitNames, sorted by name. An array, not a map: the linker lays it out,
// where a map would be built at every start of every stage of the binary.
var rlimitNames = [...]rlimitName{
	{"as", unix.RLIMIT_AS, 'v'},
	{"core", unix.RLIMIT_CORE, 'c'},
	{"cpu", unix.RLIMIT_CPU, 't'},
	{"data", unix.RLIMIT_DATA, 'd'},
	{"fsize", unix.RLIMIT_FSIZE, 'f'},
	{"locks", unix.RLIMIT_LOCKS, 'x'},
	{"memlock", unix.RLIMIT_MEMLOCK, 'l'},
	{"msgqueue", unix.RLIMIT_MSGQUEUE, 'q'},
	{"nice", unix.RLIMIT_NICE, 'e'},
	{"nofile", unix.RLIMIT_NOFILE, 'n'},
	{"nproc", unix.RLIMIT_NPROC, 'u'},
	{"rss", unix.RLIMIT_RSS, 'm'},
	{"rtprio", unix.RLIMIT_RTPRIO, 'r'},
	{"rttime", unix.RLIMIT_RTTIME, 'R'},
	{"sigpending", unix.RLIMIT_SIGPENDING, 'i'},
	{"stack", unix.RLIMIT_STACK, 's'},
}

// rlimitByName finds a --ulimit name.
func rlimitByName(name string) (rlimitName, bool) {
	for _, r := range rlimitNames {
		if r.name == name {
			return r, true
		}
	}
	return rlimitName{}, false
}

// rlimitType is the runtime-spec name of a --ulimit name: RLIMIT_NOFILE.
func rlimitType(name string) string { return "RLIMIT_" + strings.ToUpper(name) }

// parseUlimits turns --ulimit flags into limits, checking each against the
// hard limit rabbitc has: in a user namespace nobody can raise a hard limit
// (that takes CAP_SYS_RESOURCE in the initial one), so init could not set
// more. A name given twice takes its last value, as in docker.
func parseUlimits(args []string) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, arg := range args {
		name, l, err := parseUlimit(arg)
		if err != nil {
			return nil, err
		}
		var have unix.Rlimit
		r, _ := rlimitByName(name)
		if err := unix.Getrlimit(r.resource, &have); err != nil {
			return nil, fmt.Errorf("--ulimit %s: getrlimit: %w", arg, err)
		}
		if err := checkUlimit(arg, name, l, have.Max); err != nil {
			return nil, err
		}
		out = setRlimit(out, l)
	}
	return out, nil
}

func setRlimit(ls []specs.POSIXRlimit, l specs.POSIXRlimit) []specs.POSIXRlimit {
	for i := range ls {
		if ls[i].Type == l.Type {
			ls[i] = l
			return ls
		}
	}
	return append(ls, l)
}

// parseUlimit parses docker's NAME=SOFT[:HARD]: one value sets both, each is
// a number, -1, unlimited or infinity.
func parseUlimit(arg string) (string, specs.POSIXRlimit, error) {
	name, val, ok := strings.Cut(arg, "=")
	if _, known := rlimitByName(name); !known {
		if !ok {
			return "", specs.POSIXRlimit{}, fmt.Errorf("--ulimit %s: expected NAME=SOFT[:HARD]", shownArg(arg))
		}
		return "", specs.POSIXRlimit{}, fmt.Errorf("--ulimit %s: unknown limit %q (valid: %s)", shownArg(arg), name, validUlimitNames())
	}
	softS, hardS, hasHard := strings.Cut(val, ":")
	if !hasHard {
		hardS = softS
	}
	soft, err1 := parseRlimitValue(softS)
	hard, err2 := parseRlimitValue(hardS)
	if !ok || err1 != nil || err2 != nil {
		return "", specs.POSIXRlimit{}, fmt.Errorf("--ulimit %s: expected NAME=SOFT[:HARD], each a number, -1 or unlimited", shownArg(arg))
	}
	if soft > hard {
		return "", specs.POSIXRlimit{}, fmt.Errorf("--ulimit %s: soft limit %s above the hard limit %s", arg, rlimitString(soft), rlimitString(hard))
	}
	return name, specs.POSIXRlimit{Type: rlimitType(name), Soft: soft, Hard: hard}, nil
}

// shownArg is arg as typed, or quoted when it holds anything that would not
// show (the error stays one line).
func shownArg(arg string) string {
	if q := strconv.Quote(arg); arg == "" || q[1:len(q)-1] != arg || strings.ContainsAny(arg, " \t") {
		return q
	}
	return arg
}

func parseRlimitValue(s string) (uint64, error) {
	switch s {
	case "-1", "unlimited", "infinity":
		return unix.RLIM_INFINITY, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// checkUlimit refuses a hard limit above max, the hard limit rabbitc has.
func checkUlimit(arg, name string, l specs.POSIXRlimit, max uint64) error {
	if l.Hard <= max {
		return nil
	}
	r, _ := rlimitByName(name)
	flag := r.flag
	return fmt.Errorf("--ulimit %s: above the hard limit %s rabbitc has (raise it in /etc/security/limits.conf, or with ulimit -H%c as root, before starting rabbitc)",
		arg, rlimitString(max), flag)
}

func rlimitString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

func validUlimitNames() string {
	names := make([]string, 0, len(rlimitNames))
	for _, r := range rlimitNames {
		names = append(names, r.name)
	}
	return strings.Join(names, ", ")
}

// applyRlimits sets the --ulimit limits on init; exec hands them to the
// payload. Capabilities do not matter here (raising a hard limit needs
// CAP_SYS_RESOURCE in the initial user namespace, which no container has;
// lowering needs none), so this can run after setuid and before the
// capabilities are dropped, once init has opened every descriptor it needs.
func applyRlimits(ls []specs.POSIXRlimit) error {
	for _, l := range ls {
		res := -1
		for _, r := range rlimitNames {
			if rlimitType(r.name) == l.Type {
				res = r.resource
			}
		}
		if res < 0 {
			return fmt.Errorf("ulimit %s: unknown limit", l.Type)
		}
		// unix.Prlimit goes through package syscall, which then no longer
		// puts back, at exec, the soft nofile limit Go had at start-up.
		if err := unix.Prlimit(0, res, &unix.Rlimit{Cur: l.Soft, Max: l.Hard}, nil); err != nil {
			return fmt.Errorf("set %s to %s:%s: %w", l.Type, rlimitString(l.Soft), rlimitString(l.Hard), err)
		}
	}
	return nil
}

// checkRlimits refuses, before anything starts, an OCI config's rlimit the
// kernel has no such limit for, or whose soft value is above its hard one.
func checkRlimits(ls []specs.POSIXRlimit) error {
	for _, l := range ls {
		known := false
		for _, r := range rlimitNames {
			known = known || rlimitType(r.name) == l.Type
		}
		if !known {
			return fmt.Errorf("process.rlimits: unknown limit %q (use RLIMIT_NOFILE, RLIMIT_NPROC, ... as getrlimit(2) names them)", l.Type)
		}
		if l.Soft > l.Hard {
			return fmt.Errorf("process.rlimits: %s: soft limit %d above the hard limit %d", l.Type, l.Soft, l.Hard)
		}
	}
	return nil
}
