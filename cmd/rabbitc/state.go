package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rabbitc/rabbitc/netns"
	"github.com/rabbitc/rabbitc/rootfs"
	"github.com/rabbitc/rabbitc/security"
)

// The per-container state directory holds what rabbitc keeps about a
// running container: state.json. It lives under $XDG_RUNTIME_DIR/rabbitc
// (or /tmp/rabbitc-UID) and is removed on every exit path: by the parent,
// by the sandbox or the watchdog when the parent died, and by the next
// rabbitc when both were killed (gcStates).

// state is state.json: enough for a later `rabbitc ps` or `stop`.
type state struct {
	ID         string    `json:"id"`
	Rootfs     string    `json:"rootfs"`
	Args       []string  `json:"args"`
	Created    time.Time `json:"created"`
	ParentPid  int       `json:"parentPid"`
	ParentTime uint64    `json:"parentStartTime"`
	InitPid    int       `json:"initPid,omitempty"`
	InitTime   uint64    `json:"initStartTime,omitempty"` // tells init from a process that reused its pid
	Status     string    `json:"status"`

	dir string // the container's directory, where readStates found it
}

// stateRoot returns the directory holding every container's state,
// creating it owned by the user and private.
func stateRoot() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		root := filepath.Join(d, "rabbitc")
		if err := os.MkdirAll(root, 0o700); err != nil {
			return "", fmt.Errorf("create state directory %s: %w (check $XDG_RUNTIME_DIR)", root, err)
		}
		return root, nil
	}
	// /tmp is shared: never follow a link or use a directory another user made.
	root := filepath.Join(os.TempDir(), "rabbitc-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create state directory %s: %w", root, err)
	}
	st, err := os.Lstat(root)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", root, err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || int(sys.Uid) != os.Getuid() || st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("state directory %s: not a private directory owned by you (remove it, or set $XDG_RUNTIME_DIR)", root)
	}
	return root, nil
}

// planState picks the container's state directory (creating the root that
// holds every container's) and fills s.StateDir; the directory itself is
// made by createState, once the payload runs.
func planState(s *spec) error {
	root, err := stateRoot()
	if err != nil {
		return err
	}
	s.StateDir = filepath.Join(root, s.ID)
	return nil
}

// etcFiles are the files init generates in the container (rootfs.File):
// hostname, hosts and resolv.conf.
func etcFiles(s *spec) []rootfs.File {
	return []rootfs.File{
		{Dest: "/etc/hostname", Content: []byte(s.Hostname + "\n")},
		{Dest: "/etc/hosts", Content: netns.Hosts(s.Net, s.Hostname)},
		{Dest: "/etc/resolv.conf", Content: netns.ResolvConf(s.Net)},
	}
}

// createState makes the container's directory with its state.json,
// config.json (the spec, which exec reads) and, from filter if config lacks
// its program, filterFile, for a
// container whose payload runs as initPid (the host's pid), started at
// initTime (procStartTime). It is written
// once the payload runs: a start-up that fails or is killed leaves nothing
// to clean, and the start-up does no file writes on the host. state.json is
// written in place, not through a rename: the directory is new, and a
// reader treats a state.json it cannot parse as one being created.
func createState(s *spec, config []byte, filter *security.Config, initPid int, initTime uint64) error {
	dir := s.StateDir
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	st := state{ID: s.ID, Rootfs: s.Rootfs.Rootfs, Args: s.Args, Created: time.Now().UTC(),
		ParentPid: os.Getpid(), ParentTime: procStartTime(os.Getpid()), InitPid: initPid, InitTime: initTime, Status: "running"}
	b, _ := json.Marshal(&st)
	// config.json first: a reader that finds state.json finds it too.
	if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o600); err != nil {
		removeState(dir)
		return fmt.Errorf("write state: %w", err)
	}
	if err := writeFilter(dir, filter); err != nil {
		removeState(dir)
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600); err != nil {
		removeState(dir)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// readConfig reads the spec of a running container from its config.json.
func readConfig(st state) (*spec, error) {
	b, err := os.ReadFile(filepath.Join(st.dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's config: %w", err)
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read the container's config %s: %w", filepath.Join(st.dir, "config.json"), err)
	}
	return &s, nil
}

// filterFile holds the container's compiled seccomp program, which
// config.json lacks when run compiled it after it sent init its spec (the
// default: runner.filterAtStart), so that exec loads the program init
// loaded rather than compiling it again (0.9 ms of CPU here): its flags as
// 8 bytes, little-endian, then the program. crun keeps one too.
const filterFile = "seccomp.bpf"

// writeFilter writes filterFile, if sec (not nil) has a compiled program.
func writeFilter(dir string, sec *security.Config) error {
	if sec == nil || len(sec.Filter) == 0 {
		return nil
	}
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(sec.Filter)), uint64(sec.FilterFlags))
	return os.WriteFile(filepath.Join(dir, filterFile), append(b, sec.Filter...), 0o600)
}

// openFilter opens the container's filterFile, if it has one (nil if not).
func openFilter(dir string) (*os.File, error) {
	f, err := os.Open(filepath.Join(dir, filterFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the container's seccomp program: %w", err)
	}
	return f, nil
}

// readFilter reads a filterFile's content from f into sec.
func readFilter(f *os.File, sec *security.Config) error {
	b, err := io.ReadAll(f)
	if err != nil || len(b) <= 8 {
		return fmt.Errorf("read the container's seccomp program: %v (%d bytes)", err, len(b))
	}
	sec.FilterFlags, sec.Filter = uintptr(binary.LittleEndian.Uint64(b)), b[8:]
	return nil
}

// removeState removes the container's directory: state.json, config.json
// and filterFile by name, then the directory (os.RemoveAll's walk only if
// anything else is in it).
func removeState(dir string) {
	unix.Unlink(filepath.Join(dir, "state.json"))
	unix.Unlink(filepath.Join(dir, "config.json"))
	unix.Unlink(filepath.Join(dir, filterFile))
	if unix.Rmdir(dir) != nil {
		os.RemoveAll(dir)
	}
}

// gcStates removes the directories of containers whose parent is gone
// (killed before it or its sandbox could clean up).
func gcStates(root string) {
	ents, _ := readStates(root)
	for _, e := range ents {
		switch {
		case !e.parsed:
			// Being created right now (state.json is written in place), or
			// garbage: only old ones go.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				removeState(e.dir)
			}
		case !e.st.alive():
			removeState(e.dir)
		}
	}
}

// stateEntry is one directory under the state root and its state.json.
type stateEntry struct {
	os.DirEntry
	dir    string
	st     state
	parsed bool // state.json was read and decoded
}

// readStates reads every container directory under root (gcStates, ps).
func readStates(root string) ([]stateEntry, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	out := make([]stateEntry, 0, len(ents))
	for _, e := range ents {
		se := stateEntry{DirEntry: e, dir: filepath.Join(root, e.Name())}
		if b, err := os.ReadFile(filepath.Join(se.dir, "state.json")); err == nil {
			se.parsed = json.Unmarshal(b, &se.st) == nil
			se.st.dir = se.dir
		}
		out = append(out, se)
	}
	return out, nil
}

// alive tells whether the rabbitc that runs the container still does (its
// pid, with the start time that tells it from a reused one).
func (st *state) alive() bool {
	return st.ParentPid > 0 && procStartTime(st.ParentPid) == st.ParentTime
}

// procStartTime is field 22 of /proc/PID/stat (0 if the process is gone),
// which tells a live process from a reused pid.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
