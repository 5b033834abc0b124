package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// delegationFix ends an error whose cause is a cgroup tree the user may not
// write to.
const delegationFix = " (rootless cgroups need a delegated cgroup v2 subtree: systemd's Delegate=yes on the user's unit, or run as root)"

// Apply creates m.Path (and its missing parents), enables the controllers r
// needs in each parent's cgroup.subtree_control where the kernel lets it,
// writes r's limits, and moves pid into the cgroup last, so that the process
// never runs unlimited there. On error, the directories Apply created are
// removed again. Errors wrap the cause (errors.Is(err, fs.ErrPermission)
// tells a missing delegation) and read like runc's.
func (m *Manager) Apply(pid int, r *specs.LinuxResources) error {
	if err := m.apply(pid, r); err != nil {
		return fmt.Errorf("unable to apply cgroup configuration: %w", err)
	}
	return nil
}

func (m *Manager) apply(pid int, r *specs.LinuxResources) (err error) {
	writes, err := files(r)
	if err != nil {
		return err
	}
	if m.root == "" || !strings.HasPrefix(m.Path, m.root+"/") {
		return fmt.Errorf("cgroup %s: not a Manager from cgroups.New", m.Path)
	}
	created, err := m.mkdirAll(controllers(writes))
	defer func() {
		if err != nil {
			for _, dir := range slices.Backward(created) {
				_ = unix.Rmdir(dir)
			}
		}
	}()
	if err != nil {
		return withFix(err)
	}
	if pids, err := m.Pids(); err != nil {
		return err
	} else if len(pids) > 0 {
		return fmt.Errorf("container's cgroup is not empty: %d process(es) found in %s", len(pids), m.Path)
	}
	for _, f := range writes {
		if err := m.write(f); err != nil {
			return err
		}
	}
	if err := writeFile(m.Path, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return withFix(fmt.Errorf("add pid %d to %s: %w", pid, m.Path, err))
	}
	return nil
}

// mkdirAll creates m.Path like mkdir -p, from the mount down. Before
// descending, it enables the controllers in the parent's subtree_control
// where they are available and not yet enabled; a refusal there (no
// delegation, or processes in the parent) is not an error yet: the write of
// a limit then names the missing controller. It returns the directories it
// created, parents first.
func (m *Manager) mkdirAll(ctrls []string) ([]string, error) {
	var created []string
	dir := m.root
	rel := strings.TrimPrefix(m.Path, m.root+"/")
	for part := range strings.SplitSeq(rel, "/") {
		enableControllers(dir, ctrls)
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err == nil {
			created = append(created, dir)
		} else if !errors.Is(err, fs.ErrExist) {
			return created, err
		}
	}
	return created, nil
}

// enableControllers writes "+c" for each controller of ctrls that dir's
// cgroup.controllers offers and its cgroup.subtree_control lacks.
func enableControllers(dir string, ctrls []string) {
	avail := fields(dir, "cgroup.controllers")
	enabled := fields(dir, "cgroup.subtree_control")
	for _, c := range ctrls {
		if slices.Contains(avail, c) && !slices.Contains(enabled, c) {
			_ = writeFile(dir, "cgroup.subtree_control", "+"+c)
		}
	}
}

// controllers lists the controllers the files belong to (the part of the
// name before the first dot), without cgroup v2's core ("cgroup.*").
func controllers(fs []file) []string {
	var ctrls []string
	for _, f := range fs {
		c, _, _ := strings.Cut(f.name, ".")
		if c != "cgroup" && !slices.Contains(ctrls, c) {
			ctrls = append(ctrls, c)
		}
	}
	return ctrls
}

// write writes one limit. A missing file most often means a missing
// controller: on a hybrid host, it is bound to cgroup v1 and the cgroup2
// hierarchy never has it; otherwise a parent did not enable it for its
// children. The error then says which.
func (m *Manager) write(f file) error {
	err := writeFile(m.Path, f.name, f.value)
	if err == nil {
		return nil
	}
	c, _, _ := strings.Cut(f.name, ".")
	if errors.Is(err, fs.ErrNotExist) && c != "cgroup" && !slices.Contains(fields(m.Path, "cgroup.controllers"), c) {
		where := filepath.Join(m.Path, f.name)
		if !slices.Contains(fields(m.root, "cgroup.controllers"), c) {
			return fmt.Errorf("write %s: the %s controller is not in the cgroup2 hierarchy at %s (a hybrid host binds it to cgroup v1: boot with systemd.unified_cgroup_hierarchy=1)", where, c, m.root)
		}
		return fmt.Errorf("write %s: the %s controller is not enabled for this cgroup by its parent's cgroup.subtree_control%s", where, c, delegationFix)
	}
	return withFix(fmt.Errorf("write %q to %s: %w", f.value, filepath.Join(m.Path, f.name), err))
}

