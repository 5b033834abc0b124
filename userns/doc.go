// Package userns owns the user namespace: subordinate id lookup, the
// newuidmap/newgidmap arguments and their execution, starting the stages with
// their clone flags and Pdeathsig, the sync channel between the stages and its
// messages, and the capability re-exec of the sandbox.
//
// It leaves mounts, networking and ports alone.
package userns
