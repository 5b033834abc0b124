package unpack

// Layer runs as root of a user namespace in rabbitc. So do these tests: run
// as root they run in place; run as a user, TestMain re-execs the test binary
// into a new user namespace that maps 0 to the user and 1..N to the user's
// subordinate ids (newuidmap/newgidmap), or, without subordinate ids, only 0;
// tests that chown to other ids then skip, naming why.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	nsEnv = "_RABBITC_UNPACK_TEST_NS" // "wait": wait for the maps on fd 3; "in": run the tests
	// nsMaxID caps the ids the tests use even where more are mapped.
	nsMaxID = 65536
)

// mode says where the tests run: "root" (real root), "userns" (root of a
// user namespace), "plain" (an unprivileged user, no namespace could be had).
var mode = "root"

func TestMain(m *testing.M) {
	if d := os.Getenv(overlayEnv); d != "" {
		os.Exit(overlayChild(d))
	}
	switch os.Getenv(nsEnv) {
	case "wait":
		waitForMaps()
	case "in":
		mode = "userns"
	case "":
		if os.Geteuid() != 0 {
			if code, ok := runInUserns(); ok {
				os.Exit(code)
			}
			mode = "plain"
		}
	}
	os.Exit(m.Run())
}

// runInUserns re-runs the test binary in a user namespace: with the user's
// subordinate ids if it has some, else with its own id only.
func runInUserns() (int, bool) {
	if code, err := runMapped(true); err == nil {
		return code, true
	} else {
		fmt.Fprintf(os.Stderr, "unpack tests: no subordinate-id user namespace (%v); trying a single-id one\n", err)
	}
	code, err := runMapped(false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "unpack tests: no user namespace (%v); tests that chown will skip\n", err)
		return 0, false
	}
	return code, true
}

func runMapped(subids bool) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER, Pdeathsig: unix.SIGKILL}
	var mapped *os.File
	if subids {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer r.Close()
		defer w.Close()
		mapped = w
		cmd.ExtraFiles = []*os.File{r}
		cmd.Env = append(os.Environ(), nsEnv+"=wait")
	} else {
		cmd.Env = append(os.Environ(), nsEnv+"=in")
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	if mapped != nil {
		if err := writeSubidMaps(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 0, err
		}
		mapped.Write([]byte("m"))
		mapped.Close()
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// waitForMaps: the child started unmapped, so its exec left it without
// capabilities; once the maps are written it execs again as root of the
// namespace.
func waitForMaps() {
	f := os.NewFile(3, "maps-written")
	b := make([]byte, 1)
	if n, _ := f.Read(b); n != 1 {
		os.Exit(1)
	}
	f.Close()
	os.Setenv(nsEnv, "in")
	err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "re-exec after the id maps: %v\n", err)
	os.Exit(1)
}

// writeSubidMaps maps 0 to the user and 1..count to its first subordinate
// range, with newgidmap and newuidmap.
func writeSubidMaps(pid int) error {
	u, err := user.Current()
	if err != nil {
		return err
	}
	for _, tool := range []struct{ cmd, file, id string }{
		{"newgidmap", "/etc/subgid", u.Gid}, {"newuidmap", "/etc/subuid", u.Uid},
	} {
		start, count, err := subidRange(tool.file, u)
		if err != nil {
			return err
		}
		args := []string{strconv.Itoa(pid), "0", tool.id, "1", "1", start, count}
		if out, err := exec.Command(tool.cmd, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", tool.cmd, strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func subidRange(file string, u *user.User) (start, count string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		p := strings.Split(strings.TrimSpace(s.Text()), ":")
		if len(p) == 3 && (p[0] == u.Username || p[0] == u.Uid) {
			return p[1], p[2], nil
		}
	}
	return "", "", fmt.Errorf("no range for %s in %s", u.Username, file)
}

// maxMapped is the highest id such that 0..id are all mapped in this
// process's user namespace (capped at nsMaxID); -1 if 0 is not.
func maxMapped(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return -1
	}
	next := 0
	for changed := true; changed; {
		changed = false
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			in, _ := strconv.Atoi(f[0])
			n, _ := strconv.Atoi(f[2])
			if in <= next && next < in+n {
				next = in + n
				changed = true
			}
		}
	}
	return min(next-1, nsMaxID)
}

// testOptions are the Options for this process's namespace, with notes
// collected in *notes.
func testOptions(notes *[]string) Options {
	return Options{
		MaxUID: maxMapped("/proc/self/uid_map"),
		MaxGID: maxMapped("/proc/self/gid_map"),
		Notef:  func(f string, a ...any) { *notes = append(*notes, fmt.Sprintf(f, a...)) },
	}
}

// needIDs skips a test that chowns to ids up to max when they are not
// mapped, or when the tests could not get root of any user namespace.
func needIDs(t *testing.T, max int) {
	t.Helper()
	if mode == "plain" {
		t.Skip("needs root or a user namespace (unprivileged user namespaces are disabled: see kernel.unprivileged_userns_clone or user.max_user_namespaces)")
	}
	if maxMapped("/proc/self/uid_map") < max || maxMapped("/proc/self/gid_map") < max {
		t.Skipf("needs ids 0..%d mapped; this user namespace maps fewer (add the user to /etc/subuid and /etc/subgid)", max)
	}
}
