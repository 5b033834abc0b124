package hostcheck

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupHost is what Cgroups found: the cgroup v2 mount, the controllers
// still on cgroup v1, and what systemd delegates to the user.
type cgroupHost struct {
	mount     string   // the cgroup2 mount: /sys/fs/cgroup, /sys/fs/cgroup/unified (hybrid) or ""
	v1        []string // controllers on cgroup v1 hierarchies
	root      []string // the v2 root's cgroup.controllers
	service   string   // the user's systemd service cgroup ("" if there is none)
	delegated []string // its cgroup.subtree_control
}

// Cgroups names the cgroup layout and the controllers delegated to the
// user. rabbitc needs a cgroup only for an OCI bundle that asks for one or
// for limits, so nothing here is an error.
func Cgroups(uid int) Check {
	b, _ := os.ReadFile("/proc/self/cgroup")
	h := cgroupHost{mount: cgroup2Mount(), v1: v1Controllers(string(b))}
	if h.mount != "" {
		h.root = readWords(h.mount + "/cgroup.controllers")
		svc := fmt.Sprintf("%s/user.slice/user-%d.slice/user@%d.service", h.mount, uid, uid)
		if _, err := os.Stat(svc); err == nil {
			h.service, h.delegated = svc, readWords(svc+"/cgroup.subtree_control")
		}
	}
	return cgroupVerdict(h, uid)
}

const (
	bootUnified = `sed -i 's/^GRUB_CMDLINE_LINUX="/&systemd.unified_cgroup_hierarchy=1 /' /etc/default/grub && update-grub && reboot`
	delegate    = `mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\nDelegate=cpu cpuset io memory pids\n' > /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload`
	limitsNote  = ": containers run, but an OCI bundle's cgroup and limits cannot be set"
)

func cgroupVerdict(h cgroupHost, uid int) Check {
	v1 := strings.Join(h.v1, " ")
	switch {
	case h.mount == "":
		return rootFix(Warning, "cgroups", "cgroup v1 only ("+v1+")"+limitsNote, bootUnified)
	case len(h.v1) > 0:
		return rootFix(Warning, "cgroups", "hybrid: the controllers ("+v1+") are on cgroup v1, cgroup v2 at "+h.mount+" has none"+limitsNote, bootUnified)
	case h.service == "":
		return rootFix(Warning, "cgroups", fmt.Sprintf("cgroup v2 (%s), but no systemd service user@%d.service delegates any to you", strings.Join(h.root, " "), uid)+limitsNote,
			fmt.Sprintf("loginctl enable-linger %d", uid))
	case len(h.delegated) == 0:
		return rootFix(Warning, "cgroups", "cgroup v2 ("+strings.Join(h.root, " ")+"), none delegated to you in "+h.service+limitsNote, delegate)
	}
	return ok("cgroups", "cgroup v2, delegated to you: "+strings.Join(h.delegated, " "))
}

// CgroupLayout names the layout in a few words, for rabbitc info.
func CgroupLayout() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	mount, v1 := cgroup2Mount(), v1Controllers(string(b))
	switch {
	case mount == "":
		return "v1"
	case len(v1) > 0:
		return "hybrid (v1 controllers, v2 at " + mount + ")"
	}
	return "v2 (" + mount + ")"
}

// cgroup2Mount is where cgroup v2 is mounted: /sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid host.
func cgroup2Mount() string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p
		}
	}
	return ""
}

// v1Controllers lists the controllers of the cgroup v1 hierarchies in a
// /proc/PID/cgroup text ("4:cpu,cpuacct:/x"; v2's line is "0::/x"), sorted,
// without named hierarchies (name=systemd).
func v1Controllers(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[0] == "0" {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c != "" && !strings.HasPrefix(c, "name=") {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func readWords(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}
