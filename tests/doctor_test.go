package tests

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// doctorChecks are the names of rabbitc doctor's checks, in its order.
var doctorChecks = []string{
	"kernel", "kernel.unprivileged_userns_clone", "user.max_user_namespaces", "kernel.apparmor_restrict_unprivileged_userns",
	"userns", "newuidmap", "newgidmap", "subuid", "subgid", "slirp4netns", "/dev/net/tun",
	"net.ipv4.ip_unprivileged_port_start", "overlay", "seccomp-notify", "cgroups", "XDG_RUNTIME_DIR", "state", "store",
}

// doctorHint ends rabbitc run's errors about the host.
const doctorHint = "; run `rabbitc doctor`"

// wantDoctorHint checks that rabbitc's one line on stderr (an error about
// the host, or the warning that it maps the user alone) ends with the hint.
func wantDoctorHint(t *testing.T, r result) {
	t.Helper()
	if !strings.HasSuffix(r.stderr, doctorHint+"\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("want one line ending with %q:\n%s", doctorHint, r)
	}
}

// doctorLine is the line of the check name in rabbitc doctor's output.
func doctorLine(t *testing.T, r result, name string) string {
	t.Helper()
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == name+":" {
			return l
		}
	}
	t.Fatalf("rabbitc doctor printed no line for %s:\n%s", name, r)
	return ""
}

// wantDoctor checks doctor's exit status and that each of lines is printed
// exactly as given.
func wantDoctor(t *testing.T, r result, code int, lines ...string) {
	t.Helper()
	if r.code != code || r.stderr != "" {
		t.Errorf("want exit %d and nothing on stderr, got:\n%s", code, r)
	}
	for _, want := range lines {
		name := strings.TrimSuffix(strings.Fields(want)[1], ":")
		if got := doctorLine(t, r, name); got != want {
			t.Errorf("rabbitc doctor:\n got %s\nwant %s", got, want)
		}
	}
}

// doctorUser is who runs rabbitc doctor in doctorIn.
type doctorUser struct {
	name     string
	uid, gid int
	home     string
}

func testDoctorUser() doctorUser {
	return doctorUser{env.user.name, env.user.uid, env.user.gid, env.user.home}
}

// doctorIn runs `rabbitc doctor` as u after the shell commands setup have
// run as root in a private mount namespace (and the other namespaces of
// flags, unshare's), so that what setup breaks is seen there alone.
func doctorIn(t *testing.T, u doctorUser, flags []string, setup string) result {
	t.Helper()
	requireSetup(t)
	if os.Geteuid() != 0 {
		t.Skip("breaking the host in a private namespace needs root; the tests do not run as root")
	}
	xdg := userDir(t, "xdg-doctor", 0o700)
	if err := os.Chown(xdg, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("%s && exec setpriv --reuid %d --regid %d --init-groups env XDG_RUNTIME_DIR=%s HOME=%s %s doctor",
		setup, u.uid, u.gid, xdg, u.home, env.bin)
	args := append([]string{"--mount", "--propagation", "private"}, flags...)
	return runOpt(t, opts{bin: "unshare", asRoot: true}, append(args, "sh", "-c", script)...)
}

// freeSubIDs is the range rabbitc doctor proposes to a user: 65536 ids after
// every range of both files (100000 at least).
func freeSubIDs(t *testing.T, extra ...idRange) string {
	t.Helper()
	start := 100000
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if p := strings.Split(line, ":"); len(p) == 3 {
				s, _ := strconv.Atoi(p[1])
				n, _ := strconv.Atoi(p[2])
				start = max(start, s+n)
			}
		}
	}
	for _, r := range extra {
		start = max(start, r.start+r.count)
	}
	return fmt.Sprintf("%d-%d", start, start+65535)
}

