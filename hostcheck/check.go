package hostcheck

import (
	"errors"
	"fmt"
	"syscall"
)

// Status says how one check went.
type Status string

const (
	OK      Status = "ok"
	Warning Status = "warning" // rabbitc runs, with something missing or limited
	Error   Status = "error"   // rabbitc cannot run, or cannot run images
)

// Check is the result of one check: one line of `rabbitc doctor`.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`    // the exact command or file edit
	AsRoot bool   `json:"asRoot,omitempty"` // Fix is to be run as root
}

// String is the check's line: status, name, what was found, the fix.
func (c Check) String() string {
	s := fmt.Sprintf("%-9s%s: %s", c.Status, c.Name, c.Detail)
	switch {
	case c.Fix == "":
	case c.AsRoot:
		s += " — fix (as root): " + c.Fix
	default:
		s += " — fix: " + c.Fix
	}
	return s
}

// Failed reports whether any check is an error: rabbitc cannot run.
func Failed(cs []Check) bool {
	for _, c := range cs {
		if c.Status == Error {
			return true
		}
	}
	return false
}

func ok(name, detail string) Check {
	return Check{Name: name, Status: OK, Detail: detail}
}

// rootFix is a failed check whose fix is run as root.
func rootFix(st Status, name, detail, fix string) Check {
	return Check{Name: name, Status: st, Detail: detail, Fix: fix, AsRoot: fix != ""}
}

// userFix is a failed check whose fix the user runs.
func userFix(st Status, name, detail, fix string) Check {
	return Check{Name: name, Status: st, Detail: detail, Fix: fix}
}

// Host is what the checks need to know that only cmd/rabbitc knows.
type Host struct {
	User     string   // login name ("" if unknown)
	UID, GID int      // the invoking user's ids
	Exe      string   // the rabbitc binary, as AppArmor profiles name it
	Probe    []string // the command that runs ProbeMain with the arguments appended
	StateDir string   // where run keeps containers' state
	StoreDir string   // the image store
	Slirp    Slirp    // what netns made of slirp4netns
	// NetAccel is why network acceleration cannot run here (nil: it can),
	// as netaccel.Supported says.
	NetAccel error
}

// Run runs every check, in the order a user fixes them.
func Run(h Host) []Check {
	cs := []Check{Kernel()}
	sys := userNamespaceSysctls(h.Exe)
	cs = append(cs, sys...)
	userns := UserNamespace(h.Probe, sys)
	cs = append(cs, userns)
	cs = append(cs, MapTool("newuidmap", h.UID), MapTool("newgidmap", h.UID))
	cs = append(cs, SubIDs(h.User, h.UID)...)
	cs = append(cs, h.Slirp.check(), Tun(), PortStart(h.UID))
	overlay := userFix(Warning, "overlay", "not tried without a user namespace (userns above)", "")
	if userns.Status == OK {
		overlay = Overlay(h.Probe, h.StoreDir)
	}
	cs = append(cs, overlay, SeccompNotify(h.NetAccel), Cgroups(h.UID))
	return append(cs, Dirs(h)...)
}

// errText is err's errno alone when it has one ("operation not permitted",
// not "fork/exec /proc/self/exe: operation not permitted").
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return err.Error()
}
