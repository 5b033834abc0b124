package tests

// Issue 2, points 2, 3 and 4: the user namespace and its maps, the other
// namespaces, the root filesystem and the mounts inside.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Container root is the invoking user; 1..N map to the user's subordinate
// ranges, written with newuidmap/newgidmap.
func TestUserNamespaceMaps(t *testing.T) {
	r := run(t, rcNoNet(sh("cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; cat /proc/self/setgroups; id -u"))...)
	wantCode(t, r, 0)
	parts := strings.Split(r.stdout, "--\n")
	if len(parts) != 3 {
		t.Fatalf("unexpected output:\n%s", r)
	}
	if got, want := normMap(parts[0]), expectedMap(env.user.uid, env.user.subuid); got != want {
		t.Errorf("uid_map:\n%s\nwant:\n%s", got, want)
	}
	if got, want := normMap(parts[1]), expectedMap(env.user.gid, env.user.subgid); got != want {
		t.Errorf("gid_map:\n%s\nwant:\n%s", got, want)
	}
	if f := strings.Fields(parts[2]); len(f) != 2 || f[0] != "allow" || f[1] != "0" {
		t.Errorf("setgroups %q then id -u, want allow and 0:\n%s", parts[2], r)
	}
}

func normMap(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

func expectedMap(id int, ranges []idRange) string {
	lines := []string{fmt.Sprintf("0 %d 1", id)}
	next := 1
	for _, r := range ranges {
		lines = append(lines, fmt.Sprintf("%d %d %d", next, r.start, r.count))
		next += r.count
	}
	return strings.Join(lines, "\n")
}

// Without newuidmap in $PATH rabbitc either maps only the user (with one
// warning line saying how to get the full ranges) or refuses with one line.
func TestMissingNewuidmap(t *testing.T) {
	dir := userDir(t, "path-without-newuidmap", 0o755)
	r := runOpt(t, opts{path: dir}, rcNoNet(sh("cat /proc/self/uid_map; echo --; cat /proc/self/setgroups"))...)
	switch r.code {
	case 0:
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.Contains(r.stderr, "newuidmap") || strings.Contains(r.stderr, "panic") {
			t.Errorf("the fallback to a single-id map needs exactly one warning line naming newuidmap:\n%s", r)
		}
		parts := strings.Split(r.stdout, "--\n")
		if len(parts) != 2 || normMap(parts[0]) != fmt.Sprintf("0 %d 1", env.user.uid) || strings.TrimSpace(parts[1]) != "deny" {
			t.Errorf("want uid_map \"0 %d 1\" and setgroups deny:\n%s", env.user.uid, r)
		}
	case 125:
		wantRuntimeError(t, r, "newuidmap")
	default:
		t.Errorf("want the single-id fallback (exit 0) or a runtime error (125):\n%s", r)
	}
}

// Every namespace of the container differs from the host's: with a
// sandbox (something published) and without (init started by rabbitc).
func TestNamespacesDiffer(t *testing.T) {
	requireNet(t)
	list := sh("for n in cgroup ipc mnt net pid user uts; do echo $n $(readlink /proc/self/ns/$n); done")
	for _, args := range [][]string{
		rc(list),
		rcNoNet(list),
		rc("-p", fmt.Sprintf("127.0.0.1:%d:80", freePort(t, 1)), list),
	} {
		r := run(t, args...)
		wantCode(t, r, 0)
		inside := map[string]string{}
		for _, l := range strings.Split(r.out(), "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				inside[f[0]] = f[1]
			}
		}
		for ns, host := range env.hostNS {
			if inside[ns] == "" || inside[ns] == host {
				t.Errorf("%s namespace inside %q, host %q: want a new one\n%s", ns, inside[ns], host, r)
			}
		}
	}
}