// On this machine every check passes or warns, in the documented order;
// --format json says the same; the lines that do not depend on the machine
// are exact.
func TestDoctorHealthy(t *testing.T) {
	requireNet(t)
	p := start(t, opts{}, "doctor")
	r := p.wait(t)
	wantCode(t, r, 0)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(doctorChecks) {
		t.Fatalf("want %d lines, one per check:\n%s", len(doctorChecks), r)
	}
	for i, name := range doctorChecks {
		f := strings.Fields(lines[i])
		if len(f) < 3 || f[1] != name+":" || f[0] != "ok" && f[0] != "warning" {
			t.Errorf("line %d: want ok or warning for %s, got %q", i+1, name, lines[i])
		}
	}
	sub := env.user.subuid[0]
	wantDoctor(t, r, 0,
		fmt.Sprintf("ok       subuid: %s: %d-%d (%d ids)", env.user.name, sub.start, sub.start+sub.count-1, sub.count),
		"ok       /dev/net/tun: opens read-write",
		fmt.Sprintf("ok       userns: created one (clone CLONE_NEWUSER as uid %d)", env.user.uid))
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if p, _ := exec.LookPath(tool); isSetuidRoot(p) {
			wantDoctor(t, r, 0, "ok       "+tool+": "+p+", setuid root")
		}
	}
	if l := doctorLine(t, r, "XDG_RUNTIME_DIR"); !strings.HasPrefix(l, "ok       XDG_RUNTIME_DIR: "+p.xdg+", yours, mode 0700, ") {
		t.Errorf("XDG_RUNTIME_DIR line: %s", l)
	}
	checkDoctorJSON(t, lines, run(t, "doctor", "--format", "json"))
}

// The seccomp-notify line says whether network acceleration runs: with the
// socket filter it needs (CAP_NET_ADMIN on a host that refuses it to users,
// netaccel_test.go), and without where the host refuses it.
func TestDoctorNetAccel(t *testing.T) {
	r := runOpt(t, opts{netAdmin: true}, "doctor")
	if l := doctorLine(t, r, "seccomp-notify"); !strings.HasPrefix(l, "ok       seccomp-notify: ") || !strings.Contains(l, "network acceleration") {
		t.Errorf("with the socket filter allowed: %s", l)
	}
	if os.Getenv("RABBITC_TEST_NET_ADMIN") != "" {
		return
	}
	r = run(t, "doctor")
	l := doctorLine(t, r, "seccomp-notify")
	if strings.HasPrefix(l, "warning  seccomp-notify: ") && !strings.Contains(l, "network acceleration is off: ") {
		t.Errorf("a warning that does not say why acceleration is off: %s", l)
	}
}

func isSetuidRoot(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeSetuid != 0 && st.Sys().(*syscall.Stat_t).Uid == 0
}

// checkDoctorJSON checks that --format json holds the checks of the text
// lines, in order, with their status.
func checkDoctorJSON(t *testing.T, lines []string, r result) {
	t.Helper()
	wantCode(t, r, 0)
	var checks []struct {
		Name, Status, Detail, Fix string
		AsRoot                    bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &checks); err != nil {
		t.Fatalf("--format json: %v\n%s", err, r)
	}
	if len(checks) != len(lines) {
		t.Fatalf("--format json has %d checks, the text %d:\n%s", len(checks), len(lines), r)
	}
	for i, c := range checks {
		if f := strings.Fields(lines[i]); c.Name+":" != f[1] || c.Status != f[0] || c.Detail == "" {
			t.Errorf("check %d in json: %+v; text: %s", i, c, lines[i])
		}
	}
}

// newuidmap and newgidmap missing from $PATH are errors naming the package;
// rabbitc run's fallback warning points at rabbitc doctor.
func TestDoctorWithoutNewuidmap(t *testing.T) {
	requireNet(t)
	dir := userDir(t, "path-without-newuidmap", 0o755)
	if p, err := exec.LookPath("slirp4netns"); err != nil {
		t.Fatal(err)
	} else if err := os.Symlink(p, filepath.Join(dir, "slirp4netns")); err != nil {
		t.Fatal(err)
	}
	r := runOpt(t, opts{path: dir}, "doctor")
	wantDoctor(t, r, 1,
		"error    newuidmap: not found in $PATH — fix (as root): apt-get install uidmap",
		"error    newgidmap: not found in $PATH — fix (as root): apt-get install uidmap")
	r = runOpt(t, opts{path: dir}, rcNoNet("--", "true")...)
	wantCode(t, r, 0)
	wantDoctorHint(t, r)
}

