package ctrlog

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// ReadOptions say what Read prints.
type ReadOptions struct {
	// Tail prints only the last Tail lines of both streams together (a
	// line cut into P records counts once); negative: every line; 0, the
	// zero value: none (as docker's --tail 0, for Follow).
	Tail int
	// Timestamps prefixes each line with the time its first record was
	// logged, as docker's `logs -t`: "2026-12-07T05:40:00.123456789Z line".
	Timestamps bool
	// Follow goes on printing records as they are written, across
	// rotations, until Done reports the writer gone for good and the log
	// is drained. A nil Done follows for ever.
	Follow bool
	Done   func() bool
	// Poll is how often Follow looks for new records (default 100 ms).
	Poll time.Duration
}

// readBuf bounds a line: one longer than this is not a record of ours
// (they are at most MaxLine plus a header) and is skipped.
const readBuf = 64 << 10

// Read prints the log at path (ctr.log.1, then path): the stdout records
// to stdout, the stderr ones to stderr, each stream's bytes as they were
// written. A missing file is an empty one.
func Read(stdout, stderr io.Writer, path string, o ReadOptions) error {
	p := &printer{out: [2]io.Writer{stdout, stderr}, stamp: o.Timestamps}
	sink := p.print
	var t *tailer
	if o.Tail >= 0 {
		t = &tailer{n: o.Tail}
		sink = t.add
	}
	cur, err := openFile(path)
	if err != nil {
		return err
	}
	defer func() { cur.close() }()
	if err := readOld(path+".1", cur, sink); err != nil {
		return err
	}
	if _, err := cur.drain(sink); err != nil {
		return err
	}
	if !o.Follow {
		cur.torn(sink)
	}
	if t != nil {
		if err := t.flush(p.print); err != nil {
			return err
		}
		sink = p.print
	}
	if o.Follow {
		cur, err = follow(path, cur, sink, p, o)
	}
	if ferr := p.flush(); err == nil {
		err = ferr
	}
	return err
}

// readOld reads the rotated half whole, unless a rotation since cur was
// opened made cur the rotated half.
func readOld(path string, cur *file, sink func(record) error) error {
	old, err := openFile(path)
	if err != nil || old == nil {
		return err
	}
	defer old.close()
	if cur.same(old) {
		return nil
	}
	if _, err := old.drain(sink); err != nil {
		return err
	}
	return old.torn(sink)
}

// follow prints records as they come until o.Done says the writer has
// ended and the log is drained. At each end of file it looks whether path
// is another file now: ctr.log was rotated, and once the old one is
// drained (its writer wrote nothing to it after the rename), reading goes
// on in the new one. It returns the file it ended in.
func follow(path string, cur *file, sink func(record) error, p *printer, o ReadOptions) (*file, error) {
	poll := o.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	ended := false
	for {
		got, err := cur.drain(sink)
		if err != nil {
			return cur, err
		}
		next, err := rotated(path, cur, sink)
		if err != nil {
			return cur, err
		}
		if next != nil {
			cur.close()
			cur = next
			continue
		}
		switch {
		case got:
			continue
		case ended:
			return cur, cur.torn(sink)
		}
		// The last look comes after Done said yes: what the writer wrote
		// before it ended is in the file by then.
		ended = o.Done != nil && o.Done()
		if !ended {
			if err := p.flush(); err != nil {
				return cur, err
			}
			time.Sleep(poll)
		}
	}
}

// rotated returns the file at path when it is not cur any more, after
// draining cur and, should two rotations have happened since the last look,
// the ctr.log.1 between them. nil when nothing changed.
func rotated(path string, cur *file, sink func(record) error) (*file, error) {
	if cur != nil {
		if fi, err := os.Stat(path); err != nil || idOf(fi) == cur.id {
			return nil, nil // the common case, in one system call
		}
	}
	next, err := openFile(path)
	if err != nil || next == nil {
		return nil, err
	}
	if cur.same(next) {
		next.close()
		return nil, nil
	}
	if err := drainAll(cur, sink); err != nil {
		next.close()
		return nil, err
	}
	mid, err := openFile(path + ".1")
	if err == nil && cur != nil && mid != nil && !cur.same(mid) && !next.same(mid) {
		err = drainAll(mid, sink)
	}
	mid.close()
	if err != nil {
		next.close()
		return nil, err
	}
	return next, nil
}

func drainAll(f *file, sink func(record) error) error {
	if _, err := f.drain(sink); err != nil {
		return err
	}
	return f.torn(sink)
}

// file reads one log file's complete lines as they are written.
type file struct {
	f    io.ReadCloser
	id   fileID
	buf  []byte // read and not handed on yet: a line still being written
	skip bool   // in a line too long to be a record, up to its newline
}

// openFile opens a log file; nil and no error when it does not exist.
func openFile(path string) (*file, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &file{f: f, buf: make([]byte, 0, readBuf)}
	if fi, err := f.Stat(); err == nil {
		r.id = idOf(fi)
	}
	return r, nil
}

func idOf(fi os.FileInfo) fileID {
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{uint64(st.Dev), st.Ino}
}

// same tells whether both are the same file (a nil file is no file).
func (r *file) same(o *file) bool {
	return r != nil && o != nil && r.id == o.id
}

// fileID is what tells two files apart.
type fileID struct{ dev, ino uint64 }

func (r *file) close() {
	if r != nil {
		r.f.Close()
	}
}

// drain hands every complete line the file holds now to sink, and reports
// whether it read anything.
func (r *file) drain(sink func(record) error) (bool, error) {
	if r == nil {
		return false, nil
	}
	got := false
	for {
		if len(r.buf) == cap(r.buf) { // no newline in a whole buffer
			r.buf, r.skip = r.buf[:0], true
		}
		n, err := r.f.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		got = got || n > 0
		if err := r.lines(sink); err != nil {
			return got, err
		}
		if err == io.EOF || n == 0 {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// lines hands on the complete lines in r.buf, skipping those that do not
// parse, and keeps the rest.
func (r *file) lines(sink func(record) error) error {
	b := r.buf
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		if r.skip {
			r.skip = false
		} else if rec, ok := parseRecord(b[:i]); ok {
			if err := sink(rec); err != nil {
				return err
			}
		}
		b = b[i+1:]
	}
	r.buf = r.buf[:copy(r.buf, b)]
	return nil
}

// torn hands on a last line without its newline, as a partial record: its
// writer was killed in the middle of it, so whatever followed is lost.
func (r *file) torn(sink func(record) error) error {
	if r == nil || len(r.buf) == 0 {
		return nil
	}
	rec, ok := parseRecord(r.buf)
	r.buf = r.buf[:0]
	if !ok || r.skip {
		r.skip = false
		return nil
	}
	rec.partial = true
	return sink(rec)
}
