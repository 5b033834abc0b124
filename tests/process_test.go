package tests

// Issue 2, point 5: environment, working directory, user, stdio, signals and
// descriptors of the payload.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func envMap(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Defaults: PATH, HOME, HOSTNAME; nothing of the host's environment; no TERM
// without a terminal.
func TestEnvDefaults(t *testing.T) {
	r := run(t, rcNoNet("--hostname", "envhost", "--", "env")...)
	wantCode(t, r, 0)
	e := envMap(r.stdout)
	if !strings.Contains(":"+e["PATH"]+":", ":/bin:") || !strings.Contains(":"+e["PATH"]+":", ":/usr/bin:") {
		t.Errorf("PATH=%q does not hold /bin and /usr/bin:\n%s", e["PATH"], r)
	}
	if e["HOME"] != "/root" {
		t.Errorf("HOME=%q, want /root:\n%s", e["HOME"], r)
	}
	if e["HOSTNAME"] != "envhost" {
		t.Errorf("HOSTNAME=%q, want envhost:\n%s", e["HOSTNAME"], r)
	}
	if _, ok := e["TERM"]; ok {
		t.Errorf("TERM set without a terminal:\n%s", r)
	}
	for _, k := range []string{"RABBITC_TEST_CANARY", "XDG_RUNTIME_DIR", "USER", "LOGNAME", "LANG"} {
		if v, ok := e[k]; ok {
			t.Errorf("host variable %s=%q leaked into the container:\n%s", k, v, r)
		}
	}
	for k := range e {
		if strings.HasPrefix(k, "_RABBITC") {
			t.Errorf("internal variable %s leaked into the payload:\n%s", k, r)
		}
	}
}

// -e sets and overrides variables, repeatable; values keep '=' and spaces.
func TestEnvFlag(t *testing.T) {
	r := run(t, rcNoNet("-e", "FOO=bar", "--env", "SPACED=a b=c", "-e", "HOME=/tmp", "-e", "PATH=/bin", "--", "env")...)
	wantCode(t, r, 0)
	e := envMap(r.stdout)
	for k, v := range map[string]string{"FOO": "bar", "SPACED": "a b=c", "HOME": "/tmp", "PATH": "/bin"} {
		if e[k] != v {
			t.Errorf("%s=%q, want %q:\n%s", k, e[k], v, r)
		}
	}
}

// --env-file as docker reads it, before -e (which overrides it).
func TestEnvFile(t *testing.T) {
	dir := userDir(t, "envfile", 0o755)
	file := filepath.Join(dir, "app.env")
	userFile(t, file, "# settings\nFROM_FILE=1\nOVERRIDDEN=file\nQUOTED=\"as is\"\n", 0o644)
	r := run(t, rcNoNet("--env-file", file, "-e", "OVERRIDDEN=flag", "--", "env")...)
	wantCode(t, r, 0)
	e := envMap(r.stdout)
	for k, v := range map[string]string{"FROM_FILE": "1", "OVERRIDDEN": "flag", "QUOTED": `"as is"`} {
		if e[k] != v {
			t.Errorf("%s=%q, want %q:\n%s", k, e[k], v, r)
		}
	}
	wantRuntimeError(t, run(t, rcNoNet("--env-file", filepath.Join(dir, "missing.env"), "--", "true")...), "missing.env")
}

// --init, as docker's: PID 1 is rabbitc's init, the payload its child; it
// reaps orphans, passes the exit status through, and forwards signals, so
// a payload without a handler dies of SIGTERM at once (as PID 1 it would
// ignore it until --stop-timeout).
func TestInit(t *testing.T) {
	r := run(t, rcNoNet("--init", sh("(sleep 0.1 &); sleep 0.5; ps -o pid,stat,args; exit 7"))...)
	wantCode(t, r, 7)
	var pid1 string
	for _, l := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "1" {
			pid1 = l
		}
		if len(f) >= 2 && strings.HasPrefix(f[1], "Z") {
			t.Errorf("zombie left under --init: %q\n%s", l, r)
		}
	}
	if !strings.Contains(pid1, "rabbitc-init") {
		t.Errorf("PID 1 is %q, want rabbitc's init:\n%s", pid1, r)
	}

	o := opts{}
	p := start(t, o, rcNoNet("--init", "--stop-timeout", "30", sh("echo ready; exec sleep 30"))...)
	p.waitOutput(t, o, "ready", 10*time.Second)
	t0 := time.Now()
	p.signal(t, syscall.SIGTERM)
	res := p.wait(t)
	if res.code != 128+int(syscall.SIGTERM) || time.Since(t0) > 10*time.Second {
		t.Errorf("SIGTERM under --init: want exit %d at once, got after %v:\n%s", 128+int(syscall.SIGTERM), time.Since(t0), res)
	}
}

