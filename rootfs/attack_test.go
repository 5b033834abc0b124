package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestSetupSymlinkAttacks gives Setup a rootfs whose mount destinations are
// symlinks to a directory outside it (absolute, relative with ../.., dangling,
// to an existing file). Setup must place everything inside the rootfs (the
// symlinks are resolved as if the rootfs were "/") or refuse with an error
// naming the path; the outside directory must stay untouched either way.
func TestSetupSymlinkAttacks(t *testing.T) {
	up := strings.Repeat("../", 20)
	tests := []struct {
		name    string
		prep    func(t *testing.T, tr testTree)
		volume  string        // destination of a volume, if any
		mounts  []specs.Mount // more mounts; a bind's Source "vol" is a directory of the test
		noDev   bool          // no tmpfs on /dev (nor devpts, shm, mqueue) and no /etc files
		wantErr string        // "" means Setup must succeed
	}{
		{name: "proc absolute", prep: func(t *testing.T, tr testTree) { mustSymlink(t, tr.outside, tr.rootfs+"/proc") }},
		{name: "proc relative", prep: func(t *testing.T, tr testTree) { mustSymlink(t, up+tr.outside, tr.rootfs+"/proc") }},
		{name: "dev absolute", prep: func(t *testing.T, tr testTree) { mustSymlink(t, tr.outside, tr.rootfs+"/dev") }},
		{name: "dev relative dangling", prep: func(t *testing.T, tr testTree) { mustSymlink(t, up+tr.outside+"/new/dev", tr.rootfs+"/dev") }},
		{name: "sys relative", prep: func(t *testing.T, tr testTree) { mustSymlink(t, up+tr.outside, tr.rootfs+"/sys") }},
		{name: "etc absolute", prep: func(t *testing.T, tr testTree) {
			os.Remove(tr.rootfs + "/etc")
			mustSymlink(t, tr.outside, tr.rootfs+"/etc")
		}},
		{name: "etc/hosts dangling absolute", prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, tr.outside+"/hosts", tr.rootfs+"/etc/hosts")
		}},
		{name: "etc/hosts dangling relative", prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, up+tr.outside+"/hosts", tr.rootfs+"/etc/hosts")
		}},
		{name: "etc/hosts to an outside file", prep: func(t *testing.T, tr testTree) {
			mustWrite(t, tr.outside+"/secret", "secret\n")
			mustSymlink(t, tr.outside+"/secret", tr.rootfs+"/etc/hosts")
		}},
		{name: "volume dest absolute", volume: "/data/v", prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, tr.outside, tr.rootfs+"/data")
		}},
		{name: "volume dest relative", volume: "/data", prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, up+tr.outside, tr.rootfs+"/data")
		}},
		{name: "volume dest dangling", volume: "/vol", prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, tr.outside+"/newdir", tr.rootfs+"/vol")
		}},
		{name: "dev/null symlink in rootfs", prep: func(t *testing.T, tr testTree) {
			mustMkdir(t, tr.rootfs+"/dev")
			mustWrite(t, tr.outside+"/secret", "secret\n")
			mustSymlink(t, tr.outside+"/secret", tr.rootfs+"/dev/null")
		}},
		{name: "proc symlink loop", wantErr: "mount point /proc: ", prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, "/proc", tr.rootfs+"/proc")
		}},
		{name: "proc is a file", wantErr: "mount point /proc: not a directory", prep: func(t *testing.T, tr testTree) {
			mustWrite(t, tr.rootfs+"/proc", "")
		}},
		{name: "tmpfs dest absolute", mounts: []specs.Mount{{Destination: "/scratch", Type: "tmpfs", Options: []string{"size=1m"}}},
			prep: func(t *testing.T, tr testTree) { mustSymlink(t, tr.outside, tr.rootfs+"/scratch") }},
		{name: "mqueue dest relative", mounts: []specs.Mount{{Destination: "/data/mq", Type: "mqueue"}},
			prep: func(t *testing.T, tr testTree) { mustSymlink(t, up+tr.outside, tr.rootfs+"/data") }},
		{name: "bind of type none, dest dangling", mounts: []specs.Mount{{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "ro"}}},
			prep: func(t *testing.T, tr testTree) { mustSymlink(t, tr.outside+"/newsys", tr.rootfs+"/sys") }},
		{name: "bind dest through a symlinked parent", mounts: []specs.Mount{{Destination: "/srv/x/y", Type: "bind", Source: "vol", Options: []string{"bind", "rprivate"}}},
			prep: func(t *testing.T, tr testTree) { mustSymlink(t, "../../../"+up+tr.outside, tr.rootfs+"/srv") }},
		{name: "no /dev tmpfs: /dev absolute", noDev: true, prep: func(t *testing.T, tr testTree) {
			mustSymlink(t, tr.outside, tr.rootfs+"/dev")
		}},
		{name: "no /dev tmpfs: /dev/null to an outside file", noDev: true, wantErr: "/dev/null: not a file or device node", prep: func(t *testing.T, tr testTree) {
			mustMkdir(t, tr.rootfs+"/dev")
			mustWrite(t, tr.outside+"/secret", "secret\n")
			mustSymlink(t, tr.outside+"/secret", tr.rootfs+"/dev/null")
		}},
		{name: "no /dev tmpfs: /dev/ptmx to an outside file", noDev: true, prep: func(t *testing.T, tr testTree) {
			mustMkdir(t, tr.rootfs+"/dev")
			mustWrite(t, tr.outside+"/secret", "secret\n")
			mustSymlink(t, tr.outside+"/secret", tr.rootfs+"/dev/ptmx")
		}},
		{name: "volume dest is a file", volume: "/data", wantErr: "mount point /data: not a directory", prep: func(t *testing.T, tr testTree) {
			mustWrite(t, tr.rootfs+"/data", "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t, false)
			tt.prep(t, tr)
			cfg := tr.config()
			src := filepath.Join(tr.base, "vol")
			mustMkdir(t, src)
			if tt.noDev {
				cfg.Mounts, cfg.EtcFiles = []specs.Mount{cfg.Mounts[0], cfg.Mounts[5]}, nil // /proc, /sys
			}
			if tt.volume != "" {
				cfg.Mounts = append(cfg.Mounts, volume(src, tt.volume, true))
			}
			for _, m := range tt.mounts {
				if m.Source == "vol" {
					m.Source = src
				}
				cfg.Mounts = append(cfg.Mounts, m)
			}
			out := run(t, "setup-only", childArgs{Config: cfg}, true)
			_, setupErr, failed := strings.Cut(out, "SETUP-ERROR: ")
			setupErr = strings.TrimSpace(setupErr)
			if failed {
				t.Logf("Setup: %s", setupErr)
			}
			switch {
			case tt.wantErr == "" && failed:
				t.Errorf("Setup failed: %s", setupErr)
			case tt.wantErr != "" && !strings.HasPrefix(setupErr, tt.wantErr):
				t.Errorf("Setup output %q, want error %q", out, tt.wantErr)
			case failed && strings.Count(setupErr, "\n") > 0:
				t.Errorf("Setup error is not one line: %q", setupErr)
			}
			tr.requireOutsideEmpty(t, tr.outside+"/secret")
			if b, err := os.ReadFile(tr.outside + "/secret"); err == nil && string(b) != "secret\n" {
				t.Errorf("outside file changed: %q", b)
			}
		})
	}
}

