package tests

// Issue 2, points 1 and 5: terminals. The test plays the user's terminal with
// a pty of its own; rabbitc runs as the session leader on it, as under a shell.

import (
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// parsePS turns busybox ps output (PID USER [TIME] COMMAND) into "PID COMMAND"
// lines; it stops at the first line that is not a process.
func parsePS(out string) []string {
	lines := strings.Split(strings.ReplaceAll(out, "\r", ""), "\n")
	if len(lines) == 0 {
		return nil
	}
	skip := 2
	if strings.Contains(lines[0], "TIME") {
		skip = 3
	}
	var procs []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= skip || strings.Trim(f[0], "0123456789") != "" {
			break
		}
		procs = append(procs, f[0]+" "+strings.Join(f[skip:], " "))
	}
	return procs
}

// The seed's session: `rabbitc --rootfs=DIR` on a terminal gives an
// interactive shell (as -it) in which ps shows PID 1 sh and ps, nothing else.
func TestSeedShellSession(t *testing.T) {
	requireNet(t)
	tty := newPty(t, 24, 80)
	o := opts{pty: tty}
	p := start(t, o, "--rootfs="+env.rootfs)
	tty.waitFor(t, "# ", 10*time.Second)
	tty.write(t, "ps\n")
	tty.waitFor(t, "COMMAND", 5*time.Second)
	// The next line is typed only at the prompt after ps's rows: typed
	// earlier, the terminal echoes it between them.
	deadline := time.Now().Add(5 * time.Second)
	for out := tty.out.String(); !strings.Contains(out[strings.Index(out, "COMMAND"):], "# "); out = tty.out.String() {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt after ps; terminal:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tty.write(t, "echo done-$((6*7))\n")
	tty.waitFor(t, "done-42", 5*time.Second)
	shown := tty.out.String()
	tty.write(t, "exit 3\n")
	r := p.wait(t)
	wantCode(t, r, 3)

	procs := parsePS(shown[strings.Index(shown, "PID"):strings.Index(shown, "done-")])
	if len(procs) != 2 || (procs[0] != "1 sh" && procs[0] != "1 /bin/sh") || !strings.Contains(procs[1], "ps") {
		t.Errorf("ps in the container shows %q, want PID 1 sh and ps only; terminal:\n%s", procs, shown)
	}
}

// -t gives the payload a pty of the container's own /dev/pts, with the
// terminal's size and a TERM.
func TestTTYFlag(t *testing.T) {
	tty := newPty(t, 33, 101)
	o := opts{pty: tty}
	r := runOpt(t, o, rcNoNet("-t", sh("tty; stty size; echo TERM=$TERM; readlink /proc/self/fd/0"))...)
	wantCode(t, r, 0)
	out := strings.ReplaceAll(tty.out.String(), "\r", "")
	if strings.Count(out, "/dev/pts/0\n") != 2 || !strings.Contains(out, "33 101\n") {
		t.Errorf("want tty and stdin on /dev/pts/0 and size \"33 101\":\n%s", out)
	}
	if m := regexp.MustCompile(`TERM=(\S*)`).FindStringSubmatch(out); m == nil || m[1] == "" {
		t.Errorf("TERM not set with -t:\n%s", out)
	}
}

// With stdin a terminal and neither -t nor -i, rabbitc behaves as -it.
func TestTTYAutoOnTerminal(t *testing.T) {
	tty := newPty(t, 24, 80)
	o := opts{pty: tty}
	p := start(t, o, rcNoNet(sh("tty; read line; echo got=$line"))...)
	tty.waitFor(t, "/dev/pts/0", 10*time.Second)
	tty.write(t, "typed\n")
	r := p.wait(t)
	wantCode(t, r, 0)
	if !strings.Contains(tty.out.String(), "got=typed") {
		t.Errorf("the payload did not read the terminal:\n%q", tty.out.String())
	}
}

// A window size change of the user's terminal reaches the payload.
func TestTTYResize(t *testing.T) {
	tty := newPty(t, 24, 80)
	o := opts{pty: tty}
	p := start(t, o, rcNoNet("-t", sh(`trap 'stty size; exit 5' WINCH; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done`))...)
	tty.waitFor(t, "ready", 10*time.Second)
	tty.setSize(t, 40, 120)
	// The kernel sends SIGWINCH to the foreground process group of the
	// terminal, which is rabbitc's.
	r := p.wait(t)
	wantCode(t, r, 5)
	if !strings.Contains(tty.out.String(), "40 120") {
		t.Errorf("the payload did not see the new size 40x120:\n%q", tty.out.String())
	}
}

// The user's terminal settings are restored on every exit path that runs
// code: payload exit, payload not found, rabbitc signalled.
func TestTTYRestored(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		sig  syscall.Signal
	}{
		{"exit", rcNoNet("-t", sh("exit 3")), 3, 0},
		{"not-found", rcNoNet("-t", "--", "/bin/no-such-program"), 127, 0},
		{"runtime-error", rcNoNet("-t", "-v", "/no/such/source:/mnt", "--", "true"), 125, 0},
		{"sigterm", rcNoNet("-t", "--stop-timeout", "1", sh("echo ready; exec sleep 60")), -1, syscall.SIGTERM},
		{"sighup", rcNoNet("-it", sh("trap 'exit 9' HUP; echo ready; i=0; while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done")), 9, syscall.SIGHUP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tty := newPty(t, 24, 80)
			before := tty.termios(t)
			o := opts{pty: tty}
			p := start(t, o, tc.args...)
			if tc.sig != 0 {
				tty.waitFor(t, "ready", 10*time.Second)
				p.signal(t, tc.sig)
			}
			r := p.wait(t)
			if tc.code >= 0 && r.code != tc.code {
				t.Errorf("exit %d, want %d; terminal:\n%q", r.code, tc.code, tty.out.String())
			}
			after := tty.termios(t)
			if !sameTermios(before, after) {
				t.Errorf("terminal settings not restored:\n before %+v\n after  %+v", before, after)
			}
		})
	}
}