func TestWorkdir(t *testing.T) {
	r := run(t, rcNoNet("-w", "/tmp", "--", "pwd")...)
	wantCode(t, r, 0)
	if r.out() != "/tmp" {
		t.Errorf("pwd %q, want /tmp:\n%s", r.out(), r)
	}
	r = run(t, rcNoNet("--workdir", "/usr/bin", "--", "/bin/fdlist")...)
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "cwd -> /usr/bin\n") {
		t.Errorf("cwd is not /usr/bin:\n%s", r)
	}
	r = run(t, rcNoNet("--", "pwd")...)
	wantCode(t, r, 0)
	if r.out() != "/" {
		t.Errorf("default working directory %q, want /:\n%s", r.out(), r)
	}
}

// --hostname sets the UTS name, /etc/hostname and /etc/hosts; the host's name
// does not change.
func TestHostname(t *testing.T) {
	host, _ := os.Hostname()
	r := run(t, rcNoNet("--hostname", "rabbit-box", sh("hostname; cat /etc/hostname; cat /etc/hosts"))...)
	wantCode(t, r, 0)
	lines := strings.SplitN(r.stdout, "\n", 3)
	if len(lines) < 3 || lines[0] != "rabbit-box" || lines[1] != "rabbit-box" {
		t.Errorf("hostname and /etc/hostname should both be rabbit-box:\n%s", r)
	}
	if !strings.Contains(r.stdout, "localhost") || strings.Count(r.stdout, "rabbit-box") < 3 {
		t.Errorf("/etc/hosts does not name localhost and the container:\n%s", r)
	}
	// Changing the name inside (which needs CAP_SYS_ADMIN) does not reach the host.
	r = run(t, rcNoNet("--cap-add", "SYS_ADMIN", sh("hostname changed-inside && hostname"))...)
	wantCode(t, r, 0)
	if r.out() != "changed-inside" {
		t.Errorf("hostname inside: %q:\n%s", r.out(), r)
	}
	if h, _ := os.Hostname(); h != host {
		t.Errorf("the host's name changed from %q to %q", host, h)
	}
}

// -u UID:GID runs the payload as that user and group; files it creates in a
// volume belong to the mapped subordinate ids on the host.
func TestUser(t *testing.T) {
	r := run(t, rcNoNet("-u", "1000:1000", sh("id -u; id -g; echo $HOME"))...)
	wantCode(t, r, 0)
	if f := strings.Fields(r.stdout); len(f) < 2 || f[0] != "1000" || f[1] != "1000" {
		t.Errorf("id -u/-g: want 1000 1000:\n%s", r)
	}
	r = run(t, rcNoNet("--user", "1000", "--", "id", "-u")...)
	wantCode(t, r, 0)
	if r.out() != "1000" {
		t.Errorf("--user 1000: id -u %q:\n%s", r.out(), r)
	}
	r = run(t, rcNoNet("-u", "0:0", "--", "id")...)
	wantCode(t, r, 0)
	if !strings.HasPrefix(r.out(), "uid=0(root) gid=0(root)") {
		t.Errorf("-u 0:0: %q:\n%s", r.out(), r)
	}

	vol := userDir(t, "uservol", 0o777)
	r = run(t, rcNoNet("-u", "1000:1000", "-v", vol+":/data", "--", "touch", "/data/by-1000")...)
	wantCode(t, r, 0)
	st, err := os.Stat(filepath.Join(vol, "by-1000"))
	if err != nil {
		t.Fatalf("file written by uid 1000 in the volume: %v", err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	wantUID := env.user.subuid[0].start + 999
	wantGID := env.user.subgid[0].start + 999
	if int(sys.Uid) != wantUID || int(sys.Gid) != wantGID {
		t.Errorf("container uid:gid 1000:1000 wrote a file owned by %d:%d on the host, want %d:%d",
			sys.Uid, sys.Gid, wantUID, wantGID)
	}
	// Let container root remove it (the host user may not own it).
	wantCode(t, run(t, rcNoNet("-v", vol+":/data", "--", "rm", "-f", "/data/by-1000")...), 0)
}

// Without -i the payload's stdin is /dev/null, like docker.
func TestStdinWithoutInteractive(t *testing.T) {
	r := runOpt(t, opts{stdin: strings.NewReader("must not arrive\n")}, rcNoNet("--", "cat")...)
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Errorf("the payload read stdin without -i:\n%s", r)
	}
	r = run(t, rcNoNet("--", "readlink", "/proc/self/fd/0")...)
	wantCode(t, r, 0)
	if r.out() != "/dev/null" {
		t.Errorf("stdin without -i is %q, want /dev/null:\n%s", r.out(), r)
	}
}

// With -i the payload reads stdin and sees its end: `echo data | rabbitc run -i ... cat`.
func TestStdinEOFWithInteractive(t *testing.T) {
	r := runOpt(t, opts{stdin: strings.NewReader("data\n")}, rcNoNet("-i", "--", "cat")...)
	wantCode(t, r, 0)
	if r.stdout != "data\n" {
		t.Errorf("stdout %q, want \"data\\n\":\n%s", r.stdout, r)
	}
	// 8 MiB through stdin and back through stdout, byte-exact.
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19)
	r = runOpt(t, opts{stdin: bytes.NewReader(data)}, rcNoNet("--interactive", "--", "cat")...)
	wantCode(t, r, 0)
	if sha256.Sum256([]byte(r.stdout)) != sha256.Sum256(data) {
		t.Errorf("8 MiB through cat came back as %d bytes, different", len(r.stdout))
	}
	// stderr is passed through separately.
	r = runOpt(t, opts{stdin: strings.NewReader("x")}, rcNoNet("-i", sh("wc -c; echo to-stderr >&2"))...)
	wantCode(t, r, 0)
	if r.out() != "1" || r.stderr != "to-stderr\n" {
		t.Errorf("want stdout 1 and stderr to-stderr:\n%s", r)
	}
}

