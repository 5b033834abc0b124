package tests

// Issue 15, item 5: a container's root from an image by each storage
// driver: the kernel's overlayfs, fuse-overlayfs (Debian's package) and a
// copy (vfs), chosen by a probe cached in the store, or forced with
// RABBITC_STORAGE_DRIVER.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// storageImage pushes an image of two layers: the test rootfs with
// /etc/removed, /data/old/gone and /data/kept, and a layer that whites out
// /etc/removed, makes /data/old opaque (with /data/old/new), and adds
// files of other ids: a setuid file, a hard link to it, a symlink.
func storageImage(t *testing.T) string {
	t.Helper()
	base := layerFromDir(t, env.rootfs, map[string]string{"etc/removed": "x\n", "data/old/gone": "x\n", "data/kept": "lower\n"})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/.wh.removed", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "data/old/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "data/old/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "data/old/new", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "owned/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 101, Gid: 102},
		{Name: "owned/file", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 1001, Size: 3},
		{Name: "owned/hard", Typeflag: tar.TypeLink, Linkname: "owned/file"},
		{Name: "owned/sym", Typeflag: tar.TypeSymlink, Linkname: "file", Uid: 7, Gid: 7},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("ab\n"))
		}
	}
	tw.Close()
	img := imageOf(t, v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}, base, tarLayer(t, buf.Bytes()))
	return serveImage(t, "test/storage:1", img)
}

