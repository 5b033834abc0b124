// Package userns owns the user namespace: subordinate id lookup, the
// newuidmap/newgidmap arguments and their execution, starting the stages with
// their clone flags and Pdeathsig, the sync channel between the stages and its
// messages, and the ambient capabilities that carry the sandbox's capabilities
// through its exec.
//
// It leaves mounts, networking and ports alone.
package userns
