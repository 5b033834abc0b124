package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestParseMountOptions takes option lists apart as runc does.
func TestParseMountOptions(t *testing.T) {
	tests := []struct {
		opts []string
		want mountOptions
	}{
		{nil, mountOptions{}},
		{[]string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			mountOptions{flags: unix.MS_NOSUID | unix.MS_STRICTATIME, data: "mode=755,size=65536k"}},
		{[]string{"ro", "rw"}, mountOptions{}},
		{[]string{"nosuid", "suid", "nodev", "noexec", "exec"}, mountOptions{flags: unix.MS_NODEV}},
		{[]string{"defaults", "sync", "dirsync", "mand", "noatime", "nodiratime", "lazytime", "nosymfollow"},
			mountOptions{flags: unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC | unix.MS_MANDLOCK | unix.MS_NOATIME |
				unix.MS_NODIRATIME | unix.MS_LAZYTIME | unix.MS_NOSYMFOLLOW}},
		{[]string{"sync", "async", "mand", "nomand", "atime", "diratime", "relatime", "norelatime", "strictatime", "nostrictatime", "lazytime", "nolazytime"},
			mountOptions{}},
		{[]string{"remount", "ro"}, mountOptions{flags: unix.MS_REMOUNT | unix.MS_RDONLY}},
		{[]string{"bind"}, mountOptions{bind: true}},
		{[]string{"rbind", "nosuid", "noexec", "nodev", "ro"},
			mountOptions{bind: true, rec: true, flags: unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV | unix.MS_RDONLY}},
		{[]string{"rprivate", "shared", "rslave", "unbindable"}, mountOptions{propagation: []uintptr{
			unix.MS_PRIVATE | unix.MS_REC, unix.MS_SHARED, unix.MS_SLAVE | unix.MS_REC, unix.MS_UNBINDABLE}}},
		{[]string{"private", "rshared", "slave", "runbindable"}, mountOptions{propagation: []uintptr{
			unix.MS_PRIVATE, unix.MS_SHARED | unix.MS_REC, unix.MS_SLAVE, unix.MS_UNBINDABLE | unix.MS_REC}}},
		{[]string{"rro", "rnosuid", "rnodev", "rexec"}, mountOptions{
			attrSet: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, attrClr: unix.MOUNT_ATTR_NOEXEC}},
		{[]string{"rro", "rrw"}, mountOptions{attrClr: unix.MOUNT_ATTR_RDONLY}},
		{[]string{"rnoatime"}, mountOptions{attrSet: unix.MOUNT_ATTR_NOATIME, attrClr: unix.MOUNT_ATTR__ATIME}},
		{[]string{"rrelatime"}, mountOptions{attrClr: unix.MOUNT_ATTR__ATIME}},
		{[]string{"tmpcopyup", "X-mount.mkdir", "userxattr", "gid=5", "", "lowerdir=/a:/b"},
			mountOptions{data: "userxattr,gid=5,lowerdir=/a:/b"}},
		{[]string{"idmap"}, mountOptions{idmap: true}},
		{[]string{"rbind", "ridmap"}, mountOptions{bind: true, rec: true, idmap: true}},
	}
	for _, tt := range tests {
		if got := parseMountOptions(tt.opts); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseMountOptions(%q) =\n %+v\nwant %+v", tt.opts, got, tt.want)
		}
	}
	for _, s := range []string{"", "rslave", "private", "rshared", "unbindable"} {
		if _, err := parsePropagation(s); err != nil {
			t.Errorf("parsePropagation(%q): %v", s, err)
		}
	}
	if p, _ := parsePropagation(""); p != unix.MS_SLAVE|unix.MS_REC {
		t.Errorf("default propagation %#x, want rslave", p)
	}
	if _, err := parsePropagation("rbind"); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("parsePropagation(rbind) = %v, want a one-line error", err)
	}
}

