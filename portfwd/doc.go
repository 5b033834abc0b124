// Package portfwd owns --publish: parsing docker-style specs, the host
// listeners (parent side), the in-netns dialer that returns connected sockets
// over an inherited socketpair with SCM_RIGHTS (child side), and moving the
// bytes with splice.
//
// It does not start slirp4netns or enter namespaces: it runs wherever it is
// called (the child half is called by the sandbox, which already lives in the
// container's network namespace).
package portfwd
