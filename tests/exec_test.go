package tests

// Issue 13: `rabbitc exec` into a running container. Each test starts a
// container whose payload waits, execs into it as the test user, and stops
// it; the leftover check then runs on the container's rabbitc.

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// target is a running container to exec into.
type target struct {
	p    *proc
	o    opts   // exec's options: the container's XDG_RUNTIME_DIR
	id   string // as ps -q prints it
	path string // "direct" or "sandbox"
}

// startTarget starts a container whose payload runs script (which must
// print "ready", then wait) with flags, on either start path: "direct"
// (nothing published: rabbitc starts init) or "sandbox" (a published port:
// the sandbox starts init), and finds its ID with ps.
func startTarget(t *testing.T, path, script string, flags ...string) *target {
	t.Helper()
	return startTargetOpt(t, opts{}, path, script, flags...)
}

// startTargetOpt is startTarget with rabbitc's options, and one more path:
// "net", the direct path with the default network (nothing published).
func startTargetOpt(t *testing.T, o opts, path, script string, flags ...string) *target {
	t.Helper()
	args := rcNoNet(flags, sh(script))
	switch path {
	case "sandbox":
		requireNet(t)
		args = rc("-p", fmt.Sprintf("127.0.0.1:%d:80", freePort(t, 1)), flags, sh(script))
	case "net":
		requireNet(t)
		args = rc(flags, sh(script))
	}
	p := start(t, o, args...)
	p.waitOutput(t, o, "ready", 15*time.Second)
	c := &target{p: p, o: opts{env: []string{"XDG_RUNTIME_DIR=" + p.xdg}}, path: path}
	// The state is written just after the payload starts.
	deadline := time.Now().Add(5 * time.Second)
	for c.id == "" {
		ps := runOpt(t, c.o, "ps", "-q")
		c.id = ps.out()
		if c.id == "" && time.Now().After(deadline) {
			t.Fatalf("ps -q shows no container:\n%s", ps)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// exec runs rabbitc exec with args (flags, then the command) in c.
func (c *target) exec(t *testing.T, args ...string) result {
	t.Helper()
	return c.execOpt(t, opts{}, args...)
}

func (c *target) execOpt(t *testing.T, o opts, args ...string) result {
	t.Helper()
	o.env = append(o.env, c.o.env...)
	return runOpt(t, o, c.args(args...)...)
}

// args puts the container's ID after exec's flags, before the command.
func (c *target) args(args ...string) []string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if args[i] == "-e" || args[i] == "-w" || args[i] == "-u" || args[i] == "--env-file" {
			i++
		}
		i++
	}
	return append(append(append([]string{"exec"}, args[:i]...), c.id), args[i:]...)
}

// stop stops the container and checks that nothing is left behind.
func (c *target) stop(t *testing.T) {
	t.Helper()
	r := runOpt(t, c.o, "stop", "-t", "1", c.id)
	wantCode(t, r, 0)
	c.p.wait(t)
}

// nsOf lists "NAME LINK" of the namespaces of the exec'd shell.
const nsList = "for n in cgroup ipc mnt net pid user uts; do echo $n $(readlink /proc/self/ns/$n); done"

// Exit codes, output, -e/-w/-u/--env-file, stdin, namespaces, descriptors
// and the root, on both start paths.
func TestExec(t *testing.T) {
	for _, path := range []string{"direct", "sandbox"} {
		t.Run(path, func(t *testing.T) {
			c := startTarget(t, path, "echo ready; exec sleep 60", "--hostname", "exechost", "-e", "FROMRUN=1", "-w", "/home")
			defer c.stop(t)

			r := c.exec(t, "sh", "-c", "echo out; echo err >&2; hostname; pwd; echo $FROMRUN; readlink /proc/self/root")
			wantCode(t, r, 0)
			if r.stdout != "out\nexechost\n/home\n1\n/\n" || r.stderr != "err\n" {
				t.Errorf("want out, the container's hostname, its workdir, its env and root / on stdout, err on stderr:\n%s", r)
			}
			wantCode(t, c.exec(t, "sh", "-c", "exit 7"), 7)
			wantOneErrorLine(t, c.exec(t, "/bin/notexec"), 126, "permission denied")
			wantOneErrorLine(t, c.exec(t, "/etc"), 126, "is a directory")
			wantOneErrorLine(t, c.exec(t, "nosuchcommand"), 127, "not found")
			wantOneErrorLine(t, c.exec(t, "/bin/nosuch"), 127, "no such file")
			// The command's own flags are its own.
			if r := c.exec(t, "-e", "A=1", "ls", "-d", "/bin"); r.out() != "/bin" {
				t.Errorf("ls -d /bin: want /bin:\n%s", r)
			}

			envFile := filepath.Join(userDir(t, "envfile", 0o755), "env")
			userFile(t, envFile, "# comment\nFILE=f\nBOTH=file\n", 0o644)
			r = c.exec(t, "-e", "A=a b", "-e", "BOTH=flag", "--env-file", envFile, "-w", "/tmp", "-u", "1000", "sh", "-c", "id -u; id -g; pwd; env")
			wantCode(t, r, 0)
			lines := strings.SplitN(r.stdout, "\n", 4)
			e := envMap(r.stdout)
			if len(lines) < 4 || lines[0] != "1000" || lines[1] != "1000" || lines[2] != "/tmp" {
				t.Errorf("-u 1000 -w /tmp: want uid and gid 1000 (from /etc/passwd) in /tmp:\n%s", r)
			}
			if e["A"] != "a b" || e["BOTH"] != "flag" || e["FILE"] != "f" || e["FROMRUN"] != "1" || e["HOME"] != "/home/user" ||
				e["HOSTNAME"] != "exechost" || e["RABBITC_TEST_CANARY"] != "" {
				t.Errorf("environment: want the container's, then --env-file, then -e, HOME of user 1000, nothing of the host's:\n%s", r)
			}
			wantRuntimeError(t, c.exec(t, "-w", "/nonexistent", "true"), "/nonexistent")
			wantRuntimeError(t, c.exec(t, "-u", "nosuchuser", "true"), "nosuchuser")

			// Without -i stdin is /dev/null; with -i it is rabbitc's.
			r = c.execOpt(t, opts{stdin: strings.NewReader("typed\n")}, "sh", "-c", "readlink /proc/self/fd/0; cat")
			if r.out() != "/dev/null" {
				t.Errorf("without -i: want stdin /dev/null:\n%s", r)
			}
			r = c.execOpt(t, opts{stdin: strings.NewReader("typed\n")}, "-i", "sh", "-c", "read l; echo got=$l")
			if r.out() != "got=typed" {
				t.Errorf("-i: the command did not read stdin:\n%s", r)
			}

			// Every namespace of the payload, none of the host's.
			payload := findPayload(t, c.p, "sleep")
			r = c.exec(t, "sh", "-c", nsList)
			wantCode(t, r, 0)
			want := namespacesOf(itoa(payload))
			for _, l := range strings.Split(r.out(), "\n") {
				f := strings.Fields(l)
				if len(f) != 2 {
					continue
				}
				if want[f[0]] != f[1] {
					t.Errorf("%s namespace of the exec'd command %s, the payload's %s", f[0], f[1], want[f[0]])
				}
				delete(want, f[0])
			}
			if len(want) > 0 {
				t.Errorf("namespaces not listed by the exec'd command: %v\n%s", want, r)
			}
			if r := c.exec(t, "cat", "/proc/1/cmdline"); !strings.Contains(r.stdout, "sleep") {
				t.Errorf("PID 1 of the exec'd command is not the payload:\n%s", r)
			}

			// Only 0-2, whatever rabbitc exec inherits; the root and working
			// directory are the container's.
			f, err := os.Open(env.rootfs)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r = c.execOpt(t, opts{extraFiles: []*os.File{f, f, f}}, "/bin/fdlist")
			if !strings.HasPrefix(r.stdout, "fd 0 -> /dev/null\nfd 1 -> pipe:") || strings.Contains(r.stdout, "fd 3") ||
				!strings.HasSuffix(r.stdout, "cwd -> /home\n") {
				t.Errorf("want descriptors 0-2 only and the container's workdir:\n%s", r)
			}
		})
	}
}

// Signals that rabbitc exec receives reach the command.
func TestExecSignals(t *testing.T) {
	c := startTarget(t, "direct", "echo ready; exec sleep 60")
	defer c.stop(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGINT} {
		name := sigName(sig)
		p := start(t, opts{env: c.o.env}, c.args("sh", "-c", "trap 'echo got "+name+"; exit 5' "+name+"; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done")...)
		p.waitOutput(t, opts{}, "ready", 10*time.Second)
		p.signal(t, sig)
		r := p.wait(t)
		if r.code != 5 || !strings.Contains(r.stdout, "got "+name) {
			t.Errorf("%s to rabbitc exec: want the command's trap to run (exit 5):\n%s", name, r)
		}
	}
}

// -t: a pty of the container's own /dev/pts with the terminal's size; -it:
// the command reads the terminal.
func TestExecTTY(t *testing.T) {
	c := startTarget(t, "direct", "echo ready; exec sleep 60")
	defer c.stop(t)
	tty := newPty(t, 31, 97)
	r := c.execOpt(t, opts{pty: tty}, "-t", "sh", "-c", "tty; stty size; echo TERM=$TERM; readlink /proc/self/fd/1")
	wantCode(t, r, 0)
	out := strings.ReplaceAll(tty.out.String(), "\r", "")
	if !regexp.MustCompile(`(?m)^/dev/pts/\d+\n31 97\nTERM=\S+\n/dev/pts/\d+$`).MatchString(out) {
		t.Errorf("want a pty of the container's, the terminal's size and a TERM:\n%q", out)
	}
	tty2 := newPty(t, 24, 80)
	p := start(t, opts{pty: tty2, env: c.o.env}, c.args("-it", "sh", "-c", "echo prompt; read l; echo got=$l; exit 3")...)
	tty2.waitFor(t, "prompt", 10*time.Second)
	tty2.write(t, "typed\n")
	wantCode(t, p.wait(t), 3)
	if !strings.Contains(tty2.out.String(), "got=typed") {
		t.Errorf("-it: the command did not read the terminal:\n%q", tty2.out.String())
	}
}

// The exec'd command runs with the payload's capabilities, no_new_privs and
// seccomp filter, for the default set, --cap-drop ALL and a -u 1000
// container, and exec -u 1000 drops them as a -u 1000 payload has none.
func TestExecSecurity(t *testing.T) {
	status := func(out string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(l, ": "); ok {
				m[k] = v
			}
		}
		return m
	}
	keys := []string{"Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters",
		"prctl_no_new_privs", "keyctl", "nfsservctl", "get_mempolicy"}
	profile := filepath.Join(userDir(t, "exec-profile", 0o755), "profile.json")
	userFile(t, profile, `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["get_mempolicy"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}`, 0o644)
	for _, tc := range []struct {
		name  string
		path  string
		flags []string
		exec  []string
	}{
		{"default", "direct", nil, nil},
		{"default-sandbox", "sandbox", nil, nil},
		{"cap-drop-all", "direct", []string{"--cap-drop", "ALL"}, nil},
		{"user-1000", "direct", []string{"-u", "1000:1000"}, nil},
		{"exec-user-1000", "direct", nil, []string{"-u", "1000:1000"}},
		{"cap-add-no-new-privs-false", "direct", []string{"--cap-add", "SYS_ADMIN", "--security-opt", "no-new-privileges=false"}, nil},
		// A profile file is compiled before the start, and network
		// acceleration's program travels with Start alone.
		{"profile-file-net", "net", []string{"--security-opt", "seccomp=" + profile}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := "/bin/probe status; /bin/probe seccomp"
			c := startTarget(t, tc.path, probe+"; echo ready; exec sleep 60", append([]string{"--debug"}, tc.flags...)...)
			defer c.stop(t)
			payload := status(c.p.stdout.String())
			if !strings.Contains(c.p.stderr.String(), "network acceleration off: ") {
				// The payload has network acceleration's filter on top of
				// the profile; exec'd commands do not (README, Networking).
				n, _ := strconv.Atoi(payload["Seccomp_filters"])
				payload["Seccomp_filters"] = strconv.Itoa(n - 1)
			}
			if tc.exec != nil {
				// What the payload has when it runs as that user.
				r := run(t, rcNoNet(tc.exec, sh(probe))...)
				payload = status(r.stdout)
			}
			r := c.exec(t, append(tc.exec, "sh", "-c", probe)...)
			wantCode(t, r, 0)
			got := status(r.stdout)
			for _, k := range keys {
				if got[k] == "" || got[k] != payload[k] {
					t.Errorf("%s: exec'd command %q, payload %q", k, got[k], payload[k])
				}
			}
			if t.Failed() {
				t.Logf("payload:\n%s\nexec:\n%s", c.p.stdout.String(), r)
			}
		})
	}
}