// runcRootlessMounts are the mounts `runc spec --rootless` writes: /sys is a
// bind of the host's /sys (type "none"), devpts has no gid=.
func runcRootlessMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// TestSetupOCI runs Setup, PivotRoot and Finish with mounts lists rabbitc
// run does not write (a bundle's config.json) and checks the container's
// view: childFull's checks and the test's own.
func TestSetupOCI(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(tr testTree) Config
		newNet  bool
		checks  []mountCheck
		subdirs []string // made in the rootfs first
	}{
		{name: "runc spec --rootless", cfg: func(tr testTree) Config {
			cfg := tr.config()
			cfg.Mounts, cfg.HostNetwork = runcRootlessMounts(), true
			return cfg
		}, checks: []mountCheck{
			{Path: "/sys", Magic: sysfsMagic, Opts: []string{"ro", "nosuid", "nodev", "noexec"}},
			{Path: "/dev/pts", Magic: devptsMagic, Opts: []string{"nosuid", "noexec"}},
		}},
		{name: "runc spec --rootless, own network", newNet: true, cfg: func(tr testTree) Config {
			cfg := tr.config()
			cfg.Mounts = runcRootlessMounts()
			return cfg
		}, checks: []mountCheck{{Path: "/sys", Magic: sysfsMagic, Opts: []string{"ro", "nosuid", "nodev", "noexec"}}}},
		{name: "bind rprivate ro nosuid", newNet: true, cfg: func(tr testTree) Config {
			return tr.config(
				specs.Mount{Destination: "/priv", Type: "bind", Source: tr.base + "/vol-a", Options: []string{"rbind", "rprivate", "ro", "nosuid"}},
				specs.Mount{Destination: "/shared", Type: "none", Source: tr.base + "/vol-b", Options: []string{"bind", "rshared", "nodev"}})
		}, checks: []mountCheck{
			{Path: "/priv", Opts: []string{"ro", "nosuid"}, Optional: "private"},
			{Path: "/shared", Opts: []string{"rw", "nodev"}, NoOpts: []string{"nosuid"}, Optional: "shared"},
		}},
		{name: "other file systems", newNet: true, cfg: func(tr testTree) Config {
			return tr.config(
				specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "scratch", Options: []string{"nosuid", "nodev", "size=1m", "mode=0710"}},
				specs.Mount{Destination: "/var/mq", Type: "mqueue", Source: "mqueue", Options: []string{"noexec", "ro"}})
		}, checks: []mountCheck{
			{Path: "/scratch", Magic: tmpfsMagic, Opts: []string{"rw", "nosuid", "nodev"}, NoOpts: []string{"noexec"}, Mode: 0o710, Bytes: 1 << 20},
			{Path: "/var/mq", Magic: mqueueMagic, Opts: []string{"ro", "noexec"}},
		}},
		{name: "root rshared", newNet: true, cfg: func(tr testTree) Config {
			cfg := tr.config()
			cfg.RootPropagation = "rshared"
			return cfg
		}, checks: []mountCheck{{Path: "/", Optional: "shared"}}},
		{name: "root private", newNet: true, cfg: func(tr testTree) Config {
			cfg := tr.config()
			cfg.RootPropagation = "private"
			return cfg
		}, checks: []mountCheck{{Path: "/", Optional: "private"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t, true)
			for _, d := range []string{"vol-a", "vol-b"} {
				mustMkdir(t, filepath.Join(tr.base, d))
				mustWrite(t, filepath.Join(tr.base, d, "hello.txt"), "hello\n")
			}
			run(t, "full", childArgs{Config: tt.cfg(tr), Marker: tr.marker, Checks: tt.checks}, tt.newNet)
		})
	}
}

// TestSetupDevices binds a device of linux.devices from the host, into a
// directory of /dev the rootfs does not have.
func TestSetupDevices(t *testing.T) {
	var found []specs.LinuxDevice
	for _, p := range []string{"/dev/fuse", "/dev/net/tun", "/dev/kmsg"} {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR {
			found = append(found, specs.LinuxDevice{Path: p, Type: "c", Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev))})
		}
	}
	if len(found) == 0 {
		t.Skip("the host has none of /dev/fuse, /dev/net/tun, /dev/kmsg")
	}
	tr := newTree(t, true)
	cfg := tr.config()
	cfg.Devices = append(found, specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}) // a default again: no second bind
	var checks []mountCheck
	for _, d := range found {
		checks = append(checks, mountCheck{Path: d.Path, Char: []uint32{uint32(d.Major), uint32(d.Minor)}})
	}
	run(t, "full", childArgs{Config: cfg, Marker: tr.marker, Checks: checks}, true)
}

