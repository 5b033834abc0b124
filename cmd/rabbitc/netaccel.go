package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/netaccel"
	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/portfwd"
	"github.com/rabbitc/rabbitc/userns"
)

// Network acceleration (issue 16, package netaccel): where the container's
// network is slirp4netns, init installs netaccel's seccomp filter as its
// last step before exec, after the container's own profile, and passes the
// filter's listener to the parent on the sync channel. The parent (the
// foreground rabbitc, or run -d's monitor), which owns slirp4netns, runs
// the supervisor, which switches the payload's outbound TCP connects to
// sockets of the host's network namespace.
//
//	prepare (beside the maps)   --net-accel, --net, the seccomp settings; netaccel.Supported
//	sendInit (init sets up)     netaccel.Filter compiled, as the seccomp profile is
//	waitInitReady               the container's network namespace, from init's /proc entry
//	start                       Start{NetFilter}; NetFilterInstalled [listener]; the supervisor
//	wait                        a supervisor that fails ends the container, as slirp4netns does
//	delete                      the supervisor cancelled (the container is gone by then)
//
// With --publish-mode=direct the TCP ports are bound pinned
// (netaccel.PinListener) and out of the forwarder's reach (portfwd's
// ListenConfig), and the supervisor hands their host sockets to the
// payload's server (netaccel.Config.Published); the mode is refused where
// acceleration is off (checkDirect).
//
// Only the payload and what it starts carry the filter: seccomp filters
// belong to tasks, and `rabbitc exec`'s commands, which no task of the
// container forks, go through slirp4netns (README, "Networking").

// The values of --net-accel.
const (
	netAccelOn  = "on" // where the kernel and the host allow it
	netAccelOff = "off"
)

// checkNetAccel validates --net-accel ("" is the default, on).
func checkNetAccel(v string) error {
	if v != "" && v != netAccelOn && v != netAccelOff {
		return fmt.Errorf("invalid --net-accel %q (use %s or %s)", v, netAccelOn, netAccelOff)
	}
	return nil
}

// The values of --publish-mode.
const (
	publishForward = "forward" // rabbitc's forwarder (portfwd), the default
	publishDirect  = "direct"  // TCP ports: the host's socket handed to the server
)

// checkPublishMode validates --publish-mode ("" is the default, forward).
func checkPublishMode(v string) error {
	if v != "" && v != publishForward && v != publishDirect {
		return fmt.Errorf("invalid --publish-mode %q (use %s or %s)", v, publishForward, publishDirect)
	}
	return nil
}

// checkDirect refuses --publish-mode=direct where network acceleration
// is off: the handover is the supervisor's work. A docker user who asks
// for the clients' addresses would not want a forwarder that hides them,
// so there is no silent fallback.
func (r *runner) checkDirect() error {
	if r.opts.publishMode != publishDirect || r.accel.on {
		return nil
	}
	why := netAccelOffReason(r.spec, r.opts.netAccel)
	if why == "" {
		why = netaccel.Supported().Error()
	}
	return fmt.Errorf("--publish-mode=direct needs network acceleration, which is off: %s (use --publish-mode=forward)", why)
}

// listenConfig binds the TCP ports of --publish-mode=direct for the
// handover, pinned (netaccel.PinListener), out of the forwarder's reach.
func (r *runner) listenConfig() portfwd.ListenConfig {
	if r.opts.publishMode != publishDirect {
		return portfwd.ListenConfig{}
	}
	return portfwd.ListenConfig{
		Direct:       func(portfwd.Spec) bool { return true }, // TCP only: UDP stays forwarded
		BeforeListen: netaccel.PinListener,
	}
}