// CVE-2019-5736: nothing in the container can open the binary of a process
// that runs the user's rabbitc, the exec stage's included: it is
// non-dumpable from before it joins the container's namespaces until it
// execs, so its /proc/PID/exe takes CAP_SYS_PTRACE in the host's user
// namespace. The test holds an exec stage inside the container (rabbitc exec
// reads --env-file after it started the stage, and this one is a FIFO), and
// runs probe exewrite beside it with a second exec; in a default container,
// and in one with CAP_SYS_PTRACE, whose root passes every other check of
// ptrace access to the stage (same uid, CAP_SYS_PTRACE in the stage's user
// namespace): only the stage's being non-dumpable stops it there.
func TestExecProcExe(t *testing.T) {
	requireSetup(t)
	dir := userDir(t, "own-rabbitc", 0o755)
	bin := filepath.Join(dir, "rabbitc")
	data, err := os.ReadFile(env.bin)
	if err != nil {
		t.Fatal(err)
	}
	userFile(t, bin, string(data), 0o755)
	sum := sha256.Sum256(data)
	for i, flags := range [][]string{nil, {"--cap-add", "SYS_PTRACE"}} {
		c := startTarget(t, "direct", "echo ready; exec sleep 60", flags...)
		fifo := filepath.Join(dir, fmt.Sprintf("env%d", i))
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := chownToUser(fifo); err != nil {
			t.Fatal(err)
		}
		held := start(t, opts{bin: bin, env: c.o.env}, c.args("--env-file", fifo, "true")...)
		stage := heldStage(t, held)

		r := c.execOpt(t, opts{bin: bin}, "/bin/probe", "exewrite")
		wantCode(t, r, 0)
		for _, p := range []string{fmt.Sprintf("/proc/%d/exe", stage), fmt.Sprintf("/proc/%d/task/%d/exe", stage, stage)} {
			for _, how := range []string{"wronly", "rdwr", "opath"} {
				if !strings.Contains(r.stdout, p+" () "+how+": EACCES\n") {
					t.Errorf("%v: %s %s: want EACCES (the exec stage is not dumpable):\n%s", flags, p, how, r)
				}
			}
		}
		if !strings.Contains(r.stdout, "written: 0\n") || strings.Contains(r.stdout, bin) {
			t.Errorf("%v: the container reached a binary, or saw the host path of rabbitc:\n%s", flags, r)
		}
		fw, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fw.WriteString("HELD=1\n")
		fw.Close()
		wantCode(t, held.wait(t), 0)
		c.stop(t)
		if now, err := os.ReadFile(bin); err != nil || sha256.Sum256(now) != sum {
			t.Fatalf("the user's rabbitc binary changed (%v)", err)
		}
	}
}