// With -i, rabbitc ends when the payload ends even if its own stdin stays
// open (a terminal, or a pipe whose writer is still there), like docker.
func TestInteractiveStdinStillOpen(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	pw.Write([]byte("line\n"))
	t0 := time.Now()
	r := runOpt(t, opts{stdin: pr, timeout: 15 * time.Second}, rcNoNet("-i", sh("read l; echo got-$l"))...)
	wantCode(t, r, 0)
	if r.out() != "got-line" {
		t.Errorf("stdout %q, want got-line:\n%s", r.out(), r)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("rabbitc took %v to exit after the payload, waiting for its stdin", d)
	}
}

// Signals received by rabbitc reach the payload (PID 1 with a handler).
func TestSignalsForwarded(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH} {
		name := strings.TrimPrefix(sigName(sig), "SIG")
		t.Run(name, func(t *testing.T) {
			o := opts{}
			script := fmt.Sprintf(`trap 'echo got %s; exit 42' %s; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; echo no signal`, name, name)
			p := start(t, o, rcNoNet(sh(script))...)
			p.waitOutput(t, o, "ready", 10*time.Second)
			p.signal(t, sig)
			r := p.wait(t)
			wantCode(t, r, 42)
			if !strings.Contains(r.stdout, "got "+name) {
				t.Errorf("the payload did not get SIG%s:\n%s", name, r)
			}
		})
	}
}

func sigName(s syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP",
		syscall.SIGQUIT: "SIGQUIT", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGWINCH: "SIGWINCH"}[s]
}

// A payload that ignores SIGTERM (PID 1 without a handler) still ends when
// rabbitc gets SIGTERM: rabbitc kills it after --stop-timeout.
func TestSIGTERMEndsPayloadWithoutHandler(t *testing.T) {
	o := opts{}
	p := start(t, o, rcNoNet("--stop-timeout", "1", sh("echo ready; exec sleep 60"))...)
	p.waitOutput(t, o, "ready", 10*time.Second)
	t0 := time.Now()
	p.signal(t, syscall.SIGTERM)
	r := p.wait(t)
	if r.code != 128+int(syscall.SIGTERM) && r.code != 128+int(syscall.SIGKILL) {
		t.Errorf("want exit 143 or 137 after SIGTERM, got:\n%s", r)
	}
	if d := time.Since(t0); d > 8*time.Second {
		t.Errorf("rabbitc took %v to end the container after SIGTERM with --stop-timeout 1", d)
	}
}

