package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/cgroups"
)

// ociVersion is the runtime-spec version rabbitc implements.
var ociVersion = specs.Version

// An OCI container's directory under --root holds ocistate.json, the
// spec's config.json (for exec), the compiled seccomp program and, until
// `start`, exec.fifo, which init holds open for writing: start opens it for
// reading, and init runs the payload. Its status is derived, as runc's:
// created while init lives and the fifo is there, running while init
// lives, stopped once it is gone (a pid, with its start time, checked at
// each read). The directory stays until `delete`.
const (
	ociStateFile = "ocistate.json"
	execFifo     = "exec.fifo"
	creatorFile  = "creator" // "PID STARTTIME" of the create that makes the directory
)

// gcOCI removes the directories of creates that died before they wrote the
// state (kill -9): their init died with the sync channel.
func gcOCI(root string) {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if fileExists(filepath.Join(dir, ociStateFile)) {
			continue
		}
		var pid int
		var start uint64
		b, err := os.ReadFile(filepath.Join(dir, creatorFile))
		if err != nil {
			continue // not ours, or being made this instant
		}
		if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err == nil && !procAlive(pid, start) {
			os.RemoveAll(dir)
		}
	}
}

// ociState is ocistate.json: the runtime spec's state, and what rabbitc
// needs to find init again.
type ociState struct {
	specs.State
	Rootfs    string    `json:"rootfs"`
	Created   time.Time `json:"created"`
	Owner     string    `json:"owner"`
	InitTime  uint64    `json:"initStartTime"`
	NoPidNS   bool      `json:"noPidNamespace,omitempty"` // init shares a PID namespace: kill --all cannot lean on PID 1
	Cgroup    string    `json:"cgroup,omitempty"`         // the container's cgroup v2 directory, if the config asked for one
	dir       string
	hooksDone bool
}

// ociRoot is the directory holding OCI containers: --root, or
// $XDG_RUNTIME_DIR/rabbitc-oci (apart from the docker-like containers,
// whose listing and clean-up know nothing of these), or /run/rabbitc as
// root.
func (g *ociGlobals) stateRoot() (string, error) {
	root := g.root
	if root == "" {
		if os.Geteuid() == 0 && os.Getenv("XDG_RUNTIME_DIR") == "" {
			root = "/run/rabbitc"
		} else {
			base, err := stateRoot()
			if err != nil {
				return "", err
			}
			root = base + "-oci"
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("create the state root %s: %w (check --root)", root, err)
	}
	return root, nil
}

// checkOCIID refuses an ID that is no single path element.
func checkOCIID(id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id || len(id) > 1024 {
		return fmt.Errorf("invalid container id %q (letters, digits and -_. without '/')", id)
	}
	return nil
}

// loadOCIState reads the state of container id, with its status as it is
// now.
func (g *ociGlobals) load(id string) (*ociState, error) {
	if err := checkOCIID(id); err != nil {
		return nil, err
	}
	root, err := g.stateRoot()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, id)
	b, err := os.ReadFile(filepath.Join(dir, ociStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %q does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	st := &ociState{dir: dir}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("container %q: read its state: %w", id, err)
	}
	st.refresh()
	return st, nil
}

// refresh derives the status from init and the fifo.
func (st *ociState) refresh() {
	switch {
	case !procAlive(st.Pid, st.InitTime):
		st.Status, st.Pid = specs.StateStopped, 0
	case fileExists(filepath.Join(st.dir, execFifo)):
		st.Status = specs.StateCreated
	default:
		st.Status = specs.StateRunning
	}
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// write replaces ocistate.json (temp file + rename).
func (st *ociState) write() error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(st.dir, "."+ociStateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(st.dir, ociStateFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// public is the state as `state` prints it and hooks read it.
func (st *ociState) public() any {
	return struct {
		specs.State
		Rootfs  string `json:"rootfs"`
		Created string `json:"created"`
		Owner   string `json:"owner"`
	}{st.State, st.Rootfs, st.Created.Format(time.RFC3339Nano), st.Owner}
}

func currentOwner() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}

// signal sends sig to init through a pidfd checked against its start time.
func (st *ociState) signal(sig syscall.Signal) error {
	p, err := openChecked(st.Pid, st.InitTime)
	if err != nil {
		return err
	}
	if p == nil {
		return errors.New("container not running")
	}
	defer p.Close()
	return p.Signal(sig)
}

// signalAll sends sig to every process of the container: those in init's
// PID namespace. With a PID namespace of its own, SIGKILL to init is
// enough (the kernel kills the rest); the others are found in /proc.
func (st *ociState) signalAll(sig syscall.Signal) error {
	if st.Cgroup != "" {
		return (&cgroups.Manager{Path: st.Cgroup}).Kill(sig)
	}
	if err := st.signal(sig); err != nil {
		return err
	}
	if sig == unix.SIGKILL && !st.NoPidNS {
		return nil
	}
	for _, pid := range st.pids() {
		if pid != st.Pid {
			unix.Kill(pid, sig)
		}
	}
	return nil
}

// pids lists the host pids of the container's processes: those whose PID
// namespace is init's (with one of its own), or init and its descendants.
func (st *ociState) pids() []int {
	if st.Cgroup != "" {
		if pids, err := (&cgroups.Manager{Path: st.Cgroup}).Pids(); err == nil {
			return pids
		}
	}
	if st.Pid == 0 {
		return nil
	}
	nsOf := func(pid int) string {
		l, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
		return l
	}
	want := nsOf(st.Pid)
	ents, _ := os.ReadDir("/proc")
	out := []int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st.NoPidNS {
			if pid == st.Pid || descends(pid, st.Pid) {
				out = append(out, pid)
			}
		} else if want != "" && nsOf(pid) == want {
			out = append(out, pid)
		}
	}
	return out
}

// descends tells whether pid descends from ancestor (by /proc's ppid).
func descends(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		ppid := 0
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 1 {
			ppid, _ = strconv.Atoi(f[1])
		}
		if ppid == ancestor {
			return true
		}
		pid = ppid
	}
	return false
}