// heldStage waits for the exec stage of a rabbitc exec to run inside the
// container and returns its pid there: the child of the stage's parent,
// which the entry point forked into the container's PID namespace.
func heldStage(t *testing.T, p *proc) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, d := range descendants(p.pid()) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) == 3 && f[0] == "NSpid:" && strings.Contains(cmdline(d.pid), "init exec") {
					// Past the entry point's fork: a pid in the container's
					// PID namespace (the stage's parent has none), waiting
					// for its plan or running Go code.
					var pid int
					fmt.Sscan(f[2], &pid)
					return pid
				}
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("no exec stage inside the container below rabbitc exec:%s\n%s", describeTree(p.pid()), p.res)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// -d returns once the command runs; the command goes on, and goes with the
// container.
func TestExecDetach(t *testing.T) {
	c := startTarget(t, "direct", "echo ready; exec sleep 60")
	p := start(t, opts{env: c.o.env}, c.args("-d", "sh", "-c", "echo started > /tmp/detached; exec sleep 50")...)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("exec -d did not return")
	}
	wantCode(t, p.res, 0)
	if p.res.stdout != "" || p.res.stderr != "" {
		t.Errorf("exec -d printed something:\n%s", p.res)
	}
	release := adoptStage(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := c.exec(t, "sh", "-c", "cat /tmp/detached; ps")
		if strings.Contains(r.stdout, "started") && strings.Contains(r.stdout, "sleep 50") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the detached command does not run:\n%s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	c.stop(t) // and nothing is left behind: the detached command's stage included
}

