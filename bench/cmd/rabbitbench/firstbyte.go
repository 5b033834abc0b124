package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/parent/idtools"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/userns"
)

// startFirstByte measures from the start of a runtime with slirp4netns and
// one published port to the first byte of an HTTP reply fetched through
// 127.0.0.1:PORT from the server in the container.
func startFirstByte(e *env, res *results) {
	group := "start, slirp4netns + 1 publish: start to first HTTP byte"
	server := []string{"/bin/httpd"}
	var cs []*contender
	cs = append(cs, e.serveContender(rabbitcName, group, func(p int) []string {
		return append([]string{e.rabbitc, "run", "--rootfs", e.rootfs, "--net", "slirp4netns",
			"-p", fmt.Sprintf("127.0.0.1:%d:80", p), "--"}, server...)
	}))
	for _, f := range []struct {
		name  string
		equal bool
	}{{"floor: unshare + slirp4netns hostfwd", false}, {floor2Name, true}} {
		floor := &contender{name: f.name}
		equal := f.equal
		floor.run = func(int) ([]measure, error) {
			d, err := e.slirpFloor(e.port(), equal)
			if err != nil {
				return nil, err
			}
			return []measure{{metric: "start to first byte", unit: "ms", value: ms(d)}}, nil
		}
		cs = append(cs, floor)
	}
	rk := func(p int, tail ...string) []string {
		return append([]string{"rootlesskit", "--net=slirp4netns", "--mtu=65520", "--disable-host-loopback",
			"--port-driver=builtin", "-p", fmt.Sprintf("127.0.0.1:%d:80/tcp", p)}, tail...)
	}
	// Here the server stays in rootlesskit's session: setsid(1) would add an
	// exec to this peer's clock, and no bar compares with it.
	cs = append(cs, e.serveContender("RootlessKit builtin", group, func(p int) []string {
		return rk(p, append([]string{"chroot", e.rootfs}, server...)...)
	}))
	bundle, err := e.ociBundle("runc", server, false)
	c := e.serveContender("RootlessKit builtin + runc", group, func(p int) []string {
		return rk(p, "runc", "--root", filepath.Join(e.work, "state", "runc-rk"), "run", "--bundle", bundle,
			fmt.Sprintf("rb-rk-%d", p))
	})
	if err != nil {
		c.skipped = err.Error()
	}
	cs = append(cs, c)
	podman := e.serveContender("podman", group, func(p int) []string {
		return append([]string{"podman", "run", "--rm", "--name", fmt.Sprintf("rabbitbench-fb-%d", p),
			"--network", "slirp4netns", "-p", fmt.Sprintf("127.0.0.1:%d:80", p), "--rootfs", e.podmanRootfs}, server...)
	})
	// Should the signal reach podman before its proxy to the container is
	// up, the container would outlive it: remove it, after the clock.
	podman.after = func(p int) { exec.Command("podman", "rm", "-f", "-t", "0", fmt.Sprintf("rabbitbench-fb-%d", p)).Run() }
	cs = append(cs, podman)
	for _, c := range cs {
		e.requireTool(c)
	}
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		for _, c := range cs {
			if c.skipped == "" {
				c.skipped = "slirp4netns not found in $PATH (install slirp4netns)"
			}
		}
	}
	alternate(res, group, e.rounds, cs, e.logf)
}

// serveContender starts argv(port) and measures the time to the first byte
// served through 127.0.0.1:port, then stops it with SIGTERM. rabbitc runs
// once more after that, untimed, with RABBITC_TRACE=1 for its stages.
func (e *env) serveContender(name, group string, argv func(port int) []string) *contender {
	c := &contender{name: name}
	once := func(trace bool) (time.Duration, []byte, error) {
		p := e.port()
		if c.after != nil {
			defer c.after(p)
		}
		a := argv(p)
		cmd := exec.Command(a[0], a[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Stdout = e.logFile
		if trace {
			cmd.Env = append(os.Environ(), "RABBITC_TRACE=1")
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		err := firstByte(p, t0.Add(20*time.Second), exited)
		d := time.Since(t0)
		stopCmd(cmd, exited, 15*time.Second)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w: %s", a[0], err, oneLine(stderr.String()))
		}
		return d, stderr.Bytes(), nil
	}
	c.run = func(round int) ([]measure, error) {
		d, _, err := once(false)
		if err != nil {
			return nil, err
		}
		if name == rabbitcName && round >= 0 {
			_, stderr, err := once(true)
			if err != nil {
				return nil, err
			}
			e.recordTrace(group, parseTrace(stderr))
		}
		return []measure{{metric: "start to first byte", unit: "ms", value: ms(d)}}, nil
	}
	return c
}

// stopCmd sends SIGTERM, waits, and kills the process group if it lingers.
func stopCmd(cmd *exec.Cmd, exited chan error, grace time.Duration) {
	select {
	case <-exited:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

var errExited = errors.New("exited before serving")

// firstByte fetches / from 127.0.0.1:port until one byte of a reply comes
// back, retrying every half millisecond until deadline.
func firstByte(port int, deadline time.Time, exited chan error) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	req := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 1)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("%w: %v", errExited, err)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Write(req)
			if err == nil {
				var n int
				n, err = c.Read(buf)
				if n == 1 {
					c.Close()
					return nil
				}
			}
			c.Close()
		}
		time.Sleep(500 * time.Microsecond)
	}
	return fmt.Errorf("no reply from %s", addr)
}

