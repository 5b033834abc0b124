package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The outbound phase measures issue 16's first bar: TCP throughput from a
// container to a server outside it, where rabbitc hands the container
// sockets made in the host's network namespace (netaccel) instead of
// carrying the data through slirp4netns. Two servers: iperf3 on the host's
// 127.0.0.1 (reached from a container at 10.0.2.2 with
// --allow-host-loopback), and iperf3 on a test host that run.sh made as
// root: a network namespace behind a veth pair, on a documentation subnet
// the host does not use otherwise (see testHost). Both directions, 1 and 4
// streams; CPU per GB beside every throughput.
//
// Every container's payload is the same loop (outboundLoop): it waits for a
// command line on a FIFO (the iperf3 client with its arguments, or the
// connect phase's benchconnect), runs it and answers on another FIFO. So the client is the container's own process (a
// child of its payload), which every runtime's network treats as it treats
// the payload, with no exec in the measurement.

// outboundLoop runs in every container, with the control directory as $0:
// req and done are FIFOs, the client's output goes to out. Each request is
// "SEQ PROGRAM ARGS..."; the answer "SEQ STATUS" tells a late answer apart. As PID 1
// of a container the shell would ignore SIGTERM without its trap, and each
// stop would wait for the runtime's kill timeout.
const outboundLoop = `trap "exit 0" TERM INT; ctl=$0; echo ready > "$ctl/ready"; ` +
	`while read -r n a < "$ctl/req"; do $a > "$ctl/out" 2>&1; echo "$n $?" > "$ctl/done"; done`

const (
	directName     = "direct (host client)"
	netAccelOff    = "rabbitc --net-accel=off"
	accelName      = "rabbitc (accelerated: ambient CAP_NET_ADMIN for the socket filter, this VM)"
	podmanSlirp    = "podman (slirp4netns)"
	podmanPasta    = "podman (pasta)"
	pastaName      = "pasta"
	slirpFloorName = "slirp4netns (floor)"
	// containerNet is what every container here has: slirp4netns's
	// 10.0.2.100/24, its gateway 10.0.2.2 standing for the host's loopback
	// (pasta is given the same).
	containerNet = "10.0.2.0/24"
)

// outTarget is one of the two servers.
type outTarget struct {
	name string // in the group's name
	// addr is the server's address as a client in a container dials it;
	// direct is the same for the client on the host.
	addr, direct string
	port         int
	skipped      string // why this target cannot be measured here
}

// outGroup is one measurement: a target, a direction, a number of streams.
type outGroup struct {
	target  string
	reverse bool
	streams int
}

func (g outGroup) name() string {
	dir := "container→server"
	if g.reverse {
		dir = "server→container (-R)"
	}
	return fmt.Sprintf("outbound TCP to %s, %s, %d stream(s)", g.target, dir, g.streams)
}

// Target names, in the groups' names and in the bars.
const (
	targetLoopback = "host loopback (10.0.2.2 → 127.0.0.1)"
	targetTestHost = "test host (veth namespace)"
)

func outboundGroups() []outGroup {
	var gs []outGroup
	for _, t := range []string{targetLoopback, targetTestHost} {
		for _, rev := range []bool{false, true} {
			for _, n := range []int{1, 4} {
				gs = append(gs, outGroup{t, rev, n})
			}
		}
	}
	return gs
}

// outPeer is one contender: a long-running container whose loop runs the
// client (ctl), or the host itself (ctl nil).
type outPeer struct {
	*fwdPeer
	ctl *ctlDir
	// countSwitched: record the share of data streams on host sockets
	// (rabbitc's: the client's getsockname shows a host address then).
	countSwitched bool
	note          string
	// binDir is the rootfs's /bin as the loop sees it: /bin in a
	// container, the rootfs's own on the host for the peers whose loop runs
	// in the host's file system (pasta, the slirp4netns floor).
	binDir string
}