// published are the supervisor's own descriptors of the direct ports (it
// closes them; the listeners close theirs at teardown).
func (r *runner) published() ([]netaccel.Published, error) {
	if r.listeners == nil {
		return nil, nil
	}
	var pubs []netaccel.Published
	for _, d := range r.listeners.DirectListeners() {
		fd, err := unix.FcntlInt(uintptr(d.Fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closePublished(pubs)
			return nil, fmt.Errorf("publish %s: dup the host socket: %w", d.Spec, err)
		}
		pubs = append(pubs, netaccel.Published{Port: uint16(d.Spec.ContainerPort), Fd: fd})
	}
	return pubs, nil
}

func closePublished(pubs []netaccel.Published) {
	for _, p := range pubs {
		unix.Close(p.Fd)
	}
}

// netAccelOffReason tells why a container runs without network
// acceleration, from its spec and --net-accel alone; "" when nothing there
// stands in the way.
func netAccelOffReason(s *spec, flag string) string {
	sec := s.securityConfig()
	switch {
	case flag == netAccelOff:
		return "--net-accel=off"
	case s.Net.Mode != netns.ModeSlirp:
		return "--net " + s.Net.Mode + " (only slirp4netns's network is accelerated)"
	case s.OCIMode:
		return "an OCI container (only rabbitc run's network is accelerated)"
	case !sec.Default && sec.Seccomp == nil && sec.Filter == nil:
		return "--security-opt seccomp=unconfined (acceleration is a seccomp filter)"
	case !sec.NoNewPrivs:
		// Installing a filter takes no_new_privs or CAP_SYS_ADMIN, and
		// init installs it last, when it has the payload's capabilities.
		return "--security-opt no-new-privileges=false (the filter needs no_new_privs)"
	}
	return ""
}

// netAccelPolicy is what the supervisor may switch: slirp4netns's network
// 10.0.2.0/24 stays in the container's namespace, and 10.0.2.2 is the
// host's loopback only with --allow-host-loopback.
func netAccelPolicy(n netns.Config) netaccel.Policy {
	return netaccel.Policy{
		AllowHostLoopback: n.AllowHostLoopback,
		Subnet:            netip.PrefixFrom(netip.MustParseAddr(netns.ContainerIP), 24).Masked(),
		HostLoopback:      netip.MustParseAddr(netns.GatewayIP),
	}
}

// accel is the parent's side of network acceleration.
type accel struct {
	on      bool       // init is to install the filter
	prog    []byte     // the filter, for init (progBytes)
	netns   [2]uint64  // the container's network namespace (netaccel.Config)
	done    chan error // Serve's (or New's) error, once it returns
	started chan *netaccel.Supervisor
}

// prepareNetAccel decides, beside the maps, whether init installs the
// filter; with --debug one line says why not.
func (r *runner) prepareNetAccel() {
	why := netAccelOffReason(r.spec, r.opts.netAccel)
	if why == "" {
		if err := netaccel.Supported(); err != nil {
			why = err.Error()
		}
	}
	r.accel.on = why == ""
	r.netAccelOff(why)
}

// netAccelOff prints, with --debug, why the container runs without
// network acceleration.
func (r *runner) netAccelOff(why string) {
	if why != "" {
		r.debugf("network acceleration off: %s", why)
	}
}

// debugf prints one line with --debug.
func (r *runner) debugf(format string, a ...any) {
	if r.opts.debug {
		fmt.Fprintf(os.Stderr, "rabbitc: debug: "+format+"\n", a...)
	}
}

// compileNetFilter compiles the filter while init sets up the root, off
// init's path: in init, a fresh process, it took 70-120 us.
func (r *runner) compileNetFilter() {
	if r.accel.on {
		r.accel.prog = progBytes(netaccel.Filter())
	}
}

// progBytes is a classic BPF program as the bytes of its struct
// sock_filter array (host byte order), as it travels to init.
func progBytes(p []unix.SockFilter) []byte {
	b := make([]byte, len(p)*unix.SizeofSockFilter)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(p))), len(b)))
	return b
}

// progOf is progBytes undone.
func progOf(b []byte) ([]unix.SockFilter, error) {
	if len(b) == 0 || len(b)%unix.SizeofSockFilter != 0 {
		return nil, fmt.Errorf("load the network seccomp filter: a program of %d bytes", len(b))
	}
	p := make([]unix.SockFilter, len(b)/unix.SizeofSockFilter)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(p))), len(b)), b)
	return p, nil
}

