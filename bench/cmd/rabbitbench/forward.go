package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// payload is what runs in every forwarding container: an iperf3 server on
// 5201 and the HTTP server on 80.
const payload = "/usr/bin/iperf3 -s -p 5201 & exec /bin/httpd"

// payloadComms are the processes of the container's payload, which are not
// counted as the runtime's own.
var payloadComms = map[string]bool{"sh": true, "iperf3": true, "httpd": true, "chroot": true, "busybox": true,
	"unshare": true, "setsid": true}

// Every peer's server payload runs in a session of its own, as a container
// runtime runs a container's process: runc, crun (so podman) and rabbitc
// call setsid(2) before they exec it. It matters for the load figures: with
// kernel.sched_autogroup_enabled=1 (Debian's default) every session is a
// scheduling group of its own that gets its fair share of the CPUs as a
// whole. wrk, iperf3 and the forwarders run in the bench's session; a server
// left in that session competes with them thread by thread, while one in a
// session of its own gets one group's share. On two CPUs under 32 wrk
// connections that alone moved the p99 latency several-fold, so a peer whose
// server stayed in the bench's session (RootlessKit, pasta and the direct
// loopback did, since they are no container runtimes) was measured on
// easier terms than rabbitc and podman. The forwarders themselves stay in
// the bench's session, for every peer alike.
//
// setsidPayload puts setsid(1) from util-linux in front of a payload that a
// tool (RootlessKit, pasta) starts. Those start it without a process group
// of its own, so setsid does not fork: it calls setsid(2) and execs, and
// the tool's child is still the payload. -w keeps that right should it ever
// fork (it then waits for the payload and passes on its status).
func setsidPayload(argv []string) []string {
	return append([]string{"setsid", "-w"}, argv...)
}

// fwdPeer is one long-running container with both ports published.
type fwdPeer struct {
	name                string
	iperfPort, httpPort int
	cmd                 *exec.Cmd
	exited              chan error
	stderr              bytes.Buffer
	// forwarders are the processes whose CPU is charged to forwarding.
	forwarders func() ([]int, error)
	// helpers are all the runtime's own processes (for memory and CPU).
	helpers func() ([]int, error)
	// server is the pid of the payload's HTTP server, to check its session.
	server  func() (int, error)
	stop    func()
	skipped string
}

func forwarding(e *env, res *results) {
	peers := []*fwdPeer{
		e.directPeer(),
		e.rabbitcPeer(),
		e.publishDirectPeer(),
		e.rootlesskitPeer("RootlessKit builtin", "builtin"),
		e.rootlesskitPeer("RootlessKit slirp4netns", "slirp4netns"),
		e.podmanPeer(),
		e.pastaPeer(),
	}
	var live []*fwdPeer
	for _, p := range peers {
		if p.skipped == "" {
			if err := p.waitReady(); err != nil {
				p.skipped = oneLine(err.Error())
				p.stop()
			}
		}
		if p.skipped != "" {
			e.logf("forwarding: %s: cannot run here: %s", p.name, p.skipped)
			continue
		}
		e.logf("forwarding: %s up (iperf3 on 127.0.0.1:%d, http on 127.0.0.1:%d)", p.name, p.iperfPort, p.httpPort)
		e.checkSession(res, p)
		live = append(live, p)
	}
	defer func() {
		for _, p := range live {
			p.stop()
		}
	}()
	e.memory(res, "memory: idle, after one request (RSS of the runtime's processes)", peers)

	type load struct {
		group string
		run   func(p *fwdPeer) ([]measure, error)
	}
	var loads []load
	loads = append(loads, load{clientAddrGroup, e.clientAddr})
	for _, dir := range []struct {
		name string
		rev  bool
	}{{"host→container", false}, {"container→host", true}} {
		for _, streams := range []int{1, 4} {
			group := fmt.Sprintf("iperf3 %s, %d stream(s)", dir.name, streams)
			rev, n := dir.rev, streams
			loads = append(loads, load{group, func(p *fwdPeer) ([]measure, error) { return e.iperf(p, n, rev) }})
		}
	}
	for _, w := range []struct {
		group        string
		threads, con int
		close        bool
	}{
		{"HTTP keep-alive, 1 connection", 1, 1, false},
		{"HTTP keep-alive, 32 connections", 2, 32, false},
		{"HTTP new connection per request (Connection: close), 32 clients", 2, 32, true},
	} {
		w := w
		loads = append(loads, load{w.group, func(p *fwdPeer) ([]measure, error) { return e.wrk(p, w.threads, w.con, w.close) }})
	}
	for _, l := range loads {
		var cs []*contender
		for _, p := range peers {
			p, l := p, l
			cs = append(cs, &contender{name: p.name, skipped: p.skipped, run: func(int) ([]measure, error) { return l.run(p) }})
		}
		alternate(res, l.group, e.loadRounds, cs, e.logf)
	}
	e.memory(res, "memory: after the load (RSS of the runtime's processes)", peers)
}

