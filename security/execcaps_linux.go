package security

import "golang.org/x/sys/unix"

// ExecCaps is what PrepareCaps and Finalize do to the capabilities of a
// process that has just joined a user namespace with setns(2), as values:
// for `rabbitc exec`'s plan, whose system calls run before any Go runtime
// starts (package nsenter), and which rabbitc exec computes beforehand.
// setns gives the process every capability the kernel has (up to Last)
// in permitted and effective, a full bounding set, and empty inheritable
// and ambient sets (set_cred_user_ns in the kernel), so every capget that
// PrepareCaps and Finalize make has a known answer.
//
// The order is PrepareCaps's: Drop from the bounding set, clear the
// ambient set, keep-caps on, capset Prepared; the uid change; then
// Finalize's: keep-caps off, capset Final, raise Ambient.
type ExecCaps struct {
	Last     int     // the highest capability the kernel knows
	Drop     []int   // dropped from the bounding set, in order
	Prepared CapSets // PrepareCaps's capset
	Final    CapSets // Finalize's
	Ambient  []int   // raised by Finalize, in order
}

// CapSets are a capset(2)'s three sets, one bit a capability.
type CapSets struct{ Effective, Permitted, Inheritable uint64 }

// PlanExecCaps computes c's ExecCaps for a process that has just joined a
// user namespace.
func PlanExecCaps(c Config) (ExecCaps, error) {
	last := lastCap()
	sets, err := resolveCaps(c.Capabilities, last)
	if err != nil {
		return ExecCaps{}, err
	}
	full := uint64(1)<<(last+1) - 1
	if last >= 63 {
		full = ^uint64(0)
	}
	x := ExecCaps{Last: last}
	for n := 0; n <= last; n++ {
		if sets.bounding&(1<<n) == 0 {
			x.Drop = append(x.Drop, n)
		}
		if sets.ambient&(1<<n) != 0 {
			x.Ambient = append(x.Ambient, n)
		}
	}
	// PrepareCaps, with cur = {permitted: full, inheritable: 0}.
	keep := (sets.permitted | 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID) & full
	inh := sets.inheritable & (sets.bounding & full)
	x.Prepared = CapSets{Effective: keep, Permitted: keep, Inheritable: inh}
	// Finalize, with cur = what PrepareCaps set: keep-caps kept permitted
	// across the uid change, which only clears effective.
	prm := sets.permitted & keep
	x.Final = CapSets{Effective: sets.effective & prm, Permitted: prm, Inheritable: sets.inheritable & inh}
	return x, nil
}
