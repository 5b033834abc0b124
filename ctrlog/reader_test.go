package ctrlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func readAll(t *testing.T, path string, o ReadOptions) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := Read(&out, &errOut, path, o); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out.String(), errOut.String()
}

// readMerged reads both streams into one writer, in the order logged.
func readMerged(t *testing.T, path string, o ReadOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := Read(&b, &b, path, o); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return b.String()
}

// What each stream wrote comes back byte for byte: partial lines, long
// lines, empty lines, every byte value.
func TestRoundTrip(t *testing.T) {
	l, path := openLog(t, 0)
	var bin []byte
	for i := 0; i < 256; i++ {
		bin = append(bin, byte(i))
	}
	chunks := []struct {
		stream int
		data   string
	}{
		{0, "plain line\n"},
		{1, "Password: "},
		{0, "out P1 "},
		{1, "hunter2\n"},
		{0, "out P2\n"},
		{0, "\n\n"},
		{1, string(bin)},
		{0, "crlf\r\n"},
		{1, strings.Repeat("long ", MaxLine/2) + "\n"},
		{0, strings.Repeat("y", MaxLine*3)},
		{0, "\n"},
		{1, "no newline at the end"},
	}
	var want [2]string
	for _, c := range chunks {
		write(t, l.Stream(streams[c.stream]), c.data)
		want[c.stream] += c.data
	}
	l.Close()
	out, errOut := readAll(t, path, ReadOptions{Tail: -1})
	if out != want[0] {
		t.Errorf("stdout %q,\nwant %q", clip(out), clip(want[0]))
	}
	if errOut != want[1] {
		t.Errorf("stderr %q,\nwant %q", clip(errOut), clip(want[1]))
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:150] + "..." + s[len(s)-150:]
	}
	return s
}

// writeLines logs n numbered lines, alternately on stdout and stderr.
func writeLines(t *testing.T, l *Log, from, n int) []string {
	var lines []string
	for i := from; i < from+n; i++ {
		s := fmt.Sprintf("%s %04d", streams[i%2], i)
		write(t, l.Stream(streams[i%2]), s+"\n")
		lines = append(lines, s)
	}
	return lines
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// --tail N counts lines of both streams, across ctr.log.1 and ctr.log.
func TestTailAcrossRotation(t *testing.T) {
	l, path := openLog(t, 4096)
	all := writeLines(t, l, 0, 1000)
	kept := splitLines(readMerged(t, path, ReadOptions{Tail: -1}))
	if len(kept) == 0 || len(kept) >= len(all) || strings.Join(kept, "\n") != strings.Join(all[len(all)-len(kept):], "\n") {
		t.Fatalf("read %d lines, want the last ones of %d in order: %q", len(kept), len(all), kept)
	}
	inNew := len(splitLines(readFile(t, path)))
	if inNew >= len(kept) {
		t.Fatalf("ctr.log holds %d of the %d lines: no rotation", inNew, len(kept))
	}
	for _, n := range []int{0, 1, 7, inNew + 3, len(kept), len(kept) + 100} {
		got := splitLines(readMerged(t, path, ReadOptions{Tail: n}))
		want := kept[max(0, len(kept)-n):]
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("tail %d: %d lines %q, want %d ending in %q", n, len(got), clip(strings.Join(got, "|")), len(want), kept[len(kept)-1])
		}
	}
	out, errOut := readAll(t, path, ReadOptions{Tail: 4})
	if out != "stdout 0996\nstdout 0998\n" || errOut != "stderr 0997\nstderr 0999\n" {
		t.Errorf("tail 4: stdout %q, stderr %q", out, errOut)
	}
}

// A line logged in pieces counts once and gets one timestamp.
func TestTailAndTimestampsJoinPieces(t *testing.T) {
	l, path := openLog(t, 0)
	write(t, l.Stream("stdout"), "first\n")
	write(t, l.Stream("stdout"), "sec")
	write(t, l.Stream("stderr"), "err\n")
	write(t, l.Stream("stdout"), "ond "+strings.Repeat("x", MaxLine)+"\n")
	write(t, l.Stream("stdout"), "third")
	firstTS := strings.Fields(splitLines(readFile(t, path))[1])[0] // of "sec"
	out, errOut := readAll(t, path, ReadOptions{Tail: 3, Timestamps: true})
	want := regexp.MustCompile(`^` + regexp.QuoteMeta(firstTS) + ` second ` + strings.Repeat("x", MaxLine) + `\n` + tsRE + ` third$`)
	if !want.MatchString(out) {
		t.Errorf("stdout %q, want it to match %s", clip(out), want)
	}
	if !regexp.MustCompile(`^` + tsRE + ` err\n$`).MatchString(errOut) {
		t.Errorf("stderr %q", errOut)
	}
}