// memory records the summed VmRSS of each peer's own processes.
func (e *env) memory(res *results, group string, peers []*fwdPeer) {
	res.begin(group)
	for _, p := range peers {
		if p.skipped != "" {
			if p.name != "direct loopback" {
				res.skip(group, p.name, p.skipped)
			}
			continue
		}
		if p.helpers == nil {
			continue
		}
		pids, err := p.helpers()
		if err != nil {
			res.note(group, p.name, "not measured: "+oneLine(err.Error()))
			continue
		}
		total, anon, names := 0, 0, []string{}
		for _, pid := range pids {
			kb, err := rssKiB(pid)
			if err != nil {
				continue
			}
			total += kb
			st, _ := readStat(pid)
			names = append(names, fmt.Sprintf("%s %d KiB", st.comm, kb))
			if kb, err := anonKiB(pid); err == nil {
				anon += kb
			}
		}
		res.get(group, "RSS", "MiB", p.name, false).vals = []float64{float64(total) / 1024}
		res.get(group, "anonymous RSS", "MiB", p.name, false).vals = []float64{float64(anon) / 1024}
		res.note(group, p.name, "RSS: "+strings.Join(names, ", "))
	}
}

func (p *fwdPeer) waitReady() error {
	if err := firstByte(p.httpPort, time.Now().Add(60*time.Second), p.exited); err != nil {
		return fmt.Errorf("%w: %s", err, oneLine(p.stderr.String()))
	}
	return nil
}

// startPeer starts argv as a long-running contender in a process group of
// its own; with ownSession (argv is the server payload itself, run by no
// runtime) in a session of its own, whose process group is the same.
func (e *env) startPeer(name string, ownSession bool, argv []string, extraEnv ...string) *fwdPeer {
	return e.startPeerVia(nil, name, ownSession, argv, extraEnv...)
}

