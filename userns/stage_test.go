package userns

import (
	"fmt"
	"os"
	"os/exec"
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
