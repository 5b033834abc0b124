package cgroups

import (
	"strings"
	"testing"
)

// Mount tables as /proc/self/mountinfo shows them.
const (
	hybridMounts = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	unifiedMounts = `25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
99 25 0:50 / /tmp/other rw,relatime - cgroup2 none rw
`
	// A container whose /sys/fs/cgroup is its own cgroup, bound (root /ctr).
	boundMounts = `25 22 0:23 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`
	otherMount = `99 22 0:50 / /tmp/cg rw,relatime - cgroup2 none rw
`
	v1Only = `34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`
	userCgroup = "1:name=systemd:/user.slice\n0::/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope\n"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name, mounts, self, cgPath, id string
		want, err                      string
	}{
		{"absolute, hybrid", hybridMounts, "0::/\n", "/docker/abc", "x", "/sys/fs/cgroup/unified/docker/abc", ""},
		{"absolute, unified preferred to others", unifiedMounts, "0::/\n", "/a/b", "x", "/sys/fs/cgroup/a/b", ""},
		{"absolute, the only mount", otherMount, "0::/\n", "/a", "x", "/tmp/cg/a", ""},
		{"relative: parent of own cgroup", unifiedMounts, userCgroup, "rabbitc/c1", "x",
			"/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/rabbitc/c1", ""},
		{"empty: the id, relative", unifiedMounts, userCgroup, "", "c1",
			"/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/c1", ""},
		{"relative at the root cgroup", hybridMounts, "0::/\n", "c1", "x", "/sys/fs/cgroup/unified/c1", ""},
		{"relative, mount rooted at own parent", boundMounts, "0::/ctr/init\n", "sub", "x", "/sys/fs/cgroup/sub", ""},
		{"inner .. stays inside", unifiedMounts, "0::/\n", "/a/../b", "x", "/sys/fs/cgroup/b", ""},

		{"escape, absolute", unifiedMounts, "0::/\n", "/../../etc", "x", "", `cgroupsPath "/../../etc" leaves the cgroup2 hierarchy mounted at /sys/fs/cgroup`},
		{"escape, relative", unifiedMounts, "0::/a/b\n", "../../../x", "x", "", "leaves the cgroup2 hierarchy"},
		{"escape, id", unifiedMounts, "0::/\n", "", "../../x", "", "leaves the cgroup2 hierarchy"},
		{"the mount's root", unifiedMounts, "0::/\n", "/", "x", "", "is the root of the cgroup2 hierarchy"},
		{"the mount's root by ..", unifiedMounts, "0::/\n", "/a/..", "x", "", "is the root of the cgroup2 hierarchy"},
		{"own cgroup outside the mount", boundMounts, "0::/other/init\n", "sub", "x", "", "is outside the cgroup2 mount at /sys/fs/cgroup"},
		{"systemd", unifiedMounts, "0::/\n", "system.slice:docker:abc", "x", "", `cgroupsPath "system.slice:docker:abc" is a systemd "slice:prefix:name" path: rabbitc has no systemd cgroup driver`},
		{"systemd, default slice", unifiedMounts, "0::/\n", ":libpod:abc", "x", "", "rabbitc has no systemd cgroup driver"},
		{"no cgroup2", v1Only, "0::/\n", "/a", "x", "", "no cgroup2 hierarchy is mounted"},
		{"no v2 line", unifiedMounts, "1:memory:/\n", "a", "x", "", "no cgroup v2 line"},
		{"nothing to name it", unifiedMounts, "0::/\n", "", "", "", "no cgroupsPath and no container id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := resolve(tc.cgPath, tc.id, strings.NewReader(tc.mounts), strings.NewReader(tc.self))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error containing %q", m, err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Path != tc.want {
				t.Errorf("path %s, want %s", m.Path, tc.want)
			}
		})
	}
}