// outbound runs the throughput groups (phase outbound) and the connect
// latency groups (phase connect, see connect.go) with the same contenders,
// each container started once for both.
func outbound(e *env, res *results, throughput, connects bool) {
	targets := map[string]*outTarget{targetLoopback: {name: targetLoopback, addr: "10.0.2.2", direct: "127.0.0.1"}}
	th := e.testHost()
	targets[targetTestHost] = th

	// The host loopback server, in a session of its own like every server.
	srv := e.startPeer("iperf3 server on 127.0.0.1", true, []string{"iperf3", "-s", "-B", "127.0.0.1", "-p", "IPERF"})
	lo := targets[targetLoopback]
	if srv.skipped == "" {
		if err := waitListen(srv.iperfPort, srv.exited, 10*time.Second); err != nil {
			srv.skipped = oneLine(err.Error() + ": " + srv.stderr.String())
		}
	}
	if srv.skipped != "" {
		lo.skipped = "iperf3 server on 127.0.0.1: " + srv.skipped
	}
	lo.port = srv.iperfPort
	defer srv.stop()

	eff, amb := capsOf(os.Getpid())
	e.logf("outbound: the bench's own capabilities: effective %s, ambient %s", eff, amb)
	peers := e.outboundPeers()
	var live []*outPeer
	for _, p := range peers {
		if p.skipped == "" && p.ctl != nil {
			if err := p.ctl.waitReady(p.exited, 60*time.Second); err != nil {
				p.skipped = oneLine(err.Error() + ": " + p.stderr.String())
				p.stop()
			}
		}
		if p.skipped != "" {
			e.logf("outbound: %s: cannot run here: %s", p.name, p.skipped)
			continue
		}
		e.logf("outbound: %s up", p.name)
		live = append(live, p)
	}
	defer func() {
		for _, p := range live {
			p.stop()
		}
		for _, p := range peers {
			p.ctl.close()
		}
	}()
	for _, p := range live {
		if p.name == accelName {
			eff, amb := capsOf(p.cmd.Process.Pid)
			p.note = fmt.Sprintf("rabbitc's capabilities (host): effective %s, ambient %s", eff, amb)
			e.logf("outbound: %s: %s", p.name, p.note)
		}
	}

	if connects {
		e.connectGroups(res, peers, targets)
	}
	if !throughput {
		return
	}
	for _, g := range outboundGroups() {
		g := g
		t := targets[g.target]
		cs := outContenders(peers, t, func(p *outPeer) ([]measure, error) { return e.outboundRound(p, t, g) })
		alternate(res, g.name(), e.loadRounds, cs, e.logf)
		for _, p := range peers {
			if p.note != "" && p.skipped == "" && t.skipped == "" {
				res.note(g.name(), p.name, p.note)
			}
		}
	}
}

// outboundPeers starts every contender's container (none for the host).
// outContenders are the peers measured against target t by run, skipped
// (with why) where the peer or the target could not be set up.
func outContenders(peers []*outPeer, t *outTarget, run func(*outPeer) ([]measure, error)) []*contender {
	var cs []*contender
	for _, p := range peers {
		p := p
		c := &contender{name: p.name, skipped: p.skipped, run: func(int) ([]measure, error) { return run(p) }}
		if c.skipped == "" && t.skipped != "" {
			c.skipped = t.skipped
		}
		cs = append(cs, c)
	}
	return cs
}