// Lines that are no records are skipped; a last line cut short (its writer
// was killed mid-record) is printed as far as it goes.
func TestTornAndGarbage(t *testing.T) {
	path := t.TempDir() + "/ctr.log"
	content := "2026-12-07T05:40:00.000000001Z stdout F one\n" +
		"garbage\n" + strings.Repeat("g", 200<<10) + "\n" +
		"2026-12-07T05:40:00Z stdout X tag\n" +
		"yesterday stdout F time\n" +
		"2026-12-07T06:40:00.5+01:00 stderr F podman's local time\n" +
		"2026-12-07T05:40:00.000000002Z stdout F\n" +
		"2026-12-07T05:40:00.000000003Z stdout F tw"
	os.WriteFile(path, []byte(content), 0o600)
	out, errOut := readAll(t, path, ReadOptions{Tail: -1})
	if out != "one\n\ntw" || errOut != "podman's local time\n" {
		t.Errorf("stdout %q, stderr %q; want %q, %q", out, errOut, "one\n\ntw", "podman's local time\n")
	}
	out, _ = readAll(t, path, ReadOptions{Tail: 1, Timestamps: true})
	if out != "2026-12-07T05:40:00.000000003Z tw" {
		t.Errorf("tail 1 -t: %q", out)
	}
	_, errOut = readAll(t, path, ReadOptions{Tail: -1, Timestamps: true})
	if errOut != "2026-12-07T05:40:00.500000000Z podman's local time\n" {
		t.Errorf("-t of a local time: %q, want it in UTC", errOut)
	}
	os.WriteFile(path, []byte(content[:len(content)-len("stdout F tw")]), 0o600) // cut in the header
	if out, _ := readAll(t, path, ReadOptions{Tail: -1}); out != "one\n\n" {
		t.Errorf("a header cut short: stdout %q", out)
	}
}

func TestReadMissing(t *testing.T) {
	out, errOut := readAll(t, t.TempDir()+"/ctr.log", ReadOptions{Tail: -1})
	if out != "" || errOut != "" {
		t.Errorf("%q %q", out, errOut)
	}
}

// syncBuffer is written by Read while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("follow did not print %q within 10 s; it printed %q", want, clip(s.String()))
		}
		time.Sleep(time.Millisecond)
	}
}

// follower runs Read with Follow in the background until ended is set.
type follower struct {
	out, errOut syncBuffer
	ended       atomic.Bool
	ret         chan error
}

func startFollow(t *testing.T, path string, tail int) *follower {
	f := &follower{ret: make(chan error, 1)}
	o := ReadOptions{Tail: tail, Follow: true, Poll: 5 * time.Millisecond, Done: f.ended.Load}
	go func() { f.ret <- Read(&f.out, &f.errOut, path, o) }()
	return f
}

func (f *follower) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.ret:
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end within 10 s of the writer's end")
	}
}

// Following while the writer writes and rotates prints every line once, in
// order, and ends once the writer has ended and the log is drained.
func TestFollowAcrossRotations(t *testing.T) {
	l, path := openLog(t, 1024)
	writeLines(t, l, 0, 3)
	f := startFollow(t, path, 2)
	f.out.waitFor(t, "stdout 0002\n")
	var want [2]strings.Builder
	want[0].WriteString("stdout 0002\n")
	want[1].WriteString("stderr 0001\n")
	for i := 3; i < 300; i++ { // about 15 rotations, each seen by the reader
		s := writeLines(t, l, i, 1)[0] + "\n"
		want[i%2].WriteString(s)
		[]*syncBuffer{&f.out, &f.errOut}[i%2].waitFor(t, s)
	}
	for i := 300; i < 330; i++ { // as fast as it goes: at most two rotations between looks
		want[i%2].WriteString(writeLines(t, l, i, 1)[0] + "\n")
	}
	write(t, l.Stream("stdout"), "the end, cut")
	want[0].WriteString("the end, cut")
	l.Close()
	f.ended.Store(true)
	f.wait(t)
	for i, got := range []string{f.out.String(), f.errOut.String()} {
		if got != want[i].String() {
			t.Errorf("%s: %s", streams[i], lineDiff(got, want[i].String()))
		}
	}
}

