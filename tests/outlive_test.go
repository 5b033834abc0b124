package tests

// Issue 12, points 1 and 6: a container never outlives its rabbitc,
// whatever the payload does to its own parent-death signal; stop never
// signals a process that reused a recorded pid.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// escapeModes are the ways rabbitc starts a container, each with the
// arguments before the payload.
func escapeModes(t *testing.T) map[string][]string {
	port := freePort(t, 1)
	return map[string][]string{
		"none":     rcNoNet(),
		"slirp":    rc(),
		"host":     rc("--net", "host"),
		"publish":  rc("-p", fmt.Sprintf("127.0.0.1:%d:80", port)),
		"init":     rcNoNet("--init"),
		"tty":      rcNoNet("-t"),
		"tty-init": rcNoNet("-t", "--init"),
	}
}

// escapePayloads take the parent-death signal away from the payload, each
// in its own way, and leave a grandchild in a session of its own that
// ignores signals.
var escapePayloads = map[string][]string{
	"setuid":      {"--", "escape", "setuid", "doublefork", "ignore"},
	"nopdeathsig": {"--", "escape", "nopdeathsig", "doublefork", "ignore"},
}

// startEscape starts rabbitc with the escape payload in a mode and waits
// until the payload says it is ready.
func startEscape(t *testing.T, mode string, args []string) *proc {
	o := opts{}
	if strings.HasPrefix(mode, "tty") {
		o.pty = newPty(t, 24, 80)
	}
	p := start(t, o, args...)
	p.waitOutput(t, o, "ready grandchild", 10*time.Second)
	return p
}

// wantGoneWithin checks that within d of now nothing that rabbitc started
// is left: every process below the test (a child subreaper) that no
// running rabbitc of ours accounts for.
func wantGoneWithin(t *testing.T, p *proc, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("rabbitc still runs %v after SIGKILL", d)
	}
	if left := straysWithin(time.Until(deadline)); len(left) > 0 {
		t.Errorf("%v after kill -9 of rabbitc, the container still runs:\n%s", d, strings.Join(left, "\n"))
	}
}

// straysWithin waits up to d for our stray processes to be gone, and
// returns what is left. Gone means none in two looks 20 ms apart: a process
// that is reparented to us while it exits can be missed by one look.
func straysWithin(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		left := strays()
		if len(left) == 0 {
			time.Sleep(20 * time.Millisecond)
			if left = strays(); len(left) == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill -9 of rabbitc ends every process of the container within a second,
// whatever the payload did to its parent-death signal, in every mode.
func TestKillRabbitcEndsEscapedPayload(t *testing.T) {
	requireNet(t)
	for mode, args := range escapeModes(t) {
		for name, payload := range escapePayloads {
			t.Run(mode+"/"+name, func(t *testing.T) {
				p := startEscape(t, mode, append(append([]string{}, args...), payload...))
				p.signal(t, syscall.SIGKILL)
				wantGoneWithin(t, p, time.Second)
				p.wait(t) // mounts, ports, state
			})
		}
	}
}

// kill -9 of the process that guards the container from outside (the
// sandbox with -p, the watchdog without) ends the container too: rabbitc
// stops it with one line, and nothing is left.
func TestKillGuardEndsContainer(t *testing.T) {
	requireNet(t)
	port := freePort(t, 1)
	for _, tc := range []struct {
		name, stage string
		args        []string
	}{
		{"sandbox", "init sandbox", rc("-p", fmt.Sprintf("127.0.0.1:%d:80", port))},
		{"watchdog", "init watchdog", rcNoNet()},
		{"watchdog-slirp", "init watchdog", rc()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startEscape(t, tc.name, append(tc.args, escapePayloads["nopdeathsig"]...))
			guard := 0
			deadline := time.Now().Add(5 * time.Second)
			for guard == 0 && time.Now().Before(deadline) {
				for _, d := range descendants(p.pid()) {
					if strings.Contains(cmdline(d.pid), tc.stage) && d.ppid == p.pid() {
						guard = d.pid
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			if guard == 0 {
				t.Fatalf("no %q below rabbitc:%s", tc.stage, describeTree(p.pid()))
			}
			if err := killPid(guard, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			wantGoneWithin(t, p, 2*time.Second)
			r := p.wait(t)
			r.stdout = "" // the payload's "ready"
			wantOneErrorLine(t, r, 125, "killed", "the container was stopped")
		})
	}
}

// rabbitc stop signals only the processes the state recorded: a pid that
// another process took since (its start time differs) is left alone.
func TestStopNeverSignalsAStranger(t *testing.T) {
	requireSetup(t)
	// The "rabbitc" of a made-up container: ignores SIGTERM, ends by itself.
	parent := exec.Command("sh", "-c", "trap '' TERM; sleep 1")
	stranger := exec.Command("sleep", "30")
	for _, c := range []*exec.Cmd{parent, stranger} {
		if env.user.drop {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: credential()}
		}
		registry.Lock() // ours, not leftovers of a run
		err := c.Start()
		if err == nil {
			registry.active[c.Process.Pid] = true
		}
		registry.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		stranger.Process.Kill()
		stranger.Wait()
		registry.Lock()
		delete(registry.active, parent.Process.Pid)
		delete(registry.active, stranger.Process.Pid)
		registry.Unlock()
	}()
	xdg := userDir(t, "xdg-stranger", 0o700)
	id := strings.Repeat("ab", 16)
	dir := filepath.Join(xdg, "rabbitc", id)
	st := map[string]any{"id": id, "rootfs": "/nonexistent", "args": []string{"sleep"}, "created": time.Now().UTC(),
		"parentPid": parent.Process.Pid, "parentStartTime": startTime(t, parent.Process.Pid),
		"initPid": stranger.Process.Pid, "initStartTime": startTime(t, stranger.Process.Pid) + 1, // reused
		"status": "running"}
	b, _ := json.Marshal(st)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		chownToUser(d)
	}
	userFile(t, filepath.Join(dir, "state.json"), string(b), 0o600)
	r := runOpt(t, opts{env: []string{"XDG_RUNTIME_DIR=" + xdg}}, "stop", "-t", "0", id[:6])
	wantCode(t, r, 0)
	parent.Wait()
	if st, ok := readProcs()[stranger.Process.Pid]; !ok || st.state == 'Z' {
		t.Fatalf("stop killed the process that reused the payload's pid (%+v)", st)
	}
	os.RemoveAll(filepath.Dir(dir))
}

// startTime is field 22 of /proc/PID/stat.
func startTime(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	var v uint64
	fmt.Sscan(f[19], &v)
	return v
}

// The container still ends within a second of kill -9 of rabbitc when every
// CPU is busy: what ends it (the watchdog, without a sandbox) must not be a
// process that a loaded machine starves. The load is bounded: one spinning
// goroutine a CPU, for at most 6 s.
func TestKillRabbitcUnderCPULoad(t *testing.T) {
	requireSetup(t)
	stop := make(chan struct{})
	deadline := time.Now().Add(6 * time.Second)
	var spinners sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for n := 0; ; n++ {
				if n%1000000 == 0 {
					select {
					case <-stop:
						return
					default:
					}
					if time.Now().After(deadline) {
						return
					}
				}
			}
		}()
	}
	defer func() {
		close(stop)
		spinners.Wait()
	}()
	p := startEscape(t, "none", append(rcNoNet(), escapePayloads["nopdeathsig"]...))
	p.signal(t, syscall.SIGKILL)
	wantGoneWithin(t, p, time.Second)
	close(stop)
	spinners.Wait()
	stop = make(chan struct{})
	p.wait(t)
}