// A newuidmap that is neither setuid root nor has file capabilities is an
// error; one with cap_setuid=ep in security.capability is fine.
func TestDoctorNewuidmapNotSetuid(t *testing.T) {
	requireNet(t)
	if os.Geteuid() != 0 {
		t.Skip("setting file capabilities needs root; the tests do not run as root")
	}
	dir := userDir(t, "path-plain-newuidmap", 0o755)
	for _, tool := range []string{"newuidmap", "newgidmap", "slirp4netns"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tool), data, 0o755); err != nil { // root's, not setuid
			t.Fatal(err)
		}
	}
	nu, ng := filepath.Join(dir, "newuidmap"), filepath.Join(dir, "newgidmap")
	r := runOpt(t, opts{path: dir}, "doctor")
	wantDoctor(t, r, 1,
		"error    newuidmap: "+nu+" is neither setuid root nor has cap_setuid in its file capabilities — fix (as root): chown root: "+nu+" && chmod u+s "+nu,
		"error    newgidmap: "+ng+" is neither setuid root nor has cap_setgid in its file capabilities — fix (as root): chown root: "+ng+" && chmod u+s "+ng)
	setFileCap(t, nu, unix.CAP_SETUID)
	setFileCap(t, ng, unix.CAP_SETGID)
	r = runOpt(t, opts{path: dir}, "doctor")
	wantDoctor(t, r, 0,
		"ok       newuidmap: "+nu+", file capabilities cap_setuid=ep",
		"ok       newgidmap: "+ng+", file capabilities cap_setgid=ep")
}

// setFileCap gives path the capability c, permitted and effective
// (setcap c+ep), as a revision 2 vfs_cap_data.
func setFileCap(t *testing.T, path string, c int) {
	t.Helper()
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b, 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<c)
	if err := unix.Setxattr(path, "security.capability", b, 0); err != nil {
		t.Fatalf("setxattr security.capability %s: %v", path, err)
	}
}

// A user without subordinate ids (the second test user of tests/setup.sh)
// gets the usermod command with its name and a free range.
func TestDoctorWithoutSubIDs(t *testing.T) {
	requireSetup(t)
	name := env.user.name + "-nosub"
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up %s: %v (%s)", name, err, fixIt)
	}
	du := doctorUser{name: name, home: filepath.Join(env.base, "home-"+name)}
	du.uid, _ = strconv.Atoi(u.Uid)
	du.gid, _ = strconv.Atoi(u.Gid)
	if err := os.Mkdir(du.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(du.home, du.uid, du.gid); err != nil {
		t.Fatal(err)
	}
	r := doctorIn(t, du, nil, "true")
	free := freeSubIDs(t)
	fix := "usermod --add-subuids " + free + " --add-subgids " + free + " " + name
	wantDoctor(t, r, 1,
		"error    subuid: no range for "+name+" in /etc/subuid — fix (as root): "+fix,
		"error    subgid: no range for "+name+" in /etc/subgid — fix (as root): "+fix)
}