// treeSum sums up a tree as the test process (root) sees it: every name,
// type, mode, owner, size, mtime, xattr and file content. The image's
// layers must not change while containers run.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d %d %d.%d rdev=%d", strings.TrimPrefix(p, dir), st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Rdev)
		if sz, err := unix.Llistxattr(p, nil); err == nil && sz > 0 {
			b := make([]byte, sz)
			n, _ := unix.Llistxattr(p, b)
			names := strings.Split(strings.TrimRight(string(b[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, x := range names {
				v := make([]byte, 256)
				n, _ := unix.Lgetxattr(p, x, v)
				line += fmt.Sprintf(" %s=%q", x, v[:max(n, 0)])
			}
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			line += " " + hex.EncodeToString(h[:8])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestStorageDrivers runs one image, pulled once, with fuse-overlayfs and
// with a copy (forced with RABBITC_STORAGE_DRIVER): the image's whiteout
// and opaque directory, its owners and modes, writes that never reach the
// layers, --read-only, and run -d + rm -f leaving no process (the
// fuse-overlayfs daemon) and no container directory. The probe's cache is
// written once.
func TestStorageDrivers(t *testing.T) {
	requireSetup(t)
	ref := storageImage(t)
	data := userDir(t, "xdg-data", 0o700)
	store := filepath.Join(data, "rabbitc")
	wantCode(t, runOpt(t, opts{env: []string{"XDG_DATA_HOME=" + data}}, "pull", "-q", ref), 0)
	layers := filepath.Join(store, "layers")
	before := treeSum(t, layers)
	var cache unix.Stat_t
	for _, driver := range []string{"fuse-overlayfs", "vfs"} {
		t.Run(driver, func(t *testing.T) {
			if driver == "fuse-overlayfs" {
				requireFuse(t)
			}
			o := opts{env: []string{"XDG_DATA_HOME=" + data, "RABBITC_STORAGE_DRIVER=" + driver}}
			r := runOpt(t, o, "run", "--rm", "--net", "none", ref, "sh", "-c",
				"test -e /etc/removed && echo whiteout-ignored; ls /data/old; cat /data/kept; "+
					"stat -c '%u:%g %a' /owned /owned/file /owned/sym; stat -c %h /owned/file; readlink /owned/sym; "+
					"echo mine > /etc/mine && echo more >> /data/kept && rm /data/old/new && rm -r /owned && mkdir /data/old/d && "+
					"cat /data/kept && ls -A /data/old && ls /owned 2>/dev/null; "+
					rootMount)
			wantCode(t, r, 0)
			// The root's mount: fuse-overlayfs's at its root; the copy, a
			// bind of the container's directory in the store.
			root := map[string]string{"fuse-overlayfs": "/\nfuse.fuse-overlayfs", "vfs": "/rootfs\n"}[driver]
			want := "new\nlower\n101:102 750\n1000:1001 4755\n7:7 777\n2\nfile\nlower\nmore\nd\n"
			if got := r.out(); !strings.HasPrefix(got, want) || !strings.Contains(got[min(len(want), len(got)):], root) {
				t.Errorf("the image's root by %s:\n%s\nwant\n%s(root %q)\nstderr: %s", driver, got, want, root, r.stderr)
			}
			if r.stderr != "" {
				t.Errorf("stderr of a forced driver: %q", r.stderr)
			}
			// A user of the container, not root, reads and writes through
			// the mount too (fuse: allow_other; the kernel checks modes).
			r = runOpt(t, o, "run", "--rm", "--net", "none", "-u", "1000:1000", ref, "sh", "-c",
				"cat /data/kept; echo x > /tmp/u && cat /tmp/u; cat /owned/file 2>/dev/null || echo denied; echo y > /etc/no 2>/dev/null || echo denied")
			wantCode(t, r, 0)
			if r.out() != "lower\nx\ndenied\ndenied" {
				t.Errorf("uid 1000 in the container's root by %s: %q", driver, r.out())
			}
			if after := treeSum(t, layers); after != before {
				t.Errorf("the image's layers changed under containers of %s", driver)
			}
			r = runOpt(t, o, "run", "--rm", "--net", "none", "--read-only", ref, "sh", "-c",
				"touch /x 2>/dev/null && echo wrote /x; echo y >> /data/kept 2>/dev/null && echo wrote /data/kept; cat /data/kept")
			wantCode(t, r, 0)
			if r.out() != "lower" {
				t.Errorf("--read-only with %s: %q", driver, r.out())
			}
			if left := listDir(filepath.Join(store, "containers")); len(left) > 0 {
				t.Errorf("containers' directories left in the store: %v", left)
			}

			d := newDetachedEnv(t)
			d.env = o.env
			_, r = d.runD("--name", "st", "--net", "none", ref, "sh", "-c", "echo hi > /hello; exec sleep 60")
			wantCode(t, r, 0)
			if n := len(listDir(filepath.Join(store, "containers"))); n != 1 {
				t.Errorf("%d container directories in the store, want 1", n)
			}
			if driver == "fuse-overlayfs" && len(fuseDaemons()) != 1 {
				t.Errorf("fuse-overlayfs daemons of a running container: %v, want 1", fuseDaemons())
			}
			wantCode(t, d.run("exec", "st", "cat", "/hello"), 0)
			wantCode(t, d.run("rm", "-f", "st"), 0)
			if left := fuseDaemons(); len(left) > 0 {
				t.Errorf("fuse-overlayfs left after rm -f: %v", left)
			}
			if left := listDir(filepath.Join(store, "containers")); len(left) > 0 {
				t.Errorf("the container's directory is left after rm -f: %v", left)
			}

			// The probe ran at the first run, and only then.
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(store, "storage-driver"), &st); err != nil {
				t.Fatalf("the probe's cache: %v", err)
			}
			if cache.Ino == 0 {
				cache = st
			} else if st.Ino != cache.Ino || st.Mtim != cache.Mtim {
				t.Errorf("the probe's cache was written again")
			}
		})
	}
	if after := treeSum(t, layers); after != before {
		t.Errorf("the image's layers changed")
	}
}

// requireFuse fails the test when fuse-overlayfs cannot run here for a
// reason of the host's setup, and skips it on a kernel without FUSE.
func requireFuse(t *testing.T) {
	t.Helper()
	requireSetup(t)
	st, err := os.Stat("/dev/fuse")
	switch {
	case err != nil:
		t.Skipf("/dev/fuse: %v (a kernel without FUSE: CONFIG_FUSE_FS, modprobe fuse)", err)
	case st.Mode().Perm()&0o006 != 0o006:
		t.Fatalf("/dev/fuse is mode %v, the test user cannot open it (chmod 0666 /dev/fuse: %s)", st.Mode().Perm(), fixIt)
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Fatalf("fuse-overlayfs not found in $PATH (install fuse-overlayfs: %s)", fixIt)
	}
}

// rootMount prints the root's mount in the container: its root in its file
// system, and its type.
const rootMount = `awk '$5 == "/" { print $4; for (i = 7; i <= NF; i++) if ($i == "-") { print $(i+1); exit } }' /proc/self/mountinfo`

// fuseDaemons are the fuse-overlayfs processes among the test's
// descendants.
func fuseDaemons() []string {
	var out []string
	for _, pid := range descendantsNamed("fuse-overlayfs") {
		out = append(out, fmt.Sprintf("%d %s", pid, cmdline(pid)))
	}
	return out
}

// kill -9 of a foreground rabbitc whose container's root is served by
// fuse-overlayfs: nothing is left, the daemon neither.
func TestKillRabbitcFuseOverlayfs(t *testing.T) {
	requireFuse(t)
	ref := storageImage(t)
	data := userDir(t, "xdg-data", 0o700)
	o := opts{env: []string{"XDG_DATA_HOME=" + data, "RABBITC_STORAGE_DRIVER=fuse-overlayfs"}}
	wantCode(t, runOpt(t, o, "pull", "-q", ref), 0)
	p := start(t, o, "run", "--net", "none", ref, "sh", "-c", "echo up; exec sleep 30")
	p.waitOutput(t, o, "up", 10*time.Second)
	if len(fuseDaemons()) != 1 {
		t.Errorf("fuse-overlayfs daemons of the running container: %v, want 1", fuseDaemons())
	}
	p.signal(t, syscall.SIGKILL)
	p.wait(t) // no leftover process, the daemon included

	// The daemon killed under a running container: the container is over,
	// and rabbitc says why.
	p = start(t, o, "run", "--net", "none", ref, "sh", "-c", "echo up; exec sleep 30")
	p.waitOutput(t, o, "up", 10*time.Second)
	daemons := descendantsNamed("fuse-overlayfs")
	if len(daemons) != 1 {
		t.Fatalf("fuse-overlayfs daemons of the running container: %v, want 1", daemons)
	}
	syscall.Kill(daemons[0], syscall.SIGKILL)
	r := p.wait(t)
	if want := "rabbitc: fuse-overlayfs, which serves the container's root, ended (signal: killed): the container was stopped\n"; r.code != 125 || r.stderr != want {
		t.Errorf("the daemon killed under the container: want exit 125 and %q, got:\n%s", want, r)
	}
	if left := listDir(filepath.Join(data, "rabbitc", "containers")); len(left) > 0 {
		t.Errorf("the container's directory is left: %v", left)
	}
}

// descendantsNamed are the pids of the test's descendants called name.
func descendantsNamed(name string) []int {
	var out []int
	for _, p := range descendants(os.Getpid()) {
		if p.comm == name {
			out = append(out, p.pid)
		}
	}
	return out
}

// The choice of a driver: an unknown name, or a forced driver that does not
// work here (a fuse-overlayfs that cannot serve), is one line and 125; left
// to itself rabbitc takes the kernel's overlayfs; with neither overlayfs
// nor fuse-overlayfs (the probe's answer, as the cache says), it copies with
// one warning line.
func TestStorageDriverChoice(t *testing.T) {
	requireSetup(t)
	ref := storageImage(t)
	data := userDir(t, "xdg-data", 0o700)
	store := filepath.Join(data, "rabbitc")
	o := opts{env: []string{"XDG_DATA_HOME=" + data}}
	wantCode(t, runOpt(t, o, "pull", "-q", ref), 0)

	bad := o
	bad.env = append(bad.env, "RABBITC_STORAGE_DRIVER=btrfs")
	wantOneErrorLine(t, runOpt(t, bad, "run", "--rm", "--net", "none", ref, "true"), 125, "RABBITC_STORAGE_DRIVER=btrfs", "overlay, fuse-overlayfs or vfs")

	// A fuse-overlayfs first in $PATH that fails: the probe finds out.
	fake := userDir(t, "fake-fuse", 0o755)
	if err := os.WriteFile(filepath.Join(fake, "fuse-overlayfs"), []byte("#!/bin/sh\necho 'fake: cannot serve' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	withFake := opts{env: append(o.env, "RABBITC_STORAGE_DRIVER=fuse-overlayfs"), path: fake + ":/usr/sbin:/usr/bin:/sbin:/bin"}
	wantOneErrorLine(t, runOpt(t, withFake, "run", "--rm", "--net", "none", ref, "true"), 125, "storage driver fuse-overlayfs", "fake: cannot serve")
	withFake.env = o.env
	r := runOpt(t, withFake, "run", "--rm", "--net", "none", ref, "sh", "-c", rootMount)
	wantCode(t, r, 0)
	if r.out() != "/\noverlay" || r.stderr != "" {
		t.Errorf("the default driver, where the kernel's overlayfs works: %q, stderr %q", r.out(), r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(store, "storage-driver"))
	if err != nil || !strings.Contains(string(b), "overlay ok") || !strings.Contains(string(b), "fake: cannot serve") {
		t.Errorf("the probe's cache: %q, %v", b, err)
	}
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	uname := strings.TrimSpace(string(release))

	// A fuse-overlayfs that worked for the probe and fails for a
	// container: one line, what it said, and nothing left.
	cache := fmt.Sprintf("kernel %s\noverlay ok\nfuse-overlayfs ok\nfuse-program %s\n", uname, filepath.Join(fake, "fuse-overlayfs"))
	if err := os.WriteFile(filepath.Join(store, "storage-driver"), []byte(cache), 0o644); err != nil {
		t.Fatal(err)
	}
	forced := opts{env: append(o.env, "RABBITC_STORAGE_DRIVER=fuse-overlayfs")}
	wantOneErrorLine(t, runOpt(t, forced, "run", "--rm", "--net", "none", ref, "true"), 125,
		"fuse-overlayfs, which serves the container's root, ended (exit status 1): fake: cannot serve")
	if left := listDir(filepath.Join(store, "containers")); len(left) > 0 {
		t.Errorf("containers' directories left in the store: %v", left)
	}

	// Neither overlayfs nor fuse-overlayfs: a copy, and a warning.
	cache = fmt.Sprintf("kernel %s\noverlay mount: operation not permitted\nfuse-overlayfs open /dev/fuse: permission denied\nfuse-program /usr/bin/fuse-overlayfs\n", uname)
	if err := os.WriteFile(filepath.Join(store, "storage-driver"), []byte(cache), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runOpt(t, o, "run", "--rm", "--net", "none", ref, "sh", "-c", "ls /data/old; test -e /etc/removed || echo removed")
	wantCode(t, r, 0)
	if r.out() != "new\nremoved" {
		t.Errorf("the copy: %q", r.out())
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "rabbitc: warning: ") || !strings.Contains(lines[0], "copying the image") ||
		!strings.Contains(lines[0], "fuse-overlayfs does not work: open /dev/fuse: permission denied") {
		t.Errorf("want one warning line about the copy, got %q", r.stderr)
	}
	if left := listDir(filepath.Join(store, "containers")); len(left) > 0 {
		t.Errorf("containers' directories left in the store: %v", left)
	}
}
