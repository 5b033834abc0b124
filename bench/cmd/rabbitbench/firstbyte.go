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
	floor := &contender{name: "floor: unshare + slirp4netns hostfwd"}
	floor.run = func(int) ([]measure, error) {
		d, err := e.slirpFloor(e.port())
		if err != nil {
			return nil, err
		}
		return []measure{{metric: "start to first byte", unit: "ms", value: ms(d)}}, nil
	}
	cs = append(cs, floor)
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

// slirpFloor is the least a runtime must do for the same result: a child in
// new user and network namespaces (uid map written by the Go runtime, no
// newuidmap), slirp4netns configured and ready, one host forward through
// slirp4netns's own API, then the server starts.
func (e *env) slirpFloor(port int) (time.Duration, error) {
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
	t0 := time.Now()
	srv := exec.Command(e.httpd, "-wait-fd", "3")
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
	if err := srv.Start(); err != nil {
		goR.Close()
		return 0, fmt.Errorf("start server in new user and network namespaces: %w", err)
	}
	goR.Close()
	srvExited := make(chan error, 1)
	go func() { srvExited <- srv.Wait() }()
	defer stopCmd(srv, srvExited, 5*time.Second)

	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	sock := filepath.Join(dir, "api.sock")
	slirp := exec.Command("slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
		"--ready-fd=3", "--api-socket", sock, strconv.Itoa(srv.Process.Pid), "tap0")
	slirp.ExtraFiles = []*os.File{readyW}
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