// Only 0, 1 and 2 are open in the payload, even when rabbitc inherits more.
func TestOnlyStdioDescriptors(t *testing.T) {
	f, err := os.Open(env.rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lf, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	// fds 3..10 of rabbitc, with a hole at 5.
	extra := []*os.File{f, pr, nil, pw, lf, f, pr, lf}
	forEachStartPath(t, func(t *testing.T, sp startPath) {
		cases := [][]string{
			sp.rc("--", "/bin/fdlist"),
			sp.rc("-i", "--", "/bin/fdlist"),
			sp.rc("-u", "1000:1000", "-w", "/tmp", "--", "/bin/fdlist"),
			sp.rc("--init", "--", "/bin/fdlist"),
		}
		if sp.name == "direct" && env.netErr == nil {
			cases = append(cases, rc("--", "/bin/fdlist")) // slirp4netns without a sandbox
		}
		for _, args := range cases {
			r := runOpt(t, opts{extraFiles: extra}, args...)
			wantCode(t, r, 0)
			var fds []string
			for _, line := range strings.Split(r.out(), "\n") {
				if strings.HasPrefix(line, "fd ") {
					fds = append(fds, strings.Fields(line)[1])
				}
			}
			if strings.Join(fds, ",") != "0,1,2" {
				t.Errorf("open descriptors in the payload: %v, want 0,1,2:\n%s", fds, r)
			}
		}
	})
}

// --ulimit sets the payload's limits as docker's does, for any user, on both
// start paths and under --init. rabbitc starts with a soft nofile limit below
// its hard one, as from a login shell: Go raises it at start-up and puts it
// back at exec unless the limit was set through package syscall, which would
// undo a --ulimit nofile whose hard limit stays rabbitc's.
func TestUlimit(t *testing.T) {
	wrapper := filepath.Join(userDir(t, "ulimit", 0o755), "rabbitc")
	userFile(t, wrapper, "#!/bin/sh\nulimit -Sn 1000 || exit 99\nexec "+env.bin+" \"$@\"\n", 0o755)
	low := opts{bin: wrapper}
	hard := runOpt(t, low, rcNoNet(sh("ulimit -n; ulimit -Hn"))...)
	wantCode(t, hard, 0)
	f := strings.Fields(hard.stdout)
	if len(f) != 2 || f[0] != "1000" {
		t.Fatalf("without --ulimit the payload should have rabbitc's limits, soft 1000:\n%s", hard)
	}
	h := f[1]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{rcNoNet("-u", "1000:1000", "--ulimit", "nofile=100:200", sh("ulimit -n; ulimit -Hn")), "100 200"},
		{rcNoNet("--ulimit", "nofile=100:"+h, sh("ulimit -n; ulimit -Hn")), "100 " + h},
		{rcNoNet("-u", "1000", "--init", "--ulimit", "nofile=100:"+h, sh("ulimit -n; ulimit -Hn")), "100 " + h},
		{rc("-p", fmt.Sprintf("127.0.0.1:%d:80", freePort(t, 1)), "--ulimit", "nofile=100:"+h, sh("ulimit -n; ulimit -Hn")), "100 " + h},
		{rcNoNet("--ulimit", "core=0", sh("ulimit -c; ulimit -Hc")), "0 0"},
		// --init: the reaper, exec'd from its sealed copy, must not pass on
		// the soft limit Go's runtime raised in init.
		{rcNoNet("--init", sh("ulimit -n; ulimit -Hn")), "1000 " + h},
		{rcNoNet("--ulimit", "nofile=300", "--ulimit", "core=0", "--ulimit", "nofile=100:200", sh("ulimit -n; ulimit -Hn; ulimit -c")), "100 200 0"},
	} {
		if tc.args[3] == "-p" {
			requireNet(t)
		}
		r := runOpt(t, low, tc.args...)
		wantCode(t, r, 0)
		if got := strings.Join(strings.Fields(r.stdout), " "); got != tc.want {
			t.Errorf("limits %q, want %q:\n%s", got, tc.want, r)
		}
	}
	for _, tc := range []struct {
		ulimit string
		want   []string
	}{
		{"nofiles=10", []string{"--ulimit nofiles=10: unknown limit", "valid: as, core,", "nofile, nproc"}},
		{"nofile=200:100", []string{"--ulimit nofile=200:100: soft limit 200 above the hard limit 100"}},
		{"nofile=ten", []string{"--ulimit nofile=ten: expected NAME=SOFT[:HARD]"}},
		// No nofile hard limit can reach 2^32 (fs.nr_open is at most 2^31).
		{"nofile=4294967296", []string{"--ulimit nofile=4294967296: above the hard limit " + h + " rabbitc has", "ulimit -Hn"}},
	} {
		wantRuntimeError(t, run(t, rcNoNet("--ulimit", tc.ulimit, "--", "true")...), tc.want...)
	}
}