// addNetFilter puts the filter in what init gets with Start.
func (r *runner) addNetFilter() {
	if !r.accel.on {
		return
	}
	if r.startMsg == nil {
		r.startMsg = &startSpec{}
	}
	r.startMsg.NetFilter = r.accel.prog
}

// readNetns records the container's network namespace while init waits
// for Start (its pid cannot be reused before).
func (r *runner) readNetns() {
	if !r.accel.on {
		return
	}
	dev, ino, err := netaccel.NetnsOf("/proc/" + strconv.Itoa(r.initPid) + "/ns/net")
	if err != nil {
		r.accel.on = false
		r.netAccelOff(err.Error())
		return
	}
	r.accel.netns = [2]uint64{dev, ino}
}

// startNetAccel receives the filter's listener, which init sends after
// Start, and starts the supervisor beside the rest of the start-up. Init
// ending instead (EOF) is for WaitExec and wait to tell.
func (r *runner) startNetAccel() error {
	if !r.accel.on {
		return nil
	}
	l, why, err := r.ch.WaitNetFilterInstalled()
	if errors.Is(err, userns.ErrEOF) {
		return nil
	}
	if err != nil {
		return err
	}
	if l == nil && r.opts.publishMode == publishDirect {
		return fmt.Errorf("--publish-mode=direct needs network acceleration: %s (use --publish-mode=forward)", why)
	}
	if l == nil {
		r.netAccelOff(why)
		return nil
	}
	// Its own descriptor: New owns it, and l's finalizer would close it.
	fd, err := unix.FcntlInt(l.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	l.Close()
	if err != nil {
		return fmt.Errorf("network acceleration: dup the listener: %w", err)
	}
	pubs, err := r.published()
	if err != nil {
		unix.Close(fd)
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.accel.done, r.accel.started = make(chan error, 1), make(chan *netaccel.Supervisor, 1)
	r.onDelete(func() {
		cancel() // the container is gone: nothing waits on the supervisor
		r.netAccelStats()
	})
	go func() { r.accel.done <- r.serveNetAccel(ctx, fd, pubs) }()
	return nil
}

// serveNetAccel runs the supervisor until the container ends.
func (r *runner) serveNetAccel(ctx context.Context, fd int, pubs []netaccel.Published) error {
	cfg := netaccel.Config{Policy: netAccelPolicy(r.spec.Net), NetnsDev: r.accel.netns[0], NetnsIno: r.accel.netns[1],
		Published: pubs, ContainerAddr: netip.MustParseAddr(netns.ContainerIP)}
	if r.opts.debug {
		cfg.Trace = func(line string) { r.debugf("network acceleration: %s", line) }
	}
	s, err := netaccel.New(fd, cfg)
	if err != nil {
		unix.Close(fd)
		closePublished(pubs)
		return err
	}
	r.accel.started <- s
	return s.Serve(ctx)
}

// netAccelStats prints, with --debug, what the supervisor did.
func (r *runner) netAccelStats() {
	if !r.opts.debug {
		return
	}
	select {
	case s := <-r.accel.started:
		st := s.Stats()
		r.debugf("network acceleration: %d connects switched, %d calls continued, %d refused, %d overloaded, %d published sockets handed over",
			st.Switched, st.Continued, st.Refused, st.Overloaded, st.HandedOver)
	default:
	}
}

// sendNetFilter is init's last step before exec: it installs the network
// filter on top of the container's profile (which must allow seccomp(2)
// and sendmsg, as docker's does) and passes the listener to the parent.
// The payload never holds the listener: init's copy is closed here, and
// close-on-exec. A filter the kernel refuses is reported instead, and the
// container runs without it. An error means the parent cannot be told:
// init must not exec then (the payload's connects would fail).
func sendNetFilter(ch *userns.Channel, prog []byte) error {
	p, err := progOf(prog)
	fd := -1
	if err == nil {
		fd, err = netaccel.InstallProgram(p)
	}
	if err != nil {
		return ch.SendNetFilterInstalled(nil, err)
	}
	l := os.NewFile(uintptr(fd), "netaccel-listener")
	defer l.Close()
	return ch.SendNetFilterInstalled(l, nil)
}
