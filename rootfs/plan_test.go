package rootfs

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMountPlan(t *testing.T) {
	render := func(ms []fsMount) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.dest+" "+m.fstype+" "+m.options())
		}
		return out
	}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"proc sys", render([]fsMount{procMount, sysfsMount}), []string{
			"/proc proc nosuid,nodev,noexec",
			"/sys sysfs ro,nosuid,nodev,noexec",
		}},
		{"dev with tty gid", render(devMounts(true)), []string{
			"/dev tmpfs nosuid,strictatime,mode=755,size=65536k",
			"/dev/pts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
			"/dev/shm tmpfs nosuid,nodev,noexec,mode=1777,size=65536k",
			"/dev/mqueue mqueue nosuid,nodev,noexec",
		}},
		{"dev single id", render(devMounts(false))[1:2], []string{
			"/dev/pts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620",
		}},
		{"mask dir", render([]fsMount{maskDir}), []string{" tmpfs ro,nosuid,nodev,noexec,size=0,mode=0555"}},
	}
	for _, tt := range tests {
		if strings.Join(tt.got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	want := "/proc/acpi /proc/asound /proc/kcore /proc/keys /proc/latency_stats /proc/timer_list " +
		"/proc/timer_stats /proc/sched_debug /proc/scsi /sys/firmware /sys/devices/virtual/powercap"
	if got := strings.Join(maskedPaths, " "); got != want {
		t.Errorf("maskedPaths = %s\nwant %s", got, want)
	}
	want = "/proc/bus /proc/fs /proc/irq /proc/sys /proc/sysrq-trigger"
	if got := strings.Join(readonlyPaths, " "); got != want {
		t.Errorf("readonlyPaths = %s\nwant %s", got, want)
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