func sameTermios(a, b unix.Termios) bool {
	return a.Iflag == b.Iflag && a.Oflag == b.Oflag && a.Cflag == b.Cflag && a.Lflag == b.Lflag && a.Cc == b.Cc
}

// Job control in the container's sh: ^Z stops the foreground job, ^C
// interrupts it.
func TestTTYJobControl(t *testing.T) {
	tty := newPty(t, 24, 80)
	o := opts{pty: tty}
	p := start(t, o, rcNoNet("-it", "--", "sh")...)
	tty.waitFor(t, "# ", 10*time.Second)
	tty.write(t, "sleep 30\n")
	time.Sleep(300 * time.Millisecond)
	tty.write(t, "\x1a") // ^Z
	tty.waitFor(t, "Stopped", 5*time.Second)
	tty.write(t, "kill -9 %1; echo killed-$((1+1))\n")
	tty.waitFor(t, "killed-2", 5*time.Second)
	tty.write(t, "sleep 30\n")
	time.Sleep(300 * time.Millisecond)
	tty.write(t, "\x03") // ^C
	tty.write(t, "echo rc=$?\n")
	tty.waitFor(t, "rc=130", 5*time.Second)
	tty.write(t, "exit\n")
	wantCode(t, p.wait(t), 0)
}

// ^D on the terminal is the payload's end of input.
func TestTTYInteractiveEOF(t *testing.T) {
	tty := newPty(t, 24, 80)
	o := opts{pty: tty}
	p := start(t, o, rcNoNet("-it", "--", "sh", "-c", "echo ready; cat; echo cat-ended")...)
	tty.waitFor(t, "ready", 10*time.Second)
	tty.write(t, "hello\n")
	tty.waitFor(t, "hello", 5*time.Second)
	tty.write(t, "\x04")
	r := p.wait(t)
	wantCode(t, r, 0)
	if !strings.Contains(tty.out.String(), "cat-ended") {
		t.Errorf("cat did not see the end of input:\n%q", tty.out.String())
	}
}

// -i without -t on a terminal: the payload reads the terminal's input, and
// rabbitc ends with the payload although the terminal never sends EOF.
func TestInteractiveOnTerminalWithoutTTY(t *testing.T) {
	tty := newPty(t, 24, 80)
	o := opts{pty: tty, timeout: 15 * time.Second}
	p := start(t, o, rcNoNet("-i", sh("echo ready; read l; echo got-$l"))...)
	tty.waitFor(t, "ready", 10*time.Second)
	tty.write(t, "line\n")
	tty.waitFor(t, "got-line", 5*time.Second)
	t0 := time.Now()
	r := p.wait(t)
	wantCode(t, r, 0)
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("rabbitc took %v to exit after the payload", d)
	}
}
