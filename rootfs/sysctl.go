package rootfs

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckSysctl refuses a sysctl the container has no namespace of its own
// for, as runc does: only the IPC namespace's kernel.msg*, kernel.sem,
// kernel.shm* and fs.mqueue.*, the UTS namespace's kernel.hostname and
// kernel.domainname, and net.* with a network namespace of its own are
// the container's; any other would change the host.
func CheckSysctl(key string, ipc, uts, net bool) error {
	if key == "" || strings.ContainsAny(key, "/\x00") || strings.Contains(key, "..") {
		return fmt.Errorf("sysctl %q: not a sysctl name", key)
	}
	switch {
	case ipc && (strings.HasPrefix(key, "kernel.msg") || key == "kernel.sem" || strings.HasPrefix(key, "kernel.shm") || strings.HasPrefix(key, "fs.mqueue.")):
		return nil
	case uts && (key == "kernel.hostname" || key == "kernel.domainname"):
		return nil
	case net && strings.HasPrefix(key, "net."):
		return nil
	}
	return fmt.Errorf("sysctl %q is not in a namespace of the container's own (only IPC, UTS and network sysctls of namespaces it does not share may be set)", key)
}

// writeSysctls writes each value under the container's /proc/sys,
// resolved in the root (proc is mounted: Setup's mounts are done).
func (r *root) writeSysctls(sysctl map[string]string) error {
	keys := make([]string, 0, len(sysctl))
	for k := range sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		h, err := r.open(p)
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
		fd, err := unix.Open(fdPath(h), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		h.Close()
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
		// Only into the fresh procfs: never a file of the rootfs on disk
		// where no /proc was mounted.
		var st unix.Statfs_t
		if err := unix.Fstatfs(fd, &st); err != nil || int64(st.Type) != procMagic {
			unix.Close(fd)
			return fmt.Errorf("sysctl %s: %s is not on a procfs (mount proc on /proc)", k, p)
		}
		_, err = unix.Write(fd, []byte(sysctl[k]))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, sysctl[k], err)
		}
	}
	return nil
}
