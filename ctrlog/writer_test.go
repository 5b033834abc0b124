package ctrlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func openLog(t *testing.T, max int64) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctr.log")
	l, err := Open(path, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const tsRE = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z`

// The file is podman's k8s-file format, one record a line.
func TestRecordLayout(t *testing.T) {
	l, path := openLog(t, 0)
	write(t, l.Stream("stdout"), "hello\n\nworld")
	write(t, l.Stream("stderr"), "oops\n")
	want := regexp.MustCompile(`^` + tsRE + ` stdout F hello\n` + tsRE + ` stdout F \n` + tsRE + ` stdout P world\n` +
		tsRE + ` stderr F oops\n$`)
	if got := readFile(t, path); !want.MatchString(got) {
		t.Errorf("log:\n%s\nwant it to match %s", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}

// A line longer than MaxLine is cut into P records of MaxLine bytes.
func TestLongLineSplit(t *testing.T) {
	l, path := openLog(t, 0)
	exact := strings.Repeat("e", MaxLine)
	long := strings.Repeat("x", 2*MaxLine+5)
	write(t, l.Stream("stdout"), exact+"\n"+long+"\n")
	var tags []string
	for _, line := range strings.Split(strings.TrimSuffix(readFile(t, path), "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		tags = append(tags, fmt.Sprintf("%s%d", f[2], len(f[3])))
	}
	want := fmt.Sprintf("F%d P%d P%d F5", MaxLine, MaxLine, MaxLine)
	if got := strings.Join(tags, " "); got != want {
		t.Errorf("records %s, want %s", got, want)
	}
}

// When a record would take ctr.log past the bound, ctr.log becomes
// ctr.log.1 and a new one starts: neither file exceeds the bound.
func TestRotationBound(t *testing.T) {
	const max = 4096
	l, path := openLog(t, max)
	for i := 0; i < 1000; i++ {
		write(t, l.Stream(streams[i%2]), fmt.Sprintf("line %04d\n", i))
		for _, p := range []string{path, path + ".1"} {
			if fi, err := os.Stat(p); err == nil && fi.Size() > max {
				t.Fatalf("after line %d %s has %d bytes, more than %d", i, p, fi.Size(), max)
			}
		}
	}
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Fatalf("no rotation: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 2 {
		t.Errorf("%d files in the log's directory, want ctr.log and ctr.log.1", len(ents))
	}
}

// A record that cannot be written is dropped without an error or a wait,
// and the first write that succeeds says how many were lost.
func TestWriteErrorDropsAndRecovers(t *testing.T) {
	l, path := openLog(t, 0)
	write(t, l.Stream("stdout"), "before\n")
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	real := l.f
	l.f = full
	write(t, l.Stream("stdout"), "lost 1\nlost 2\n")
	write(t, l.Stream("stderr"), "lost 3")
	l.f = real
	full.Close()
	write(t, l.Stream("stdout"), "after\n")
	out, errOut := readAll(t, path, ReadOptions{Tail: -1})
	if out != "before\nafter\n" {
		t.Errorf("stdout %q, want the records before and after the failure", out)
	}
	want := "rabbitc: 3 log records dropped: write /dev/full: no space left on device\n"
	if errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
	write(t, l.Stream("stderr"), "later\n")
	if _, errOut := readAll(t, path, ReadOptions{Tail: -1}); errOut != want+"later\n" {
		t.Errorf("stderr %q: the note must come once", errOut)
	}
}

// Records dropped just before Close are counted in the log's last record.
func TestCloseSaysWhatWasDropped(t *testing.T) {
	l, path := openLog(t, 0)
	real := l.f
	l.f, _ = os.Open("/dev/null") // read-only: writes fail
	write(t, l.Stream("stdout"), "lost\n")
	l.f.Close()
	l.f = real
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, errOut := readAll(t, path, ReadOptions{Tail: -1}); !strings.HasPrefix(errOut, "rabbitc: 1 log records dropped: write /dev/null: ") {
		t.Errorf("stderr %q, want the note about the dropped record", errOut)
	}
	write(t, l.Stream("stdout"), "after close\n") // dropped, no panic
}

// A log whose writer was killed in the middle of a record is appended to
// on a new line: the torn record does not swallow the next one.
func TestReopenAfterTornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctr.log")
	os.WriteFile(path, []byte("2026-12-07T05:40:00.000000001Z stdout F one\n2026-12-07T05:40:00.000000002Z stdout F tw"), 0o600)
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, l.Stream("stdout"), "three\n")
	l.Close()
	if out, _ := readAll(t, path, ReadOptions{Tail: -1}); out != "one\ntw\nthree\n" {
		t.Errorf("stdout %q, want %q", out, "one\ntw\nthree\n")
	}
}

// Copy moves a pipe into a stream until its end; EIO (a pty's hang-up)
// is an end too.
func TestCopy(t *testing.T) {
	l, path := openLog(t, 0)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- Copy(l.Stream("stdout"), r) }()
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // several reads
	go func() {
		w.Write(big)
		w.Write([]byte("\nend\n"))
		w.Close()
	}()
	if err := <-done; err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if out, _ := readAll(t, path, ReadOptions{Tail: -1}); out != string(big)+"\nend\n" {
		t.Errorf("copied %d bytes, want %d", len(out), len(big)+5)
	}
	if err := Copy(io.Discard, eioReader{}); err != nil {
		t.Errorf("Copy from a reader that says EIO: %v, want nil", err)
	}
}

type eioReader struct{}

func (eioReader) Read([]byte) (int, error) {
	return 0, &os.PathError{Op: "read", Path: "/dev/ptmx", Err: syscall.EIO}
}

// Two copiers write at once: each stream comes back whole.
func TestConcurrentStreams(t *testing.T) {
	l, path := openLog(t, 1<<20)
	var want [2]strings.Builder
	var wg sync.WaitGroup
	for i, name := range streams {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2000; j++ {
			fmt.Fprintf(&want[i], "%s line %d %s\n", name, j, strings.Repeat("z", j%50))
		}
		wg.Add(2)
		go func() { defer wg.Done(); Copy(l.Stream(name), r) }()
		go func() { defer wg.Done(); io.WriteString(w, want[i].String()); w.Close() }()
	}
	wg.Wait()
	out, errOut := readAll(t, path, ReadOptions{Tail: -1})
	for i, got := range []string{out, errOut} {
		if got != want[i].String() {
			t.Errorf("%s: %s", streams[i], lineDiff(got, want[i].String()))
		}
	}
}
