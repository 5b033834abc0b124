package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/storage"
	"github.com/rabbitc/rabbitc/userns"
)

// A container whose root is fuse-overlayfs's (storage.FuseOverlayfs) has a
// sandbox, even with nothing published: the daemon is the sandbox's child.
// So it lives in the container's user namespace (root there, it writes the
// container's files with their owners) but outside its PID and mount
// namespaces, out of the container's reach: a process of the container
// cannot see it, signal it, or reach through its /proc/PID/root and fds the
// host's files or the image's layers. It ends with the container:
//
//   - the sandbox opens /dev/fuse and gives it to init (fuseDevFD) with a
//     pipe (fuseMountedFD); init mounts the file system over it in the
//     container's mount namespace (rootfs.FuseMount) and writes a byte;
//   - the sandbox then starts fuse-overlayfs on the same device
//     (storage.FuseCommand), with a parent-death signal; meanwhile init's
//     first look at its root waits for the daemon's answer;
//   - the daemon ends by itself when the container's mount namespace goes
//     (the unmount first writes back what the container wrote); the sandbox
//     waits for it before it exits, so rabbitc (and rm, stop) return only
//     once it is gone, and kills it after 10 s;
//   - should the daemon fail or be killed under the container, the sandbox
//     reports it to rabbitc (on a pipe of its own, fuseReportFD: the sync
//     channel must close when init execs the payload) and kills init: a
//     container without its root is over. Till then init, whose root waits
//     for the daemon, is stuck, and says nothing first: the sandbox holds a
//     copy of the device, so the file system is not aborted under it;
//   - should the sandbox die (rabbitc killed: parentGone), the daemon's
//     parent-death signal ends it.

// Init's descriptors for a fuse-overlayfs root (the sandbox's ExtraFiles
// after the sync channel), and the sandbox's for its report.
const (
	fuseDevFD     = userns.SyncFD + 1
	fuseMountedFD = userns.SyncFD + 2
	fuseReportFD  = userns.PortFD + 1
)

// fuseSpec is what the sandbox needs to start fuse-overlayfs.
type fuseSpec struct {
	Program string
	Lower   []string
	Upper   string
	Work    string
}

// fuseDaemon is fuse-overlayfs from the opening of /dev/fuse to its end.
type fuseDaemon struct {
	spec     *fuseSpec
	dev      *os.File // /dev/fuse: init mounts with it, the daemon serves it
	mounted  *os.File // init writes one byte here once it has mounted
	mountedW *os.File // init's end of the pipe
	p        *userns.Process
	stderr   tail
}

// openFuse opens /dev/fuse and the pipe on which init says it mounted.
func openFuse(spec *fuseSpec) (*fuseDaemon, error) {
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w (the fuse-overlayfs storage driver needs it usable by every user: chmod 0666 /dev/fuse, as Debian's udev rules make it)", errors.Unwrap(err))
	}
	r, w, err := os.Pipe()
	if err != nil {
		dev.Close()
		return nil, err
	}
	return &fuseDaemon{spec: spec, dev: dev, mounted: r, mountedW: w}, nil
}

// initFiles are init's fuseDevFD and fuseMountedFD.
func (f *fuseDaemon) initFiles() []*os.File { return []*os.File{f.dev, f.mountedW} }

// start waits until init has mounted the file system, then starts the
// daemon, from the calling goroutine (locked to its thread: the
// parent-death signal). false when init ended before it mounted.
func (f *fuseDaemon) start() (bool, error) {
	f.mountedW.Close()
	f.mountedW = nil
	var b [1]byte
	n, _ := f.mounted.Read(b[:])
	f.mounted.Close()
	f.mounted = nil
	if n == 0 {
		return false, nil
	}
	cmd, err := storage.FuseCommand(f.spec.Program, f.spec.Lower, f.spec.Upper, f.spec.Work)
	if err != nil {
		return false, err
	}
	cmd.ExtraFiles = []*os.File{f.dev} // storage.FuseDevFD
	cmd.Stderr = &f.stderr
	if f.p, err = userns.Start(cmd, syscall.SIGKILL); err != nil {
		return false, fmt.Errorf("start %s: %w", f.spec.Program, err)
	}
	return true, nil
}

