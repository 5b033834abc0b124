// Package netaccel switches a container's outbound TCP connections to
// sockets made in the host's network namespace (issue 16), so that their
// data moves at the host's speed instead of through slirp4netns: a second
// seccomp filter sends connect, bind and listen to a supervisor in the
// parent, which decides with [Decide], makes its own socket, connects it
// to the address it validated and installs it in the container at the
// same descriptor number.
//
// It owns the filter ([Filter], [Install], [Supported]), the supervisor
// ([New], [Supervisor.Serve]) and the policy ([Decide]). It starts no
// process and enters no namespace; cmd/rabbitc wires it:
//
//	// init, before execve, after no_new_privs (or with CAP_SYS_ADMIN):
//	fd, err := netaccel.Install()         // every thread (TSYNC)
//	// ... send fd to the parent over the sync socket (SCM_RIGHTS), close it
//	// parent:
//	dev, ino, err := netaccel.NetnsOf("/proc/PID/ns/net")
//	s, err := netaccel.New(fd, netaccel.Config{Policy: p, NetnsDev: dev, NetnsIno: ino})
//	go s.Serve(ctx)                       // cancel ctx at teardown
//
// The payload must not keep the listener: it could answer its own calls.
// After Serve returns the listener is closed and trapped calls fail with
// ENOSYS, so the container must not outlive the supervisor.
//
// # The filter
//
// It is stacked on the container's profile, whose denials still win (the
// kernel takes the most restrictive answer of all filters). It traps
// connect with an address length of 16 or 28 (sockaddr_in, sockaddr_in6),
// every bind and listen, and on i386 the same direct calls and
// socketcall(SYS_CONNECT, SYS_BIND, SYS_LISTEN). It refuses TCP Fast Open
// (sendto, sendmsg, sendmmsg with MSG_FASTOPEN; setsockopt
// TCP_FASTOPEN_CONNECT) with EOPNOTSUPP, which is what the kernel answers
// when TFO is off, and io_uring_setup with EPERM, as docker's default
// profile does (io_uring operations bypass seccomp). x32 and any
// architecture it does not decode are killed, as rabbitc's profiles do.
// The i386 branch matters even for 64-bit payloads: any process can enter
// the kernel with int 0x80, and docker's profile allows i386 calls.
//
// A classic BPF filter cannot read the address behind a pointer, so
// "Unix sockets never reach the supervisor" is impossible as such: a Unix
// address of length 16 or 28, and every Unix bind, reaches it, and is
// answered CONTINUE after a few system calls (TestUnixSocketsContinue).
// bind is trapped at every length because an inet bind accepts any length
// from 16 up, and a switched socket that could bind unseen could squat a
// port of the host; binds are rare.
//
// # The switch
//
// For a native connect the supervisor reads the address once
// (process_vm_readv, else /proc/PID/mem) and decides on that copy only. It
// takes the socket with pidfd_getfd (a pidfd of the thread, Linux 6.9, or
// of its process) and checks each handle with SECCOMP_IOCTL_NOTIF_ID_VALID
// after opening it, so that a reused pid is never acted on. It switches a
// socket that is TCP, of the address's family, in state CLOSE, unbound
// (getsockname: no address, port 0), unconnected (getpeername: ENOTCONN),
// of the container's own network namespace (SIOCGSKNS; a namespace made
// inside the container is left alone), not open at another descriptor of
// the task, not registered with any of its epoll instances (their fdinfo
// lists the inode of every registered file, also one registered under a
// descriptor number since closed, which kcmp(KCMP_EPOLL_TFD) would need;
// the descriptors of a task of another user, whose fd directory is closed
// to the supervisor, are listed from its fdinfo directory),
// not O_ASYNC, with nothing a host socket could not take over (bound to a
// device, SO_MARK, IP_TRANSPARENT, TCP_REPAIR, a ULP, IP options, a socket
// filter of its own), and only to a destination the policy allows.
// Sockets shared with other processes (inherited across fork before the
// connect) and epoll instances of other processes are not seen.
//
// The host socket gets the application's file status (O_NONBLOCK),
// close-on-exec (from /proc/PID/fdinfo) and every option whose value
// differs from a fresh host socket's (SO_REUSEADDR, SO_KEEPALIVE, buffer
// sizes, SO_LINGER, timeouts, TCP_NODELAY, keepalive timers, IP_TOS,
// IPV6_V6ONLY, ...: sockopt.go); an option the host refuses (one that needs
// a capability in the host's namespace) cancels the switch. It is pinned
// (below), installed with SECCOMP_IOCTL_NOTIF_ADDFD at the application's
// descriptor number, and only then connected, to the validated address.
// Until the ADDFD every doubt answers CONTINUE and the call runs in the
// container's namespace, as without the switch; after it the answer is
// always the result (0, EINPROGRESS or an errno), never CONTINUE: the
// kernel would read the address again, which the container may have
// rewritten (TestAddressRewrite).
//
// # Blocking connects and signals
//
// A non-blocking connect is answered at once (EINPROGRESS). A blocking one
// is waited on in the supervisor, for the socket's SO_SNDTIMEO, and
// answered with what the kernel would have answered: 0, the error of the
// attempt (taken, and the socket reset, by calling connect on it again, as
// the kernel does), or EINPROGRESS when the timeout runs out
// (TestSndtimeo).
//
// The filter is loaded without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
// although the issue asks for it: with it, once the supervisor has received
// the notification, the thread sleeps killable only, so a non-fatal signal
// (an alarm() connect timeout, SIGINT in an interactive tool, SIGURG) would
// wait until the connection is made or times out, which breaks "signals
// during a blocking connect behave as without the switch". Without it a
// signal takes the thread out of the call (ERESTARTSYS): EINTR for a
// handler without SA_RESTART, a restarted call otherwise. Because the host
// socket is installed before the connect and the wait, the thread then
// holds a socket that is connecting, as it would natively
// (TestEINTRLeavesConnectingSocket), and a restarted call comes back to
// the supervisor, which waits on the same attempt; it keeps the first
// call's deadline, so that signals arriving faster than SO_SNDTIMEO cannot
// make a connect wait forever (TestSignalsDuringBlockingConnect). The one
// difference: with SO_SNDTIMEO and an SA_RESTART handler the kernel answers
// EINTR at the first signal, while here the call is restarted and answers
// EALREADY when the timeout runs out. The cost of the choice is a second
// notification per signal, which is cheap here, where WAIT_KILLABLE_RECV
// exists for supervisors that redo slow work on every restart.
// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is set where the kernel has it (6.6).
//
// While the supervisor calls connect on a blocking socket it sets
// O_NONBLOCK on the file for the call and puts it back; another thread of
// the application looking at the flags in those microseconds sees it set.
//
// # Switched sockets
//
// A host socket in the container is recognised by its network namespace
// (SIOCGSKNS: the supervisor's own, or EPERM for a namespace it does not
// own). bind and listen on it, from any ABI, answer EOPNOTSUPP; so do
// connect with AF_UNSPEC (a disconnect) and connect to a destination other
// than the one it was switched to. connect to the same destination behaves
// as on a native socket: EALREADY, EISCONN, a wait, the error of a failed
// attempt and a new attempt after it (TestRefusedThenRetry).
//
// Still, the kernel gives no way to keep a TCP socket from being
// disconnected and connected again, and the filter cannot see every such
// call: a disconnect may have any length from 2 up, an inet connect any
// length from 16 up, and a descriptor number can be made to name a
// switched socket (dup2) between the supervisor's CONTINUE for another
// socket and the kernel's lookup. So every switched socket carries a
// socket filter, locked with SO_LOCK_FILTER, that accepts packets from its
// validated peer (address and port) only: aimed anywhere else it never
// completes a handshake, and if it listens nobody can connect to it
// (TestPinKernel, TestSwitchedSocketRefuses). What remains is that such a
// socket can send SYNs from the host's namespace, which reach a host
// server as half-open connections it never accepts; with TFO data in the
// SYN, which only i386 socketcall(SYS_SENDTO/SYS_SENDMSG) can still ask
// for (their flags are in memory), that data reaches a server only if it
// enabled TFO and takes a cookie the host has cached for it or needs none.
// Linux lets any process attach a socket filter, but a security module may
// demand CAP_NET_ADMIN (that of the VM this was written on does):
// [Supported] then says
// so and the supervisor switches nothing.
//
// An application also sees the host's side of a switched connection:
// getsockname and getpeername give host addresses (127.0.0.1:PORT for a
// connect to 10.0.2.2:PORT), and it cannot attach socket filters of its
// own (EPERM: the pin is locked).
//
// # Published sockets
//
// With Config.Published (rabbitc's --publish-mode=direct) the supervisor
// also hands listening host sockets to the container (handover.go). A
// native bind of a TCP or MPTCP socket of the container's namespace to a
// published container port, on the wildcard or Config.ContainerAddr, that
// would itself accept the host socket's clients (pick: the same family
// and IPV6_V6ONLY, or a dual-stack IPv6 socket on the wildcard, which
// then holds an IPv4 socket where the host published IPv4), passes the
// checks of a switch (eligible) and those of a listener (no SO_REUSEPORT:
// workers sharing the port cannot all have the one host socket); the
// options a connection inherits are copied (copyOptions, and
// TCP_DEFER_ACCEPT), SO_REUSEADDR stays set. The host socket's O_NONBLOCK
// is set as the application's (one open file, which the caller never
// accepts on), it is installed at the same descriptor, and bind is
// answered 0; listen on it is answered with a real listen on it (the
// backlog). A host socket handed over before is handed again only when no
// process of the container's PID namespace has it open (holder: a server
// that closed its listener and listens anew, as iperf3 -s after each
// test); while one has, a bind of the port (SO_REUSEPORT workers, a
// second server) runs in the container's namespace, where no client
// reaches it, and Trace says so. Everything else about a bind or a listen
// is as before: CONTINUE, or EOPNOTSUPP on a host socket.
//
// The host socket needs a pin too ([PinListener], attached by the caller
// between bind and listen so that every accepted connection inherits it):
// an accepted connection can be disconnected (connect with AF_UNSPEC at a
// length the filter does not trap) and connected again from the host's
// namespace, and on kernels that allow it so can the listener (Linux
// 6.18, where this was written, answers such a connect EINVAL). It cannot take a peer's address as a
// switched socket's pin does, since a listener serves everyone; it drops
// every segment with SYN and ACK set, which a passive open never receives
// and an active open needs (TestListenerPin). connect on a handed-over
// socket is refused (no peer pin: connectHost). So, as for switches,
// [Supported] must hold, and the caller refuses the mode otherwise.
//
// # Load
//
// At most Config.Workers notifications are handled at once; when all are
// busy a connect is answered CONTINUE at once (it goes through slirp4netns;
// on a switched socket the pin keeps it from reaching anyone new) and a
// bind or listen is handled by the receiving loop, which takes a few
// system calls. A blocking connect's wait gives its worker back and takes
// one of Config.Waits; with none free a new connect is not switched, and a
// restarted one on a switched socket answers EINTR. Nothing leaves a
// container thread waiting on the supervisor for longer than its connect
// takes (TestFlood).
//
// Only native calls are switched: an i386 program's connects stay on
// slirp4netns. UDP, ICMP and DNS are not this package's business.
package netaccel