// A range of the user's that another user's overlaps (a copy of
// /etc/subuid with one more line, bound over it) is an error, with the
// usermod command that moves the user's range to a free one.
func TestDoctorOverlappingSubIDs(t *testing.T) {
	requireSetup(t)
	mine := env.user.subuid[0]
	theirs := idRange{mine.start + 500, 1000}
	b, err := os.ReadFile("/etc/subuid")
	if err != nil {
		t.Fatal(err)
	}
	copyFile := filepath.Join(userDir(t, "subuid-overlap", 0o755), "subuid")
	line := fmt.Sprintf("intruder:%d:%d\n", theirs.start, theirs.count)
	if err := os.WriteFile(copyFile, append(b, line...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := doctorIn(t, testDoctorUser(), nil, "mount --bind "+copyFile+" /etc/subuid")
	own := fmt.Sprintf("%d-%d", mine.start, mine.start+mine.count-1)
	wantDoctor(t, r, 1, fmt.Sprintf("error    subuid: %s's range %s overlaps intruder's %d-%d in /etc/subuid: their containers would share ids — fix (as root): usermod --del-subuids %s --add-subuids %s %s",
		env.user.name, own, theirs.start, theirs.start+theirs.count-1, own, freeSubIDs(t, theirs), env.user.name))
}

// A /dev/net/tun of mode 0600 bound over the device: an error with the
// chmod; rabbitc run's error ends with the hint.
func TestDoctorTunUnusable(t *testing.T) {
	requireNet(t)
	dir := userDir(t, "tun-doctor", 0o755)
	node := filepath.Join(dir, "tun")
	if err := syscall.Mknod(node, syscall.S_IFCHR|0o600, 10<<8|200); err != nil {
		t.Skipf("mknod: %v (needs root)", err)
	}
	r := doctorIn(t, testDoctorUser(), nil, "mount --bind "+node+" /dev/net/tun")
	wantDoctor(t, r, 1, "error    /dev/net/tun: open /dev/net/tun: permission denied — fix (as root): chmod 0666 /dev/net/tun")
}

// slirp4netns missing, and one too old for rabbitc's confinement: errors
// naming what to install, as rabbitc run's own refusals say.
func TestDoctorSlirp(t *testing.T) {
	requireNet(t)
	dir := mapToolsDir(t, "path-without-slirp-doctor")
	r := runOpt(t, opts{path: dir}, "doctor")
	wantDoctor(t, r, 1, "error    slirp4netns: not found in $PATH — fix (as root): apt-get install slirp4netns")

	f := newFakeSlirp(t, "slirp-0.4.0-beta.1-doctor", help040beta1, "0.4.0-beta.1", false)
	r = runOpt(t, opts{path: f.dir}, "doctor")
	wantDoctor(t, r, 1, "error    slirp4netns: slirp4netns 0.4.0-beta.1 ("+f.path+") lacks --enable-sandbox and --enable-seccomp — fix: "+
		"install slirp4netns >= 0.4.0, or pass --security-opt slirp4netns-sandbox=false --security-opt slirp4netns-seccomp=false to run without them")
	if runs := f.runs(t); len(runs) > 0 {
		t.Errorf("doctor started slirp4netns: %q", runs)
	}
}

// net.ipv4.ip_unprivileged_port_start, set in a network namespace of the
// test's own: a warning naming the first port; 0 is fine.
func TestDoctorUnprivilegedPortStart(t *testing.T) {
	requireNet(t)
	const file = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
	r := doctorIn(t, testDoctorUser(), []string{"--net"}, "echo 2000 > "+file)
	wantDoctor(t, r, 0, "warning  net.ipv4.ip_unprivileged_port_start: 2000: host ports below 2000 cannot be published — fix (as root): "+
		"sysctl -w net.ipv4.ip_unprivileged_port_start=80 && echo net.ipv4.ip_unprivileged_port_start=80 >> /etc/sysctl.d/50-rabbitc.conf")
	r = doctorIn(t, testDoctorUser(), []string{"--net"}, "echo 0 > "+file)
	wantDoctor(t, r, 0, "ok       net.ipv4.ip_unprivileged_port_start: 0: any host port can be published")
}

// user.max_user_namespaces=0, set in a user namespace of the test user's
// own (as TestUserNamespacesDisabled does): the setting is an error, and so
// is the clone that doctor tries, with the setting's fix; the overlay probe,
// which needs a user namespace, is not tried.
func TestDoctorUserNamespacesDisabled(t *testing.T) {
	requireSetup(t)
	dir := userDir(t, "no-userns-doctor", 0o755)
	wrapper := filepath.Join(dir, "rabbitc-without-userns")
	script := "#!/bin/sh\nexec unshare --user --map-root-user sh -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"' " + env.bin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runOpt(t, opts{bin: wrapper}, "doctor")
	fix := "sysctl -w user.max_user_namespaces=15000 && echo user.max_user_namespaces=15000 >> /etc/sysctl.d/50-rabbitc.conf"
	wantDoctor(t, r, 1,
		"error    user.max_user_namespaces: 0: no user may create a user namespace — fix (as root): "+fix,
		"error    userns: clone CLONE_NEWUSER: no space left on device (user.max_user_namespaces above) — fix (as root): "+fix,
		"warning  overlay: not tried without a user namespace (userns above)")
}

// The image store on a file system that overlayfs refuses as its upper
// layer (here an overlayfs itself, mounted as HOME): an error that says
// images cannot run.
func TestDoctorOverlayRefused(t *testing.T) {
	requireSetup(t)
	dir := userDir(t, "overlay-home", 0o755)
	for _, d := range []string{"l", "u", "w", "home"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	u := testDoctorUser()
	u.home = filepath.Join(dir, "home")
	setup := fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s/l,upperdir=%s/u,workdir=%s/w %s && chown %d:%d %s",
		dir, dir, dir, u.home, u.uid, u.gid, u.home)
	r := doctorIn(t, u, nil, setup)
	l := doctorLine(t, r, "overlay")
	want := "error    overlay: kernel overlayfs in a user namespace on " + u.home + ": mount overlay with userxattr: "
	if !strings.HasPrefix(l, want) || !strings.Contains(l, "images cannot run") || r.code != 1 {
		t.Errorf("want exit 1 and a line starting %q:\n%s", want, r)
	}
}

// Without a cgroup v2 mount (hidden by a tmpfs in a private mount
// namespace) the layout is cgroup v1 only: a warning, since rabbitc run
// needs no cgroup.
func TestDoctorCgroupV1Only(t *testing.T) {
	requireSetup(t)
	var hide []string
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			hide = append(hide, "mount -t tmpfs none "+m)
		}
	}
	if len(hide) == 0 {
		t.Skip("no cgroup v2 mount to hide")
	}
	r := doctorIn(t, testDoctorUser(), nil, strings.Join(hide, " && "))
	l := doctorLine(t, r, "cgroups")
	if !strings.HasPrefix(l, "warning  cgroups: cgroup v1 only (") || r.code != 0 {
		t.Errorf("want exit 0 and a warning for cgroup v1 only:\n%s", r)
	}
}