// When ctr.log was rotated twice since the reader last looked, it reads
// the file it had, the ctr.log.1 in between, then the new ctr.log.
func TestTwoRotationsBetweenLooks(t *testing.T) {
	l, path := openLog(t, 1024)
	all := writeLines(t, l, 0, 2)
	cur, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.close()
	var b bytes.Buffer
	p := &printer{out: [2]io.Writer{&b, &b}}
	if _, err := cur.drain(p.print); err != nil {
		t.Fatal(err)
	}
	all = append(all, writeLines(t, l, 2, 45)...) // 52 bytes each: two rotations
	next, err := rotated(path, cur, p.print)
	if err != nil || next == nil {
		t.Fatalf("rotated: %v, %v", next, err)
	}
	defer next.close()
	if _, err := next.drain(p.print); err != nil {
		t.Fatal(err)
	}
	p.flush()
	if got, want := b.String(), strings.Join(all, "\n")+"\n"; got != want {
		t.Errorf("%s", lineDiff(got, want))
	}
}

// Follow goes on while the writer lives, even when nothing comes, and
// prints what was written just before the end.
func TestFollowEndsWhenDone(t *testing.T) {
	l, path := openLog(t, 0)
	f := startFollow(t, path, -1)
	write(t, l.Stream("stdout"), "a\n")
	f.out.waitFor(t, "a\n")
	time.Sleep(50 * time.Millisecond) // ten polls with nothing new
	select {
	case err := <-f.ret:
		t.Fatalf("follow returned (%v) while the writer lives", err)
	default:
	}
	write(t, l.Stream("stdout"), "b\nc")
	write(t, l.Stream("stderr"), "bye\n")
	f.ended.Store(true) // at once: the records above were not seen yet
	f.wait(t)
	if got, errOut := f.out.String(), f.errOut.String(); got != "a\nb\nc" || errOut != "bye\n" {
		t.Errorf("stdout %q, stderr %q; want %q, %q", got, errOut, "a\nb\nc", "bye\n")
	}
}

// Records written between the reader's last look and Done saying yes
// (the writer wrote them and ended) are printed too.
func TestFollowLooksOnceMoreAfterDone(t *testing.T) {
	l, path := openLog(t, 0)
	write(t, l.Stream("stdout"), "a\n")
	var out, errOut syncBuffer
	o := ReadOptions{Tail: -1, Follow: true, Poll: time.Millisecond, Done: func() bool {
		if strings.Contains(out.String(), "a\n") {
			write(t, l.Stream("stdout"), "last\n")
			l.Close()
			return true
		}
		return false
	}}
	if err := Read(&out, &errOut, path, o); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nlast\n" {
		t.Errorf("stdout %q, want %q", out.String(), "a\nlast\n")
	}
}

// A writer killed mid-record leaves a line without its newline: follow
// waits for the rest while the writer lives and prints it once it is gone.
func TestFollowTornRecord(t *testing.T) {
	path := t.TempDir() + "/ctr.log"
	w, _ := os.Create(path)
	defer w.Close()
	w.WriteString("2026-12-07T05:40:00.000000001Z stdout F one\n2026-12-07T05:40:00.00")
	f := startFollow(t, path, -1)
	f.out.waitFor(t, "one\n")
	w.WriteString("0000002Z stdout F two\n2026-12-07T05:40:00.000000003Z stdout F thr")
	f.out.waitFor(t, "two\n")
	f.ended.Store(true)
	f.wait(t)
	if got := f.out.String(); got != "one\ntwo\nthr" {
		t.Errorf("stdout %q, want %q", got, "one\ntwo\nthr")
	}
}

// Following a log whose ctr.log does not exist yet (the writer is between
// the rename and the new file) waits for it.
func TestFollowWaitsForTheFile(t *testing.T) {
	path := t.TempDir() + "/ctr.log"
	f := startFollow(t, path, -1)
	time.Sleep(20 * time.Millisecond)
	l, err := Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, l.Stream("stderr"), "late\n")
	f.errOut.waitFor(t, "late\n")
	l.Close()
	f.ended.Store(true)
	f.wait(t)
}

// lineDiff says where got first differs from want.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d is %q, want %q (%d lines, want %d)", i+1, g[i], w[i], len(g), len(w))
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}