func (e *env) outboundPeers() []*outPeer {
	base := filepath.Join(e.work, "outbound")
	os.MkdirAll(filepath.Join(e.rootfs, "ctl"), 0o755)
	os.MkdirAll(filepath.Join(e.podmanRootfs, "ctl"), 0o755)
	var peers []*outPeer
	add := func(name string, start func(dir string) *fwdPeer) *outPeer {
		dir := filepath.Join(base, strings.NewReplacer(" ", "-", "(", "", ")", "", "=", "-", ":", "").Replace(name))
		p := &outPeer{binDir: "/bin"}
		ctl, err := newCtlDir(dir)
		if err != nil {
			p.fwdPeer = &fwdPeer{name: name, skipped: err.Error(), stop: func() {}}
		} else {
			p.ctl = ctl
			p.fwdPeer = start(dir)
			p.fwdPeer.name = name
		}
		peers = append(peers, p)
		return p
	}
	direct := &outPeer{fwdPeer: &fwdPeer{name: directName, stop: func() {}}}
	peers = append(peers, direct)

	rabbitc := func(l *launcher, flags ...string) func(string) *fwdPeer {
		return func(dir string) *fwdPeer {
			argv := append([]string{e.rabbitc, "run", "--rootfs", e.rootfs, "--allow-host-loopback", "-v", dir + ":/ctl"}, flags...)
			p := e.startPeerVia(l, "", false, append(argv, "--", "/bin/sh", "-c", outboundLoop, "/ctl"))
			// The path is all of rabbitc's own processes: the parent (where
			// netaccel's supervisor runs), the sandbox, slirp4netns.
			p.forwarders = p.helpers
			return p
		}
	}
	add(rabbitcName, rabbitc(nil)).countSwitched = true
	add(netAccelOff, func(dir string) *fwdPeer {
		if !e.hasRunFlag("--net-accel") {
			return &fwdPeer{skipped: "this rabbitc has no --net-accel flag (rabbitc run --help)", stop: func() {}}
		}
		return rabbitc(nil, "--net-accel=off")(dir)
	}).countSwitched = true
	l := e.capLauncher()
	accel := add(accelName, func(dir string) *fwdPeer {
		if l == nil {
			return &fwdPeer{skipped: "no CAP_NET_ADMIN helper: bench/run.sh starts one when run as root (the bench user cannot raise a capability)", stop: func() {}}
		}
		return rabbitc(l)(dir)
	})
	accel.countSwitched = true

	add(podmanSlirp, func(dir string) *fwdPeer {
		p := e.podmanContainer("", "slirp4netns:allow_host_loopback=true", false, []string{"-v", dir + ":/ctl"},
			"/bin/sh", "-c", outboundLoop, "/ctl")
		return p
	})
	add(podmanPasta, func(dir string) *fwdPeer {
		// pasta maps its gateway address to the host's loopback.
		p := e.podmanContainer("", "pasta:-4,-a,10.0.2.100,-n,24,-g,10.0.2.2", false, []string{"-v", dir + ":/ctl"},
			"/bin/sh", "-c", outboundLoop, "/ctl")
		if p.skipped != "" && strings.Contains(p.skipped, "network pasta") {
			// podman 4.3 takes "pasta" for the name of a network.
			p.skipped = "this podman has no --network pasta (the pasta row is pasta itself): " + p.skipped
		}
		return p
	})
	// pasta itself, as the forwarding phase's pasta peer runs it, with
	// slirp4netns's addresses: its gateway 10.0.2.2 is the host's loopback
	// (pasta maps the gateway there unless --no-map-gw). The loop runs the
	// host's iperf3 (the rootfs's is a copy of it) in pasta's namespaces.
	add(pastaName, func(dir string) *fwdPeer {
		p := e.startPeer("", false, append([]string{"pasta", "--config-net", "--foreground", "--quiet", "-4",
			"-a", "10.0.2.100", "-n", "24", "-g", "10.0.2.2", "-t", "none", "-u", "none", "-T", "none", "-U", "none", "--"},
			setsidPayload([]string{"/bin/sh", "-c", outboundLoop, dir})...))
		if p.cmd.Process != nil {
			top := p.cmd.Process.Pid
			p.forwarders = func() ([]int, error) { return []int{top}, nil }
		}
		return p
	}).binDir = filepath.Join(e.rootfs, "bin")
	add(slirpFloorName, e.slirpOutboundFloor).binDir = filepath.Join(e.rootfs, "bin")
	return peers
}

