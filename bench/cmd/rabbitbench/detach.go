package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// startDetached measures rabbitc run -d against a foreground run of the
// same container: run -d returns once the payload runs, through a second
// rabbitc (the monitor), and should cost little more than the foreground
// start. Each run -d uses --rm, and the round waits, untimed, until the
// monitor has removed the container, so no container outlives its round.
func startDetached(e *env, res *results) {
	group := "start, detached: run -d --rm returns, against a foreground run to exit, of /bin/true"
	fg := e.rabbitcStart(group, "--net", "none")
	fg.name = "rabbitc foreground"
	argv := []string{e.rabbitc, "run", "-d", "--rm", "--rootfs", e.rootfs, "--net", "none", "--", "/bin/true"}
	d := &contender{name: rabbitcName, run: func(int) ([]measure, error) {
		t, _, err := timedRun(30*time.Second, nil, argv...)
		if err != nil {
			return nil, err
		}
		if err := waitNoContainers(10 * time.Second); err != nil {
			return nil, err
		}
		return []measure{{metric: "start to return", unit: "ms", value: ms(t)}}, nil
	}}
	// The foreground's "start to exit" is compared with run -d's "start to
	// return" as one metric.
	fgRun := fg.run
	fg.run = func(round int) ([]measure, error) {
		m, err := fgRun(round)
		for i := range m {
			m[i].metric = "start to return"
		}
		return m, err
	}
	alternate(res, group, e.rounds, []*contender{d, fg}, e.logf)
}

// startNoSeccomp measures rabbitc and crun with no seccomp filter at all,
// which issue 13 bars too.
func startNoSeccomp(e *env, res *results) {
	group := "start, no network, no seccomp: start to exit of /bin/true"
	uid := strconv.Itoa(e.uid)
	cs := []*contender{e.rabbitcStart(group, "--net", "none", "--security-opt", "seccomp=unconfined")}
	crunPlain, err := e.ociBundleSeccomp("crun", []string{"/bin/true"}, true, false)
	argv := []string{"crun", "--root", filepath.Join(e.work, "state", "crun"), "--cgroup-manager=disabled",
		"run", "--bundle", crunPlain, "rb-crunq-" + uid}
	c := &contender{name: "crun rootless, no seccomp", run: func(int) ([]measure, error) {
		d, _, err := timedRun(30*time.Second, nil, argv...)
		if err != nil {
			return nil, err
		}
		return []measure{{metric: "start to exit", unit: "ms", value: ms(d)}}, nil
	}}
	if err != nil {
		c.skipped = err.Error()
	}
	e.requireTool(c)
	alternate(res, group, e.rounds, append(cs, c), e.logf)
}

// waitNoContainers waits until no container directory is left in
// rabbitc's state root.
func waitNoContainers(within time.Duration) error {
	root := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "rabbitc")
	deadline := time.Now().Add(within)
	for {
		ents, _ := os.ReadDir(root)
		left := 0
		for _, e := range ents {
			if e.IsDir() {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers still in %s %v after run -d --rm", left, root, within)
		}
		time.Sleep(time.Millisecond)
	}
}
