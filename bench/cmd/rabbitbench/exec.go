package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const execGroup = "exec into a running container: exec to exit of /bin/true"

// execInto measures `exec ID /bin/true` into a running container, from the
// runtime's start to its exit: rabbitc against crun rootless, each with
// docker's capabilities and seccomp profile (which both apply to the exec'd
// process too), each container running sleep with no network. The rounds
// alternate, as everywhere in the bench.
func execInto(e *env, res *results) {
	rb, err := e.startSleeper()
	c := &contender{name: rabbitcName}
	if err != nil {
		c.skipped = err.Error()
	} else {
		defer rb.stop()
		argv := []string{e.rabbitc, "exec", rb.id, "/bin/true"}
		c.run = func(round int) ([]measure, error) {
			d, _, err := timedRun(30*time.Second, rb.env, argv...)
			if err != nil {
				return nil, err
			}
			if round >= 0 { // the stages' timestamps, from an untimed run
				_, stderr, err := timedRun(30*time.Second, append(rb.env, "RABBITC_TRACE=1"), argv...)
				if err != nil {
					return nil, err
				}
				e.recordTrace(execGroup, parseTrace(stderr))
			}
			return []measure{{metric: "exec to exit", unit: "ms", value: ms(d)}}, nil
		}
	}
	cs := []*contender{c, e.crunExec()}
	for _, c := range cs {
		e.requireTool(c)
	}
	alternate(res, execGroup, e.rounds, cs, e.logf)
	for _, c := range cs[1:] {
		if c.after != nil {
			c.after(0)
		}
	}
}

// sleeper is a rabbitc container that runs until stopped.
type sleeper struct {
	id     string
	env    []string // XDG_RUNTIME_DIR of its state
	cmd    *exec.Cmd
	exited chan error
}

// startSleeper starts `rabbitc run --net none -- sleep 3600` with a state
// directory of its own, and waits until ps shows it.
func (e *env) startSleeper() (*sleeper, error) {
	xdg := filepath.Join(e.work, "state", "rabbitc-exec")
	if err := os.MkdirAll(xdg, 0o700); err != nil {
		return nil, err
	}
	s := &sleeper{env: []string{"XDG_RUNTIME_DIR=" + xdg}, exited: make(chan error, 1)}
	s.cmd = exec.Command(e.rabbitc, "run", "--rootfs", e.rootfs, "--net", "none", "--stop-timeout", "1", "--", "/bin/sleep", "3600")
	s.cmd.Env = append(os.Environ(), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = e.logFile, e.logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	top := s.cmd.Process.Pid
	waited.Store(top, true)
	go func() {
		err := s.cmd.Wait()
		waited.Delete(top)
		s.exited <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for s.id == "" {
		ps := exec.Command(e.rabbitc, "ps", "-q")
		ps.Env = s.cmd.Env
		out, err := ps.Output()
		s.id = strings.TrimSpace(string(out))
		if s.id == "" && (err != nil || time.Now().After(deadline)) {
			s.stop()
			return nil, fmt.Errorf("rabbitc ps shows no container (%v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s, nil
}

func (s *sleeper) stop() {
	stopCmd(s.cmd, s.exited, 10*time.Second)
}

// crunExec is crun's contender: `crun exec` into a container it runs
// detached from a bundle with rabbitc's settings (ociBundle); after removes
// the container.
func (e *env) crunExec() *contender {
	state := filepath.Join(e.work, "state", "crun")
	id := "rb-crun-exec-" + strconv.Itoa(e.uid)
	c := &contender{name: "crun rootless"}
	crun := func(args ...string) error {
		cmd := exec.Command("crun", append([]string{"--root", state, "--cgroup-manager=disabled"}, args...)...)
		// A file, not a pipe: the detached container keeps crun's stderr,
		// and Wait would wait for it.
		stderr, err := os.CreateTemp(e.work, "crun-stderr")
		if err != nil {
			return err
		}
		defer os.Remove(stderr.Name())
		defer stderr.Close()
		cmd.Stderr = stderr
		if err := cmd.Run(); err != nil {
			msg, _ := os.ReadFile(stderr.Name())
			return fmt.Errorf("crun %s: %w: %s", strings.Join(args, " "), err, oneLine(string(msg)))
		}
		return nil
	}
	if _, err := exec.LookPath("crun"); err != nil {
		return c // requireTool says why
	}
	bundle, err := e.ociBundle("crun", []string{"/bin/sleep", "3600"}, true)
	if err == nil {
		crun("delete", "-f", id) // left by an interrupted bench
		// Detached: crun returns once the container runs; its stdio is /dev/null.
		err = crun("run", "-d", "--bundle", bundle, id)
	}
	if err != nil {
		c.skipped = err.Error()
		return c
	}
	argv := []string{"crun", "--root", state, "exec", id, "/bin/true"}
	c.run = func(int) ([]measure, error) {
		d, _, err := timedRun(30*time.Second, nil, argv...)
		if err != nil {
			return nil, err
		}
		return []measure{{metric: "exec to exit", unit: "ms", value: ms(d)}}, nil
	}
	c.after = func(int) {
		if err := crun("delete", "-f", id); err != nil {
			e.logf("%s: crun delete: %v", execGroup, err)
		}
	}
	return c
}
