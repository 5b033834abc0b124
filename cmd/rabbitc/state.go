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
// container: state.json (its status, pids, exit code), config.json (its
// spec, which exec reads), and for a detached one its log. It lives under
// $XDG_RUNTIME_DIR/rabbitc (or /tmp/rabbitc-UID). A foreground container's
// directory (and a detached one's with --rm) is removed on every exit path:
// by the parent, by the sandbox or the watchdog when the parent died, and by
// the next rabbitc when both were killed (gcStates). A detached container's
// stays, exited, until `rabbitc rm`.

// Status values of state.json.
const (
	statusRunning = "running"
	statusExited  = "exited"
)

// state is state.json.
type state struct {
	ID         string    `json:"id"`
	Name       string    `json:"name,omitempty"`
	Rootfs     string    `json:"rootfs"`
	Args       []string  `json:"args"`
	Created    time.Time `json:"created"`
	ParentPid  int       `json:"parentPid"` // the rabbitc that runs the container: the foreground one or the detached monitor
	ParentTime uint64    `json:"parentStartTime"`
	InitPid    int       `json:"initPid,omitempty"`
	InitTime   uint64    `json:"initStartTime,omitempty"` // tells init from a process that reused its pid
	Status     string    `json:"status"`                  // as last written; see current
	ExitCode   int       `json:"exitCode"`
	Finished   time.Time `json:"finished,omitzero"`
	Detached   bool      `json:"detached,omitempty"`
	AutoRemove bool      `json:"autoRemove,omitempty"` // removed when it exits
	Ports      []string  `json:"ports,omitempty"`
	Log        string    `json:"log,omitempty"`
	Image      string    `json:"image,omitempty"`    // the image's digest, for a container of an image
	ImageRef   string    `json:"imageRef,omitempty"` // as given to run
	// ContainerDir holds a container of an image's writes; it goes with
	// the container (rm, or --rm).
	ContainerDir string `json:"containerDir,omitempty"`
	StopSignal   string `json:"stopSignal,omitempty"` // the image's, for stop

	dir string // the container's directory, where readStates found it
}

// killedCode is the exit code of a container whose rabbitc died without
// recording one: the watchdog or the sandbox killed it (SIGKILL).
const killedCode = 128 + 9

// current is the container's status as it is now: a "running" container
// whose rabbitc is gone (killed; its guard killed the container) has
// exited, whatever state.json still says.
func (st *state) current() (status string, exitCode int) {
	if st.Status == statusRunning && !st.alive() {
		return statusExited, killedCode
	}
	return st.Status, st.ExitCode
}

// stateRoot returns the directory holding every container's state,
// creating it owned by the user and private.
func stateRoot() (string, error) {
	root := stateRootPath()
	if os.Getenv("XDG_RUNTIME_DIR") != "" {
		if err := os.MkdirAll(root, 0o700); err != nil {
			return "", fmt.Errorf("create state directory %s: %w (check $XDG_RUNTIME_DIR)", root, err)
		}
		return root, nil
	}
	// /tmp is shared: never follow a link or use a directory another user made.
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

// stateRootPath is where stateRoot keeps the state, without making it.
func stateRootPath() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "rabbitc")
	}
	return filepath.Join(os.TempDir(), "rabbitc-"+strconv.Itoa(os.Getuid()))
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
		{Dest: "/etc/hostname", Content: []byte(s.OCI.Hostname + "\n")},
		{Dest: "/etc/hosts", Content: netns.Hosts(s.Net, s.OCI.Hostname)},
		{Dest: "/etc/resolv.conf", Content: netns.ResolvConf(s.Net)},
	}
}

