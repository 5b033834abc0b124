package tests

// Issue 12, points 2, 3 and 7: what rabbitc refuses, or drops, before the
// container starts: a /proc it cannot make fresh, descriptors of its caller,
// a working directory through /proc/self/fd, a rootfs its command is not in.

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Point 3: descriptors rabbitc inherits (beyond 0-2) reach none of its
// stages, helpers or the payload: not the sandbox, init (looked at while it
// sets up, held on a FIFO at /etc/passwd), the watchdog, slirp4netns, or the
// payload, with and without a sandbox (-p).
func TestInheritedDescriptorsReachNoStage(t *testing.T) {
	requireNet(t)
	dir := userDir(t, "inherited", 0o755)
	userFile(t, filepath.Join(dir, "marker"), "inherited\n", 0o644)
	f, err := os.Open(filepath.Join(dir, "marker"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// fds 3..8: the stages get their own 3 and 4, so 5..8 would survive.
	extra := []*os.File{f, d, f, d, f, d}
	for _, tc := range []struct {
		name  string
		flags []string
		// What runs while init sets up, and while the payload runs, by a
		// part of their command lines.
		setup, running []string
	}{
		{"without sandbox", nil,
			[]string{"init direct", "init watchdog", "slirp4netns"},
			[]string{"init watchdog", "slirp4netns", "cat /wait"}},
		{"with sandbox", []string{"-p", "127.0.0.1:" + itoa(freePort(t, 1)) + ":80"},
			[]string{"init sandbox", "init container", "slirp4netns"},
			[]string{"init sandbox", "slirp4netns", "cat /wait"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := copyRootfs(t)
			passwd := filepath.Join(root, "etc/passwd")
			wait := filepath.Join(root, "wait")
			for _, p := range []string{passwd, wait} {
				os.Remove(p)
				if err := unix.Mkfifo(p, 0o666); err != nil {
					t.Fatal(err)
				}
				if err := chownToUser(p); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"run", "--rootfs", root}, tc.flags...)
			args = append(args, "-u", "root", "--", "sh", "-c", "echo ready; cat /wait")
			p := start(t, opts{extraFiles: extra}, args...)
			// -u root: init reads the rootfs's /etc/passwd after the mounts
			// and pivot_root, and waits there for a writer.
			w := openFIFOWriter(t, p, passwd)
			noInherited(t, p, dir, tc.setup)
			fmt.Fprintln(w, "root:x:0:0:root:/root:/bin/sh")
			w.Close()
			p.waitOutput(t, opts{}, "ready", 10*time.Second)
			noInherited(t, p, dir, tc.running)
			openFIFOWriter(t, p, wait).Close()
			wantCode(t, p.wait(t), 0)
		})
	}
}

// openFIFOWriter opens a FIFO for writing once rabbitc's container has
// opened it for reading.
func openFIFOWriter(t *testing.T, p *proc, path string) *os.File {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			return w
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("nothing opened %s for reading: %v\n%s", path, err, p.res)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noInherited checks every process below rabbitc for a descriptor on dir or
// a file in it, once the processes named by want are all there (bounded).
func noInherited(t *testing.T, p *proc, dir string, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for _, w := range want {
			found := false
			for _, d := range descendants(p.pid()) {
				found = found || strings.Contains(cmdline(d.pid), w)
			}
			if !found {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no process %q below rabbitc:%s", missing, describeTree(p.pid()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, d := range descendants(p.pid()) {
		fdDir := fmt.Sprintf("/proc/%d/fd", d.pid)
		ents, err := os.ReadDir(fdDir)
		if err != nil {
			if d.state != 'Z' && !os.IsNotExist(err) {
				t.Errorf("list %s (%s): %v", fdDir, cmdline(d.pid), err)
			}
			continue
		}
		var held []string
		for _, e := range ents {
			target, _ := os.Readlink(filepath.Join(fdDir, e.Name()))
			if target == dir || strings.HasPrefix(target, dir+"/") {
				held = append(held, e.Name())
			}
		}
		if len(held) > 0 {
			t.Errorf("%d %q holds fds %v on %s, which only rabbitc's caller had open", d.pid, cmdline(d.pid), held, dir)
		}
	}
}

// Point 3: a -w through a rootfs symlink to /proc/self/fd/N is refused
// before anything is created: not in the host directory that fd N is open
// on (as stdin with -i, or inherited), not anywhere.
func TestWorkdirThroughProcSelfFd(t *testing.T) {
	hostDir := userDir(t, "workdir-target", 0o755)
	d, err := os.Open(hostDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	root := copyRootfs(t)
	for _, n := range []int{0, 5, 6, 9} {
		link := filepath.Join(root, "fd"+itoa(n))
		if err := os.Symlink("/proc/self/fd/"+itoa(n), link); err != nil {
			t.Fatal(err)
		}
		if err := chownToUser(link); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/resolv.conf")); err != nil {
		userFile(t, filepath.Join(root, "etc/resolv.conf"), "", 0o644) // a mount point the -p run would make
	}
	before := snapshotTree(t, root)
	o := opts{stdin: d, extraFiles: []*os.File{d, d, d, d, d, d, d}} // fds 0 and 3..9
	runs := [][]string{}
	for _, n := range []int{0, 5, 6, 9} {
		runs = append(runs, []string{"run", "--rootfs", root, "--net", "none", "-i", "-w", "/fd" + itoa(n) + "/sub", "--", "true"})
	}
	runs = append(runs, []string{"run", "--rootfs", root, "--net", "none", "-i", "-w", "/fd0", "--", "true"})
	if env.netErr == nil {
		runs = append(runs, []string{"run", "--rootfs", root, "-p", "127.0.0.1:" + itoa(freePort(t, 1)) + ":80", "-i", "-w", "/fd0/sub", "--", "true"})
	}
	for _, args := range runs {
		r := runOpt(t, o, args...)
		wantRuntimeError(t, r, "workdir")
		if left := listTree(hostDir); len(left) > 0 {
			t.Fatalf("the run created %v in the host directory behind /proc/self/fd:\n%s", left, r)
		}
	}
	if d := diffSnapshots(before, snapshotTree(t, root)); d != "" {
		t.Errorf("the runs changed the rootfs on disk:\n%s", d)
	}
	// A workdir that is no directory is refused too; a missing one is made.
	wantRuntimeError(t, run(t, "run", "--rootfs", root, "--net", "none", "-w", "/bin/sh", "--", "true"), "workdir /bin/sh: not a directory")
	r := run(t, "run", "--rootfs", root, "--net", "none", "-w", "/new/dir", "--", "pwd")
	wantCode(t, r, 0)
	if r.out() != "/new/dir" {
		t.Errorf("pwd %q, want /new/dir:\n%s", r.out(), r)
	}
}

// Point 2: where the kernel refuses a fresh procfs (rabbitc nested below a
// /proc with a covered path, as in a container that masks /proc files),
// rabbitc refuses with the cause and never shows the outer /proc instead.
// The outer namespace is made with unshare as the test user: a user, mount
// and PID namespace with a procfs of its own and /dev/null bound over
// /proc/version in both procfs it sees (a covered path in one that is fully
// visible would not do). Without newuidmap in $PATH (it cannot map inside
// such a namespace) rabbitc maps the user alone, with a warning.
func TestProcCoveredRefused(t *testing.T) {
	requireSetup(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare not found (install util-linux): %v", err)
	}
	if out, _ := exec.Command(unshare, "--help").Output(); !strings.Contains(string(out), "--map-current-user") || !strings.Contains(string(out), "--keep-caps") {
		t.Fatalf("unshare lacks --map-current-user or --keep-caps (install util-linux >= 2.38)")
	}
	busybox := filepath.Join(env.rootfs, "bin/busybox") // static: runs anywhere
	for _, cover := range []bool{false, true} {
		script := fmt.Sprintf("B=%s; set -e; ", busybox)
		if cover {
			script += "$B mount -o bind /dev/null /proc/version; "
		}
		script += "$B mount -t proc proc /proc; "
		if cover {
			script += "$B mount -o bind /dev/null /proc/version; "
		}
		script += fmt.Sprintf("PATH=/nonexistent exec %s run --rootfs %s --net none -- cat /proc/1/cmdline", env.bin, env.rootfs)
		r := runOpt(t, opts{bin: unshare}, "--user", "--map-current-user", "--keep-caps", "--mount", "--pid", "--fork",
			"--", busybox, "sh", "-c", script)
		r.stderr = dropWarnings(r.stderr)
		if !cover {
			// The same nesting without the cover: rabbitc runs, with a /proc
			// of its own (its PID 1 is the payload).
			wantCode(t, r, 0)
			if !strings.HasPrefix(r.stdout, "cat\x00/proc/1/cmdline") {
				t.Errorf("/proc/1/cmdline inside %q, want the payload's:\n%s", r.out(), r)
			}
			continue
		}
		wantRuntimeError(t, r, "mount proc on /proc: operation not permitted", "covered")
	}
}

// dropWarnings removes rabbitc's warning lines from stderr.
func dropWarnings(stderr string) string {
	var keep []string
	for _, l := range strings.SplitAfter(stderr, "\n") {
		if !strings.HasPrefix(l, "rabbitc: warning: ") && l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// Point 7: the README's `rabbitc --rootfs=./rootfs`, typed in the project's
// own checkout (where rootfs/ is Go source), exits 127 with one line and
// creates nothing there: no /dev, /proc, /sys, /etc files, nothing.
func TestRootfsWithoutCommandTouchesNothing(t *testing.T) {
	requireSetup(t)
	checkout := userDir(t, "checkout", 0o755)
	src := filepath.Join(env.repo, "rootfs")
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(checkout, "rootfs", strings.TrimPrefix(p, src))
		if e.IsDir() {
			err = os.MkdirAll(dst, 0o755)
		} else {
			err = copyFile(p, dst, 0o644)
		}
		if err == nil {
			err = chownToUser(dst)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	before := snapshotTree(t, checkout)
	port := itoa(freePort(t, 1))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--rootfs=./rootfs"}, []string{"exec /bin/sh: no such file or directory", "./rootfs", "--rootfs"}},
		{[]string{"run", "--rootfs", "./rootfs", "--publish", port + ":80", "--cmd", "/bin/server"}, []string{"/bin/server"}},
		{[]string{"run", "--rootfs", "./rootfs", "--net", "none", "--", "ls", "-l"}, []string{`"ls"`, "$PATH"}},
		{[]string{"run", "--rootfs", "./rootfs", "-w", "/tmp", "--", "./server"}, []string{"./server"}},
	} {
		r := runOpt(t, opts{dir: checkout}, tc.args...)
		wantOneErrorLine(t, r, 127, tc.want...)
	}
	if d := diffSnapshots(before, snapshotTree(t, checkout)); d != "" {
		t.Errorf("the runs changed the directory:\n%s", d)
	}
	if _, err := os.Stat(filepath.Join(checkout, "rootfs/dev")); err == nil {
		t.Errorf("rootfs/dev exists")
	}
}

// Point 7: the check before the start leaves what a volume brings to init:
// a command on a volume runs, by path, through a rootfs symlink, or found in
// $PATH; one under a --tmpfs is not found by init (127), as before.
func TestCommandFromVolume(t *testing.T) {
	bin := userDir(t, "hostbin", 0o755)
	if err := copyFile(filepath.Join(env.rootfs, "bin/fdlist"), filepath.Join(bin, "prog"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := chownToUser(filepath.Join(bin, "prog")); err != nil {
		t.Fatal(err)
	}
	root := copyRootfs(t) // no /opt
	link := filepath.Join(root, "bin/prog")
	if err := os.Symlink("/opt/bin/prog", link); err != nil {
		t.Fatal(err)
	}
	if err := chownToUser(link); err != nil {
		t.Fatal(err)
	}
	vol := bin + ":/opt/bin:ro"
	for _, args := range [][]string{
		{"-v", vol, "--", "/opt/bin/prog"},
		{"-v", vol, "--", "/bin/prog"},
		{"-v", vol, "-e", "PATH=/opt/bin:/bin", "--", "prog"},
		{"-v", vol, "-w", "/opt", "--", "bin/prog"},
	} {
		r := run(t, append([]string{"run", "--rootfs", root, "--net", "none"}, args...)...)
		wantCode(t, r, 0)
		if !strings.Contains(r.stdout, "fd 0 ->") {
			t.Errorf("the volume's program did not run:\n%s", r)
		}
	}
	r := run(t, "run", "--rootfs", root, "--net", "none", "--tmpfs", "/x:exec", "--", "/x/prog")
	wantOneErrorLine(t, r, 127, "/x/prog")
	if !strings.Contains(r.stderr, "[init]") {
		t.Errorf("want init's own lookup to answer for a path on a tmpfs:\n%s", r)
	}
}
