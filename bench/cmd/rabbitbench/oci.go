package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const ociGroup = "OCI create + start of a bundle (/bin/true): create returns, then start returns"

// ociCreateStart measures the OCI verbs as an engine calls them: create,
// then start, of the same bundle (crun's `spec --rootless` with rabbitc's
// settings: ociBundle) for rabbitc and crun. The process's exit and the
// delete come after the measurement, each round.
func ociCreateStart(e *env, res *results) {
	bundle, err := e.ociBundle("crun", []string{"/bin/true"}, true)
	uid := strconv.Itoa(e.uid)
	rabbitc := e.ociContender(rabbitcName, []string{e.rabbitc, "--root", filepath.Join(e.work, "state", "rabbitc-oci")}, "rb-oci-rabbitc-"+uid, bundle)
	crun := e.ociContender("crun rootless", []string{"crun", "--root", filepath.Join(e.work, "state", "crun"), "--cgroup-manager=disabled"}, "rb-oci-crun-"+uid, bundle)
	if err != nil {
		rabbitc.skipped, crun.skipped = err.Error(), err.Error()
	}
	e.requireTool(crun)
	alternate(res, ociGroup, e.rounds, []*contender{rabbitc, crun}, e.logf)
}

// ociContender times `RUNTIME create` plus `RUNTIME start` of bundle; after
// the round it waits for the process to end and deletes the container.
func (e *env) ociContender(name string, runtime []string, id, bundle string) *contender {
	verb := func(args ...string) (time.Duration, error) {
		argv := append(append([]string(nil), runtime...), args...)
		// A file, not a pipe, for stderr: init keeps it after create returns.
		stderr, err := os.CreateTemp(e.work, "oci-stderr")
		if err != nil {
			return 0, err
		}
		defer os.Remove(stderr.Name())
		defer stderr.Close()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = stderr
		t0 := time.Now()
		err = cmd.Run()
		d := time.Since(t0)
		if err != nil {
			msg, _ := os.ReadFile(stderr.Name())
			return 0, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(string(msg)))
		}
		return d, nil
	}
	c := &contender{name: name}
	c.run = func(int) ([]measure, error) {
		verb("delete", "--force", id) // left by an interrupted round
		tc, err := verb("create", "--bundle", bundle, id)
		if err != nil {
			return nil, err
		}
		ts, err := verb("start", id)
		if err != nil {
			verb("delete", "--force", id)
			return nil, err
		}
		return []measure{{metric: "create + start", unit: "ms", value: ms(tc + ts)}}, nil
	}
	c.after = func(int) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			reapOrphans() // the process, reparented here (a subreaper)
			if _, err := verb("delete", id); err == nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		verb("delete", "--force", id)
	}
	return c
}