// slirp4netnsFloor is slirp4netns alone: the loop in new user and network
// namespaces (unshare, the user mapped as root), slirp4netns --configure
// with rabbitc's MTU against it; host loopback is open (slirp4netns's
// default), at 10.0.2.2.
func (e *env) slirpOutboundFloor(dir string) *fwdPeer {
	p := e.startPeer("", true, []string{"unshare", "--user", "--map-root-user", "--net", "--",
		"/bin/sh", "-c", outboundLoop, dir})
	if p.skipped != "" {
		return p
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		p.stop()
		p.skipped = err.Error()
		return p
	}
	slirp := exec.Command("slirp4netns", "--configure", "--mtu=65520", "--ready-fd=3",
		strconv.Itoa(p.cmd.Process.Pid), "tap0")
	slirp.ExtraFiles = []*os.File{readyW}
	slirp.Stdout, slirp.Stderr = e.logFile, e.logFile
	slirp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	err = slirp.Start()
	readyW.Close()
	if err == nil {
		readyR.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = readyR.Read(make([]byte, 1))
		if err != nil {
			err = fmt.Errorf("wait for slirp4netns ready: %w", err)
		}
	}
	readyR.Close()
	slirpExited := make(chan error, 1)
	if slirp.Process != nil {
		waited.Store(slirp.Process.Pid, true)
		go func() {
			err := slirp.Wait()
			waited.Delete(slirp.Process.Pid)
			slirpExited <- err
		}()
	}
	stop := p.stop
	p.stop = func() {
		stop()
		if slirp.Process != nil {
			stopCmd(slirp, slirpExited, 5*time.Second)
		}
	}
	if err != nil {
		p.stop()
		p.skipped = "slirp4netns: " + err.Error()
		return p
	}
	pid := slirp.Process.Pid
	p.forwarders = func() ([]int, error) { return []int{pid}, nil }
	p.helpers = p.forwarders
	return p
}

// hasRunFlag says whether `rabbitc run --help` lists flag.
func (e *env) hasRunFlag(flag string) bool {
	out, _ := exec.Command(e.rabbitc, "run", "--help").CombinedOutput()
	return strings.Contains(string(out), flag+" ") || strings.Contains(string(out), flag+"=")
}

// outboundRound runs the iperf3 client once through p against t.
func (e *env) outboundRound(p *outPeer, t *outTarget, g outGroup) ([]measure, error) {
	addr := t.addr
	if p.ctl == nil {
		addr = t.direct
	}
	args := []string{"-c", addr, "-p", strconv.Itoa(t.port), "-t", strconv.Itoa(e.loadSecs),
		"-P", strconv.Itoa(g.streams), "-J", "--connect-timeout", "5000"}
	if g.reverse {
		args = append(args, "-R")
	}
	timeout := time.Duration(e.loadSecs+20) * time.Second
	r, path, _, err := measureIperf(p.fwdPeer, func() ([]byte, error) {
		if p.ctl == nil {
			// In a session of its own, as every container's client is.
			return iperfClient(args, timeout, true)
		}
		return p.ctl.run(append([]string{"/usr/bin/iperf3"}, args...), timeout, p.exited)
	})
	if err != nil {
		return nil, err
	}
	gb := r.bytes / 1e9
	ends := (r.cpuLocal + r.cpuRemote) / 100 * r.seconds
	ms := []measure{r.throughput()}
	if p.forwarders != nil {
		ms = append(ms, measure{metric: "path CPU per GB (slirp4netns, pasta, rabbitc)", unit: "s/GB", value: path / gb})
	}
	ms = append(ms, measure{metric: "CPU per GB, path + both iperf3 ends", unit: "s/GB", value: (path + ends) / gb})
	if p.countSwitched {
		ms = append(ms, measure{metric: "data streams on host sockets (switched)", unit: "%", value: switchedShare(r.localHosts)})
	}
	return ms, nil
}

// switchedShare is the percentage of streams whose client address is not
// the container's own: netaccel's host sockets show the host's address to
// getsockname (127.0.0.1 for 10.0.2.2, the host's address on the route to
// the test host).
func switchedShare(hosts []string) float64 {
	if len(hosts) == 0 {
		return 0
	}
	pfx := netip.MustParsePrefix(containerNet)
	n := 0
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil && !pfx.Contains(a.Unmap()) {
			n++
		}
	}
	return 100 * float64(n) / float64(len(hosts))
}

