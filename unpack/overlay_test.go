package unpack

// The whiteouts and opaque markers Layer writes must mean to the kernel's
// overlayfs, mounted with userxattr in a user namespace, what the OCI image
// spec says: a child in new user and mount namespaces unpacks two layers
// and mounts them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const overlayEnv = "_RABBITC_UNPACK_TEST_OVERLAY" // a directory: run overlayChild there

func TestOverlayWhiteouts(t *testing.T) {
	if mode == "plain" {
		t.Skip("needs a user namespace (unprivileged user namespaces are disabled)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), overlayEnv+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   unix.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		t.Skipf("%s", out)
	case err != nil:
		t.Fatalf("%v: %s", err, out)
	}
}

// overlayChild runs as root of a single-id user namespace with its own mount
// namespace; it returns 0, 1 (failed, printed) or 3 (skip, printed).
func overlayChild(base string) int {
	lower := mkTar(nopTB{}, dir("etc/"), file("etc/passwd", "p"), file("etc/shadow", "s"),
		dir("var/"), file("var/old", "lower"), dir("gone/"), file("gone/x", "x"))
	upper := mkTar(nopTB{}, dir("etc/"), file("etc/.wh.shadow", ""), file(".wh.gone", ""),
		dir("var/"), file("var/.wh..wh..opq", ""), file("var/new", "upper"))
	for name, tarball := range map[string][]byte{"lower": lower, "upper": upper} {
		d := filepath.Join(base, name)
		os.Mkdir(d, 0o755)
		if _, err := Layer(d, bytes.NewReader(tarball), Options{}); err != nil {
			fmt.Printf("unpack %s: %v\n", name, err)
			return 1
		}
	}
	merged := filepath.Join(base, "merged")
	os.Mkdir(merged, 0o755)
	opts := "lowerdir=" + filepath.Join(base, "upper") + ":" + filepath.Join(base, "lower") + ",userxattr"
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		fmt.Printf("overlayfs with userxattr in a user namespace: %v (needs Linux 5.11)\n", err)
		return 3
	}
	var got []string
	filepath.Walk(merged, func(p string, _ os.FileInfo, err error) error {
		rel, _ := filepath.Rel(merged, p)
		got = append(got, rel)
		return err
	})
	if want := ". etc etc/passwd var var/new"; strings.Join(got, " ") != want {
		fmt.Printf("merged tree %q, want %q\n", strings.Join(got, " "), want)
		return 1
	}
	return 0
}

// nopTB lets mkTar run outside a test (its archives cannot fail to write).
type nopTB struct{ testing.TB }

func (nopTB) Helper()               {}
func (nopTB) Fatal(...any)          { panic("mkTar") }
func (nopTB) Fatalf(string, ...any) { panic("mkTar") }
