package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const rabbitcName = "rabbitc"

// traceStage is one line "rabbitc-trace: <stage> <µs since start>" that
// rabbitc prints to stderr with RABBITC_TRACE=1.
type traceStage struct {
	name string
	us   float64
}

func parseTrace(stderr []byte) []traceStage {
	var out []traceStage
	sc := bufio.NewScanner(bytes.NewReader(stderr))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "rabbitc-trace: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 {
			continue
		}
		us, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		out = append(out, traceStage{name: f[0], us: us})
	}
	return out
}

// timedRun runs argv to exit and returns the wall time from just before
// fork to just after wait, with its stderr.
func timedRun(timeout time.Duration, extraEnv []string, argv ...string) (time.Duration, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, stderr.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(stderr.String()))
	}
	return d, stderr.Bytes(), nil
}

// startNoNet measures `... /bin/true` from start to exit with no network.
func startNoNet(e *env, res *results) {
	group := "start, no network: start to exit of /bin/true"
	rf := e.rootfs
	uid, gid := strconv.Itoa(e.uid), strconv.Itoa(e.gid)
	_ = gid
	simple := func(name string, argv ...string) *contender {
		return &contender{name: name, run: func(int) ([]measure, error) {
			d, _, err := timedRun(30*time.Second, nil, argv...)
			if err != nil {
				return nil, err
			}
			return []measure{{metric: "start to exit", unit: "ms", value: ms(d)}}, nil
		}}
	}
	nsFlags := []string{"--mount", "--net", "--pid", "--uts", "--ipc", "--cgroup", "--fork"}
	var cs []*contender
	cs = append(cs, e.rabbitcStart(group, "--net", "none"))
	cs = append(cs, simple("floor: unshare -r + chroot",
		append(append([]string{"unshare", "--user", "--map-root-user"}, nsFlags...), "chroot", rf, "/bin/true")...))
	cs = append(cs, simple("floor 2: unshare newuidmap + chroot",
		append(append([]string{"unshare", "--user", "--map-auto", "--map-root-user"}, nsFlags...), "chroot", rf, "/bin/true")...))
	cs = append(cs, simple("bwrap",
		"bwrap", "--unshare-all", "--bind", rf, "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"))
	crunB, err := e.ociBundle("crun", []string{"/bin/true"}, true)
	c := simple("crun rootless", "crun", "--root", filepath.Join(e.work, "state", "crun"), "--cgroup-manager=disabled",
		"run", "--bundle", crunB, "rb-crun-"+uid)
	if err != nil {
		c.skipped = err.Error()
	}
	cs = append(cs, c)
	// The same without seccomp, as `crun spec --rootless` makes it: not
	// equivalent to rabbitc (no filter to compile and load), shown for
	// comparison with the bar's row above.
	crunPlain, err := e.ociBundleSeccomp("crun", []string{"/bin/true"}, true, false)
	c = simple("crun rootless, no seccomp", "crun", "--root", filepath.Join(e.work, "state", "crun"), "--cgroup-manager=disabled",
		"run", "--bundle", crunPlain, "rb-crunp-"+uid)
	if err != nil {
		c.skipped = err.Error()
	}
	cs = append(cs, c)
	runcB, err := e.ociBundle("runc", []string{"/bin/true"}, true)
	c = simple("runc rootless", "runc", "--root", filepath.Join(e.work, "state", "runc"),
		"run", "--bundle", runcB, "rb-runc-"+uid)
	if err != nil {
		c.skipped = err.Error()
	}
	cs = append(cs, c)
	cs = append(cs, simple("podman", "podman", "run", "--rm", "--network", "none", "--rootfs", e.podmanRootfs, "/bin/true"))
	for _, c := range cs {
		e.requireTool(c)
	}
	alternate(res, group, e.rounds, cs, e.logf)
	startNoSeccomp(e, res)
	startDetached(e, res)
}

// rabbitcStart runs rabbitc to exit and records the start-to-exit time;
// then, untimed, once more with RABBITC_TRACE=1 for its stage timestamps
// (the trace's two dozen writes to stderr are not part of the time).
func (e *env) rabbitcStart(group string, flags ...string) *contender {
	argv := append([]string{e.rabbitc, "run", "--rootfs", e.rootfs}, flags...)
	argv = append(argv, "--", "/bin/true")
	return &contender{name: rabbitcName, run: func(round int) ([]measure, error) {
		d, _, err := timedRun(30*time.Second, nil, argv...)
		if err != nil {
			return nil, err
		}
		if round >= 0 {
			_, stderr, err := timedRun(30*time.Second, []string{"RABBITC_TRACE=1"}, argv...)
			if err != nil {
				return nil, err
			}
			e.recordTrace(group, parseTrace(stderr))
		}
		return []measure{{metric: "start to exit", unit: "ms", value: ms(d)}}, nil
	}}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// requireTool marks c skipped when its program is not installed.
func (e *env) requireTool(c *contender) {
	if c.skipped != "" {
		return
	}
	tool := map[string]string{
		"bwrap": "bwrap", "crun rootless": "crun", "crun rootless, no seccomp": "crun", "runc rootless": "runc", "podman": "podman",
	}[c.name]
	if strings.HasPrefix(c.name, "floor") {
		tool = "unshare"
	}
	if strings.HasPrefix(c.name, "RootlessKit") {
		tool = "rootlesskit"
	}
	if strings.HasPrefix(c.name, "pasta") {
		tool = "pasta"
	}
	if tool == "" {
		return
	}
	if _, err := exec.LookPath(tool); err != nil {
		c.skipped = fmt.Sprintf("%s not found in $PATH (install it: bench/run.sh does as root)", tool)
	}
}