// /sys/fs/cgroup is the container's cgroup namespace, read-only, as under
// docker and podman: the container's own cgroup is its root ("0::/").
func TestCgroupMount(t *testing.T) {
	r := run(t, rcNoNet(sh("grep ' /sys/fs/cgroup ' /proc/self/mountinfo; grep '^0::' /proc/self/cgroup; test -e /sys/fs/cgroup/cgroup.procs && echo procs-file; echo x > /sys/fs/cgroup/cgroup.procs 2>/dev/null || echo write-refused"))...)
	wantCode(t, r, 0)
	out := r.out()
	if env.hostNS["cgroup"] == "" {
		t.Skip("no cgroup namespaces on this kernel")
	}
	if !strings.Contains(out, " - cgroup2 ") || !strings.Contains(out, " /sys/fs/cgroup ro,") || !strings.Contains(out, "procs-file") {
		t.Errorf("want cgroup2 mounted read-only on /sys/fs/cgroup:\n%s", r)
	}
	for _, want := range []string{"0::/\n", "write-refused"} {
		if !strings.Contains(out+"\n", want) {
			t.Errorf("want %q:\n%s", want, r)
		}
	}
}

// ps inside shows only the container's processes.
func TestPIDNamespace(t *testing.T) {
	r := run(t, rcNoNet(sh("sleep 5 & ps; kill $!"))...)
	wantCode(t, r, 0)
	procs := parsePS(r.stdout)
	var cmds []string
	for _, p := range procs {
		pid, cmd, _ := strings.Cut(p, " ")
		if pid == "1" {
			cmds = append(cmds, "1:"+cmd)
		} else {
			cmds = append(cmds, cmd)
		}
	}
	sort.Strings(cmds)
	if len(procs) != 3 || !strings.HasPrefix(cmds[0], "1:") || !strings.Contains(cmds[0], "sh") {
		t.Errorf("ps shows %q, want PID 1 sh, sleep and ps only:\n%s", procs, r)
	}
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	root, point, opts, fstype, source, super string
}

func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			continue
		}
		out = append(out, mountEntry{root: f[3], point: f[4], opts: f[5], fstype: g[0], source: g[1], super: g[2]})
	}
	return out
}

func findMount(ms []mountEntry, point string) *mountEntry {
	var found *mountEntry
	for i := range ms {
		if ms[i].point == point {
			found = &ms[i] // the last one is on top
		}
	}
	return found
}

func hasOpt(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// The mounts inside: fresh /proc, read-only /sys, a tmpfs /dev with the
// usual nodes and links, /dev/pts (ptmxmode=0666), /dev/shm, /dev/mqueue,
// the generated /etc files, and nothing of the host's tree.
func TestMountsInside(t *testing.T) {
	r := run(t, rcNoNet("--", "cat", "/proc/self/mountinfo")...)
	wantCode(t, r, 0)
	ms := parseMountinfo(r.stdout)
	check := func(point, fstype string, wantRO bool, superOpt string) {
		m := findMount(ms, point)
		switch {
		case m == nil:
			t.Errorf("nothing mounted on %s", point)
		case fstype != "" && m.fstype != fstype && !(point == "/sys" && m.root == "/"):
			t.Errorf("%s is %s, want %s", point, m.fstype, fstype)
		case wantRO && !hasOpt(m.opts, "ro"):
			t.Errorf("%s is mounted %s, want ro", point, m.opts)
		case superOpt != "" && !hasOpt(m.super, superOpt) && !hasOpt(m.opts, superOpt):
			t.Errorf("%s has options %s %s, want %s", point, m.opts, m.super, superOpt)
		}
	}
	check("/", "", false, "")
	check("/proc", "proc", false, "")
	check("/sys", "sysfs", true, "")
	check("/dev", "tmpfs", false, "")
	check("/dev/pts", "devpts", false, "ptmxmode=666")
	check("/dev/shm", "tmpfs", false, "")
	check("/dev/mqueue", "mqueue", false, "")
	for _, f := range []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"} {
		check(f, "", false, "")
	}
	roots := 0
	for _, m := range ms {
		ok := m.point == "/" || m.point == "/etc/hostname" || m.point == "/etc/hosts" || m.point == "/etc/resolv.conf"
		for _, prefix := range []string{"/proc", "/sys", "/dev"} {
			ok = ok || m.point == prefix || strings.HasPrefix(m.point, prefix+"/")
		}
		if !ok {
			t.Errorf("unexpected mount inside the container: %+v", m)
		}
		if m.point == "/" {
			roots++
		}
	}
	if roots != 1 {
		t.Errorf("%d mounts on / inside the container, want 1:\n%s", roots, r.stdout)
	}
}

