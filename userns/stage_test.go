package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A child cloned into a new user namespace with AmbientCaps must keep every
// capability through an exec while its uid is unmapped, also those the
// host's bounding set lacks: the new namespace's bounding set is full.
func TestAmbientCapsSurviveUnmappedExec(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Skip(err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%016x", uint64(1)<<(last+1)-1)
	cmd := exec.Command("/bin/cat", "/proc/self/status")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, AmbientCaps: AmbientCaps()}
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot create a user namespace here: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range []string{"CapAmb:", "CapPrm:", "CapEff:"} {
			if v, ok := strings.CutPrefix(l, f); ok && strings.TrimSpace(v) != want {
				t.Errorf("%s %s after an exec with the uid unmapped, want %s", f, strings.TrimSpace(v), want)
			}
		}
		if v, ok := strings.CutPrefix(l, "Uid:"); ok && !strings.HasPrefix(strings.TrimSpace(v), "65534") {
			t.Logf("uid in the child: %s (expected the overflow uid: unmapped)", strings.TrimSpace(v))
		}
	}
}

func init() {
	if os.Getenv(childEnv) == "unshare" {
		runtime.LockOSThread() // as main.go does: main runs on the main thread
	}
}

// unshareChild runs as init does without a sandbox: in new user and PID
// namespaces, with its capabilities as ambient ones and its uid unmapped.
// It prints the namespaces of its main thread before and after
// UnshareContainer, those of another thread after, then execs readlink so
// the last line is what a payload would get.
func unshareChild() error {
	kinds := []string{"mnt", "net", "uts", "ipc"}
	links := func(dir string) string {
		var s []string
		for _, k := range kinds {
			l, _ := os.Readlink(dir + "/" + k)
			s = append(s, l)
		}
		return strings.Join(s, " ")
	}
	fmt.Println("before", links("/proc/thread-self/ns"))
	if err := UnshareContainer(true); err != nil {
		return err
	}
	fmt.Println("after", links("/proc/thread-self/ns"))
	other := make(chan string)
	go func() {
		runtime.LockOSThread() // a thread of its own, never the main one
		other <- links("/proc/thread-self/ns")
	}()
	fmt.Println("other", <-other)
	os.Stdout.Sync()
	args := []string{"sh", "-c", `printf 'payload'; for k in mnt net uts ipc; do printf ' %s' "$(readlink /proc/self/ns/$k)"; done; echo`}
	return syscall.Exec("/bin/sh", args, os.Environ())
}

// UnshareContainer moves the calling (main) thread into new mount, network,
// UTS and IPC namespaces, leaves every other thread of the process where it
// was, and the payload exec'd from the main thread gets the new ones.
func TestUnshareContainer(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=unshare")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID, AmbientCaps: AmbientCaps()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EACCES) {
			t.Skipf("cannot create a user namespace here: %v", err)
		}
		t.Fatalf("%v: %s", err, out)
	}
	got := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) == 5 {
			got[f[0]] = f[1:]
		}
	}
	before, after, other, payload := got["before"], got["after"], got["other"], got["payload"]
	if before == nil || after == nil || other == nil || payload == nil {
		t.Fatalf("unexpected output:\n%s", out)
	}
	for i, k := range []string{"mnt", "net", "uts", "ipc"} {
		if after[i] == before[i] {
			t.Errorf("%s namespace unchanged on the main thread: %s", k, after[i])
		}
		if other[i] != before[i] {
			t.Errorf("%s namespace of another thread changed: %s, was %s", k, other[i], before[i])
		}
		if payload[i] != after[i] {
			t.Errorf("%s namespace of the exec'd payload: %s, want the main thread's new %s", k, payload[i], after[i])
		}
	}
}