// testHost is the server that run.sh made as root before dropping to the
// bench user: a network namespace behind a veth pair, iperf3 -s in it. The
// bench checks that the host routes its address through that veth (and so
// nowhere else) before it sends a byte there.
func (e *env) testHost() *outTarget {
	t := &outTarget{name: targetTestHost}
	v := os.Getenv("RABBITC_BENCH_TESTHOST")
	dev := os.Getenv("RABBITC_BENCH_TESTHOST_DEV")
	if v == "" || dev == "" {
		t.skipped = "no test host: bench/run.sh makes it (a network namespace behind a veth pair) only when run as root"
		return t
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		t.skipped = fmt.Sprintf("RABBITC_BENCH_TESTHOST=%q: %v", v, err)
		return t
	}
	out, err := exec.Command("ip", "-o", "route", "get", ap.Addr().String()).CombinedOutput()
	f := strings.Fields(string(out))
	via := ""
	for i := range f {
		if f[i] == "dev" && i+1 < len(f) {
			via = f[i+1]
		}
	}
	if err != nil || via != dev || strings.Contains(string(out), " via ") {
		t.skipped = fmt.Sprintf("the host does not route %s straight to the test host's veth %s (ip route get: %s): not measured, to send nothing elsewhere",
			ap.Addr(), dev, oneLine(string(out)))
		return t
	}
	t.addr, t.direct, t.port = ap.Addr().String(), ap.Addr().String(), int(ap.Port())
	e.logf("outbound: test host %s, routed through %s", ap, dev)
	return t
}

// waitListen waits until something listens on 127.0.0.1:port.
func waitListen(port int, exited chan error, timeout time.Duration) error {
	return pollUntil(func() bool { _, err := listenInode(port); return err == nil }, exited, timeout,
		fmt.Sprintf("nothing listens on 127.0.0.1:%d", port))
}

// pollUntil checks ok every 20 ms until it holds, the process behind
// exited ends, or timeout passes (the error then says what did not happen).
func pollUntil(ok func() bool, exited chan error, timeout time.Duration, what string) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ok() {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%w: %v", errExited, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s after %s", what, timeout)
}

// ctlDir is the control directory of one container's loop.
type ctlDir struct {
	dir       string
	req, done *os.File
	answers   *bufio.Reader
	seq       int
}

// newCtlDir makes the directory with its two FIFOs, and opens both for
// reading and writing: the loop's opens never block, and neither do ours.
func newCtlDir(dir string) (*ctlDir, error) {
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &ctlDir{dir: dir}
	for _, f := range []struct {
		name string
		to   **os.File
	}{{"req", &c.req}, {"done", &c.done}} {
		path := filepath.Join(dir, f.name)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			c.close()
			return nil, fmt.Errorf("mkfifo %s: %w", path, err)
		}
		file, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			c.close()
			return nil, err
		}
		*f.to = file
	}
	c.answers = bufio.NewReader(c.done)
	return c, nil
}

func (c *ctlDir) close() {
	if c == nil {
		return
	}
	for _, f := range []*os.File{c.req, c.done} {
		if f != nil {
			f.Close()
		}
	}
}

// waitReady waits for the loop's first word.
func (c *ctlDir) waitReady(exited chan error, timeout time.Duration) error {
	ready := filepath.Join(c.dir, "ready")
	return pollUntil(func() bool { _, err := os.Stat(ready); return err == nil }, exited, timeout,
		"the container's loop has not started")
}

// run has the loop run argv (a program and its arguments) and returns its
// output.
func (c *ctlDir) run(argv []string, timeout time.Duration, exited chan error) ([]byte, error) {
	c.seq++
	if _, err := fmt.Fprintf(c.req, "%d %s\n", c.seq, strings.Join(argv, " ")); err != nil {
		return nil, err
	}
	c.done.SetReadDeadline(time.Now().Add(timeout))
	for {
		line, err := c.answers.ReadString('\n')
		if err != nil {
			select {
			case err := <-exited:
				exited <- err
				return nil, fmt.Errorf("the container exited: %v", err)
			default:
			}
			return nil, fmt.Errorf("no answer from the container's loop: %w", err)
		}
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != strconv.Itoa(c.seq) {
			continue // a late answer to a round that timed out
		}
		out, err := os.ReadFile(filepath.Join(c.dir, "out"))
		if err != nil {
			return nil, err
		}
		if f[1] != "0" {
			return out, fmt.Errorf("%s in the container: exit status %s: %s", strings.Join(argv, " "), f[1], oneLine(string(out)))
		}
		return out, nil
	}
}
