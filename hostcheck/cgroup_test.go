package hostcheck

import (
	"slices"
	"testing"
)

func TestV1Controllers(t *testing.T) {
	hybrid := "12:pids:/user.slice\n11:cpu,cpuacct:/\n3:name=systemd:/user.slice/x.scope\n2:memory:/\n0::/user.slice/x.scope\n"
	for _, tc := range []struct {
		text string
		want []string
	}{
		{hybrid, []string{"cpu", "cpuacct", "memory", "pids"}},
		{"0::/user.slice/user-1000.slice/session-2.scope\n", nil},
		{"1:name=systemd:/\n", nil},
		{"", nil},
	} {
		if got := v1Controllers(tc.text); !slices.Equal(got, tc.want) {
			t.Errorf("v1Controllers(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestCgroupVerdict(t *testing.T) {
	svc := "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service"
	for _, tc := range []struct {
		h    cgroupHost
		want string
	}{
		{cgroupHost{mount: "/sys/fs/cgroup", root: []string{"cpu", "io", "memory", "pids"}, service: svc, delegated: []string{"cpu", "memory", "pids"}},
			"ok       cgroups: cgroup v2, delegated to you: cpu memory pids"},
		{cgroupHost{mount: "/sys/fs/cgroup", root: []string{"cpu", "memory"}, service: svc},
			"warning  cgroups: cgroup v2 (cpu memory), none delegated to you in " + svc + ": containers run, but an OCI bundle's cgroup and limits cannot be set — fix (as root): " + delegate},
		{cgroupHost{mount: "/sys/fs/cgroup", root: []string{"cpu", "memory"}},
			"warning  cgroups: cgroup v2 (cpu memory), but no systemd service user@1000.service delegates any to you: containers run, but an OCI bundle's cgroup and limits cannot be set — fix (as root): loginctl enable-linger 1000"},
		{cgroupHost{mount: "/sys/fs/cgroup/unified", v1: []string{"cpu", "memory"}},
			"warning  cgroups: hybrid: the controllers (cpu memory) are on cgroup v1, cgroup v2 at /sys/fs/cgroup/unified has none: containers run, but an OCI bundle's cgroup and limits cannot be set — fix (as root): " + bootUnified},
		{cgroupHost{v1: []string{"cpu", "memory"}},
			"warning  cgroups: cgroup v1 only (cpu memory): containers run, but an OCI bundle's cgroup and limits cannot be set — fix (as root): " + bootUnified},
	} {
		if got := cgroupVerdict(tc.h, 1000).String(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}