// TestSetupRefused: configurations Setup must refuse with a one-line error
// naming the problem, before or instead of mounting anything wrong.
func TestSetupRefused(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(tr testTree) Config
		wantErr string
	}{
		{"device numbers", func(tr testTree) Config {
			cfg := tr.config()
			cfg.Devices = []specs.LinuxDevice{{Path: "/dev/full", Type: "c", Major: 1, Minor: 3}}
			return cfg
		}, "device /dev/full: the host's /dev/full is not the character device 1:3"},
		{"device type", func(tr testTree) Config {
			cfg := tr.config()
			cfg.Devices = []specs.LinuxDevice{{Path: "/dev/zero", Type: "b", Major: 1, Minor: 5}}
			return cfg
		}, "device /dev/zero: the host's /dev/zero is not the block device 1:5"},
		{"device outside /dev", func(tr testTree) Config {
			cfg := tr.config()
			cfg.Devices = []specs.LinuxDevice{{Path: "/dev/../etc/passwd", Type: "c", Major: 1, Minor: 3}}
			return cfg
		}, `device "/dev/../etc/passwd": not a path under /dev`},
		{"relative bind source", func(tr testTree) Config {
			return tr.config(specs.Mount{Destination: "/data", Type: "bind", Source: "vol", Options: []string{"rbind"}})
		}, `bind "vol" on /data: the source is not an absolute path`},
		{"relative destination", func(tr testTree) Config {
			return tr.config(specs.Mount{Destination: "data", Type: "tmpfs", Source: "tmpfs"})
		}, `mount tmpfs on "data": the destination is not an absolute path`},
		{"idmap", func(tr testTree) Config {
			return tr.config(specs.Mount{Destination: "/data", Type: "bind", Source: tr.base, Options: []string{"rbind", "idmap"}})
		}, "mount bind on /data: ID-mapped mounts are not supported"},
		{"remount", func(tr testTree) Config {
			return tr.config(specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"remount", "ro"}})
		}, "mount proc on /proc: remount is only for binds"},
		{"etc files without a /dev tmpfs", func(tr testTree) Config {
			cfg := tr.config()
			cfg.Mounts = cfg.Mounts[:1]
			return cfg
		}, "bind the generated /etc files: no tmpfs on /dev in the mounts"},
		{"root propagation", func(tr testTree) Config {
			cfg := tr.config()
			cfg.RootPropagation = "bind"
			return cfg
		}, `root propagation "bind": not one of`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t, false)
			out := run(t, "setup-only", childArgs{Config: tt.cfg(tr)}, true)
			_, setupErr, _ := strings.Cut(out, "SETUP-ERROR: ")
			setupErr = strings.TrimSpace(setupErr)
			if !strings.HasPrefix(setupErr, tt.wantErr) || strings.Contains(setupErr, "\n") {
				t.Errorf("Setup error %q, want one line starting %q", setupErr, tt.wantErr)
			}
			tr.requireOutsideEmpty(t)
			if _, err := os.Lstat(tr.rootfs + "/etc/passwd"); err == nil {
				t.Errorf("created %s/etc/passwd", tr.rootfs)
			}
		})
	}
}

const overlayMagic = 0x794c7630

// TestSetupOverlay: an image's root is an overlay of its layers (top
// first) with the container's writes in an upper directory; 120 layers,
// more than one mount option holds, still mount (fsconfig "lowerdir+").
func TestSetupOverlay(t *testing.T) {
	for _, layers := range []int{2, 120} {
		t.Run(strconv.Itoa(layers)+" layers", func(t *testing.T) {
			tr := newTree(t, true)
			store := filepath.Join(tr.base, "layers")
			mustMkdir(t, store)
			var lower []string
			for i := layers - 1; i >= 0; i-- {
				l := filepath.Join(store, fmt.Sprintf("%064x", i))
				mustMkdir(t, l)
				mustWrite(t, filepath.Join(l, fmt.Sprintf("layer-%d", i)), "x\n")
				lower = append(lower, l)
			}
			// The bottom layer is the test rootfs itself; the root becomes
			// an empty mount point.
			bottom := filepath.Join(tr.base, "bottom")
			if err := os.Rename(tr.rootfs, bottom); err != nil {
				t.Fatal(err)
			}
			mustMkdir(t, tr.rootfs)
			lower = append(lower, bottom)
			upper, work := filepath.Join(tr.base, "upper"), filepath.Join(tr.base, "work")
			mustMkdir(t, upper)
			mustMkdir(t, work)
			cfg := tr.config()
			cfg.Overlay = &Overlay{Lower: lower, Upper: upper, Work: work}
			run(t, "full", childArgs{Config: cfg, Marker: tr.marker, Checks: []mountCheck{{Path: "/", Magic: overlayMagic}}}, true)
			if ents, _ := os.ReadDir(tr.rootfs); len(ents) != 0 {
				t.Errorf("the overlay's mount point got %d entries on the host", len(ents))
			}
			if ents, _ := os.ReadDir(bottom + "/etc"); len(ents) != 0 {
				for _, e := range ents {
					if e.Name() == "hostname" || e.Name() == "hosts" {
						t.Errorf("a lower layer was written: %s", e.Name())
					}
				}
			}
		})
	}
}