// rabbitc exec killed with SIGKILL: the command goes on, as under docker,
// and ends with its container; then nothing is left behind.
func TestExecKilled(t *testing.T) {
	c := startTarget(t, "direct", "echo ready; exec sleep 60")
	p := start(t, opts{env: c.o.env}, c.args("sh", "-c", "echo running; exec sleep 40")...)
	p.waitOutput(t, opts{}, "running", 10*time.Second)
	p.signal(t, syscall.SIGKILL)
	<-p.done
	release := adoptStage(t)
	if r := c.exec(t, "ps"); !strings.Contains(r.stdout, "sleep 40") {
		t.Errorf("the command of a killed rabbitc exec is gone:\n%s", r)
	}
	release()
	c.stop(t) // and nothing is left behind: the orphaned stage included
}

// adoptStage finds the exec stage that outlived its rabbitc exec and came
// to the tests (a child subreaper) and keeps the leftover check from
// counting it while the container runs, until release.
func adoptStage(t *testing.T) (release func()) {
	t.Helper()
	stage := 0
	for _, d := range descendants(os.Getpid()) {
		if d.ppid == os.Getpid() && strings.Contains(cmdline(d.pid), "init exec") {
			stage = d.pid
		}
	}
	if stage == 0 {
		t.Fatalf("no exec stage waits for the command")
	}
	registry.Lock()
	registry.active[stage] = true
	registry.Unlock()
	release = func() {
		registry.Lock()
		delete(registry.active, stage)
		registry.Unlock()
	}
	t.Cleanup(release)
	return release
}