// withFix adds the delegation fix to a permission error.
func withFix(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w%s", err, delegationFix)
	}
	return err
}

// writeFile writes value to an existing file of dir in one write(2), as
// cgroupfs wants it; it never creates the file.
func writeFile(dir, name, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fields is a cgroup file's words; none if it cannot be read.
func fields(dir, name string) []string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// Pids lists the processes in the cgroup and in the cgroups below it,
// sorted (for ps).
func (m *Manager) Pids() ([]int, error) {
	dirs, err := m.subtree()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // a sub-cgroup removed meanwhile
		} else if err != nil {
			return nil, err
		}
		for _, w := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(w)
			if err != nil {
				return nil, fmt.Errorf("%s/cgroup.procs: %q is no pid", dir, w)
			}
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// subtree is m.Path and the cgroups below it, parents first.
func (m *Manager) subtree() ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(m.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != m.Path && errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	return dirs, err
}

// Kill sends sig to every process of the cgroup and the cgroups below it
// (kill --all). SIGKILL goes through cgroup.kill where the kernel has it
// (5.14+), which no fork can race. Otherwise the cgroup is frozen while the
// pids are read and signalled, as runc does, so that no child forked
// meanwhile escapes (a cgroup already frozen by pause stays frozen; the
// signals arrive when it is resumed).
func (m *Manager) Kill(sig unix.Signal) error {
	if sig == unix.SIGKILL {
		err := writeFile(m.Path, "cgroup.kill", "1")
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return wrapKill(m.Path, err)
		}
		if _, serr := os.Stat(m.Path); serr != nil {
			return wrapKill(m.Path, serr)
		}
	}
	if thaw := m.freeze(); thaw != nil {
		defer thaw()
	}
	pids, err := m.Pids()
	if err != nil {
		return wrapKill(m.Path, err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return wrapKill(m.Path, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	return nil
}

func wrapKill(path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("signal the processes of cgroup %s: %w", path, err)
}

// freeze freezes the cgroup and waits (up to about a second) until the
// kernel says it is frozen. It returns the thaw, or nil when it did not
// freeze: no cgroup.freeze (before 5.2), no permission, or already frozen.
func (m *Manager) freeze() (thaw func()) {
	if b, err := os.ReadFile(filepath.Join(m.Path, "cgroup.freeze")); err != nil || strings.TrimSpace(string(b)) != "0" {
		return nil
	}
	if err := writeFile(m.Path, "cgroup.freeze", "1"); err != nil {
		return nil
	}
	for range 100 {
		if slices.Contains(lines(m.Path, "cgroup.events"), "frozen 1") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() { _ = writeFile(m.Path, "cgroup.freeze", "0") }
}

func lines(dir, name string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return strings.Split(string(b), "\n")
}

// Destroy removes the cgroup and any cgroup below it, for delete, once the
// processes are gone. A cgroup whose last process has just exited may
// still be busy for a moment: each rmdir is retried on EBUSY, 7 times
// over about 0.6s, as runc does. A cgroup already gone is no error. Destroy leaves the parents
// (e.g. /docker of /docker/ID) where they are.
func (m *Manager) Destroy() error {
	dirs, err := m.subtree()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", m.Path, err)
	}
	for _, dir := range slices.Backward(dirs) {
		if err := rmdirBusy(dir); err != nil {
			return fmt.Errorf("remove cgroup %s: %w", m.Path, err)
		}
	}
	return nil
}

func rmdirBusy(dir string) error {
	delay := 10 * time.Millisecond
	for try := 0; ; try++ {
		err := unix.Rmdir(dir)
		switch {
		case err == nil || err == unix.ENOENT:
			return nil
		case err != unix.EBUSY || try == 6:
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		time.Sleep(delay)
		delay *= 2
	}
}
