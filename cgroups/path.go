package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Manager is one container's cgroup v2 directory.
//
// Path is all that Destroy, Kill and Pids need, so a later verb (delete,
// kill --all, ps) can rebuild a Manager from the state it saved:
// cgroups.Manager{Path: st.CgroupPath}. Apply needs a Manager from New,
// which also knows the mount the path lies under.
type Manager struct {
	// Path is the cgroup's directory, absolute, under the cgroup2 mount.
	Path string
	// root is the cgroup2 mount point Path lies under: Apply enables
	// controllers in every directory from root down to Path's parent.
	root string
}

// New resolves cgroupsPath (linux.cgroupsPath) to a directory of the cgroup2
// hierarchy, the way runc's cgroupfs driver does:
//
//   - "/a/b" is relative to the cgroup2 mount;
//   - "a/b" is relative to the parent of this process's own cgroup (runc
//     takes the parent because the own cgroup already holds processes, and
//     the kernel lets no controller be enabled below a cgroup with
//     processes of its own);
//   - "" is the relative path id (runc names that cgroup after the
//     container, too).
//
// The path must stay under the mount and must not be the mount's root.
// "slice:prefix:name" (systemd) paths are refused: rabbitc has no systemd
// driver. r is checked here, so that create fails before anything starts.
func New(cgroupsPath, id string, r *specs.LinuxResources) (*Manager, error) {
	if _, err := files(r); err != nil {
		return nil, err
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer mi.Close()
	self, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	return resolve(cgroupsPath, id, mi, self)
}

// resolve is New on the contents of /proc/self/mountinfo and
// /proc/self/cgroup.
func resolve(cgroupsPath, id string, mountinfoR, selfCgroup io.Reader) (*Manager, error) {
	if isSystemdPath(cgroupsPath) {
		return nil, fmt.Errorf("cgroupsPath %q is a systemd \"slice:prefix:name\" path: rabbitc has no systemd cgroup driver "+
			"(use the engine's cgroupfs driver, e.g. dockerd --exec-opt native.cgroupdriver=cgroupfs or podman --cgroup-manager=cgroupfs)", cgroupsPath)
	}
	mounts, err := mountinfo.GetMountsFromReader(mountinfoR, mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	mnt := pickMount(mounts)
	if mnt == nil {
		return nil, errors.New("no cgroup2 hierarchy is mounted (rabbitc applies linux.resources and linux.cgroupsPath with cgroup v2 only)")
	}
	p := cgroupsPath
	if p == "" {
		p = id
	}
	if p == "" {
		return nil, errors.New("no cgroupsPath and no container id to name the cgroup after")
	}
	dir := filepath.Join(mnt.Mountpoint, p)
	if !filepath.IsAbs(p) {
		base, err := parentCgroup(selfCgroup, mnt)
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(mnt.Mountpoint, base, p)
	}
	if dir == mnt.Mountpoint {
		return nil, fmt.Errorf("cgroupsPath %q is the root of the cgroup2 hierarchy at %s (a container needs a cgroup of its own)", cgroupsPath, mnt.Mountpoint)
	}
	// filepath.Join has resolved any "..": "/../../etc" would be /sys/etc.
	// cgroupfs has no symlinks, so this lexical check confines the path.
	if !strings.HasPrefix(dir, mnt.Mountpoint+"/") {
		return nil, fmt.Errorf("cgroupsPath %q leaves the cgroup2 hierarchy mounted at %s", p, mnt.Mountpoint)
	}
	return &Manager{Path: dir, root: mnt.Mountpoint}, nil
}

// isSystemdPath tells a systemd "slice:prefix:name" cgroupsPath (what
// docker and podman send with their systemd driver, e.g.
// "system.slice:docker:ID") from a cgroupfs path, which engines write
// absolute.
func isSystemdPath(p string) bool {
	return strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/")
}

// pickMount prefers the usual places of the cgroup2 hierarchy: /sys/fs/cgroup
// (unified hosts), then /sys/fs/cgroup/unified (hybrid hosts), then whatever
// cgroup2 mount comes first.
func pickMount(mounts []*mountinfo.Info) *mountinfo.Info {
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, m := range mounts {
			if m.Mountpoint == want {
				return m
			}
		}
	}
	if len(mounts) > 0 {
		return mounts[0]
	}
	return nil
}

// parentCgroup returns the parent of this process's cgroup v2 (the "0::"
// line of /proc/self/cgroup), relative to the root of mount mnt. Both are
// written relative to this process's cgroup namespace.
func parentCgroup(selfCgroup io.Reader, mnt *mountinfo.Info) (string, error) {
	own := ""
	sc := bufio.NewScanner(selfCgroup)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			own = p
			break
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	if !strings.HasPrefix(own, "/") {
		return "", errors.New("/proc/self/cgroup has no cgroup v2 line (0::/PATH)")
	}
	rel, err := filepath.Rel(mnt.Root, filepath.Dir(own))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("this process's cgroup %s is outside the cgroup2 mount at %s (whose root is %s): give an absolute cgroupsPath", own, mnt.Mountpoint, mnt.Root)
	}
	return rel, nil
}