// rabbitc's own errors: one line, exit 125, nothing left behind.
func TestExecErrors(t *testing.T) {
	requireSetup(t)
	wantRuntimeError(t, run(t, "exec", "nosuchid", "true"), "no such container: nosuchid")
	wantRuntimeError(t, run(t, "exec", "onlyanid"), "a container and a command")
	wantRuntimeError(t, run(t, "exec", "--bogus", "x", "true"), "unknown flag")

	c := startTarget(t, "direct", "echo ready; exec sleep 60")
	wantRuntimeError(t, c.exec(t, "-d", "-t", "true"), "-d")
	wantRuntimeError(t, c.exec(t, "-w", "relative", "true"), "not an absolute path")
	wantRuntimeError(t, c.exec(t, "-e", "=x", "true"), "KEY=VALUE")
	wantRuntimeError(t, c.exec(t, "--env-file", "/nonexistent/env", "true"), "/nonexistent/env")

	// A rabbitc built without the entry point says how to build it.
	plain := filepath.Join(env.base, "rabbitc-without-entry")
	cmd := exec.Command("go", "build", "-buildvcs=false", "-trimpath", "-o", plain, "./cmd/rabbitc")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = env.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Chmod(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	wantRuntimeError(t, c.execOpt(t, opts{bin: plain}, "true"), "built without", "make build")

	// A payload that is gone while its rabbitc is held still.
	payload := findPayload(t, c.p, "sleep")
	if err := syscall.Kill(c.p.pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	killPid(payload, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for procStartTime(payload) != "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	wantRuntimeError(t, c.exec(t, "true"), "not running")
	syscall.Kill(c.p.pid(), syscall.SIGCONT)
	wantCode(t, c.p.wait(t), 137)
	// An exited container is no more.
	wantRuntimeError(t, c.exec(t, "true"), "no such container: "+c.id)
}

// procStartTime is field 22 of /proc/PID/stat, "" once the process is gone
// (a zombie counts as gone).
func procStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if err != nil || i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}