// startPeerVia is startPeer, through the CAP_NET_ADMIN helper when l is
// set (argv[0] is then rabbitc, which the helper runs; see launcher.go).
func (e *env) startPeerVia(l *launcher, name string, ownSession bool, argv []string, extraEnv ...string) *fwdPeer {
	p := &fwdPeer{name: name, exited: make(chan error, 1)}
	p.iperfPort, p.httpPort = e.port(), e.port()
	for i, a := range argv {
		argv[i] = strings.NewReplacer("IPERF", strconv.Itoa(p.iperfPort), "HTTP", strconv.Itoa(p.httpPort)).Replace(a)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout = e.logFile
	p.cmd.Stderr = &p.stderr
	p.cmd.Env = append(os.Environ(), extraEnv...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: !ownSession, Setsid: ownSession, Pdeathsig: syscall.SIGTERM}
	// A payload in a session of its own outlives its runtime's process
	// group and holds the stderr pipe: Wait must not wait for it (stop kills
	// it next).
	p.cmd.WaitDelay = time.Second
	p.stop = func() {}
	if _, err := exec.LookPath(argv[0]); err != nil {
		p.skipped = fmt.Sprintf("%s not found in $PATH", argv[0])
		return p
	}
	if l != nil {
		if err := p.startVia(l, argv[1:]); err != nil {
			p.skipped = err.Error()
			return p
		}
	} else {
		if err := p.cmd.Start(); err != nil {
			p.skipped = err.Error()
			return p
		}
		top := p.cmd.Process.Pid
		waited.Store(top, true)
		go func() {
			err := p.cmd.Wait()
			waited.Delete(top)
			p.exited <- err
		}()
	}
	top := p.cmd.Process.Pid
	p.stop = func() {
		// The payload is in a session (and process group) of its own:
		// note the whole tree before it comes apart.
		procs := descendants(top)
		stopCmd(p.cmd, p.exited, 10*time.Second)
		syscall.Kill(-top, syscall.SIGKILL)
		e.finishProcs(p.name, procs, 200*time.Millisecond)
	}
	p.helpers = func() ([]int, error) {
		var pids []int
		for _, s := range descendants(top) {
			if !payloadComms[s.comm] {
				pids = append(pids, s.pid)
			}
		}
		return pids, nil
	}
	p.forwarders = func() ([]int, error) {
		pid, err := listenerPID(p.iperfPort)
		return []int{pid}, err
	}
	p.server = func() (int, error) {
		for _, s := range descendants(top) {
			if s.comm == "httpd" {
				return s.pid, nil
			}
		}
		return 0, fmt.Errorf("find httpd below pid %d: none", top)
	}
	return p
}

// finishProcs makes sure none of procs (a peer's tree, noted before it was
// stopped) is left running or unreaped, and logs what had to be killed.
func (e *env) finishProcs(name string, procs []procStat, grace time.Duration) {
	var before []string
	for _, s := range procs {
		if alive(s) {
			before = append(before, fmt.Sprintf("%s %d", s.comm, s.pid))
		}
	}
	left := finish(procs, grace)
	if len(before) > 0 {
		e.logf("forwarding: %s: stopped; ended its leftovers: %s", name, strings.Join(before, ", "))
	}
	for _, s := range left {
		e.logf("forwarding: %s: pid %d (%s) still there after SIGKILL", name, s.pid, s.comm)
	}
}

// checkSession logs the session of the peer's server and notes in the
// table when it shares the bench's (see setsidPayload).
func (e *env) checkSession(res *results, p *fwdPeer) {
	if p.server == nil {
		return
	}
	pid, err := p.server()
	if err != nil {
		e.logf("forwarding: %s: session of the server not checked: %v", p.name, err)
		return
	}
	own, _ := unix.Getsid(0)
	sid := sessionOf(pid)
	e.logf("forwarding: %s: server pid %d in session %d (the bench's: %d)", p.name, pid, sid, own)
	if sid == own {
		res.note("memory: idle, after one request (RSS of the runtime's processes)", p.name,
			"its server ran in the bench's session, not in one of its own")
	}
}

func (e *env) directPeer() *fwdPeer {
	p := e.startPeer("direct loopback", true, []string{"sh", "-c",
		"iperf3 -s -B 127.0.0.1 -p IPERF & exec " + e.httpd + " -addr 127.0.0.1:HTTP"})
	p.helpers = nil
	p.forwarders = func() ([]int, error) { return nil, nil }
	return p
}

func (e *env) rabbitcPeer() *fwdPeer {
	return e.startPeer(rabbitcName, false, []string{e.rabbitc, "run", "--rootfs", e.rootfs, "--net", "slirp4netns",
		"-p", "127.0.0.1:IPERF:5201", "-p", "127.0.0.1:HTTP:80", "--", "/bin/sh", "-c", payload})
}

// directPubName is rabbitc with --publish-mode=direct, started with
// CAP_NET_ADMIN as the outbound phase's accelerated contender is (see
// launcher.go): the socket filter that the handed-over listener's pin needs
// is refused to the bench user on this VM.
const directPubName = "rabbitc --publish-mode=direct (accelerated: ambient CAP_NET_ADMIN for the socket filter, this VM)"

// publishDirectPeer publishes the same ports as rabbitcPeer with
// --publish-mode=direct: the container's iperf3 and HTTP server (the same
// payload as every peer's: dual-stack IPv6 listeners, Go's an MPTCP one)
// get the host's listening sockets, so no process forwards; the CPU charged is all
// of rabbitc's own processes (the parent, where the supervisor runs, the
// sandbox, slirp4netns).
func (e *env) publishDirectPeer() *fwdPeer {
	l := e.capLauncher()
	if l == nil {
		return &fwdPeer{name: directPubName, stop: func() {},
			skipped: "no CAP_NET_ADMIN helper: bench/run.sh starts one when run as root (the bench user cannot raise a capability)"}
	}
	p := e.startPeerVia(l, directPubName, false, []string{e.rabbitc, "run", "--rootfs", e.rootfs, "--net", "slirp4netns",
		"--publish-mode=direct", "-p", "127.0.0.1:IPERF:5201", "-p", "127.0.0.1:HTTP:80", "--", "/bin/sh", "-c", payload})
	p.forwarders = p.helpers
	return p
}

// clientAddrGroup checks issue 16's last bar for published ports: the
// server sees the client's address.
const clientAddrGroup = "published port: the HTTP server sees the client's address (10 requests per round)"

// clientAddr asks the peer's HTTP server 10 times (a new connection each)
// for the address it sees the client at (benchhttpd's /peer) and returns
// the share of answers equal to the client's own address and port, as
// getsockname gives them to it.
func (e *env) clientAddr(p *fwdPeer) ([]measure, error) {
	const n = 10
	seen := 0
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.httpPort), 2*time.Second)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		local := c.LocalAddr().String()
		_, err = fmt.Fprintf(c, "GET /peer HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
		var b []byte
		if err == nil {
			b, err = io.ReadAll(c)
		}
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("GET /peer: %w", err)
		}
		head, body, ok := strings.Cut(string(b), "\r\n\r\n")
		if !ok || !strings.Contains(strings.SplitN(head, "\r\n", 2)[0], " 200 ") {
			return nil, fmt.Errorf("GET /peer: %s", oneLine(string(b)))
		}
		if i == 0 && p.name != "direct loopback" {
			e.logf("forwarding: %s: the client at %s, the server sees %s", p.name, local, strings.TrimSpace(body))
		}
		if strings.TrimSpace(body) == local {
			seen++
		}
	}
	return []measure{{metric: "requests whose client address the server saw", unit: "%", higher: true, value: 100 * float64(seen) / n}}, nil
}

