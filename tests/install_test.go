package tests

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// make install, make uninstall, the AppArmor profile and make deb: what a
// user installs, checked as installed.

// makeIn runs make with args in the repository.
func makeIn(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = env.repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// commandPages are the man pages there must be, one for each command that
// rabbitc's completion offers (so a new command without a page fails):
// rabbitc.1, rabbitc-run.1, rabbitc-image-ls.1, ... (cobra's help has
// none).
func commandPages(t *testing.T, bin string) []string {
	t.Helper()
	complete := func(args ...string) []string {
		out, err := exec.Command(bin, append([]string{"__complete"}, args...)...).Output()
		if err != nil {
			t.Fatalf("%s __complete %q: %v", bin, args, err)
		}
		var names []string
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(line, "\t")
			if name != "" && !strings.HasPrefix(name, ":") && name != "help" {
				names = append(names, name)
			}
		}
		return names
	}
	pages := []string{"rabbitc.1"}
	for _, c := range complete("") {
		pages = append(pages, "rabbitc-"+c+".1")
		if c == "image" || c == "system" || c == "completion" {
			for _, sub := range complete(c, "") {
				pages = append(pages, "rabbitc-"+c+"-"+sub+".1")
			}
		}
	}
	// The OCI verbs of their own.
	for _, v := range []string{"create", "start", "state", "delete", "list", "features", "spec"} {
		pages = append(pages, "rabbitc-"+v+".1")
	}
	if len(pages) < 30 {
		t.Fatalf("only %d commands: %q", len(pages), pages)
	}
	return pages
}

// TestMakeInstall: make install DESTDIR=... puts the binaries, a man page
// for every command, the completion scripts and (APPARMOR=yes) the profile
// for the PREFIX it was given; make uninstall with the same variables
// leaves DESTDIR empty.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	makeIn(t, "install", "DESTDIR="+dest, "PREFIX=/opt/rc", "APPARMOR=yes")
	want := []string{
		"opt/rc/bin/rabbitc", "opt/rc/bin/rabbitc-image",
		"opt/rc/share/bash-completion/completions/rabbitc",
		"opt/rc/share/zsh/site-functions/_rabbitc",
		"opt/rc/share/fish/vendor_completions.d/rabbitc.fish",
		"etc/apparmor.d/rabbitc",
	}
	for _, p := range commandPages(t, filepath.Join(env.repo, "bin/rabbitc")) {
		want = append(want, "opt/rc/share/man/man1/"+p)
	}
	got := filesUnder(t, dest)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("make install did not install %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("make install installed %s, which no command has", g)
		}
	}
	if st, err := os.Stat(filepath.Join(dest, "opt/rc/bin/rabbitc")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("rabbitc installed with %v, %v", st.Mode(), err)
	}
	page, _ := os.ReadFile(filepath.Join(dest, "opt/rc/share/man/man1/rabbitc-run.1"))
	if !bytes.Contains(page, []byte("rootfs")) || !bytes.Contains(page, []byte("rabbitc-run")) {
		t.Errorf("rabbitc-run.1 does not describe run:\n%s", page)
	}
	if resolve := filepath.Join(dest, "opt/rc/share/man/man1/rabbitc-resolve.1"); fileExists(resolve) {
		t.Errorf("a page for the hidden resolve command: %s", resolve)
	}
	profile, _ := os.ReadFile(filepath.Join(dest, "etc/apparmor.d/rabbitc"))
	for _, w := range []string{"profile rabbitc /opt/rc/bin/rabbitc flags=(unconfined) {", "profile rabbitc-image /opt/rc/bin/rabbitc-image flags=(unconfined) {"} {
		if !bytes.Contains(profile, []byte(w)) {
			t.Errorf("the installed profile lacks %q:\n%s", w, profile)
		}
	}
	checkAppArmorProfile(t, filepath.Join(dest, "etc/apparmor.d/rabbitc"))

	makeIn(t, "uninstall", "DESTDIR="+dest, "PREFIX=/opt/rc")
	if left := listTree(dest); len(left) > 0 {
		t.Errorf("make uninstall left:\n  %s", strings.Join(left, "\n  "))
	}

	// APPARMOR=auto: only where AppArmor 4 is (its abi/4.0).
	for _, v4 := range []bool{false, true} {
		dest := t.TempDir()
		os.MkdirAll(filepath.Join(dest, "etc/apparmor.d/abi"), 0o755)
		if v4 {
			os.WriteFile(filepath.Join(dest, "etc/apparmor.d/abi/4.0"), nil, 0o644)
		}
		makeIn(t, "install", "DESTDIR="+dest)
		if got := fileExists(filepath.Join(dest, "etc/apparmor.d/rabbitc")); got != v4 {
			t.Errorf("APPARMOR=auto with abi/4.0 %v: profile installed %v", v4, got)
		}
		makeIn(t, "uninstall", "DESTDIR="+dest)
		if left := filesUnder(t, dest); len(left) != map[bool]int{false: 0, true: 1}[v4] {
			t.Errorf("make uninstall left %q", left)
		}
	}
}