// endedErr says how the daemon ended, with its last word.
func (f *fuseDaemon) endedErr() error {
	msg := fmt.Sprintf("fuse-overlayfs, which serves the container's root, ended (%v)", f.p.Cmd.ProcessState)
	if l := f.stderr.last(); l != "" {
		msg += ": " + l
	}
	return errors.New(msg)
}

// stop waits until the daemon ends, as it does once the container's mount
// namespace is gone, and kills it after 10 s.
func (f *fuseDaemon) stop() {
	if f.p != nil {
		select {
		case <-f.p.Done():
		case <-time.After(10 * time.Second):
			f.p.Signal(syscall.SIGKILL)
			<-f.p.Done()
		}
	}
	f.close()
}

// close closes what is still open.
func (f *fuseDaemon) close() {
	for _, file := range []*os.File{f.dev, f.mounted, f.mountedW} {
		if file != nil {
			file.Close()
		}
	}
	f.dev, f.mounted, f.mountedW = nil, nil, nil
}

// serveFuse is the sandbox's wait for init when a fuse-overlayfs daemon
// serves the root: it starts the daemon once init has mounted, and, should
// the daemon fail or die while the container lives, reports it to rabbitc
// on report and ends the container.
func (sb *sandbox) serveFuse(init *userns.Process, f *fuseDaemon, report *os.File) {
	defer f.stop()
	defer report.Close()
	ok, err := f.start()
	if err != nil {
		report.WriteString(err.Error() + "\n")
		init.Signal(syscall.SIGKILL)
	}
	if !ok {
		<-init.Done()
		return
	}
	select {
	case <-init.Done():
	case <-f.p.Done():
		// Killed or failed under the container, unlike an end by the
		// unmount (status 0), which comes with the container's.
		if f.p.ExitCode() != 0 {
			report.WriteString(f.endedErr().Error() + "\n")
			init.Signal(syscall.SIGKILL)
		}
		<-init.Done()
	}
}

// fuseReport is the parent's end of the sandbox's report on its
// fuse-overlayfs daemon.
type fuseReport struct{ r *os.File }

// read returns what the sandbox reported so far, without waiting: it
// reports before it kills init, so before rabbitc learns that init ended.
func (f *fuseReport) read() string {
	if f == nil {
		return ""
	}
	b := make([]byte, 4096)
	n := 0
	if rc, err := f.r.SyscallConn(); err == nil {
		rc.Read(func(fd uintptr) bool {
			n, _ = unix.Read(int(fd), b) // the pipe is non-blocking
			return true
		})
	}
	return strings.TrimSpace(string(b[:max(n, 0)]))
}

// fuseSpec is the sandbox's daemon for s, or nil.
func (s *spec) fuseSpec() *fuseSpec {
	o := s.Overlay
	if o == nil || o.Fuse == nil {
		return nil
	}
	return &fuseSpec{Program: s.storage.fuseProgram, Lower: o.Lower, Upper: o.Upper, Work: o.Work}
}

// tail keeps the last lines written to it (a daemon's stderr), but the
// ones fuse-overlayfs prints at every start.
type tail struct {
	buf   bytes.Buffer
	lines []string
}

func (t *tail) Write(b []byte) (int, error) {
	t.buf.Write(b)
	for {
		line, err := t.buf.ReadString('\n')
		if err != nil {
			t.buf.WriteString(line) // incomplete: wait for the rest
			return len(b), nil
		}
		line = line[:len(line)-1]
		if line == "" || strings.HasPrefix(line, "unknown argument ignored:") {
			continue
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > 4 {
			t.lines = t.lines[1:]
		}
	}
}

// last is the last line, or "".
func (t *tail) last() string {
	if len(t.lines) == 0 {
		return ""
	}
	return t.lines[len(t.lines)-1]
}
