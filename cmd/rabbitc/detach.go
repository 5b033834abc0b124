package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/ctrlog"
	"github.com/rabbitc/rabbitc/userns"
)

// rabbitc run -d: the command validates its flags, then starts a monitor,
// a second rabbitc that runs the container exactly as a foreground rabbitc
// does (same runner: the sandbox or the watchdog, slirp4netns, the
// forwarder, signals), in a session of its own, with the payload's output
// going to the container's log. The monitor reports on a pipe once the
// payload runs (or why it could not start it), and rabbitc run -d prints
// the ID (or that one error line) and returns. The monitor lives as long as
// the container; a killed monitor takes the container with it, as a killed
// foreground rabbitc does, and `rabbitc ps -a` shows it exited.
//
// The monitor is rabbitc run again, with the same arguments, the same
// working directory and environment, and the ID in _RABBITC_DETACHED: it
// parses the flags the same way, so nothing of the spec needs another
// encoding.

// envDetached marks the monitor, with the ID that rabbitc run -d chose.
const envDetached = "_RABBITC_DETACHED"

// monitorReportFD is the monitor's end of the report pipe.
const monitorReportFD = 3

// monitor is the detached monitor's side of the report pipe; nil in a
// foreground rabbitc, where its methods do nothing.
type monitor struct{ report *os.File }

// monitorOf returns the monitor when this rabbitc is one, taking its ID.
func monitorOf(o *runOptions) *monitor {
	id := os.Getenv(envDetached)
	if id == "" || !o.detach {
		return nil
	}
	o.id = id
	os.Unsetenv(envDetached) // not for the stages
	return &monitor{report: os.NewFile(monitorReportFD, "report")}
}

// started tells rabbitc run -d that the payload runs, and lets go of its
// stderr, which the monitor held for warnings during the start-up only:
// a command substitution around rabbitc run -d must end when it returns.
func (m *monitor) started() {
	if m == nil || m.report == nil {
		return
	}
	m.report.WriteString("ok\n")
	m.report.Close()
	m.report = nil
	if null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		unix.Dup3(int(null.Fd()), 2, 0)
		null.Close()
	}
}

// failed reports a start-up failure to rabbitc run -d, which prints it,
// and returns an error that prints nothing here. After the start, it is
// the container's end, recorded in its state, and returned as it is.
func (m *monitor) failed(err error) error {
	if m == nil || m.report == nil {
		return err
	}
	code, msg := 125, err.Error()
	var se *userns.StageError
	var ee *exitError
	var ce *codeError
	switch {
	case errors.As(err, &se):
		if se.Code != 0 {
			code = se.Code
		}
	case errors.As(err, &ce):
		code = ce.code
	case errors.As(err, &ee):
		code, msg = ee.code, ""
	}
	fmt.Fprintf(m.report, "error %d %s\n", code, strings.ReplaceAll(msg, "\n", " "))
	m.report.Close()
	m.report = nil
	return &exitError{code}
}

// startDetached is rabbitc run -d: it starts the monitor at once and waits
// for its report. The monitor checks the flags (newSpec) and reports what
// is wrong with them as any other failure to start, so they are not checked
// twice on the way to the container.
func startDetached(o *runOptions, args []string) error {
	id := newID()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start the monitor: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), envDetached+"="+id)
	cmd.ExtraFiles = []*os.File{pw} // monitorReportFD
	cmd.Stderr = os.Stderr          // warnings during the start-up; let go once the payload runs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("start the monitor: %w", err)
	}
	line, _ := bufio.NewReader(pr).ReadString('\n')
	switch {
	case line == "ok\n":
		cmd.Process.Release()
		fmt.Println(id)
		return nil
	case strings.HasPrefix(line, "error "):
		cmd.Wait()
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 3)
		code, _ := strconv.Atoi(f[1])
		if code == 0 {
			code = 125
		}
		if len(f) == 3 && f[2] != "" {
			fmt.Fprintf(os.Stderr, "rabbitc: %s\n", f[2])
		}
		return &exitError{code}
	}
	cmd.Wait()
	return fmt.Errorf("the container's monitor ended before the container started (%v)", cmd.ProcessState)
}

// logStdio gives a detached payload /dev/null as stdin and pipes as stdout
// and stderr, which the monitor copies into the container's log.
func (r *runner) logStdio(cmd *exec.Cmd) ([]*os.File, error) {
	r.logPath = filepath.Join(r.spec.StateDir, logName)
	log, err := ctrlog.Open(r.logPath, 0)
	if err != nil {
		return nil, fmt.Errorf("open the container's log: %w", err)
	}
	r.onDelete(func() {
		r.waitOutputs()
		log.Close()
	})
	var childEnds []*os.File
	for _, out := range []struct {
		stream string
		dst    *io.Writer
	}{{"stdout", &cmd.Stdout}, {"stderr", &cmd.Stderr}} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		*out.dst, childEnds = pw, append(childEnds, pw)
		w := log.Stream(out.stream)
		r.outputs.Add(1)
		go func() {
			defer r.outputs.Done()
			ctrlog.Copy(w, pr)
			pr.Close()
		}()
	}
	return childEnds, nil
}