// XDG_RUNTIME_DIR that is root's: an error, and so is the state directory
// that cannot be made in it; rabbitc run's error ends with the hint.
// Without XDG_RUNTIME_DIR: a warning.
func TestDoctorRuntimeDir(t *testing.T) {
	requireSetup(t)
	if !env.user.drop {
		t.Skip("needs a directory of another user's: the tests do not run as root")
	}
	dir := filepath.Join(env.base, "xdg-of-root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o := opts{env: []string{"XDG_RUNTIME_DIR=" + dir}}
	r := runOpt(t, o, "doctor")
	ids := fmt.Sprintf("%d:%d", env.user.uid, env.user.gid)
	wantDoctor(t, r, 1,
		fmt.Sprintf("error    XDG_RUNTIME_DIR: %s belongs to uid 0, not to you (uid %d) — fix (as root): chown -R %s %s", dir, env.user.uid, ids, dir),
		fmt.Sprintf("error    state: %s/rabbitc does not exist, and you cannot make it in %s — fix (as root): mkdir -p %s/rabbitc && chown -R %s %s/rabbitc", dir, dir, dir, ids, dir))
	r = runOpt(t, o, rcNoNet("--", "true")...)
	wantRuntimeError(t, r, dir)
	wantDoctorHint(t, r)
	r = runOpt(t, opts{noXDG: true}, "doctor")
	l := doctorLine(t, r, "XDG_RUNTIME_DIR")
	if want := fmt.Sprintf("warning  XDG_RUNTIME_DIR: not set: the state goes to /tmp/rabbitc-%d, which outlives your session", env.user.uid); !strings.HasPrefix(l, want) {
		t.Errorf("got  %s\nwant %s...", l, want)
	}
}

// rabbitc info names the state and store directories, the maps rabbitc
// would write, slirp4netns and the kernel; rabbitc version the build.
func TestInfoAndVersion(t *testing.T) {
	requireNet(t)
	p := start(t, opts{}, "info", "--format", "json")
	r := p.wait(t)
	wantCode(t, r, 0)
	var in struct {
		StateDir, StoreDir, Kernel, Cgroups string
		UIDMap, GIDMap                      []struct{ ContainerID, HostID, Size int }
		Network                             struct{ Backend, Path, Version string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
		t.Fatalf("info --format json: %v\n%s", err, r)
	}
	var uidMap []string
	for _, l := range in.UIDMap {
		uidMap = append(uidMap, fmt.Sprintf("%d %d %d", l.ContainerID, l.HostID, l.Size))
	}
	var uname unix.Utsname
	unix.Uname(&uname)
	switch {
	case in.StateDir != filepath.Join(p.xdg, "rabbitc"):
		t.Errorf("stateDir %q, want %s/rabbitc", in.StateDir, p.xdg)
	case in.StoreDir != filepath.Join(env.user.home, ".local/share/rabbitc"):
		t.Errorf("storeDir %q, want ~/.local/share/rabbitc", in.StoreDir)
	case strings.Join(uidMap, "\n") != expectedMap(env.user.uid, env.user.subuid):
		t.Errorf("uidMap %q, want %q", uidMap, expectedMap(env.user.uid, env.user.subuid))
	case in.Network.Backend != "slirp4netns" || in.Network.Version == "":
		t.Errorf("network %+v, want slirp4netns with its version", in.Network)
	case in.Kernel != "Linux "+unix.ByteSliceToString(uname.Release[:]):
		t.Errorf("kernel %q", in.Kernel)
	}
	r = run(t, "info")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "uid map:   "+strings.Join(uidMap, ", ")+"\n") {
		t.Errorf("info does not print the uid map %q:\n%s", uidMap, r)
	}
	r = run(t, "version")
	wantCode(t, r, 0)
	if v := strings.Split(r.stdout, "\n"); len(v) < 5 || !strings.HasPrefix(v[0], "rabbitc version ") || !strings.HasPrefix(v[1], "commit: ") ||
		!strings.HasPrefix(v[2], "built: ") || !strings.Contains(r.stdout, "\ngo: go1.") {
		t.Errorf("version: want version, commit, build date and Go version:\n%s", r)
	}
}