// createState writes the state of a container whose payload runs as
// initPid (the host's pid), started at initTime (procStartTime), with
// config.json, the spec (which exec reads). It is written once the payload
// runs: a start-up that fails or is killed leaves nothing to clean, and a
// foreground start-up does no file writes on the host. The directory is
// made here unless it exists already (a named or detached container's is
// made before the start: reserveName, the log). filter, if it has a
// compiled program that config lacks, goes to filterFile.
func createState(s *spec, config []byte, filter *security.Config, st *state) error {
	dir := s.StateDir
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	st.ID, st.Rootfs, st.Args, st.Created = s.ID, s.OCI.Root.Path, s.OCI.Process.Args, time.Now().UTC()
	st.ParentPid, st.ParentTime, st.Status = os.Getpid(), procStartTime(os.Getpid()), statusRunning
	// config.json first: a reader that finds state.json finds it too.
	err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o600)
	if err == nil {
		err = writeFilter(dir, filter)
	}
	if err == nil {
		err = writeState(dir, st)
	}
	if err != nil {
		removeState(dir)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// readConfig reads the spec of a container from its config.json.
func readConfig(dir string) (*spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read the container's config: %w", err)
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read the container's config %s: %w", filepath.Join(dir, "config.json"), err)
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

// writeState replaces state.json: a temporary file renamed over it, so a
// reader finds the old state or the new one, never a part; under the
// container's lock, which rm takes too.
func writeState(dir string, st *state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	tmp := filepath.Join(dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// lockDir takes an exclusive lock on a container's directory (flock on
// the directory itself).
func lockDir(dir string) (unlock func(), err error) {
	return lockPath(dir, unix.O_RDONLY|unix.O_DIRECTORY)
}

// lockPath opens path with flags (never through a symlink) and takes an
// exclusive flock on it, held until unlock.
func lockPath(path string, flags int) (unlock func(), err error) {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { unix.Close(fd) }, nil
}

// removeState removes the container's directory: state.json and
// config.json by name, then the directory (os.RemoveAll's walk only if
// anything else is in it: a name, a log).
func removeState(dir string) {
	unix.Unlink(filepath.Join(dir, "state.json"))
	unix.Unlink(filepath.Join(dir, "config.json"))
	unix.Unlink(filepath.Join(dir, filterFile))
	if unix.Rmdir(dir) != nil {
		os.RemoveAll(dir)
	}
}

// gcStates removes the directories of containers that are over and were to
// be removed: a foreground container (or a detached one with --rm) whose
// rabbitc was killed before it or its guard could clean up, and directories
// whose creator died before it wrote state.json. An exited detached
// container stays until `rabbitc rm`.
func gcStates(root string) {
	ents, _ := readStates(root)
	for _, e := range ents {
		switch {
		case !e.parsed:
			if !e.creating() {
				removeState(e.dir)
			}
		case e.st.AutoRemove && !e.st.alive():
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

// creating tells whether a directory without a (complete) state.json is a
// container being created: its creator, recorded in the name file of a
// named container, still runs; or, without one, it is less than a minute
// old (a foreground or detached container's start-up writes state.json
// within it).
func (e *stateEntry) creating() bool {
	if _, pid, start, err := readNameFile(e.dir); err == nil {
		return procAlive(pid, start)
	}
	info, err := e.Info()
	return err == nil && time.Since(info.ModTime()) < time.Minute
}

// readStates reads every container directory under root (gcStates, ps).
func readStates(root string) ([]stateEntry, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	out := make([]stateEntry, 0, len(ents))
	for _, e := range ents {
		if !e.IsDir() {
			continue // the lock
		}
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
// pid, with the start time that tells it from a reused one, and not a
// zombie).
func (st *state) alive() bool {
	return procAlive(st.ParentPid, st.ParentTime)
}

// procAlive tells whether pid is the process that started at start and
// has not exited.
func procAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, t := procStat(pid)
	return t == start && state != 'Z' && state != 'X'
}

// procStartTime is field 22 of /proc/PID/stat (0 if the process is gone),
// which tells a live process from a reused pid.
func procStartTime(pid int) uint64 {
	_, t := procStat(pid)
	return t
}

// procStat reads a process's state (field 3 of /proc/PID/stat) and start
// time (field 22); 0, 0 if it is gone.
func procStat(pid int) (byte, uint64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return f[0][0], v
}
