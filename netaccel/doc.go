// Package netaccel switches a container's outbound TCP connects to sockets
// made in the host's network namespace (issue 16). This first part holds
// the policy: which destinations may be switched and to what.
package netaccel