// floor2Name is the slirp floor doing the steps issue 3 requires of rabbitc.
const floor2Name = "floor 2: newuidmap, slirp4netns sandbox+seccomp, server after ready"

// execAfterFDArg makes rabbitbench a stand-in for a runtime's init in floor
// 2: it reads one byte from a descriptor, then execs the server.
const execAfterFDArg = "exec-after-fd"

func execAfterFD(fd string, argv []string) int {
	n, err := strconv.Atoi(fd)
	if err == nil {
		f := os.NewFile(uintptr(n), "wait")
		_, err = f.Read(make([]byte, 1))
		f.Close()
	}
	if err == nil {
		err = syscall.Exec(argv[0], argv, os.Environ())
	}
	fmt.Fprintln(os.Stderr, "rabbitbench exec-after-fd:", err)
	return 1
}

// slirpFloor is the least a runtime must do for the same result: a child in
// new user and network namespaces (uid map written by the Go runtime, no
// newuidmap), slirp4netns configured and ready, one host forward through
// slirp4netns's own API, then the server starts.
//
// The first floor's server starts beside slirp4netns and only its listen
// waits: a server that reads its address at start, as the seed's does, would
// find no network. With equal (floor 2) it takes the steps rabbitc cannot
// skip instead: the user's subordinate ranges mapped by newuidmap and
// newgidmap (both at once, as rabbitc runs them; the child keeps
// CAP_NET_BIND_SERVICE through its exec as an ambient capability, as
// rabbitc's stages keep theirs); slirp4netns with the options issue 3
// requires where this slirp4netns has them (--enable-sandbox,
// --enable-seccomp, --exit-fd), after the maps, which its sandbox needs; and
// the server exec'd only once slirp4netns is ready and the port forwarded,
// by a Go process that waited for that in the namespaces (this binary, as
// exec-after-fd: a runtime's init, doing nothing else). What floor 2 still
// skips is the runtime proper: its own process start, the container's mount
// set-up and pivot_root, capabilities, seccomp, its port forwarder.
func (e *env) slirpFloor(port int, equal bool) (time.Duration, error) {
	dir, err := os.MkdirTemp(e.work, "floor")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	goR, goW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer goW.Close()
	var maps *floorMaps
	srv := exec.Command(e.httpd, "-wait-fd", "3")
	if equal {
		if maps, err = e.floor2Setup(); err != nil {
			goR.Close()
			return 0, err
		}
		srv = exec.Command(maps.self, execAfterFDArg, "3", e.httpd)
	}
	t0 := time.Now()
	srv.ExtraFiles = []*os.File{goR}
	srv.Stdout, srv.Stderr = e.logFile, e.logFile
	// In a session of its own, as a runtime runs its payload (see
	// setsidPayload): setsid(2) in the child costs the floor nothing.
	srv.SysProcAttr = &syscall.SysProcAttr{
		Setsid:      true,
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: e.uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: e.gid, Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if equal {
		srv.SysProcAttr.UidMappings, srv.SysProcAttr.GidMappings = nil, nil
		srv.SysProcAttr.AmbientCaps = []uintptr{capNetBindService}
	}
	if err := srv.Start(); err != nil {
		goR.Close()
		return 0, fmt.Errorf("start server in new user and network namespaces: %w", err)
	}
	goR.Close()
	srvExited := make(chan error, 1)
	go func() { srvExited <- srv.Wait() }()
	defer stopCmd(srv, srvExited, 5*time.Second)
	slirpArgs := []string{"--configure", "--mtu=65520", "--disable-host-loopback"}
	var extra []*os.File
	if equal {
		if err := maps.write(srv.Process.Pid); err != nil {
			return 0, err
		}
		slirpArgs = append(slirpArgs, maps.slirpOpts...)
		exitR, exitW, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer exitW.Close()
		defer exitR.Close()
		slirpArgs = append(slirpArgs, "--exit-fd=4")
		extra = append(extra, exitR)
	}

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	sock := filepath.Join(dir, "api.sock")
	slirpArgs = append(slirpArgs, "--ready-fd=3", "--api-socket", sock, strconv.Itoa(srv.Process.Pid), "tap0")
	slirp := exec.Command("slirp4netns", slirpArgs...)
	slirp.ExtraFiles = append([]*os.File{readyW}, extra...)
	slirp.Stdout, slirp.Stderr = e.logFile, e.logFile
	if err := slirp.Start(); err != nil {
		readyW.Close()
		readyR.Close()
		return 0, fmt.Errorf("start slirp4netns: %w", err)
	}
	readyW.Close()
	slirpExited := make(chan error, 1)
	go func() { slirpExited <- slirp.Wait() }()
	defer stopCmd(slirp, slirpExited, 5*time.Second)
	b := make([]byte, 1)
	readyR.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = readyR.Read(b)
	readyR.Close()
	if err != nil {
		return 0, fmt.Errorf("wait for slirp4netns ready: %w", err)
	}
	if err := slirpHostFwd(sock, port); err != nil {
		return 0, err
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		return 0, err
	}
	if err := firstByte(port, t0.Add(20*time.Second), srvExited); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func slirpHostFwd(sock string, port int) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial slirp4netns api %s: %w", sock, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := map[string]any{"execute": "add_hostfwd", "arguments": map[string]any{
		"proto": "tcp", "host_addr": "127.0.0.1", "host_port": port,
		"guest_addr": "10.0.2.100", "guest_port": 80}}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	c.(*net.UnixConn).CloseWrite()
	var reply map[string]any
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return fmt.Errorf("read slirp4netns add_hostfwd reply: %w", err)
	}
	if _, ok := reply["return"]; !ok {
		return fmt.Errorf("slirp4netns add_hostfwd 127.0.0.1:%d: %v", port, reply)
	}
	return nil
}