func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAppArmorProfile parses the profile with Debian's apparmor_parser
// (-Q: not loaded into the kernel). An AppArmor older than 4.0 (Debian 12's
// 3.0.8) knows neither abi/4.0 nor the userns rule, which are the point of
// the profile: there the profile is checked to be rejected as it is, and
// to parse once its abi line says 3.0 and its userns rules are gone (those
// alone, which the test counts), so everything else in it is checked.
func checkAppArmorProfile(t *testing.T, path string) {
	t.Helper()
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		for _, d := range []string{"/usr/sbin", "/sbin"} {
			if fileExists(d + "/apparmor_parser") {
				parser = d + "/apparmor_parser"
			}
		}
	}
	if parser == "" {
		t.Fatalf("apparmor_parser not found (Debian package apparmor: %s)", fixIt)
	}
	parse := func(p string) (string, error) {
		out, err := exec.Command(parser, "-Q", "-K", p).CombinedOutput()
		return string(out), err
	}
	if fileExists("/etc/apparmor.d/abi/4.0") {
		if out, err := parse(path); err != nil {
			t.Errorf("apparmor_parser -Q %s: %v\n%s", path, err, out)
		}
		return
	}
	out, err := parse(path)
	if err == nil || !strings.Contains(out, "abi/4.0") {
		t.Errorf("apparmor_parser without abi/4.0 accepted the profile, or refused it for another reason than abi/4.0: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	abi, userns := 0, 0
	for _, l := range strings.Split(string(b), "\n") {
		switch strings.TrimSpace(l) {
		case "abi <abi/4.0>,":
			abi++
			l = "abi <abi/3.0>,"
		case "userns,":
			userns++
			continue
		}
		lines = append(lines, l)
	}
	if abi != 1 || userns != 2 {
		t.Errorf("the profile has %d abi 4.0 lines and %d userns rules, want 1 and 2 (one for rabbitc, one for rabbitc-image)", abi, userns)
	}
	older := filepath.Join(t.TempDir(), "rabbitc-abi3")
	if err := os.WriteFile(older, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := parse(older); err != nil {
		t.Errorf("apparmor_parser -Q of the profile with abi 3.0 and without its userns rules: %v\n%s", err, out)
	}
	version, _ := exec.Command(parser, "--version").Output()
	t.Logf("%s: no abi/4.0 (AppArmor 4.0's, with the userns rule): parsed the profile with abi 3.0 and without its %d userns rules",
		strings.SplitN(string(version), "\n", 2)[0], userns)
}

// TestDebPackage: make deb builds a package that installs with dpkg -i,
// whose /usr/bin/rabbitc the unprivileged test user runs containers with
// (finding /usr/bin/rabbitc-image beside it), with man pages that man
// finds and completion that bash runs (container names from rabbitc's
// state), whose postinst installs the AppArmor profile only where
// apparmor_parser accepts it, and which dpkg -r removes whole. Root only:
// it installs the package on this machine (and refuses to when a rabbitc
// is installed already).
func TestDebPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installs a package on this machine: root only (make test as root)")
	}
	requireNet(t)
	// Other test runs on this machine (other checkouts) take turns.
	lock, err := os.OpenFile("/run/lock/rabbitc-deb-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "rabbitc").Output(); err == nil && len(out) > 0 && !strings.HasPrefix(string(out), "unknown") {
		t.Skipf("a rabbitc package is on this machine (%s): not replacing it", out)
	}
	for _, p := range []string{"/usr/bin/rabbitc", "/usr/bin/rabbitc-image", "/etc/apparmor.d/rabbitc"} {
		if fileExists(p) {
			t.Skipf("%s exists and no package owns it: not replacing it", p)
		}
	}

	out := makeIn(t, "deb", "DPKG_DEB_FLAGS=-Zgzip") // xz takes 8 s more here
	// "deb: build/rabbitc_VERSION_ARCH.deb (SIZE)"; older ones may be there.
	var deb string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "deb:" {
			deb = filepath.Join(env.repo, f[1])
		}
	}
	if !strings.HasPrefix(filepath.Base(deb), "rabbitc_") || !fileExists(deb) {
		t.Fatalf("make deb did not say which package it made, or it is not there (%q):\n%s", deb, out)
	}
	fields := map[string]string{}
	for _, f := range []string{"Package", "Architecture", "Depends", "Recommends"} {
		v, err := exec.Command("dpkg-deb", "-f", deb, f).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s %s: %v", deb, f, err)
		}
		fields[f] = strings.TrimSpace(string(v))
	}
	arch, _ := exec.Command("dpkg", "--print-architecture").Output()
	if fields["Package"] != "rabbitc" || fields["Architecture"] != strings.TrimSpace(string(arch)) ||
		!strings.Contains(fields["Depends"], "uidmap") || !strings.Contains(fields["Depends"], "slirp4netns") ||
		fields["Recommends"] != "fuse-overlayfs" {
		t.Errorf("control fields: %q", fields)
	}
	if !strings.HasSuffix(deb, "_"+fields["Architecture"]+".deb") {
		t.Errorf("package file %s is not named for its architecture %s", deb, fields["Architecture"])
	}

	// What the package will put there, and what was there before.
	contents, err := exec.Command("dpkg-deb", "--fsys-tarfile", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	list, err := tarList(contents)
	if err != nil {
		t.Fatal(err)
	}
	existed := map[string]bool{}
	for _, p := range list {
		existed[p] = fileExists(p)
	}

	installed := false
	t.Cleanup(func() {
		if installed {
			exec.Command("dpkg", "--purge", "rabbitc").Run()
		}
	})
	if out, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", deb, err, out)
	}
	installed = true
	owned, err := exec.Command("dpkg", "-L", "rabbitc").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/usr/bin/rabbitc", "/usr/bin/rabbitc-image",
		"/usr/share/man/man1/rabbitc.1.gz", "/usr/share/man/man1/rabbitc-run.1.gz", "/usr/share/man/man1/rabbitc-pull.1.gz",
		"/usr/share/bash-completion/completions/rabbitc", "/usr/share/zsh/vendor-completions/_rabbitc",
		"/usr/share/fish/vendor_completions.d/rabbitc.fish", "/usr/share/rabbitc/apparmor/rabbitc",
		"/usr/share/doc/rabbitc/copyright", "/usr/share/doc/rabbitc/changelog.gz"} {
		if !slices.Contains(strings.Split(string(owned), "\n"), p) || !fileExists(p) {
			t.Errorf("the package did not install %s", p)
		}
	}
	for _, p := range commandPages(t, "/usr/bin/rabbitc") {
		if !fileExists("/usr/share/man/man1/" + p + ".gz") {
			t.Errorf("no man page /usr/share/man/man1/%s.gz", p)
		}
	}

	// The profile: in /etc/apparmor.d where this apparmor_parser accepts
	// it (AppArmor 4), not where it would break loading the others.
	accepted := exec.Command("apparmor_parser", "-Q", "-K", "/usr/share/rabbitc/apparmor/rabbitc").Run() == nil
	if got := fileExists("/etc/apparmor.d/rabbitc"); got != accepted {
		t.Errorf("postinst: /etc/apparmor.d/rabbitc installed %v, apparmor_parser accepts it %v", got, accepted)
	}
	checkAppArmorProfile(t, "/usr/share/rabbitc/apparmor/rabbitc")

	// The installed binary, as the test user.
	r := runOpt(t, opts{bin: "/usr/bin/rabbitc"}, "run", "--rootfs", env.rootfs, "--", "sh", "-c", "echo from the package; ip -o -4 addr show tap0")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "from the package") || !strings.Contains(r.stdout, "10.0.2.100") {
		t.Errorf("a container of the installed rabbitc (slirp4netns network):\n%s", r)
	}
	r = runOpt(t, opts{bin: "/usr/bin/rabbitc"}, "images")
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "REPOSITORY") {
		t.Errorf("rabbitc images (rabbitc-image beside rabbitc):\n%s", r)
	}
	// The installed rabbitc's doctor finds everything in place: newuidmap
	// and slirp4netns through the package's dependencies.
	r = runOpt(t, opts{bin: "/usr/bin/rabbitc"}, "doctor")
	wantCode(t, r, 0)
	for _, check := range []string{"newuidmap: /usr/bin/newuidmap", "slirp4netns: /usr/bin/slirp4netns"} {
		if !strings.Contains(r.stdout, "ok       "+check) {
			t.Errorf("rabbitc doctor of the installed package: no %q line:\n%s", check, r)
		}
	}

	// man finds the pages (man-db).
	if _, err := exec.LookPath("man"); err == nil {
		out, err := exec.Command("man", "-w", "rabbitc-run").Output()
		if err != nil || strings.TrimSpace(string(out)) != "/usr/share/man/man1/rabbitc-run.1.gz" {
			t.Errorf("man -w rabbitc-run: %q, %v", out, err)
		}
		cmd := exec.Command("man", "rabbitc-pull")
		cmd.Env = append(os.Environ(), "MANPAGER=cat", "MANWIDTH=80")
		if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "--tls-verify") {
			t.Errorf("man rabbitc-pull: %v\n%s", err, out)
		}
	} else {
		t.Log("man-db is not installed: the pages are checked as files only")
	}

	// bash completion as the test user: commands, and the names of the
	// user's running containers (rabbitc __complete reads its state).
	if !fileExists("/usr/share/bash-completion/bash_completion") {
		t.Fatalf("bash-completion is not installed (%s)", fixIt)
	}
	d := newDetachedEnv(t)
	d.bin = "/usr/bin/rabbitc"
	name := fmt.Sprintf("pkg-test-%d", time.Now().UnixNano()%100000)
	if _, r := d.runD("--name", name, "--rootfs", env.rootfs, "--net", "none", "--", "sleep", "60"); r.code != 0 {
		t.Fatalf("run -d:\n%s", r)
	}
	complete := func(line string) []string {
		t.Helper()
		// As bash-completion does at the first TAB after rabbitc: its
		// loader finds the script by the command's name, and the function
		// it registers is called with the words of the line.
		script := `. /usr/share/bash-completion/bash_completion
_completion_loader rabbitc
f=$(complete -p rabbitc | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"
[ "${COMP_LINE% }" != "$COMP_LINE" ] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
"$f" rabbitc "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", "--norc", "-c", script, "bash", line)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + env.user.home, "XDG_RUNTIME_DIR=" + d.xdg}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credential()}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s%s", line, err, out, &stderr)
		}
		var words []string
		for _, w := range strings.Split(string(out), "\n") {
			if w = strings.TrimSpace(w); w != "" {
				words = append(words, strings.Fields(w)[0])
			}
		}
		return words
	}
	if got := complete("rabbitc sto"); !slices.Equal(got, []string{"stop"}) {
		t.Errorf("completion of \"rabbitc sto\": %q", got)
	}
	if got := complete("rabbitc stop "); !slices.Contains(got, name) {
		t.Errorf("completion of \"rabbitc stop \" lacks the running container %s: %q", name, got)
	}
	wantCode(t, d.run("rm", "-f", name), 0)
	for _, f := range []string{"/usr/share/zsh/vendor-completions/_rabbitc", "/usr/share/fish/vendor_completions.d/rabbitc.fish"} {
		if b, err := os.ReadFile(f); err != nil || !bytes.Contains(b, []byte("__complete")) {
			t.Errorf("%s does not ask rabbitc __complete: %v", f, err)
		}
	}

	// dpkg -r removes every file it installed, and the profile postinst
	// copied; what existed before (/usr/bin, ...) stays.
	if out, err := exec.Command("dpkg", "-r", "rabbitc").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r rabbitc: %v\n%s", err, out)
	}
	for _, p := range append(strings.Split(strings.TrimSpace(string(owned)), "\n"), "/etc/apparmor.d/rabbitc") {
		if p == "/." || existed[p] {
			continue
		}
		if fileExists(p) {
			t.Errorf("dpkg -r left %s", p)
		}
	}
	if out, err := exec.Command("dpkg", "--purge", "rabbitc").CombinedOutput(); err != nil {
		t.Errorf("dpkg --purge rabbitc: %v\n%s", err, out)
	}
	installed = false
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "rabbitc").Output(); len(out) > 0 && !strings.HasPrefix(string(out), "unknown") {
		t.Errorf("dpkg still knows rabbitc after purge: %s", out)
	}
}

// tarList lists a tar's entries as absolute paths (dpkg-deb --fsys-tarfile).
func tarList(b []byte) ([]string, error) {
	cmd := exec.Command("tar", "-t")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var list []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		l = strings.TrimSuffix(strings.TrimPrefix(l, "."), "/")
		if l != "" {
			list = append(list, l)
		}
	}
	return list, nil
}
