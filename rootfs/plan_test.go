package rootfs

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMountPlan: DefaultMounts, taken apart as Setup does, are the mounts of
// rabbitc run before the OCI config (today's table, flag for flag).
func TestMountPlan(t *testing.T) {
	var got []string
	for _, m := range DefaultMounts() {
		o := parseMountOptions(m.Options)
		fm := freshMount(m, m.Destination, m.Type, o)
		got = append(got, fm.dest+" "+fm.fstype+" "+fm.options())
	}
	want := []string{
		"/proc proc nosuid,nodev,noexec",
		"/dev tmpfs nosuid,strictatime,mode=755,size=65536k",
		"/dev/pts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
		"/dev/shm tmpfs nosuid,nodev,noexec,mode=1777,size=65536k",
		"/dev/mqueue mqueue nosuid,nodev,noexec",
		"/sys sysfs ro,nosuid,nodev,noexec",
		"/sys/fs/cgroup cgroup ro,nosuid,nodev,noexec,relatime",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("DefaultMounts:\n got %q\nwant %q", got, want)
	}
	if got := (fsMount{fstype: "tmpfs", flags: maskDir.flags, data: maskDir.data}).options(); got != "ro,nosuid,nodev,noexec,size=0,mode=0555" {
		t.Errorf("mask dir: %s", got)
	}
}

// TestDevptsData: a gid= or uid= the user namespace does not map is dropped
// (devpts would refuse the mount), the rest kept in order.
func TestDevptsData(t *testing.T) {
	singleID := func(idMap string, id uint32) (bool, error) { return id == 0, nil }
	subids := func(idMap string, id uint32) (bool, error) { return id <= 65536, nil }
	const def = "newinstance,ptmxmode=0666,mode=0620,gid=5"
	for _, tc := range []struct {
		data   string
		mapped func(string, uint32) (bool, error)
		want   string
	}{
		{def, singleID, "newinstance,ptmxmode=0666,mode=0620"},
		{def, subids, def},
		{"gid=0,uid=0,mode=0620", singleID, "gid=0,uid=0,mode=0620"},
		{"uid=1000,newinstance", singleID, "newinstance"},
		{"", singleID, ""},
	} {
		if got, err := devptsData(tc.data, tc.mapped); err != nil || got != tc.want {
			t.Errorf("devptsData(%q) = %q, %v; want %q", tc.data, got, err, tc.want)
		}
	}
	if _, err := devptsData("gid=tty", singleID); err == nil {
		t.Error("devptsData(gid=tty): want an error")
	}
	var asked []string
	devptsData("uid=1,gid=2", func(idMap string, id uint32) (bool, error) {
		asked = append(asked, fmt.Sprintf("%s %d", idMap, id))
		return true, nil
	})
	if got := strings.Join(asked, "; "); got != "/proc/self/uid_map 1; /proc/self/gid_map 2" {
		t.Errorf("devptsData asked %s", got)
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	want := "/proc/acpi /proc/asound /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list " +
		"/proc/timer_stats /proc/sched_debug /proc/scsi /sys/firmware /sys/devices/virtual/powercap"
	if got := strings.Join(DefaultMaskedPaths, " "); got != want {
		t.Errorf("DefaultMaskedPaths = %s\nwant %s", got, want)
	}
	want = "/proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger"
	if got := strings.Join(DefaultReadonlyPaths, " "); got != want {
		t.Errorf("DefaultReadonlyPaths = %s\nwant %s", got, want)
	}
	if devices[0].name != "null" || devices[0].major != 1 || devices[0].minor != 3 {
		t.Errorf("devices[0] = %+v, want null 1:3 (Setup uses it for masking)", devices[0])
	}
}

func TestKeptFlags(t *testing.T) {
	tests := []struct {
		statfs int64
		want   uintptr
	}{
		{0, 0},
		{stNosuid | stNodev, unix.MS_NOSUID | unix.MS_NODEV},
		{stNoexec | stRelatime, unix.MS_NOEXEC | unix.MS_RELATIME},
		{stRdonly | stNoatime | stNodiratime | stNosymfollow, unix.MS_RDONLY | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_NOSYMFOLLOW},
		{0x10 | 0x40, 0}, // synchronous, mandlock: not repeated
	}
	for _, tt := range tests {
		if got := keptFlags(tt.statfs); got != tt.want {
			t.Errorf("keptFlags(%#x) = %s, want %s", tt.statfs, flagNames(got), flagNames(tt.want))
		}
	}
	if got := flagNames(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | 1<<30); got != "ro,remount,bind,0x40000000" {
		t.Errorf("flagNames = %q", got)
	}
}

func TestIDMapped(t *testing.T) {
	tests := []struct {
		gidMap string
		id     uint32
		want   bool
	}{
		{"         0       1000          1\n", 5, false},
		{"         0       1000          1\n", 0, true},
		{"         0       1000          1\n         1     100000      65536\n", 5, true},
		{"         0       1000          1\n         1     100000          4\n", 5, false},
		{"         0       1000          1\n         1     100000          5\n", 5, true},
		{"", 5, false},
	}
	for _, tt := range tests {
		got, err := idMapped(strings.NewReader(tt.gidMap), tt.id)
		if err != nil || got != tt.want {
			t.Errorf("idMapped(%q, %d) = %v, %v; want %v", tt.gidMap, tt.id, got, err, tt.want)
		}
	}
	if _, err := idMapped(strings.NewReader("x 1 y\n"), 5); err == nil {
		t.Error("idMapped with a bad line: want an error")
	}
}
