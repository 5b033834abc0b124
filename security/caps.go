package security

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capNames are the capabilities this build knows, by number, without the
// CAP_ prefix.
var capNames = [unix.CAP_LAST_CAP + 1]string{
	unix.CAP_CHOWN:              "CHOWN",
	unix.CAP_DAC_OVERRIDE:       "DAC_OVERRIDE",
	unix.CAP_DAC_READ_SEARCH:    "DAC_READ_SEARCH",
	unix.CAP_FOWNER:             "FOWNER",
	unix.CAP_FSETID:             "FSETID",
	unix.CAP_KILL:               "KILL",
	unix.CAP_SETGID:             "SETGID",
	unix.CAP_SETUID:             "SETUID",
	unix.CAP_SETPCAP:            "SETPCAP",
	unix.CAP_LINUX_IMMUTABLE:    "LINUX_IMMUTABLE",
	unix.CAP_NET_BIND_SERVICE:   "NET_BIND_SERVICE",
	unix.CAP_NET_BROADCAST:      "NET_BROADCAST",
	unix.CAP_NET_ADMIN:          "NET_ADMIN",
	unix.CAP_NET_RAW:            "NET_RAW",
	unix.CAP_IPC_LOCK:           "IPC_LOCK",
	unix.CAP_IPC_OWNER:          "IPC_OWNER",
	unix.CAP_SYS_MODULE:         "SYS_MODULE",
	unix.CAP_SYS_RAWIO:          "SYS_RAWIO",
	unix.CAP_SYS_CHROOT:         "SYS_CHROOT",
	unix.CAP_SYS_PTRACE:         "SYS_PTRACE",
	unix.CAP_SYS_PACCT:          "SYS_PACCT",
	unix.CAP_SYS_ADMIN:          "SYS_ADMIN",
	unix.CAP_SYS_BOOT:           "SYS_BOOT",
	unix.CAP_SYS_NICE:           "SYS_NICE",
	unix.CAP_SYS_RESOURCE:       "SYS_RESOURCE",
	unix.CAP_SYS_TIME:           "SYS_TIME",
	unix.CAP_SYS_TTY_CONFIG:     "SYS_TTY_CONFIG",
	unix.CAP_MKNOD:              "MKNOD",
	unix.CAP_LEASE:              "LEASE",
	unix.CAP_AUDIT_WRITE:        "AUDIT_WRITE",
	unix.CAP_AUDIT_CONTROL:      "AUDIT_CONTROL",
	unix.CAP_SETFCAP:            "SETFCAP",
	unix.CAP_MAC_OVERRIDE:       "MAC_OVERRIDE",
	unix.CAP_MAC_ADMIN:          "MAC_ADMIN",
	unix.CAP_SYSLOG:             "SYSLOG",
	unix.CAP_WAKE_ALARM:         "WAKE_ALARM",
	unix.CAP_BLOCK_SUSPEND:      "BLOCK_SUSPEND",
	unix.CAP_AUDIT_READ:         "AUDIT_READ",
	unix.CAP_PERFMON:            "PERFMON",
	unix.CAP_BPF:                "BPF",
	unix.CAP_CHECKPOINT_RESTORE: "CHECKPOINT_RESTORE",
}

// defaultCaps are docker's default capability set.
var defaultCaps = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
	unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
	unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
}

// allCaps is the --cap-add/--cap-drop value that means every capability.
const allCaps = "ALL"

// dockerCaps returns the capability set docker gives a container, sorted:
// the default 14 with drop removed and add added (an add wins over a drop
// of the same capability). As in docker, add ALL gives every capability but
// those dropped, and drop ALL gives exactly add.
func dockerCaps(add, drop []string) ([]int, error) {
	adds, addAll, err := parseFlagCaps("cap-add", add)
	if err != nil {
		return nil, err
	}
	drops, dropAll, err := parseFlagCaps("cap-drop", drop)
	if err != nil {
		return nil, err
	}
	var set []int
	switch {
	case addAll:
		for n := range capNames {
			if !slices.Contains(drops, n) {
				set = append(set, n)
			}
		}
	case dropAll:
		set = adds
	default:
		for _, n := range defaultCaps {
			if !slices.Contains(drops, n) {
				set = append(set, n)
			}
		}
		set = append(set, adds...)
	}
	slices.Sort(set)
	return slices.Compact(set), nil
}

// parseFlagCaps resolves capability names as given to flag: "NET_ADMIN",
// "CAP_NET_ADMIN", "net_admin" or ALL.
func parseFlagCaps(flag string, names []string) (caps []int, all bool, err error) {
	for _, name := range names {
		s := strings.ToUpper(strings.TrimSpace(name))
		if s == allCaps {
			all = true
			continue
		}
		n := slices.Index(capNames[:], strings.TrimPrefix(s, "CAP_"))
		if n < 0 || s == "" || s == "CAP_" {
			return nil, false, fmt.Errorf("%s %q: unknown capability (use a name from capabilities(7) such as NET_ADMIN or CAP_NET_ADMIN, or ALL)", flag, name)
		}
		caps = append(caps, n)
	}
	return caps, all, nil
}

// capSets are the five sets of a runtime-spec config as bit masks, one bit
// a capability number.
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// resolveCaps turns the runtime spec's sets into masks. Names are taken as
// the spec writes them ("CAP_NET_ADMIN"); one this build does not know is
// an error, since the payload would silently run without it. Capabilities
// above last, which the running kernel does not have, are left out, as runc
// leaves them out: a config written for a newer kernel still runs.
func resolveCaps(c *specs.LinuxCapabilities, last int) (capSets, error) {
	var s capSets
	if c == nil {
		return s, nil
	}
	for _, set := range []struct {
		name  string
		names []string
		mask  *uint64
	}{
		{"bounding", c.Bounding, &s.bounding},
		{"effective", c.Effective, &s.effective},
		{"permitted", c.Permitted, &s.permitted},
		{"inheritable", c.Inheritable, &s.inheritable},
		{"ambient", c.Ambient, &s.ambient},
	} {
		for _, name := range set.names {
			n, ok := capByName(name)
			if !ok {
				return capSets{}, fmt.Errorf("capability %q: unknown in the %s set (use a name from capabilities(7) in the runtime spec's form, such as CAP_NET_ADMIN)", name, set.name)
			}
			if n <= last {
				*set.mask |= 1 << n
			}
		}
	}
	return s, nil
}

// capByName finds a capability by its name in the runtime spec's form,
// "CAP_NET_ADMIN".
func capByName(name string) (int, bool) {
	bare, ok := strings.CutPrefix(name, "CAP_")
	if !ok || bare == "" {
		return 0, false
	}
	n := slices.Index(capNames[:], bare)
	return n, n >= 0
}

// capName returns the name of capability n as in capabilities(7), such as
// "CAP_NET_ADMIN".
func capName(n int) string {
	if n >= 0 && n < len(capNames) {
		return "CAP_" + capNames[n]
	}
	return fmt.Sprintf("CAP_%d", n)
}

func capNamesOf(caps []int) []string {
	out := make([]string, len(caps))
	for i, n := range caps {
		out[i] = capName(n)
	}
	return out
}
