package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Container names (--name) are unique among the containers of a user,
// running or exited. A name is claimed before the container starts, under
// a lock on the state root, by making the container's directory with a
// file `name` in it ("NAME PID STARTTIME": the claimant, so that a claim
// whose rabbitc died before the container ran is seen as free). Once the
// container runs, state.json carries the name; removing the directory frees
// it. Names are checked where an ID is accepted (findState): an exact name
// wins over an ID prefix, as in docker.

// validName is docker's rule for container names, [a-zA-Z0-9][a-zA-Z0-9_.-]*
// (by hand: a package-level regexp would be compiled at every start of every
// stage of the binary).
func validName(name string) bool {
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '_' && r != '.' && r != '-') {
			return false
		}
	}
	return name != ""
}

func checkName(name string) error {
	if len(name) > 128 || !validName(name) {
		return fmt.Errorf("--name %q: invalid name (letters, digits, '_', '.' and '-', starting with a letter or digit)", name)
	}
	return nil
}

// reserveName claims name for the container in dir (under root), making
// the directory.
func reserveName(root, dir, name string) error {
	unlock, err := lockRoot(root)
	if err != nil {
		return err
	}
	defer unlock()
	gcStates(root) // the names of containers that are over and were to go
	ents, err := readStates(root)
	if err != nil {
		return fmt.Errorf("read state directory %s: %w", root, err)
	}
	for _, e := range ents {
		if e.nameOf() == name {
			return fmt.Errorf("--name %s: the name is in use by container %s (remove it with rabbitc rm %s, or choose another name)", name, e.Name()[:12], name)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	content := fmt.Sprintf("%s %d %d\n", name, os.Getpid(), procStartTime(os.Getpid()))
	if err := os.WriteFile(filepath.Join(dir, "name"), []byte(content), 0o600); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// nameOf is the name a directory holds: its state's, or while the
// container is being created, its live claim's.
func (e *stateEntry) nameOf() string {
	if e.parsed {
		return e.st.Name
	}
	name, pid, start, err := readNameFile(e.dir)
	if err != nil || !procAlive(pid, start) {
		return ""
	}
	return name
}

// readNameFile reads a claim written by reserveName.
func readNameFile(dir string) (name string, pid int, start uint64, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "name"))
	if err != nil {
		return "", 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return "", 0, 0, errors.New("bad name file")
	}
	pid, _ = strconv.Atoi(f[1])
	start, _ = strconv.ParseUint(f[2], 10, 64)
	return f[0], pid, start, nil
}

// lockRoot takes an exclusive lock on the state root (a lock file in it),
// for what must see and change the set of containers at once.
func lockRoot(root string) (unlock func(), err error) {
	return lockPath(filepath.Join(root, "lock"), unix.O_RDWR|unix.O_CREAT)
}
