package tests

// Issue 2, point 1: the CLI, the seed's forms and the exit codes.

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// `rabbitc run --rootfs R -- sh -c 'echo hi; exit 7'` prints hi and exits 7.
func TestRunCommandExitCode(t *testing.T) {
	r := run(t, rc(sh("echo hi; exit 7"))...)
	wantCode(t, r, 7)
	if r.stdout != "hi\n" {
		t.Errorf("stdout %q, want \"hi\\n\":\n%s", r.stdout, r)
	}
}

// `--cmd /bin/sh -- -c 'echo $$'`: the arguments after -- belong to --cmd, and
// the payload is PID 1.
func TestCmdFlagWithArgsIsPID1(t *testing.T) {
	r := run(t, rcNoNet("--cmd", "/bin/sh", "--", "-c", "echo $$")...)
	wantCode(t, r, 0)
	if r.out() != "1" {
		t.Errorf("echo $$ printed %q, want 1:\n%s", r.out(), r)
	}
}

// The seed's form without a subcommand: `rabbitc --rootfs=DIR --cmd=PROG`.
func TestSeedFormWithoutSubcommand(t *testing.T) {
	r := run(t, "--rootfs="+env.rootfs, "--net=none", "--cmd=/bin/sh", "--", "-c", "echo seed $$")
	wantCode(t, r, 0)
	if r.out() != "seed 1" {
		t.Errorf("stdout %q, want \"seed 1\":\n%s", r.out(), r)
	}
}

// Without --cmd and without arguments the payload is /bin/sh; with stdin not a
// terminal and no -i it reads /dev/null and exits at once.
func TestDefaultCommandIsShell(t *testing.T) {
	r := run(t, rcNoNet()...)
	wantCode(t, r, 0)
	r = runOpt(t, opts{stdin: strings.NewReader("echo from-stdin $$; exit 3\n")}, rcNoNet("-i")...)
	wantCode(t, r, 3)
	if r.out() != "from-stdin 1" {
		t.Errorf("stdout %q, want \"from-stdin 1\":\n%s", r.out(), r)
	}
}

// The command after -- is looked up in the container's PATH, with its arguments.
func TestCommandAndArgs(t *testing.T) {
	r := run(t, rcNoNet("--", "echo", "a b", "c")...)
	wantCode(t, r, 0)
	if r.stdout != "a b c\n" {
		t.Errorf("stdout %q, want \"a b c\\n\":\n%s", r.stdout, r)
	}
}

func TestExitCodesPassThrough(t *testing.T) {
	for _, code := range []int{0, 1, 2, 42, 124, 125, 126, 127, 128, 255} {
		r := run(t, rcNoNet(sh("exit "+itoa(code)))...)
		wantCode(t, r, code)
		if r.stderr != "" {
			t.Errorf("stderr not empty:\n%s", r)
		}
	}
}

// 128+N when the payload dies from signal N: a real fault (SIGSEGV is
// delivered to a namespace's init even though kill(2) from inside is not).
func TestExitCodeKilledBySignal(t *testing.T) {
	r := run(t, rcNoNet("--", "/bin/probe", "segv")...)
	wantCode(t, r, 128+11)
	if !strings.Contains(r.stdout, "faulting") {
		t.Errorf("the probe did not run:\n%s", r)
	}
}

// SIGKILL sent from the host to the payload (PID 1 in the container): 137.
func TestExitCodePayloadKilledFromHost(t *testing.T) {
	o := opts{}
	p := start(t, o, rcNoNet(sh("echo ready; exec sleep 60"))...)
	p.waitOutput(t, o, "ready", 10*time.Second)
	payload := findPayload(t, p, "sleep")
	if err := killPid(payload, 9); err != nil {
		t.Fatalf("kill payload: %v", err)
	}
	wantCode(t, p.wait(t), 137)
}

// 127 for a command that does not exist, 126 for one that cannot be
// executed; one line on stderr naming it.
func TestExitCodesNotFoundNotExecutable(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--", "/bin/no-such-program"}, 127, "/bin/no-such-program"},
		{[]string{"--", "no-such-program"}, 127, "no-such-program"},
		{[]string{"--cmd", "/bin/no-such-program"}, 127, "/bin/no-such-program"},
		{[]string{"--", "/bin/notexec"}, 126, "/bin/notexec"},
		{[]string{"--", "/tmp"}, 126, "/tmp"},
	} {
		r := run(t, rcNoNet(tc.args)...)
		wantOneErrorLine(t, r, tc.code, tc.want)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	requireSetup(t)
	r := run(t, "version")
	wantCode(t, r, 0)
	if !strings.Contains(strings.ToLower(r.stdout), "rabbitc") {
		t.Errorf("version does not name rabbitc:\n%s", r)
	}
	r = run(t, "completion", "bash")
	wantCode(t, r, 0)
	if !strings.Contains(r.stdout, "complete") || !strings.Contains(r.stdout, "rabbitc") {
		t.Errorf("completion bash does not look like a bash completion script:\n%s", r)
	}
}

// The default host name is a short random id, different for each container.
func TestDefaultHostname(t *testing.T) {
	a := run(t, rcNoNet("--", "hostname")...)
	b := run(t, rcNoNet("--", "hostname")...)
	wantCode(t, a, 0)
	wantCode(t, b, 0)
	re := regexp.MustCompile(`^[a-z0-9]{6,32}$`)
	if !re.MatchString(a.out()) || !re.MatchString(b.out()) {
		t.Errorf("default host names %q and %q are not short ids", a.out(), b.out())
	}
	if a.out() == b.out() {
		t.Errorf("two containers got the same default host name %q", a.out())
	}
}
