// Package portfwd owns --publish: parsing docker-style specs, the host
// listeners (parent side), the in-netns dialer that returns connected sockets
// over an inherited socketpair with SCM_RIGHTS (child side), and moving the
// bytes with splice.
//
// It does not start slirp4netns or enter namespaces: it runs wherever it is
// called (the child half is called by the sandbox, which already lives in the
// container's network namespace).
//
// The parent side, in order:
//
//	specs, err := portfwd.ParseSpec("127.0.0.1:8080:80")  // for each -p, then CheckConflicts
//	l, err := portfwd.Listen(specs)                       // bind now: port in use, privileged port
//	parent, child, err := portfwd.NewSocketpair()         // child goes to the sandbox (fd 4)
//	l.Serve(ctx, parent, "10.0.2.100")                    // returns at once
//	...
//	l.Close()                                             // or cancel ctx; Wait tells why it stopped
//
// and the sandbox runs portfwd.ServeChild(ctx, os.NewFile(4, "portfwd")).
//
// A host address of 0.0.0.0 listens on IPv4 only and :: on IPv6 only, as
// docker's two listeners do; a connection is always dialed to containerIP,
// the container's own address (never 127.0.0.1, so that a remote client is
// never mistaken for a local one inside the container).
//
// A TCP dial the container refuses waits, until its timeout, for the target
// to listen when it never has (the container is still starting; at most
// maxWaiting a target); once a dial has reached it, refused means refused
// (see child.wait).
//
// Each dial has a timeout in the child (DialTimeout), and the parent gives
// up a dial the child has not answered a little after it, so a stopped
// sandbox leaves no client waiting for ever. A UDP listener on 0.0.0.0 or ::
// answers each client from the address it sent to (IP_PKTINFO).
//
// Both hops of a TCP connection use keepalive (first probe after 60 s idle,
// then every 10 s, 6 unanswered end it): a peer gone without a word is reset
// within about two minutes. Out of descriptors, established connections go
// on (without a pipe if need be), a new connection on a port that holds its
// share of the connections or more is reset at once instead of waiting in
// the backlog, the other ports are served with spare descriptors kept for
// this, and accepting resumes as descriptors free up (see tightFor). A
// client that never reads holds one pipe (1 MiB) besides its sockets'
// buffers: the container's writes block.
//
// ListenConfig.Direct binds chosen TCP ports for someone else to serve
// (rabbitc hands them to the container's server): the forwarder never
// accepts on them, and Close closes them with the rest.
//
// Do not use it for a forwarder that must see the client's address: the
// container sees connections from its own address.
package portfwd