// TestSetupRace runs Setup again and again for 2 seconds while this process
// swaps directories of the rootfs with symlinks out of it (renameat2
// RENAME_EXCHANGE, so each name always exists). Setup may fail, but no mount
// may land outside the rootfs and nothing may be created outside.
func TestSetupRace(t *testing.T) {
	requireUserns(t)
	tr := newTree(t, false)
	up := strings.Repeat("../", 20)
	vol := filepath.Join(tr.base, "vol")
	mustMkdir(t, vol)
	swaps := [][2]string{}
	for name, target := range map[string]string{
		"dev":  tr.outside,
		"proc": up + tr.outside,
		"etc":  tr.outside,
		"data": up + tr.outside,
		"sys":  tr.outside + "/sys",
	} {
		dir, link := tr.rootfs+"/"+name, tr.rootfs+"/"+name+".swap"
		mustMkdir(t, dir)
		mustSymlink(t, target, link)
		swaps = append(swaps, [2]string{dir, link})
	}
	mustMkdir(t, tr.rootfs+"/data/v")
	if err := exchange(swaps[0]); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			t.Skipf("renameat2 RENAME_EXCHANGE not supported on the file system of TMPDIR: %v", err)
		}
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	swapped := 0
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; i < 5_000_000 && time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			if exchange(swaps[i%len(swaps)]) == nil {
				swapped++
			}
		}
	}()
	cfg := tr.config(volume(vol, "/data/v", true))
	out := run(t, "race", childArgs{Config: cfg, Deadline: time.Now().Add(2 * time.Second), MaxRuns: 5000}, true)
	close(stop)
	wg.Wait()
	t.Logf("%d swaps; child: %s", swapped, strings.TrimSpace(out))
	if !strings.HasPrefix(out, "runs=") || strings.HasPrefix(out, "runs=0 ") {
		t.Errorf("race child did not run Setup: %s", out)
	}
	tr.requireOutsideEmpty(t)
}

func exchange(p [2]string) error {
	return unix.Renameat2(unix.AT_FDCWD, p[0], unix.AT_FDCWD, p[1], unix.RENAME_EXCHANGE)
}

// TestSetupFakeNull replaces the null device that Setup would use to mask
// /proc files by a regular file (CVE-2025-31133 class): Setup must refuse.
func TestSetupFakeNull(t *testing.T) {
	tr := newTree(t, false)
	fake := filepath.Join(tr.base, "fake-null")
	mustWrite(t, fake, "")
	out := run(t, "setup-only", childArgs{Config: Config{Rootfs: tr.rootfs}, FakeNull: fake}, true)
	want := "SETUP-ERROR: host /dev/null: not the character device 1:3"
	if !strings.Contains(out, want) {
		t.Errorf("Setup with a fake /dev/null: %q, want %q", out, want)
	}
}