func TestDevNodes(t *testing.T) {
	r := run(t, rcNoNet("--", "/bin/probe", "stat", "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
		"/dev/urandom", "/dev/tty", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/ptmx", "/dev/pts/ptmx",
		"/dev/shm", "/dev/mqueue")...)
	wantCode(t, r, 0)
	got := map[string]string{}
	for _, l := range strings.Split(r.out(), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			got[k] = v
		}
	}
	for path, want := range map[string]string{
		"/dev/null": "char 1:3", "/dev/zero": "char 1:5", "/dev/full": "char 1:7", "/dev/random": "char 1:8",
		"/dev/urandom": "char 1:9", "/dev/tty": "char 5:0", "/dev/pts/ptmx": "char 5:2",
		"/dev/fd": "-> /proc/self/fd", "/dev/stdin": "-> /proc/self/fd/0", "/dev/stdout": "-> /proc/self/fd/1",
		"/dev/stderr": "-> /proc/self/fd/2", "/dev/shm": "dir", "/dev/mqueue": "dir",
	} {
		if !strings.HasPrefix(got[path], want) && !strings.HasSuffix(got[path], want) {
			t.Errorf("%s: %q, want %q", path, got[path], want)
		}
	}
	if p := got["/dev/ptmx"]; !strings.HasPrefix(p, "char 5:2") && !strings.HasSuffix(p, "-> pts/ptmx") && !strings.HasSuffix(p, "-> /dev/pts/ptmx") {
		t.Errorf("/dev/ptmx: %q, want a link to pts/ptmx", p)
	}
	r = run(t, rcNoNet(sh("echo x > /dev/null && head -c 5 /dev/zero | wc -c && head -c 7 /dev/urandom | wc -c && "+
		"head -c 3 /dev/random | wc -c && echo x > /dev/full; echo full=$?; echo shm > /dev/shm/f && cat /dev/shm/f"))...)
	wantCode(t, r, 0)
	if strings.Join(strings.Fields(r.stdout), " ") != "5 7 3 full=1 shm" || !strings.Contains(r.stderr, "No space left") {
		t.Errorf("the device nodes do not behave:\n%s", r)
	}
}

// Nothing of the host's tree is reachable: a file next to the rootfs on the
// host cannot be found from inside.
func TestOldRootUnreachable(t *testing.T) {
	marker := fmt.Sprintf("host-marker-%d", os.Getpid())
	userFile(t, filepath.Join(env.base, marker), "host\n", 0o644)
	r := run(t, rcNoNet(sh("find / -path /proc -prune -o -path /sys -prune -o -name "+marker+" -print; ls -a / | tr '\\n' ' '"))...)
	wantCode(t, r, 0)
	if strings.Contains(r.stdout, marker) {
		t.Errorf("a host file is reachable from inside the container:\n%s", r)
	}
	r = run(t, rcNoNet(sh("ls /proc/1/root/ | tr '\\n' ' '; ls -d /proc/*/root/*/"+marker+" 2>/dev/null; true"))...)
	wantCode(t, r, 0)
	if strings.Contains(r.stdout, marker) {
		t.Errorf("a host file is reachable through /proc:\n%s", r)
	}
}