// chrootPayload runs the payload in the rootfs from a tool that gives no
// mount namespace of its own (RootlessKit, pasta): a session of its own (see
// setsidPayload), a private mount namespace with the host's /dev bound in,
// since iperf3 needs /dev/urandom.
func (e *env) chrootPayload() []string {
	return setsidPayload([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --rbind /dev "$0/dev" && exec chroot "$0" /bin/sh -c "$1"`, e.rootfs, payload})
}

func (e *env) rootlesskitPeer(name, driver string) *fwdPeer {
	return e.startPeer(name, false, append([]string{"rootlesskit", "--net=slirp4netns", "--mtu=65520", "--disable-host-loopback",
		"--port-driver=" + driver, "-p", "127.0.0.1:IPERF:5201/tcp", "-p", "127.0.0.1:HTTP:80/tcp"},
		e.chrootPayload()...))
}

// pastaPeer runs pasta, which forwards in its own process; it makes itself
// undumpable, so its listener cannot be found through /proc/PID/fd.
func (e *env) pastaPeer() *fwdPeer {
	p := e.startPeer("pasta", false, append([]string{"pasta", "--config-net", "--foreground", "--quiet",
		"-t", "127.0.0.1/IPERF:5201", "-t", "127.0.0.1/HTTP:80", "-u", "none", "-T", "none", "-U", "none",
		"--"}, e.chrootPayload()...))
	if p.cmd.Process != nil {
		top := p.cmd.Process.Pid
		p.forwarders = func() ([]int, error) { return []int{top}, nil }
	}
	return p
}

// podmanPeer runs a detached podman container with both ports published;
// rootlessport forwards them.
func (e *env) podmanPeer() *fwdPeer {
	return e.podmanContainer("podman (rootlessport)", "slirp4netns", true, nil, "/bin/sh", "-c", payload)
}

// podmanSeq numbers the containers of podmanContainer.
var podmanSeq int

// podmanContainer runs a detached podman container on network; with
// publish, iperf3's and the HTTP server's ports published on 127.0.0.1 (the
// forwarders are then the holders of the listener, rootlessport, else the
// network's own process, slirp4netns or pasta). Its helpers (conmon,
// slirp4netns or pasta, rootlessport and its child, the pause process) are
// found through podman inspect and the listener.
func (e *env) podmanContainer(name, network string, publish bool, extra []string, cmd ...string) *fwdPeer {
	p := &fwdPeer{name: name, exited: make(chan error, 1), stop: func() {}}
	if _, err := exec.LookPath("podman"); err != nil {
		p.skipped = "podman not found in $PATH"
		return p
	}
	podmanSeq++
	ctr := fmt.Sprintf("rabbitbench-%d-%d", os.Getpid(), podmanSeq)
	args := []string{"run", "-d", "--name", ctr, "--network", network}
	if publish {
		p.iperfPort, p.httpPort = e.port(), e.port()
		args = append(args, "-p", fmt.Sprintf("127.0.0.1:%d:5201", p.iperfPort), "-p", fmt.Sprintf("127.0.0.1:%d:80", p.httpPort))
	}
	args = append(append(append(args, extra...), "--rootfs", e.podmanRootfs), cmd...)
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		p.skipped = fmt.Sprintf("podman run: %v: %s", err, oneLine(string(out)))
		exec.Command("podman", "rm", "-f", "-t", "0", ctr).Run()
		return p
	}
	// crun, under podman, puts the payload in a session of its own already.
	p.server = func() (int, error) {
		out, err := exec.Command("podman", "inspect", "-f", "{{.State.Pid}}", ctr).Output()
		if err != nil {
			return 0, fmt.Errorf("podman inspect %s: %w", ctr, err)
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	}
	p.stop = func() {
		// conmon, rootlessport and slirp4netns were reparented to us (a
		// subreaper): wait for them to end and reap them. The pause process
		// stays, for run.sh's podman rm; run.sh stops it.
		var procs []procStat
		if pids, err := p.helpers(); err == nil {
			pause := pausePID()
			for _, pid := range pids {
				if s, err := readStat(pid); err == nil && pid != pause {
					procs = append(procs, s)
				}
			}
		}
		if pid, err := p.server(); err == nil {
			procs = append(procs, descendants(pid)...)
		}
		exec.Command("podman", "rm", "-f", "-t", "0", ctr).Run()
		e.finishProcs(p.name, procs, 5*time.Second)
	}
	inspect := func() (conmon int, sandbox string, err error) {
		out, err := exec.Command("podman", "inspect", "-f", "{{.State.ConmonPid}} {{.NetworkSettings.SandboxKey}}", ctr).Output()
		if err != nil {
			return 0, "", fmt.Errorf("podman inspect %s: %w", ctr, err)
		}
		f := strings.Fields(string(out))
		if len(f) != 2 {
			return 0, "", fmt.Errorf("podman inspect %s: %q", ctr, out)
		}
		conmon, _ = strconv.Atoi(f[0])
		return conmon, f[1], nil
	}
	// net is the network's own process: slirp4netns or pasta, which podman
	// starts with the container's network namespace on its command line.
	net := func(sandbox string) []int {
		var pids []int
		for _, s := range allProcs() {
			if (s.comm == "slirp4netns" || s.comm == "pasta") && strings.Contains(cmdline(s.pid), sandbox) {
				pids = append(pids, s.pid)
			}
		}
		return pids
	}
	p.forwarders = func() ([]int, error) {
		if publish {
			pid, err := listenerPID(p.iperfPort)
			return []int{pid}, err
		}
		_, sandbox, err := inspect()
		if err != nil {
			return nil, err
		}
		pids := net(sandbox)
		if len(pids) == 0 {
			return nil, fmt.Errorf("podman %s: no slirp4netns or pasta process for %s", ctr, sandbox)
		}
		return pids, nil
	}
	p.helpers = func() ([]int, error) {
		conmon, sandbox, err := inspect()
		if err != nil {
			return nil, err
		}
		pids := []int{conmon}
		if publish {
			fw, err := listenerPID(p.iperfPort)
			if err != nil {
				return nil, err
			}
			for _, s := range descendants(fw) {
				pids = append(pids, s.pid)
			}
		}
		pids = append(pids, net(sandbox)...)
		if pid := pausePID(); pid > 0 {
			pids = append(pids, pid)
		}
		return pids, nil
	}
	return p
}

// pausePID is the pid of podman's rootless pause process, 0 if none.
func pausePID() int {
	b, err := os.ReadFile(filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "libpod", "tmp", "pause.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// cpuDuring runs load and returns the CPU seconds that the peer's
// forwarders and all its helpers spent meanwhile.
func cpuDuring(p *fwdPeer, load func() error) (fwd, all float64, err error) {
	var fpids, hpids []int
	if p.forwarders != nil {
		if fpids, err = p.forwarders(); err != nil {
			return 0, 0, err
		}
	}
	if p.helpers != nil {
		if hpids, err = p.helpers(); err != nil {
			return 0, 0, err
		}
	}
	f0, h0 := cpuSeconds(fpids), cpuSeconds(hpids)
	if err := load(); err != nil {
		return 0, 0, err
	}
	return cpuSeconds(fpids) - f0, cpuSeconds(hpids) - h0, nil
}

func (e *env) iperf(p *fwdPeer, streams int, reverse bool) ([]measure, error) {
	args := []string{"-c", "127.0.0.1", "-p", strconv.Itoa(p.iperfPort), "-t", strconv.Itoa(e.loadSecs),
		"-P", strconv.Itoa(streams), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	r, fwd, all, err := measureIperf(p, func() ([]byte, error) {
		return iperfClient(args, time.Duration(e.loadSecs+8)*time.Second, false)
	})
	if err != nil {
		return nil, err
	}
	gb := r.bytes / 1e9
	ms := []measure{r.throughput()}
	if p.forwarders != nil && p.name != "direct loopback" {
		ms = append(ms,
			measure{metric: "forwarder CPU per GB", unit: "s/GB", value: fwd / gb},
			measure{metric: "all helpers' CPU per GB", unit: "s/GB", value: all / gb})
	}
	return ms, nil
}

// measureIperf runs one iperf3 client (run returns its -J output) and
// returns what it measured and the CPU seconds that p's forwarders and all
// its helpers spent meanwhile.
func measureIperf(p *fwdPeer, run func() ([]byte, error)) (r iperfResult, fwd, all float64, err error) {
	var out []byte
	fwd, all, err = cpuDuring(p, func() error {
		var err error
		out, err = run()
		return err
	})
	if err != nil {
		return r, 0, 0, err
	}
	r, err = parseIperf(out)
	return r, fwd, all, err
}

func (r iperfResult) throughput() measure {
	return measure{metric: "throughput", unit: "Gbit/s", higher: true, value: r.bitsPerSecond / 1e9}
}

// iperfClient runs iperf3 on the host with args, killed after timeout;
// with ownSession in a session of its own (see setsidPayload).
func iperfClient(args []string, timeout time.Duration, ownSession bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "iperf3", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: ownSession}
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("iperf3 %s: %w: %s", strings.Join(args, " "), err, oneLine(string(out)))
	}
	return out, nil
}

// iperfResult is what the bench reads from iperf3 -J.
type iperfResult struct {
	bytes, bitsPerSecond float64 // received, over all streams
	seconds              float64 // the receiver's length of the test
	// cpuLocal and cpuRemote are the CPU (user+system, from getrusage)
	// that the client and the server spent over the test, in percent of
	// its length (iperf3's own cpu_utilization_percent).
	cpuLocal, cpuRemote float64
	// localHosts is the client's address of each data stream, as
	// getsockname gave it to the client.
	localHosts []string
}

func parseIperf(out []byte) (iperfResult, error) {
	var r struct {
		Start struct {
			Connected []struct {
				LocalHost string `json:"local_host"`
			} `json:"connected"`
		} `json:"start"`
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
				Seconds       float64 `json:"seconds"`
			} `json:"sum_received"`
			CPU struct {
				HostTotal   float64 `json:"host_total"`
				RemoteTotal float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return iperfResult{}, fmt.Errorf("parse iperf3 json: %w: %s", err, oneLine(string(out)))
	}
	if r.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Bytes <= 0 {
		return iperfResult{}, fmt.Errorf("iperf3 moved no bytes")
	}
	res := iperfResult{bytes: r.End.SumReceived.Bytes, bitsPerSecond: r.End.SumReceived.BitsPerSecond,
		seconds: r.End.SumReceived.Seconds, cpuLocal: r.End.CPU.HostTotal, cpuRemote: r.End.CPU.RemoteTotal}
	for _, c := range r.Start.Connected {
		res.localHosts = append(res.localHosts, c.LocalHost)
	}
	return res, nil
}

var (
	wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func (e *env) wrk(p *fwdPeer, threads, conns int, closeEach bool) ([]measure, error) {
	args := []string{"-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", e.loadSecs),
		"--timeout", "2s", "--latency"}
	if closeEach {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, fmt.Sprintf("http://127.0.0.1:%d/", p.httpPort))
	var out []byte
	_, all, err := cpuDuring(p, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(e.loadSecs+8)*time.Second)
		defer cancel()
		var err error
		out, err = exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, oneLine(string(out)))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("parse wrk output: no Requests/sec: %s", oneLine(string(out)))
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	if rate == 0 {
		return nil, fmt.Errorf("wrk: no request completed: %s", oneLine(string(out)))
	}
	ms := []measure{{metric: "requests per second", unit: "req/s", higher: true, value: rate}}
	for _, pm := range wrkPct.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(pm[2]), 64)
		switch string(pm[3]) {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		ms = append(ms, measure{metric: "p" + string(pm[1]) + " latency", unit: "ms", value: v})
	}
	var nerr float64
	if em := wrkErrs.FindSubmatch(out); em != nil {
		for _, x := range em[1:] {
			v, _ := strconv.ParseFloat(string(x), 64)
			nerr += v
		}
	}
	ms = append(ms, measure{metric: "socket errors", unit: "count", value: nerr})
	if p.helpers != nil {
		ms = append(ms, measure{metric: "all helpers' CPU per 1000 requests", unit: "ms", value: all * 1000 / (rate * float64(e.loadSecs)) * 1000})
	}
	return ms, nil
}
