package userns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const childEnv = "_USERNS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "protect-exe" {
		fmt.Println(protectExeChild()) // only returns on failure
		os.Exit(1)
	}
	if os.Getenv(childEnv) == "unshare" {
		fmt.Println(unshareChild()) // only returns on failure
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// protectExeChild runs in its own user and mount namespaces, from a copy of
// the test binary that the user owns (so that only the mount can stop a
// write), as a container's init would. It keeps an O_PATH handle on its
// binary, as the runc attack does, then execs a shell, so that the binary no
// longer runs anywhere (no ETXTBSY to hide behind), and the shell reopens the
// handle for writing.
func protectExeChild() error {
	exe, err := ProtectExe()
	if err != nil {
		return err
	}
	fd, err := unix.Open(exe, unix.O_PATH, 0) // no O_CLOEXEC: the shell gets it
	if err != nil {
		return err
	}
	script := fmt.Sprintf("exec 2>&1; if true >>/proc/self/fd/%d; then echo WROTE; else echo DENIED; fi", fd)
	return syscall.Exec("/bin/sh", []string{"sh", "-c", script}, os.Environ())
}

// A process started from the path ProtectExe returns (init is) cannot have
// its binary rewritten through /proc/PID/exe (CVE-2019-5736): a handle on it
// reopened for writing fails with EROFS even once the binary no longer runs.
// Without the read-only bind the write succeeds.
func TestProtectExe(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "userns.test")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(copyPath, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	src.Close()
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyPath, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=protect-exe")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err == nil && (!strings.Contains(string(out), "DENIED") || !strings.Contains(string(out), "Read-only file system")) {
		t.Fatalf("the binary was writable through an O_PATH handle from /proc: %s", out)
	}
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EACCES) {
			t.Skipf("unprivileged user namespaces disabled (kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns or user.max_user_namespaces): %v", err)
		}
		t.Fatalf("%v: %s", err, strings.TrimSpace(string(out)))
	}
}

// SealedCopy holds the running binary, byte for byte, and can be changed
// in no way.
func TestSealedCopy(t *testing.T) {
	f, err := SealedCopy()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil || string(got) != string(want) {
		t.Fatalf("copy differs from the binary (%d vs %d bytes, %v)", len(got), len(want), err)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	want4 := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if err != nil || seals&want4 != want4 {
		t.Errorf("seals %#x, %v; want %#x", seals, err, want4)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Error("wrote into the sealed copy")
	}
	if err := f.Truncate(0); err == nil {
		t.Error("truncated the sealed copy")
	}
}