// capNetBindService is CAP_NET_BIND_SERVICE: floor 2's server listens on
// port 80 of its network namespace without a mapped root at its exec.
const capNetBindService = 10

// floorMaps is what floor 2 looks up once, outside its clock (a floor is
// the least a runtime must do per start): the subordinate ranges and the
// newuidmap/newgidmap arguments, as rabbitc makes them (userns.MapArgs:
// every range of the user, back to back), which of slirp4netns's options
// this one has (netns.Check, as rabbitc finds them), and this binary.
type floorMaps struct {
	uids, gids []userns.Range
	slirpOpts  []string
	self       string
}

func (e *env) floor2Setup() (*floorMaps, error) {
	e.floor2Once.Do(func() {
		m := &floorMaps{}
		var err error
		if m.self, err = os.Executable(); err != nil {
			e.floor2Err = err
			return
		}
		u := userns.CurrentConfig()
		if m.uids, m.gids, err = idtools.GetSubIDRanges(u.UID, u.Username); err != nil {
			e.floor2Err = fmt.Errorf("subordinate ids of uid %d: %w", u.UID, err)
			return
		}
		feat, err := netns.Check(netns.Config{})
		if err != nil {
			e.floor2Err = err
			return
		}
		if feat.EnableSandbox {
			m.slirpOpts = append(m.slirpOpts, "--enable-sandbox")
		}
		if feat.EnableSeccomp {
			m.slirpOpts = append(m.slirpOpts, "--enable-seccomp")
		}
		e.floor2 = m
	})
	return e.floor2, e.floor2Err
}

// write maps the user as root and its subordinate ranges from 1 into the
// user namespace of pid, newuidmap and newgidmap at once, as rabbitc does.
func (m *floorMaps) write(pid int) error {
	run := func(tool string, args []string) error {
		out, err := exec.Command(tool, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", tool, err, oneLine(string(out)))
		}
		return nil
	}
	gidErr := make(chan error, 1)
	go func() { gidErr <- run("newgidmap", userns.MapArgs(pid, os.Getgid(), m.gids)) }()
	uidErr := run("newuidmap", userns.MapArgs(pid, os.Getuid(), m.uids))
	if err := <-gidErr; err != nil {
		return err
	}
	return uidErr
}