// A run does not change the rootfs on disk, not even the files it generates
// (/etc/hosts, /etc/hostname, /etc/resolv.conf), with or without networking.
func TestRootfsNotModified(t *testing.T) {
	requireNet(t)
	root := copyRootfs(t)
	before := snapshotTree(t, root)
	for _, args := range [][]string{
		{"run", "--rootfs", root, "--net", "none", "--", "true"},
		{"run", "--rootfs", root, "--hostname", "changed", "-e", "A=b", "-w", "/tmp", "--", "cat", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"},
		{"run", "--rootfs", root, "--read-only", "--", "true"},
		{"--rootfs=" + root, "--cmd=/bin/true"},
	} {
		wantCode(t, run(t, args...), 0)
	}
	after := snapshotTree(t, root)
	if d := diffSnapshots(before, after); d != "" {
		t.Errorf("the runs changed the rootfs on disk:\n%s", d)
	}
}

func snapshotTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v size=%d mtime=%d ino=%d uid=%d", fi.Mode(), fi.Size(), st.Mtim.Nano(), st.Ino, st.Uid)
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			v += " -> " + l
		} else if fi.Mode().IsRegular() && fi.Size() < 4096 {
			data, _ := os.ReadFile(p)
			v += fmt.Sprintf(" %q", data)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, fmt.Sprintf("changed %s: %s -> %s", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

// -v SRC:DST is read-write and writes land on the host as the user; :ro is
// read-only; a file can be a volume too.
func TestVolumes(t *testing.T) {
	src := userDir(t, "vol", 0o755)
	userFile(t, filepath.Join(src, "in"), "from-host\n", 0o644)
	file := filepath.Join(userDir(t, "volfile", 0o755), "motd")
	userFile(t, file, "volume-file\n", 0o644)

	r := run(t, rcNoNet("-v", src+":/data", sh("cat /data/in; echo from-container > /data/out"))...)
	wantCode(t, r, 0)
	if r.stdout != "from-host\n" {
		t.Errorf("the volume's file reads %q:\n%s", r.stdout, r)
	}
	st, err := os.Stat(filepath.Join(src, "out"))
	if err != nil {
		t.Fatalf("the container's write did not reach the host: %v", err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != env.user.uid {
		t.Errorf("a file written by container root belongs to uid %d on the host, want %d", uid, env.user.uid)
	}

	r = run(t, rcNoNet("--volume", src+":/mnt:rw", "-v", file+":/etc/motd:ro", sh("cat /etc/motd; echo again > /mnt/out2"))...)
	wantCode(t, r, 0)
	if r.stdout != "volume-file\n" {
		t.Errorf("the file volume reads %q:\n%s", r.stdout, r)
	}
	if _, err := os.Stat(filepath.Join(src, "out2")); err != nil {
		t.Errorf("the :rw volume was not writable: %v", err)
	}

	r = run(t, rcNoNet("-v", src+":/data:ro", sh("cat /data/in; touch /data/new"))...)
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("writing to a :ro volume should fail with \"Read-only file system\":\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(src, "new")); err == nil {
		t.Errorf("a file was created through a :ro volume")
	}
	r = run(t, rcNoNet("-v", file+":/etc/motd:ro", sh("echo x >> /etc/motd"))...)
	if r.code == 0 {
		t.Errorf("appending to a :ro file volume succeeded:\n%s", r)
	}
}

// --read-only makes / read-only; volumes stay writable.
func TestReadOnlyRootfs(t *testing.T) {
	vol := userDir(t, "rovol", 0o755)
	r := run(t, rcNoNet("--read-only", "-v", vol+":/data", sh("touch /data/ok && echo vol-ok; touch /newfile; echo rc=$?; touch /tmp/x; echo rc=$?"))...)
	wantCode(t, r, 0)
	if r.stdout != "vol-ok\nrc=1\nrc=1\n" || !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("want a writable volume and a read-only / and /tmp:\n%s", r)
	}
	r = run(t, rcNoNet("--", "cat", "/proc/self/mountinfo")...)
	if m := findMount(parseMountinfo(r.stdout), "/"); m == nil || hasOpt(m.opts, "ro") {
		t.Errorf("/ should be read-write without --read-only: %+v", m)
	}
}

// --tmpfs, as docker's: a fresh tmpfs, writable on a read-only root,
// rw,noexec,nosuid,nodev by default, with size= and mode=; its mount point
// is created in the rootfs when missing; a bad option is one line, 125.
func TestTmpfs(t *testing.T) {
	root := copyRootfs(t)
	r := run(t, "run", "--rootfs", root, "--net", "none", "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/data/x:size=1m,mode=1770,exec",
		"--", "sh", "-c", "echo hi > /tmp/f && cat /tmp/f; stat -c %a /data/x; grep -E ' /(tmp|data/x) ' /proc/self/mountinfo; touch /nope 2>/dev/null || echo root-ro")
	wantCode(t, r, 0)
	mounts := parseMountinfo(r.stdout)
	tmp, data := findMount(mounts, "/tmp"), findMount(mounts, "/data/x")
	switch {
	case !strings.HasPrefix(r.stdout, "hi\n1770\n") || !strings.Contains(r.stdout, "root-ro"):
		t.Errorf("want /tmp writable, /data/x mode 1770 and / read-only:\n%s", r)
	case tmp == nil || tmp.fstype != "tmpfs" || !hasOpt(tmp.opts, "noexec") || !hasOpt(tmp.opts, "nosuid") || !hasOpt(tmp.opts, "nodev") || hasOpt(tmp.opts, "ro"):
		t.Errorf("/tmp: want a rw,noexec,nosuid,nodev tmpfs, got %+v:\n%s", tmp, r)
	case data == nil || data.fstype != "tmpfs" || hasOpt(data.opts, "noexec") || !strings.Contains(data.super, "size=1024k"):
		t.Errorf("/data/x: want an exec tmpfs of 1 MiB, got %+v:\n%s", data, r)
	}
	wantRuntimeError(t, run(t, rcNoNet("--tmpfs", "/run:bogus", "--", "true")...), "bogus")
	wantRuntimeError(t, run(t, rcNoNet("--tmpfs", "relative", "--", "true")...), "absolute")
}

// Without ranges in /etc/subuid and /etc/subgid rabbitc maps only the user,
// with one warning line that says how to get the ranges. The files are
// hidden in a private mount namespace, which needs root to set up; rabbitc
// itself still runs as the test user.
func TestMissingSubIDRanges(t *testing.T) {
	requireSetup(t)
	if os.Geteuid() != 0 {
		t.Skip("hiding /etc/subuid from newuidmap needs root; the tests do not run as root")
	}
	xdg := userDir(t, "xdg-subid", 0o700)
	script := fmt.Sprintf(`mount --bind /dev/null /etc/subuid && mount --bind /dev/null /etc/subgid && `+
		`exec setpriv --reuid %d --regid %d --init-groups env XDG_RUNTIME_DIR=%s HOME=%s `+
		`%s run --rootfs %s --net none -- sh -c 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map'`,
		env.user.uid, env.user.gid, xdg, env.user.home, env.bin, env.rootfs)
	r := runOpt(t, opts{bin: "unshare", asRoot: true}, "--mount", "--propagation", "private", "sh", "-c", script)
	wantCode(t, r, 0)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || lines[0] == "" || !strings.Contains(r.stderr, "subuid") || strings.Contains(r.stderr, "panic") {
		t.Errorf("want exactly one warning line that names /etc/subuid:\n%s", r)
	}
	wantDoctorHint(t, r)
	parts := strings.Split(r.stdout, "--\n")
	if len(parts) != 2 || normMap(parts[0]) != fmt.Sprintf("0 %d 1", env.user.uid) || normMap(parts[1]) != fmt.Sprintf("0 %d 1", env.user.gid) {
		t.Errorf("want single-id maps for uid %d and gid %d:\n%s", env.user.uid, env.user.gid, r)
	}
	if left := listTree(filepath.Join(xdg, "rabbitc")); len(left) > 0 {
		t.Errorf("state left behind: %v", left)
	}
}

// User namespaces that cannot be created (here: user.max_user_namespaces=0,
// set inside a user namespace of the test user's own, so the host is not
// touched) give one line naming the setting, exit 125, nothing left behind.
func TestUserNamespacesDisabled(t *testing.T) {
	requireSetup(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare not found (install util-linux: run tests/setup.sh as root)")
	}
	dir := userDir(t, "no-userns", 0o755)
	wrapper := filepath.Join(dir, "rabbitc-without-userns")
	script := "#!/bin/sh\nexec unshare --user --map-root-user sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"' " + env.bin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runOpt(t, opts{bin: wrapper}, rcNoNet("--", "true")...)
	wantRuntimeError(t, r, "user.max_user_namespaces")
	wantDoctorHint(t, r)
	if strings.Contains(r.stderr, "fork/exec") {
		t.Errorf("the error names Go's exec internals instead of the problem:\n%s", r)
	}
}
